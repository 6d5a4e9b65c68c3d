"""GCounter: concurrent increments sum; slots only grow; misuse is refused."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip import GCounter, MergeError, OperationError, PNCounter

REPLICAS = ("a", "b", "c")

increments = st.lists(
    st.tuples(st.sampled_from(REPLICAS), st.integers(min_value=0, max_value=1_000)),
    max_size=30,
)


def test_concurrent_increments_sum() -> None:
    a, b = GCounter(), GCounter()
    from_a = a.increment("a", 2)
    from_b = b.increment("b", 3)
    a.merge(from_b)
    b.merge(from_a)
    assert a.value == b.value == 5
    assert a == b


def test_default_step_is_one() -> None:
    counter = GCounter()
    counter.increment("a")
    counter.increment("a")
    assert counter.value == 2


def test_delta_is_one_slot_holding_its_new_total() -> None:
    counter = GCounter()
    counter.increment("b", 7)
    counter.increment("a", 1)
    delta = counter.increment("a", 4)
    assert delta.counts == {"a": 5}
    assert delta.value == 5


def test_stale_delta_does_not_lower_a_slot() -> None:
    counter = GCounter()
    old = counter.increment("a", 1)
    counter.increment("a", 1)
    counter.merge(old)
    assert counter.value == 2


def test_zero_step_changes_nothing() -> None:
    counter = GCounter()
    delta = counter.increment("a", 0)
    assert counter.value == 0
    assert counter == GCounter()
    assert delta == GCounter()


@given(increments, st.randoms(use_true_random=False))
def test_every_replica_reaches_the_sum_whatever_the_delivery(
    ops: list[tuple[str, int]], rng: random.Random
) -> None:
    replicas = {name: GCounter() for name in REPLICAS}
    deltas = [replicas[name].increment(name, n) for name, n in ops]
    for counter in replicas.values():
        # Every delta, shuffled and some twice: the order and duplication of delivery.
        delivery = deltas + rng.sample(deltas, len(deltas) // 2)
        rng.shuffle(delivery)
        for delta in delivery:
            counter.merge(delta)
    expected = sum(n for _, n in ops)
    assert all(counter.value == expected for counter in replicas.values())
    first = replicas["a"]
    assert all(counter == first for counter in replicas.values())


@pytest.mark.parametrize("step", [-1, True, 1.5, "1", None])
def test_bad_step_is_refused(step: object) -> None:
    counter = GCounter()
    with pytest.raises(OperationError):
        counter.increment("a", step)  # type: ignore[arg-type]
    assert counter == GCounter()


@pytest.mark.parametrize("replica", ["", None, 3, b"a"])
def test_bad_replica_is_refused(replica: object) -> None:
    counter = GCounter()
    with pytest.raises(OperationError):
        counter.increment(replica, 1)  # type: ignore[arg-type]
    assert counter == GCounter()


def test_merge_of_another_type_is_refused() -> None:
    counter = GCounter()
    counter.increment("a")
    with pytest.raises(MergeError):
        counter.merge(PNCounter())  # type: ignore[arg-type]
    assert counter.value == 1


# ---- integer edges and replica ids ------------------------------------------------------

MAX = 2**64 - 1


def test_a_slot_past_64_bits_is_refused_and_nothing_changes() -> None:
    peer = GCounter()
    peer.increment("a", MAX)  # a peer (or a hostile state) holds our slot at the limit
    mine = GCounter()
    mine.increment("b", 5)
    mine.merge(peer)
    before = mine.copy()
    with pytest.raises(OperationError, match="2\\*\\*64 - 1"):
        mine.increment("a")
    assert mine == before
    mine.increment("a", 0)  # a zero step still fits
    assert mine.increment("b", 1).value == 6  # the other slots still count
    with pytest.raises(OperationError):
        GCounter().increment("a", MAX + 1)


def test_a_new_replica_id_is_checked_in_full() -> None:
    counter = GCounter()
    for replica in ["\ud800", "", 7, ["a"]]:
        with pytest.raises(OperationError):
            counter.increment(replica)  # type: ignore[arg-type]
    assert counter == GCounter()


def test_an_increment_delta_is_a_separate_counter_of_one_slot() -> None:
    counter = GCounter()
    first = counter.increment("a", 2)
    second = counter.increment("a", 3)
    assert first.counts == {"a": 2}
    assert second.counts == {"a": 5}
    assert counter.increment("z", 0) == GCounter()
    assert type(first) is GCounter
