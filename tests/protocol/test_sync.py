"""The anti-entropy driver in two engines: a differing key costs its difference."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from crdtgossip.codec import decode, encode
from crdtgossip.config import GossipConfig
from crdtgossip.crdts import EWFlag, GCounter, GSet, ORSet
from crdtgossip.protocol import Engine, KeyChanged
from crdtgossip.protocol.messages import (
    Diff,
    RangeNode,
    State,
    decode_frame,
    encode_frame,
    encode_message,
)

from .cluster import VirtualCluster

KEY = "big"

# No probes (a ping a second would dwarf the bytes measured) and a short push-pull
# interval: within the window measured, bytes out are anti-entropy's alone.
QUIET = replace(
    GossipConfig.local(), probe_interval=1000.0, push_pull_interval=5.0, reconnect_interval=1000.0
)

# A window of three push-pull intervals: at least two exchanges start in it.
WINDOW = 3 * QUIET.push_pull_interval


def _orset(count: int) -> ORSet[int]:
    state: ORSet[int] = ORSet()
    for element in range(count):
        state.add(element, "origin")
    return state


def _twins(seed: int, state: Any) -> VirtualCluster:
    """Two joined engines that both start with ``state`` under :data:`KEY`."""
    cluster = VirtualCluster(seed=seed, config=QUIET)
    for name in ("a", "b"):
        cluster.add(name).restore(KEY, state)
    for name in ("a", "b"):
        cluster.engines[name].join([cluster.address("a")], cluster.now)
        cluster._collect(name)
    assert cluster.run_until(lambda: cluster.sees_all(["a", "b"]), max_seconds=60)
    cluster.run(2.0)  # membership rumors die down
    return cluster


def _inject(cluster: VirtualCluster, name: str, delta: Any) -> None:
    """Merge a delta into one engine as a state from a third party (not gossiped)."""
    frame = encode_frame("seeder", [encode_message(State(KEY, encode(delta)))])
    cluster.engines[name].receive(frame, "seeder.test:7000", cluster.now)
    cluster._collect(name)


def _bytes_out(cluster: VirtualCluster) -> int:
    return sum(engine.stats()["bytes_out"] for engine in cluster.engines.values())


def _state(engine: Engine) -> Any:
    return engine.get(KEY)


def test_one_missing_element_of_a_100k_element_set_is_repaired_with_a_few_kb() -> None:
    base = _orset(100_000)
    cluster = _twins(40, base)
    a, b = cluster.engines["a"], cluster.engines["b"]
    extra = base.copy()
    _inject(cluster, "b", extra.add(-1, "late"))
    assert _state(a) != _state(b)
    before = _bytes_out(cluster)
    cluster.run(WINDOW)
    spent = _bytes_out(cluster) - before
    assert _state(a) == _state(b) == extra
    assert a.stats()["repairs_opened"] + b.stats()["repairs_opened"] >= 1
    # Whole states both ways would cost twice the encoding (over 1 MB).
    assert spent < 4_000, spent
    assert spent < len(encode(extra)) / 300


def test_concurrent_removes_on_two_engines_converge() -> None:
    base = _orset(10_000)
    cluster = _twins(41, base)
    a, b = cluster.engines["a"], cluster.engines["b"]
    on_a, on_b = base.copy(), base.copy()
    _inject(cluster, "a", on_a.remove(17))
    _inject(cluster, "a", on_a.remove(9_000))
    _inject(cluster, "b", on_b.remove(4_242))
    _inject(cluster, "b", on_b.add(-5, "b-1"))
    expected = on_a.copy()
    expected.merge(on_b)
    before = _bytes_out(cluster)
    cluster.run(WINDOW)
    assert _state(a) == _state(b) == expected
    assert {17, 9_000, 4_242}.isdisjoint(expected.value)
    assert -5 in expected.value
    assert _bytes_out(cluster) - before < 8_000


def test_what_a_repair_merges_is_announced_and_replays_to_the_state() -> None:
    # Storage appends each merged payload a KeyChanged carries, and the registry's
    # view follows each change: both need the payloads to rebuild the state exactly.
    base = _orset(3_000)
    cluster = _twins(45, base)
    on_a, on_b = base.copy(), base.copy()
    _inject(cluster, "a", on_a.remove(5))
    _inject(cluster, "b", on_b.remove(2_000))
    _inject(cluster, "b", on_b.add(-9, "b-9"))
    starts = {"a": on_a, "b": on_b}
    marks = {name: len(cluster.events[name]) for name in starts}
    cluster.run(WINDOW)
    for name, start in starts.items():
        replayed = start.copy()
        changes = [
            event
            for _, event in cluster.events[name][marks[name] :]
            if isinstance(event, KeyChanged) and event.key == KEY
        ]
        assert changes
        for event in changes:
            assert event.change is not None
            assert decode(event.payload) == event.change
            replayed.merge(decode(event.payload))
        assert replayed == _state(cluster.engines[name])
    assert _state(cluster.engines["a"]) == _state(cluster.engines["b"])


def test_a_held_key_sends_nothing_of_its_state() -> None:
    cluster = _twins(46, _orset(500))
    a = cluster.engines["a"]
    extra = _orset(500)
    _inject(cluster, "b", extra.add(-1, "late"))
    a.begin_local(KEY)  # a local write to the key is being persisted on a
    start = len(cluster.sent)
    cluster.run(WINDOW)
    sent_by_a = [
        message
        for sent in cluster.sent[start:]
        if sent.source == "a"
        for message in decode_frame(sent.data, 1 << 30).messages
        if isinstance(message, Diff | State)
    ]
    assert sent_by_a == []


def test_keys_in_sync_cost_no_repair() -> None:
    cluster = _twins(42, _orset(1_000))
    start = len(cluster.sent)
    cluster.run(WINDOW)
    diffs = [
        message
        for sent in cluster.sent[start:]
        for message in decode_frame(sent.data, 1 << 30).messages
        if isinstance(message, Diff)
    ]
    assert diffs == []
    assert all(engine.stats()["repairs_opened"] == 0 for engine in cluster.engines.values())


def test_a_key_one_side_lacks_still_goes_whole_and_a_joiner_gets_everything() -> None:
    cluster = VirtualCluster(seed=43, config=QUIET)
    names = cluster.start(2)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    counter = GCounter()
    _inject(cluster, names[0], counter.increment("x", 5))
    cluster.run(WINDOW)
    assert cluster.engines[names[1]].get(KEY) == counter
    late = cluster.add("late")
    late.join([cluster.address(names[0])], cluster.now)
    cluster._collect("late")
    assert cluster.run_until(lambda: late.get(KEY) == counter, max_seconds=10)


def test_a_malformed_repair_step_is_counted_and_dropped() -> None:
    cluster = _twins(44, _orset(10))
    a = cluster.engines["a"]
    before = a.stats()
    bad = [
        Diff(KEY, True, b"\xc1", b"", ()),  # not msgpack
        Diff(KEY, True, encode(GCounter()), b"", ()),  # another type
    ]
    for message in bad:
        a.receive(encode_frame("b", [encode_message(message)]), cluster.address("b"), cluster.now)
    after = a.stats()
    assert after["decode_errors"] == before["decode_errors"] + 1
    assert after["drop_bad_payload"] == before["drop_bad_payload"] + 1
    assert after["drop_type_mismatch"] == before["drop_type_mismatch"] + 1
    assert a.get(KEY) == _orset(10)


_payloads = st.sampled_from(
    [
        b"",
        b"\xc1",
        encode(GCounter().increment("x")),
        encode(ORSet()),
        encode(_orset(3)),
        encode(GSet()),
        encode(EWFlag().enable("r")),
    ]
)
_spaces = st.sampled_from(["", "origin", "other", "x" * 300])
_wide = st.sampled_from([(10, 0), (14, 3), (62, 3), (66, 0)])  # (shift, index)
_sums = st.binary(min_size=128, max_size=128)
_counters = st.lists(st.integers(0, 2**64 - 1), max_size=8).map(tuple)
# Well-formed nodes (the frame decoder refuses the rest), with hostile contents.
_ranges = st.one_of(
    st.builds(lambda sp, w, x: RangeNode(sp, *w, x, None), _spaces, _wide, _sums),
    st.builds(
        lambda sp, w, x, a: RangeNode(sp, *w, None, x, answer=a),
        _spaces,
        _wide | st.just((6, 5)),
        _counters,
        st.booleans(),
    ),
    st.builds(lambda sp, x: RangeNode(sp, 10, 2, None, None, x), _spaces, _sums),
)
_diffs = st.builds(
    Diff,
    st.just(KEY),
    st.booleans(),
    _payloads,
    _payloads,
    st.lists(_ranges, max_size=6).map(tuple),
)


@settings(max_examples=200)
@given(st.sampled_from(["orset", "gset", "counter"]), st.lists(_diffs, max_size=4))
def test_well_formed_but_hostile_repair_steps_never_raise(kind: str, messages: list[Diff]) -> None:
    engine = Engine("victim", "victim:1", QUIET, random.Random(0), "victim-1")
    state: Any = {"orset": _orset(40), "gset": GSet(), "counter": GCounter()}[kind]
    if kind == "gset":
        for element in range(40):
            state.add(element)
    engine.restore(KEY, state)
    for message in messages:
        frame = encode_frame("peer", [encode_message(message)])
        assert decode_frame(frame, 1 << 20).messages == (message,)
        engine.receive(frame, "peer:1", 1.0)
    after = engine.get(KEY)
    assert type(after) is type(state)
    assert decode(encode(after)) == after
    engine.take_outgoing()
