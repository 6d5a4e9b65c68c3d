"""MVRegister: concurrent writes are all kept, in a deterministic order; a write that
saw them replaces them.

The model-based property checks the rule in general: the values are those of the writes
no other known write has seen, ordered by their dots (replica id, then that replica's
write count).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip import LWWRegister, MergeError, MVRegister, OperationError


def test_new_register_is_empty() -> None:
    assert MVRegister().value == []


def test_concurrent_values_are_kept() -> None:
    a: MVRegister[str] = MVRegister()
    b: MVRegister[str] = MVRegister()
    from_a = a.set("red", "a")
    from_b = b.set("blue", "b")
    a.merge(from_b)
    b.merge(from_a)
    assert a.value == b.value == ["blue", "red"]
    assert a == b


def test_a_later_set_replaces_all_concurrent_values() -> None:
    a: MVRegister[str] = MVRegister()
    b: MVRegister[str] = MVRegister()
    from_a = a.set("red", "a")
    from_b = b.set("blue", "b")
    a.merge(from_b)
    b.merge(from_a)
    resolved = b.set("green", "b")
    a.merge(resolved)
    assert a.value == b.value == ["green"]


def test_a_set_replaces_only_what_it_saw() -> None:
    a: MVRegister[str] = MVRegister()
    b: MVRegister[str] = MVRegister()
    c: MVRegister[str] = MVRegister()
    from_a = a.set("red", "a")
    from_c = c.set("blue", "c")
    b.merge(from_a)
    from_b = b.set("green", "b")  # saw red, not blue
    for delta in (from_a, from_b, from_c):
        a.merge(delta)
        c.merge(delta)
    assert a.value == c.value == ["blue", "green"]


def test_value_order_is_the_same_whatever_the_merge_order() -> None:
    # Replica ids deliberately out of alphabetical order of the values: the order is
    # the values' own (order_key), not the writers', so pruning a writer keeps it.
    deltas = [
        MVRegister[str]().set(value, replica)
        for value, replica in [("x", "c"), ("y", "a"), ("z", "b")]
    ]
    for order in itertools.permutations(deltas):
        register: MVRegister[str] = MVRegister()
        for delta in order:
            register.merge(delta)
        assert register.value == ["x", "y", "z"]


def test_sequential_sets_keep_one_value() -> None:
    register: MVRegister[int] = MVRegister()
    for n in range(5):
        register.set(n, "a")
    assert register.value == [4]


def test_delta_carries_only_the_new_value() -> None:
    register: MVRegister[str] = MVRegister()
    register.merge(MVRegister[str]().set("other", "b"))
    delta = register.set("mine", "a")
    assert delta.value == ["mine"]
    assert delta.context.vector == {"a": 1, "b": 1}  # the new dot and the one replaced


def test_value_read_is_a_copy() -> None:
    register: MVRegister[list[int]] = MVRegister()
    register.set([1], "a")
    register.value[0].append(2)
    assert register.value == [[1]]


def test_set_keeps_a_copy_of_the_value() -> None:
    # LWWRegister and LWWMap copy the written value; the state must not alias the
    # caller's object, or a later change to it changes this replica only, and replicas
    # that got the (copied) delta diverge for good.
    written = [1]
    register: MVRegister[list[int]] = MVRegister()
    delta = register.set(written, "a")
    other: MVRegister[list[int]] = MVRegister()
    other.merge(delta)
    written.append(2)
    assert register.value == [[1]]
    assert register == other


def test_empty_replica_is_refused() -> None:
    with pytest.raises(OperationError):
        MVRegister[str]().set("x", "")


def test_merge_of_another_type_is_refused() -> None:
    with pytest.raises(MergeError):
        MVRegister().merge(LWWRegister())  # type: ignore[arg-type]


REPLICAS = ("a", "b", "c")


@dataclass(frozen=True)
class Write:
    """One set: its value, its dot, and the writes it had seen."""

    value: int
    dot: tuple[str, int]
    seen: frozenset[int]


replica_index = st.integers(0, len(REPLICAS) - 1)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), replica_index, st.integers(0, 9)),
        st.tuples(st.just("sync"), replica_index, replica_index),
    ),
    max_size=30,
)


def expected_values(writes: list[Write], seen: set[int]) -> list[int]:
    """The specification: known writes no other known write saw, in value order."""
    alive = [writes[w] for w in seen if not any(w in writes[other].seen for other in seen)]
    return sorted(write.value for write in alive)


@given(operations)
def test_values_are_the_concurrent_writes_for_any_history(
    ops: list[tuple[str, int, int]],
) -> None:
    registers: list[MVRegister[int]] = [MVRegister() for _ in REPLICAS]
    seen: list[set[int]] = [set() for _ in REPLICAS]
    writes: list[Write] = []
    count = dict.fromkeys(REPLICAS, 0)
    deltas: list[MVRegister[int]] = []
    for kind, index, argument in ops:
        if kind == "sync":
            registers[argument].merge(registers[index])
            seen[argument] |= seen[index]
            target = argument
        else:
            replica = REPLICAS[index]
            deltas.append(registers[index].set(argument, replica))
            count[replica] += 1
            writes.append(Write(argument, (replica, count[replica]), frozenset(seen[index])))
            seen[index].add(len(writes) - 1)
            target = index
        assert registers[target].value == expected_values(writes, seen[target])

    everything: MVRegister[int] = MVRegister()
    for register in registers:
        everything.merge(register)
    assert everything.value == expected_values(writes, set(range(len(writes))))
    from_deltas: MVRegister[int] = MVRegister()
    for delta in reversed(deltas):
        from_deltas.merge(delta)
    assert from_deltas == everything


def test_an_exhausted_replica_or_a_bad_value_changes_nothing() -> None:
    from crdtgossip.crdts import CausalContext

    peer: MVRegister[str] = MVRegister()
    peer._context = CausalContext.from_dots([("a", 2**64 - 1)])
    mine: MVRegister[str] = MVRegister()
    mine.set("v", "b")
    mine.merge(peer)
    before = mine.copy()
    with pytest.raises(OperationError, match="every dot counter"):
        mine.set("w", "a")
    with pytest.raises(OperationError, match="a value cannot be"):
        mine.set(["\ud800"], "b")  # type: ignore[arg-type]
    assert mine == before
    mine.set("w", "b")
    assert mine.value == ["w"]
