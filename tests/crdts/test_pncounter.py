"""PNCounter: concurrent increments and decrements all count; misuse is refused."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip import GCounter, MergeError, OperationError, PNCounter

REPLICAS = ("a", "b", "c")

# (replica, signed step): a negative step is a decrement of its magnitude.
steps = st.lists(
    st.tuples(st.sampled_from(REPLICAS), st.integers(min_value=-1_000, max_value=1_000)),
    max_size=30,
)


def apply(counter: PNCounter, replica: str, step: int) -> PNCounter:
    if step >= 0:
        return counter.increment(replica, step)
    return counter.decrement(replica, -step)


def test_concurrent_increments_sum() -> None:
    a, b = PNCounter(), PNCounter()
    from_a = a.increment("a", 5)
    from_b = b.increment("b", 2)
    a.merge(from_b)
    b.merge(from_a)
    assert a.value == b.value == 7
    assert a == b


def test_concurrent_increment_and_decrement_both_count() -> None:
    a, b = PNCounter(), PNCounter()
    from_a = a.increment("a", 5)
    from_b = b.decrement("b", 2)
    a.merge(from_b)
    b.merge(from_a)
    assert a.value == b.value == 3


def test_value_can_go_negative() -> None:
    counter = PNCounter()
    counter.increment("a", 1)
    counter.decrement("a", 4)
    assert counter.value == -3


def test_deltas_are_one_slot_each() -> None:
    counter = PNCounter()
    counter.increment("a", 3)
    counter.decrement("b", 1)
    up = counter.increment("a", 2)
    down = counter.decrement("b", 6)
    assert (up.increments.counts, up.decrements.counts) == ({"a": 5}, {})
    assert (down.increments.counts, down.decrements.counts) == ({}, {"b": 7})


def test_the_halves_are_copies() -> None:
    counter = PNCounter()
    counter.increment("a", 1)
    counter.increments.increment("a", 10)
    counter.decrements.increment("a", 10)
    assert counter.value == 1


@given(steps, st.randoms(use_true_random=False))
def test_every_replica_reaches_the_total_whatever_the_delivery(
    ops: list[tuple[str, int]], rng: random.Random
) -> None:
    replicas = {name: PNCounter() for name in REPLICAS}
    deltas = [apply(replicas[name], name, step) for name, step in ops]
    for counter in replicas.values():
        delivery = deltas + rng.sample(deltas, len(deltas) // 2)
        rng.shuffle(delivery)
        for delta in delivery:
            counter.merge(delta)
    expected = sum(step for _, step in ops)
    assert all(counter.value == expected for counter in replicas.values())
    first = replicas["a"]
    assert all(counter == first for counter in replicas.values())


@pytest.mark.parametrize("step", [-1, True, 2.0])
def test_bad_step_is_refused(step: object) -> None:
    counter = PNCounter()
    with pytest.raises(OperationError):
        counter.increment("a", step)  # type: ignore[arg-type]
    with pytest.raises(OperationError):
        counter.decrement("a", step)  # type: ignore[arg-type]
    assert counter == PNCounter()


def test_empty_replica_is_refused() -> None:
    counter = PNCounter()
    with pytest.raises(OperationError):
        counter.increment("", 1)
    with pytest.raises(OperationError):
        counter.decrement("", 1)
    assert counter == PNCounter()


def test_merge_of_another_type_is_refused() -> None:
    with pytest.raises(MergeError):
        PNCounter().merge(GCounter())  # type: ignore[arg-type]


def test_a_half_past_64_bits_is_refused_and_nothing_changes() -> None:
    counter = PNCounter()
    counter.decrement("a", 2**64 - 1)
    counter.increment("a", 2**64 - 1)
    before = counter.copy()
    with pytest.raises(OperationError):
        counter.decrement("a")
    with pytest.raises(OperationError):
        counter.increment("a")
    assert counter == before
    assert counter.value == 0
