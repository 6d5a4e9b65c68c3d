"""ORSet: add wins over a concurrent remove, with no tombstones.

The examples name each rule; the model-based property checks add-wins in general: an
element is present exactly when some add of it was seen by no remove of it (nor clear).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip import EWFlag, MergeError, OperationError, ORSet


def test_add_wins_over_a_concurrent_remove() -> None:
    a: ORSet[str] = ORSet()
    a.add("x", "a")
    b = a.copy()
    removed = b.remove("x")  # b saw the first add only
    readded = a.add("x", "a")  # concurrent with b's remove
    assert "x" not in b
    a.merge(removed)
    b.merge(readded)
    assert a.value == b.value == frozenset({"x"})
    assert a == b


def test_add_wins_whatever_the_merge_order() -> None:
    base: ORSet[str] = ORSet()
    base.add("x", "a")
    a, b = base.copy(), base.copy()
    readded = a.add("x", "a")
    removed = b.remove("x")
    for first, second in [(readded, removed), (removed, readded)]:
        target = base.copy()
        target.merge(first)
        target.merge(second)
        assert target.value == frozenset({"x"})


def test_remove_of_an_unobserved_add_does_not_remove_it() -> None:
    a: ORSet[str] = ORSet()
    b: ORSet[str] = ORSet()
    added = a.add("x", "a")
    removed = b.remove("x")  # b has never seen "x"
    assert removed == ORSet()  # nothing observed, nothing covered
    a.merge(removed)
    b.merge(added)
    assert a.value == b.value == frozenset({"x"})


def test_observed_remove_removes_everywhere() -> None:
    a: ORSet[str] = ORSet()
    added = a.add("x", "a")
    b: ORSet[str] = ORSet()
    b.merge(added)
    removed = b.remove("x")
    a.merge(removed)
    assert a.value == b.value == frozenset()
    # A late duplicate of the add does not bring it back: the context remembers the dot.
    a.merge(added)
    b.merge(added)
    assert a.value == b.value == frozenset()


def test_remove_that_saw_one_of_two_concurrent_adds_keeps_the_element() -> None:
    a: ORSet[str] = ORSet()
    b: ORSet[str] = ORSet()
    from_a = a.add("x", "a")
    from_b = b.add("x", "b")
    removed = a.remove("x")  # a saw only its own add
    b.merge(from_a)
    b.merge(removed)
    assert b.value == frozenset({"x"})
    assert set(b.entries()["x"]) == {("b", 1)}
    removed_both = b.remove("x")  # b saw both adds
    a.merge(from_b)
    assert "x" in a
    a.merge(removed_both)
    assert a.value == frozenset()


def test_re_add_after_remove() -> None:
    a: ORSet[str] = ORSet()
    a.add("x", "a")
    a.remove("x")
    readded = a.add("x", "a")
    assert a.value == frozenset({"x"})
    b: ORSet[str] = ORSet()
    b.merge(readded)
    assert b.value == frozenset({"x"})


def test_re_add_by_the_same_replica_keeps_one_dot() -> None:
    a: ORSet[str] = ORSet()
    for _ in range(5):
        a.add("x", "a")
    assert a.entries() == {"x": {("a", 5)}}


def test_add_delta_is_the_element_with_its_dot() -> None:
    a: ORSet[int] = ORSet()
    for element in range(100):
        a.add(element, "a")
    b: ORSet[int] = ORSet()
    a.merge(b.add(7, "b"))  # 7 now has two live dots: ("a", 8) and ("b", 1)
    delta = a.add(7, "a")
    assert delta.value == frozenset({7})
    assert delta.entries() == {7: {("a", 101)}}
    assert a.entries()[7] == {("a", 101)}
    # The delta covers the new dot and the dots of 7 it replaced, nothing else.
    assert delta.context.vector == {"b": 1}
    assert delta.context.cloud == {"a": {8, 101}}


def test_remove_delta_holds_no_element_and_covers_the_seen_dots() -> None:
    a: ORSet[str] = ORSet()
    a.add("x", "a")
    a.add("y", "a")
    delta = a.remove("y")
    assert delta.value == frozenset()
    assert delta.context.vector == {}
    assert delta.context.cloud == {"a": {2}}


def test_remove_of_an_absent_element_changes_nothing() -> None:
    a: ORSet[str] = ORSet()
    a.add("x", "a")
    before = a.copy()
    assert a.remove("y") == ORSet()
    assert a == before


def test_clear_removes_what_it_saw() -> None:
    a: ORSet[str] = ORSet()
    for element in "xyz":
        a.add(element, "a")
    b = a.copy()
    cleared = b.clear()
    assert b.value == frozenset()
    assert cleared.value == frozenset()
    a.merge(cleared)
    assert a.value == frozenset()
    assert a == b


def test_add_concurrent_with_clear_survives() -> None:
    a: ORSet[str] = ORSet()
    a.add("x", "a")
    a.add("y", "a")
    b = a.copy()
    cleared = b.clear()
    added = a.add("z", "a")
    readded = a.add("x", "a")
    b.merge(added)
    b.merge(readded)
    a.merge(cleared)
    assert a.value == b.value == frozenset({"x", "z"})


def test_empty_replica_is_refused() -> None:
    a: ORSet[str] = ORSet()
    with pytest.raises(OperationError):
        a.add("x", "")
    assert a == ORSet()


def test_merge_of_another_type_is_refused() -> None:
    with pytest.raises(MergeError):
        ORSet().merge(EWFlag())  # type: ignore[arg-type]


# ---- no tombstones ------------------------------------------------------------------------

# The figure: a million add/remove pairs must leave nothing but the context.
PAIRS_ONE_REPLICA = 1_000_000
# Per replica with three interleaving replicas. Each delta is also merged into the two
# other replicas, out of order, so this checks compaction rather than volume (the
# single-replica test has the volume).
PAIRS_PER_REPLICA = 3_000
# Deltas are delivered in shuffled batches of this many rounds: clouds form mid-batch
# and must fold back into the vectors once the batch is complete.
DELIVERY_BATCH = 100


def assert_store_empty(orset: ORSet[object]) -> None:
    assert orset.value == frozenset()
    assert len(orset) == 0
    # A copy rebuilds its element index from the dot store, so this reads the store.
    assert orset.copy().entries() == {}


@pytest.mark.slow
def test_a_million_add_remove_pairs_leave_only_the_context() -> None:
    orset: ORSet[object] = ORSet()
    for element in range(PAIRS_ONE_REPLICA):
        orset.add(element, "r")
        orset.remove(element)
    assert_store_empty(orset)
    assert orset.context.vector == {"r": PAIRS_ONE_REPLICA}
    assert orset.context.cloud == {}


def test_interleaved_replicas_leave_only_the_context() -> None:
    rng = random.Random(1)
    names = ("a", "b", "c")
    replicas: dict[str, ORSet[object]] = {name: ORSet() for name in names}
    inbox: dict[str, list[ORSet[object]]] = {name: [] for name in names}
    saw_a_cloud = False

    def deliver(name: str) -> None:
        nonlocal saw_a_cloud
        batch = inbox[name]
        rng.shuffle(batch)
        half = len(batch) // 2
        for delta in batch[:half]:
            replicas[name].merge(delta)
        # Midway through a shuffled batch, some dots have arrived before their gaps.
        saw_a_cloud = saw_a_cloud or bool(replicas[name].context.cloud)
        for delta in batch[half:]:
            replicas[name].merge(delta)
        batch.clear()

    for i in range(PAIRS_PER_REPLICA):
        for name in names:
            added = replicas[name].add((name, i), name)
            removed = replicas[name].remove((name, i))
            for other in names:
                if other != name:
                    inbox[other] += [added, removed]
        if (i + 1) % DELIVERY_BATCH == 0:
            for name in names:
                deliver(name)
    for name in names:
        deliver(name)

    assert saw_a_cloud, "shuffled delivery should have produced out-of-order dots"
    for orset in replicas.values():
        assert_store_empty(orset)
        assert orset.context.vector == dict.fromkeys(names, PAIRS_PER_REPLICA)
        assert orset.context.cloud == {}


# ---- add wins, in general -----------------------------------------------------------------

REPLICAS = ("a", "b", "c")
ELEMENTS = (0, 1, 2)


@dataclass(frozen=True)
class Event:
    """One operation in the model: an add of ``element``, or a removal (``element`` None
    for a clear) that saw the events ``seen``."""

    kind: str
    element: int | None
    seen: frozenset[int]


replica_index = st.integers(0, len(REPLICAS) - 1)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), replica_index, st.sampled_from(ELEMENTS)),
        st.tuples(st.just("remove"), replica_index, st.sampled_from(ELEMENTS)),
        st.tuples(st.just("clear"), replica_index, st.none()),
        st.tuples(st.just("sync"), replica_index, replica_index),
    ),
    max_size=40,
)


def add_wins_value(events: list[Event], seen: set[int]) -> frozenset[int]:
    """The specification: an element is in the set when one of its adds is known and no
    known remove of it (or clear) had seen that add."""
    present = set()
    for add_id in seen:
        add = events[add_id]
        if add.kind != "add":
            continue
        removed = any(
            add_id in events[other].seen
            for other in seen
            if events[other].kind == "remove" and events[other].element in (add.element, None)
        )
        if not removed:
            assert add.element is not None
            present.add(add.element)
    return frozenset(present)


@given(operations)
def test_value_is_add_wins_for_any_history(ops: list[tuple[str, int, int | None]]) -> None:
    replicas: list[ORSet[int]] = [ORSet() for _ in REPLICAS]
    seen: list[set[int]] = [set() for _ in REPLICAS]
    events: list[Event] = []
    deltas: list[ORSet[int]] = []
    for kind, index, argument in ops:
        if kind == "sync":
            assert argument is not None
            replicas[argument].merge(replicas[index])
            seen[argument] |= seen[index]
            target = argument
        else:
            target = index
            if kind == "add":
                assert argument is not None
                deltas.append(replicas[index].add(argument, REPLICAS[index]))
            elif kind == "remove":
                assert argument is not None
                deltas.append(replicas[index].remove(argument))
            else:
                deltas.append(replicas[index].clear())
            events.append(
                Event(kind if kind == "add" else "remove", argument, frozenset(seen[index]))
            )
            seen[index].add(len(events) - 1)
        state = replicas[target]
        expected = add_wins_value(events, seen[target])
        # len() and `in` read the element count, not the value: check them first.
        assert len(state) == len(expected)
        assert all(element in state for element in expected)
        assert not any(element in state for element in range(-3, 0))
        assert state.value == expected

    everything = ORSet[int]()
    for orset in replicas:
        everything.merge(orset)
    assert everything.value == add_wins_value(events, set(range(len(events))))
    # The deltas alone carry every effect, removals included, in any order.
    from_deltas = ORSet[int]()
    for delta in reversed(deltas):
        from_deltas.merge(delta)
    assert from_deltas == everything


# ---- reading costs what it reads ------------------------------------------------------------


def test_len_and_in_after_a_write_do_not_rebuild_the_value() -> None:
    orset: ORSet[int] = ORSet()
    for n in range(1_000):
        orset.add(n, "a")
    assert len(orset) == 1_000
    orset.add(1_000, "a")
    orset.remove(3)
    assert orset._value is None  # the frozenset is stale ...
    assert len(orset) == 1_000
    assert 1_000 in orset
    assert 3 not in orset
    assert orset._value is None  # ... and len() and `in` did not rebuild it
    assert len(orset.value) == 1_000


@pytest.mark.parametrize("size", [10, 1_000])  # patched, and past _INDEX_PATCH_LIMIT
def test_len_and_in_follow_small_and_large_merges(size: int) -> None:
    a: ORSet[int] = ORSet()
    b: ORSet[int] = ORSet()
    a.add(-1, "a")
    assert len(a) == 1  # the count exists before the merges below patch or drop it
    for n in range(size):
        b.add(n, "b")
    b.add(-1, "b")  # the same element under a second dot
    a.merge(b)
    assert len(a) == size + 1
    assert (size - 1) in a
    assert -1 in a
    removed = b.clear()
    a.merge(removed)
    assert len(a) == 1
    assert -1 in a
    assert 0 not in a
    assert a.value == frozenset({-1})
    copied = a.copy()
    assert len(copied) == 1
    assert -1 in copied


def test_an_exhausted_replica_or_a_bad_element_changes_nothing() -> None:
    from crdtgossip.crdts import CausalContext

    peer: ORSet[str] = ORSet()
    peer._context = CausalContext.from_dots([("a", 2**64 - 1)])
    mine: ORSet[str] = ORSet()
    mine.add("x", "a")
    mine.merge(peer)
    before = mine.copy()
    with pytest.raises(OperationError, match="every dot counter"):
        mine.add("x", "a")  # a re-add: its old dot must not be dropped first
    with pytest.raises(OperationError, match="an element cannot be"):
        mine.add(("x", 2**64), "b")  # type: ignore[arg-type]
    assert mine == before
    assert "x" in mine
    mine.add("x", "b")
    assert mine.value == frozenset({"x"})
