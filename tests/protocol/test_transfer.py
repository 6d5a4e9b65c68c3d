"""Whole states of any size reach a new member: parts, chunks, a byte budget per call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtgossip.codec import encode
from crdtgossip.config import GossipConfig
from crdtgossip.crdts import GCounter, GSet, LWWMap, LWWRegister, ORMap, ORSet
from crdtgossip.crdts._causal import CausalContext
from crdtgossip.protocol import Engine
from crdtgossip.protocol.transfer import MAX_BACKLOG, STEP_BYTES, context_slice

from .cluster import VirtualCluster

KEY = "big"
FRAME = 256 * 1024  # a tight frame, so a 10^6-element key needs dozens of parts

QUIET = replace(
    GossipConfig.local(),
    probe_interval=1000.0,
    push_pull_interval=5.0,
    reconnect_interval=1000.0,
    max_reliable_frame=FRAME,
)


def _count_encoded(engine: Engine, calls: list[int]) -> None:
    """Record, per call into ``engine``, the bytes its transfers encoded."""

    def wrap(method: Callable[..., None]) -> Callable[..., None]:
        def counted(*args: Any, **kwargs: Any) -> None:
            before = engine.stats()["transfer_bytes_encoded"]
            method(*args, **kwargs)
            calls.append(engine.stats()["transfer_bytes_encoded"] - before)

        return counted

    for name in ("tick", "receive", "join"):
        setattr(engine, name, wrap(getattr(engine, name)))


def _join_with(state: Any, config: GossipConfig = QUIET) -> tuple[VirtualCluster, list[int]]:
    """Engine a holds ``state``; engine b joins through a. Returns the bytes per call."""
    cluster = VirtualCluster(seed=5, config=config)
    a = cluster.add("a")
    a.restore(KEY, state, copy=False)
    calls: list[int] = []
    _count_encoded(a, calls)
    cluster.add("b")
    cluster.engines["b"].join([cluster.address("a")], cluster.now)
    cluster._collect("b")
    return cluster, calls


def _reaches(cluster: VirtualCluster, state: Any, seconds: float = 60.0) -> None:
    b = cluster.engines["b"]
    assert cluster.run_until(lambda: b.get(KEY) == state, max_seconds=seconds)


def test_a_million_element_orset_reaches_a_joiner_in_parts_within_the_budget() -> None:
    state: ORSet[int] = ORSet()
    for element in range(1_000_000):
        state.add(element, "origin")
    state.remove(17)  # a remove travels too (in the context of its range's part)
    expected = state.copy()
    cluster, calls = _join_with(state)
    _reaches(cluster, expected)
    stats = cluster.engines["a"].stats()
    assert stats["transfer_parts"] > 30  # ~10 MB through 256 KiB frames
    assert stats["transfers_done"] == 1
    assert stats["drop_oversize"] == 0
    assert 17 not in cluster.engines["b"].get(KEY)  # type: ignore[operator]
    # No call encodes more than the budget plus the one part that crosses it.
    assert max(calls) <= STEP_BYTES + FRAME
    assert sum(calls) >= len(encode(expected))  # the parts together hold it all


def test_a_million_element_gset_reaches_a_joiner_in_parts() -> None:
    state: GSet[int] = GSet()
    for element in range(1_000_000):
        state.add(element)
    expected = state.copy()
    cluster, calls = _join_with(state)
    _reaches(cluster, expected)
    assert cluster.engines["a"].stats()["transfer_parts"] > 15
    assert max(calls) <= STEP_BYTES + FRAME


@pytest.mark.parametrize("kind", ["lwwmap", "ormap"])
def test_large_maps_go_in_parts(kind: str) -> None:
    state: Any
    if kind == "lwwmap":
        state = LWWMap()
        for i in range(20_000):
            state.set(f"k{i}", "v" * 20, "r", timestamp=i + 1)
        state.remove("k3", "r", timestamp=10**9)
    else:
        state = ORMap(ORSet)
        for i in range(3_000):
            state.update(f"k{i % 300}", "r", lambda s, i=i: s.add(i, "r"))
        state.remove("k5")
    config = replace(QUIET, max_reliable_frame=16 * 1024)
    expected = state.copy()
    cluster, calls = _join_with(state, config)
    _reaches(cluster, expected)
    assert cluster.engines["a"].stats()["transfer_parts"] > 2
    assert max(calls) <= STEP_BYTES + config.max_reliable_frame


def test_a_state_that_does_not_split_goes_in_chunks() -> None:
    register: LWWRegister[bytes] = LWWRegister()
    register.set(bytes(range(256)) * 4096, "r", timestamp=5)  # 1 MiB in one value
    config = replace(QUIET, max_reliable_frame=64 * 1024)
    cluster, _ = _join_with(register.copy(), config)
    _reaches(cluster, register)
    a, b = cluster.engines["a"].stats(), cluster.engines["b"].stats()
    assert a["transfer_chunks"] >= 16
    assert b["chunked_states_in"] == 1
    assert b["chunks_in"] == a["transfer_chunks"]


def test_a_repeated_join_does_not_restart_a_transfer() -> None:
    state: GSet[int] = GSet()
    for element in range(50_000):
        state.add(element)
    cluster = VirtualCluster(seed=1, config=replace(QUIET, max_reliable_frame=16 * 1024))
    a = cluster.add("a")
    a.restore(KEY, state)
    for _ in range(5):
        a._sync.send_states("b.test:7000", [KEY])
    assert a.stats()["transfers_started"] == 1


def test_a_key_past_the_limit_is_refused_with_a_backoff_not_retried_in_a_loop() -> None:
    register: LWWRegister[bytes] = LWWRegister()
    register.set(b"x" * 5000, "r", timestamp=1)
    cluster = VirtualCluster(seed=1, config=replace(QUIET, max_key_bytes=1000))
    a = cluster.add("a")
    a.restore(KEY, register)
    for _ in range(10):
        a._sync.send_states("b.test:7000", [KEY])
    a.tick(0.5)
    assert a.stats()["transfers_refused"] == 1  # once, then backed off
    assert not [f for f in a.take_outgoing() if f.address == "b.test:7000"]
    a.tick(10.0)
    a._sync.send_states("b.test:7000", [KEY])  # the backoff is over: tried once more
    assert a.stats()["transfers_refused"] == 2


def test_small_states_still_go_whole_at_once() -> None:
    counter = GCounter()
    counter.increment("r", 5)
    cluster, _ = _join_with(counter.copy())
    _reaches(cluster, counter, seconds=10)
    stats = cluster.engines["a"].stats()
    assert stats["transfers_started"] == 0
    assert stats["transfer_parts"] == 0


@settings(max_examples=60, deadline=None)
@given(
    st.sets(st.integers(1, 300)),
    st.integers(1, 320),
    st.integers(0, 320),
)
def test_context_slice_holds_exactly_the_seen_counters_in_its_range(
    seen: set[int], low: int, width: int
) -> None:
    context = CausalContext.from_dots(("r", c) for c in seen)
    sliced = context_slice(context, "r", low, low + width)
    assert set(sliced.dots_of("r")) == {c for c in seen if low <= c < low + width}
    assert set(sliced.vector) | set(sliced.cloud) <= {"r"}


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 60), st.sampled_from("xyz")), max_size=80),
    st.integers(1, 40),
)
def test_the_parts_of_an_orset_join_to_the_state(
    operations: list[tuple[bool, int, str]], per_part: int
) -> None:
    from crdtgossip.protocol.transfer import _Job, _replicas

    state: ORSet[int] = ORSet()
    for add, element, replica in operations:
        if add:
            state.add(element, replica)
        else:
            state.remove(element)
    job = _Job("b", KEY, "causal", per_part=per_part, replicas=_replicas(state))
    joined: ORSet[int] = ORSet()
    cluster = VirtualCluster(seed=1)
    transfers = cluster.add("a")._sync._transfers
    while job.replica_index < len(job.replicas):
        part, advance = transfers._causal_part(job, state)
        joined.merge(part)
        job.replica_index, job.next_counter, _ = advance
    assert joined == state


def test_exchanges_during_a_transfer_leave_the_key_on_its_way_alone() -> None:
    # Push-pull every 10 ms: several exchanges run while the 40 parts are on their way.
    # Neither side repairs the half-sent key meanwhile (that scattered a 10^7-element
    # receiver's context into millions of single counters); it arrives whole by parts.
    state: ORSet[int] = ORSet()
    for element in range(200_000):
        state.add(element, "origin")
    expected = state.copy()
    cluster, _ = _join_with(state, replace(QUIET, push_pull_interval=0.01))
    _reaches(cluster, expected)
    a, b = cluster.engines["a"], cluster.engines["b"]
    assert a.stats()["transfer_parts"] > 30
    assert a.stats()["push_pulls"] + b.stats()["push_pulls"] > 3
    for engine in (a, b):
        assert engine.stats()["repairs_opened"] == 0
        assert engine.stats()["repair_steps"] == 0
    assert b.stats()["transfer_parts"] == 0  # nor does the receiver send it back


def test_a_transfer_pauses_while_the_transport_holds_too_much_for_its_member() -> None:
    state: ORSet[int] = ORSet()
    for element in range(50_000):
        state.add(element, "origin")
    expected = state.copy()
    cluster, _ = _join_with(state)
    a = cluster.engines["a"]
    held = {"bytes": MAX_BACKLOG + 1}  # what the transport still holds for b
    a.set_backlog(lambda address: held["bytes"] if address == cluster.address("b") else 0)
    cluster.run(0.5)
    paused = a.stats()["transfer_parts"]
    assert paused == 0  # not one part while the backlog is past the bound
    held["bytes"] = MAX_BACKLOG  # drained to the bound: the transfer goes on
    _reaches(cluster, expected)
    assert a.stats()["transfer_parts"] > 5
