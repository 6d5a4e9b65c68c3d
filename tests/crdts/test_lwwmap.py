"""LWWMap: per key, the set or remove with the highest (timestamp, replica) wins.

Default timestamps are ``max(now_ns, that key's timestamp + 1)``; these tests
replace the clock (``now_ns`` as imported by the module).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

import crdtgossip.crdts.lwwmap as lwwmap_module
from crdtgossip import LWWMap, MergeError, OperationError, ORMap, ORSet


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A settable clock: ``clock[0]`` is what ``now_ns()`` returns."""
    now = [0]
    monkeypatch.setattr(lwwmap_module, "now_ns", lambda: now[0])
    return now


def merged(*deltas: LWWMap[str, object]) -> LWWMap[str, object]:
    target: LWWMap[str, object] = LWWMap()
    for delta in deltas:
        target.merge(delta)
    return target


def test_concurrent_writes_to_different_keys_all_land() -> None:
    a: LWWMap[str, object] = LWWMap()
    b: LWWMap[str, object] = LWWMap()
    from_a = a.set("colour", "red", "a", timestamp=1)
    from_b = b.set("size", 3, "b", timestamp=1)
    a.merge(from_b)
    b.merge(from_a)
    assert a.value == b.value == {"colour": "red", "size": 3}
    assert a == b


def test_later_remove_wins_over_earlier_set() -> None:
    a: LWWMap[str, object] = LWWMap()
    written = a.set("k", 1, "a", timestamp=1)
    b: LWWMap[str, object] = LWWMap()
    b.merge(written)
    removed = b.remove("k", "b", timestamp=2)
    for order in [(written, removed), (removed, written)]:
        target = merged(*order)
        assert target.value == {}
        assert "k" not in target
        assert target.get("k") is None


def test_later_set_wins_over_earlier_remove() -> None:
    removed = LWWMap[str, object]().remove("k", "b", timestamp=5)
    written = LWWMap[str, object]().set("k", "back", "a", timestamp=6)
    for order in [(written, removed), (removed, written)]:
        assert merged(*order).value == {"k": "back"}


def test_remove_with_a_lower_timestamp_loses() -> None:
    a: LWWMap[str, object] = LWWMap()
    a.set("k", 1, "a", timestamp=10)
    a.remove("k", "a", timestamp=9)
    assert a.value == {"k": 1}


def test_set_with_a_lower_timestamp_loses() -> None:
    a: LWWMap[str, object] = LWWMap()
    a.remove("k", "a", timestamp=10)
    a.set("k", 1, "a", timestamp=9)
    assert a.value == {}


def test_same_timestamp_higher_replica_wins_whatever_the_merge_order() -> None:
    deltas = [
        LWWMap[str, object]().set("k", "from-a", "a", timestamp=7),
        LWWMap[str, object]().remove("k", "c", timestamp=7),
        LWWMap[str, object]().set("k", "from-b", "b", timestamp=7),
    ]
    for order in itertools.permutations(deltas):
        assert merged(*order).value == {}  # "c" removed it
    deltas[1] = LWWMap[str, object]().remove("k", "0", timestamp=7)
    for order in itertools.permutations(deltas):
        assert merged(*order).value == {"k": "from-b"}


def test_exact_tie_of_timestamp_and_replica_set_wins_over_remove() -> None:
    written = LWWMap[str, object]().set("k", 1, "a", timestamp=3)
    removed = LWWMap[str, object]().remove("k", "a", timestamp=3)
    assert merged(written, removed).value == merged(removed, written).value == {"k": 1}


def test_exact_tie_of_timestamp_and_replica_breaks_by_value() -> None:
    first = LWWMap[str, object]().set("k", "apple", "a", timestamp=3)
    second = LWWMap[str, object]().set("k", "banana", "a", timestamp=3)
    assert merged(first, second) == merged(second, first)
    assert merged(first, second).value == merged(second, first).value


def test_remove_leaves_a_timestamped_marker() -> None:
    a: LWWMap[str, object] = LWWMap()
    a.set("k", 1, "a", timestamp=1)
    delta = a.remove("k", "a", timestamp=2)
    entry = a.entries()["k"]
    assert (entry.timestamp, entry.replica, entry.present) == (2, "a", False)
    assert delta.entries() == a.entries()
    assert len(a) == 0
    assert list(a) == []


def test_delta_is_the_one_key_written() -> None:
    a: LWWMap[str, object] = LWWMap()
    for n in range(50):
        a.set(f"key{n}", n, "a", timestamp=n + 1)
    delta = a.set("key7", "new", "a", timestamp=100)
    assert delta.value == {"key7": "new"}
    assert list(delta.entries()) == ["key7"]


def test_default_timestamp_is_the_clock(clock: list[int]) -> None:
    clock[0] = 500
    a: LWWMap[str, object] = LWWMap()
    assert a.set("k", 1, "a").entries()["k"].timestamp == 500


def test_clock_behind_still_wins_over_what_it_saw(clock: list[int]) -> None:
    ahead: LWWMap[str, object] = LWWMap()
    seen = ahead.set("k", "future", "z", timestamp=9_000)
    behind: LWWMap[str, object] = LWWMap()
    behind.merge(seen)
    clock[0] = 1
    removed = behind.remove("k", "a")
    assert removed.entries()["k"].timestamp == 9_001
    ahead.merge(removed)
    assert ahead.value == behind.value == {}
    rewritten = behind.set("k", "mine", "a")
    assert rewritten.entries()["k"].timestamp == 9_002
    ahead.merge(rewritten)
    assert ahead.value == {"k": "mine"}


def test_default_timestamp_follows_that_keys_timestamp_only(clock: list[int]) -> None:
    a: LWWMap[str, object] = LWWMap()
    a.set("other", 1, "z", timestamp=700)
    a.set("k", 0, "z", timestamp=40)
    clock[0] = 3
    assert a.set("k", 1, "a").entries()["k"].timestamp == 41
    assert a.set("fresh", 1, "a").entries()["fresh"].timestamp == 3


def test_values_are_copies() -> None:
    written = {"xs": [1]}
    a: LWWMap[str, object] = LWWMap()
    a.set("k", written, "a", timestamp=1)
    written["xs"].append(2)
    read = a.get("k")
    assert read == {"xs": [1]}
    assert isinstance(read, dict)
    read["xs"].append(3)
    assert a.value == {"k": {"xs": [1]}}


@pytest.mark.parametrize("timestamp", [True, -1, 2.5])
def test_bad_timestamp_is_refused(timestamp: object) -> None:
    a: LWWMap[str, object] = LWWMap()
    with pytest.raises(OperationError):
        a.set("k", 1, "a", timestamp=timestamp)  # type: ignore[arg-type]
    with pytest.raises(OperationError):
        a.remove("k", "a", timestamp=timestamp)  # type: ignore[arg-type]
    assert a == LWWMap()


def test_empty_replica_is_refused() -> None:
    a: LWWMap[str, object] = LWWMap()
    with pytest.raises(OperationError):
        a.set("k", 1, "", timestamp=1)
    with pytest.raises(OperationError):
        a.remove("k", "", timestamp=1)


def test_merge_of_another_type_is_refused() -> None:
    with pytest.raises(MergeError):
        LWWMap().merge(ORMap(ORSet))  # type: ignore[arg-type]


# (key, present, timestamp, replica, value), distinct per (key, timestamp, replica) so
# that the winner of each key is named by timestamp and replica alone.
writes = st.lists(
    st.tuples(
        st.sampled_from("xyz"),
        st.booleans(),
        st.integers(0, 4),
        st.sampled_from("abc"),
        st.integers(-(2**63), 2**64 - 1),  # what the codec carries
    ),
    max_size=12,
    unique_by=lambda write: (write[0], write[2], write[3]),
)


@given(writes, st.data())
def test_every_merge_order_gives_each_key_its_last_writer(
    drawn: list[tuple[str, bool, int, str, int]], data: st.DataObject
) -> None:
    deltas = []
    for key, present, timestamp, replica, value in drawn:
        source: LWWMap[str, int] = LWWMap()
        if present:
            deltas.append(source.set(key, value, replica, timestamp=timestamp))
        else:
            deltas.append(source.remove(key, replica, timestamp=timestamp))
    expected = {}
    for key in {write[0] for write in drawn}:
        last = max((w for w in drawn if w[0] == key), key=lambda w: (w[2], w[3]))
        if last[1]:
            expected[key] = last[4]
    for _ in range(3):
        target: LWWMap[str, int] = LWWMap()
        for delta in data.draw(st.permutations(deltas)):
            target.merge(delta)
        assert target.value == expected


# ---- integer edges, len and validation -------------------------------------------------

MAX = 2**64 - 1


def test_one_exhausted_key_does_not_block_the_others(clock: list[int]) -> None:
    peer: LWWMap[str, object] = LWWMap()
    hostile = peer.set("stuck", "x", "z", timestamp=MAX)
    mine: LWWMap[str, object] = LWWMap()
    mine.merge(hostile)
    before = mine.copy()
    clock[0] = 10
    with pytest.raises(OperationError, match="largest timestamp"):
        mine.set("stuck", "y", "a")
    with pytest.raises(OperationError):
        mine.remove("stuck", "a")
    assert mine == before
    assert mine.set("other", 1, "a").entries()["other"].timestamp == 10
    assert mine.remove("third", "a").entries()["third"].timestamp == 10
    assert mine.value == {"stuck": "x", "other": 1}


def test_len_counts_present_keys_through_sets_removes_and_merges() -> None:
    a: LWWMap[str, object] = LWWMap()
    b: LWWMap[str, object] = LWWMap()
    a.set("x", 1, "a", timestamp=1)
    a.set("y", 1, "a", timestamp=1)
    b.remove("x", "b", timestamp=2)
    b.set("z", 1, "b", timestamp=1)
    assert (len(a), len(b)) == (2, 1)
    a.merge(b)
    assert len(a) == len(a.value) == 2  # x removed, z added
    a.merge(b)
    assert len(a) == 2
    assert len(a.copy()) == 2


@given(writes, st.data())
def test_len_is_the_number_of_present_keys_for_any_history(
    drawn: list[tuple[str, bool, int, str, int]], data: st.DataObject
) -> None:
    replicas: dict[str, LWWMap[str, object]] = {r: LWWMap() for r in "abc"}
    for key, present, timestamp, replica, value in drawn:
        target = replicas[replica]
        if present:
            target.set(key, value, replica, timestamp=timestamp)
        else:
            target.remove(key, replica, timestamp=timestamp)
        other = replicas[data.draw(st.sampled_from("abc"))]
        other.merge(target)
        for state in (target, other):
            assert len(state) == len(state.value) == len(list(state))


def test_keys_and_values_the_codec_cannot_encode_are_refused() -> None:
    m: LWWMap[object, object] = LWWMap()
    with pytest.raises(OperationError, match="an LWWMap key cannot be"):
        m.set(["list", "key"], 1, "a", timestamp=1)
    with pytest.raises(OperationError, match="a value cannot be"):
        m.set("k", float("nan"), "a", timestamp=1)
    assert m == LWWMap()
