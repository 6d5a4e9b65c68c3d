"""Pruning removed replicas: each type folds a removed replica into the pruner's id, and
a cleaned copy forgets it, without changing the value or naming the removed replica.

The laws themselves (value kept, nothing lost or doubled, idempotence, merges of pruned
and cleaned states) run on every type through the law checker (tests/crdts/test_laws.py);
these are the named examples and the edges.
"""

from __future__ import annotations

import pytest

from crdtgossip import GCounter, OperationError, PNCounter, Prunable, codec
from crdtgossip.crdts import GSet, LWWMap, LWWRegister

MAX = 2**64 - 1

#: The stateless restarts of one node in the examples: each restart is a new replica id.
RESTARTS = 30


def restart_ids(count: int = RESTARTS) -> list[str]:
    """The replica ids of one node restarted ``count`` times (``node-1@<n>``)."""
    return [f"node-1@{n}" for n in range(count)]


# ---- counters ---------------------------------------------------------------------------


def test_thirty_restarts_pruned_into_one_leave_one_gcounter_slot() -> None:
    counter = GCounter()
    for step, replica in enumerate(restart_ids(), start=1):
        counter.increment(replica, step)
    counter.increment("node-2", 1000)
    before_value, before_size = counter.value, len(codec.encode(counter))
    for replica in restart_ids():
        counter.prune(replica, "node-2")
    after_size = len(codec.encode(counter))
    print(f"GCounter after {RESTARTS} restarts: {before_size} B, pruned: {after_size} B")
    assert counter.replicas() == {"node-2"}
    assert counter.value == before_value == 1000 + sum(range(1, RESTARTS + 1))
    assert after_size < before_size
    assert codec.decode(codec.encode(counter)) == counter


def test_gcounter_prune_moves_the_slot_and_drop_forgets_it() -> None:
    pruned = GCounter()
    pruned.increment("gone", 5)
    pruned.increment("keeper", 2)
    copy = pruned.copy()
    pruned.prune("gone", "keeper")
    assert pruned.counts == {"keeper": 7}
    copy.drop_replica("gone")
    assert copy.counts == {"keeper": 2}
    copy.merge(pruned)
    assert copy == pruned
    # The pruner keeps counting on top of the folded slot.
    delta = pruned.increment("keeper", 1)
    assert delta.counts == {"keeper": 8}


def test_gcounter_prune_into_a_new_slot() -> None:
    counter = GCounter()
    counter.increment("gone", 4)
    counter.prune("gone", "keeper")
    assert counter.counts == {"keeper": 4}


def test_pncounter_prune_folds_both_halves() -> None:
    counter = PNCounter()
    counter.increment("gone", 10)
    counter.decrement("gone", 3)
    counter.decrement("keeper", 1)
    counter.prune("gone", "keeper")
    assert counter.value == 6
    assert counter.replicas() == {"keeper"}
    assert counter.increments.counts == {"keeper": 10}
    assert counter.decrements.counts == {"keeper": 4}
    cleaned = PNCounter()
    cleaned.increment("gone", 10)
    cleaned.drop_replica("gone")
    assert cleaned.replicas() == frozenset()


@pytest.mark.parametrize("factory", [GCounter, PNCounter])
def test_a_counter_prune_past_64_bits_is_refused_and_nothing_changes(
    factory: type[GCounter] | type[PNCounter],
) -> None:
    counter = factory()
    counter.increment("gone", 2)
    counter.increment("keeper", MAX - 1)
    if isinstance(counter, PNCounter):
        counter.decrement("gone", 1)  # the decrements alone would fit
    before = counter.copy()
    with pytest.raises(OperationError, match="2\\*\\*64 - 1"):
        counter.prune("gone", "keeper")
    assert counter == before


@pytest.mark.parametrize("factory", [GCounter, PNCounter])
def test_a_counter_refuses_bad_prune_ids(factory: type[GCounter] | type[PNCounter]) -> None:
    counter = factory()
    counter.increment("a", 1)
    before = counter.copy()
    for removed, into in [("a", "a"), ("", "b"), ("a", ""), (3, "b")]:
        with pytest.raises(OperationError):
            counter.prune(removed, into)  # type: ignore[arg-type]
    with pytest.raises(OperationError):
        counter.drop_replica("")
    assert counter == before


@pytest.mark.parametrize("factory", [GCounter, PNCounter])
def test_a_counter_prune_or_drop_of_an_absent_replica_changes_nothing(
    factory: type[GCounter] | type[PNCounter],
) -> None:
    counter = factory()
    counter.increment("a", 1)
    before = counter.copy()
    counter.prune("absent", "a")
    counter.drop_replica("absent")
    assert counter == before


# ---- which types are prunable ------------------------------------------------------------


def test_the_counters_are_prunable_and_the_lww_types_and_gset_are_not() -> None:
    assert isinstance(GCounter(), Prunable)
    assert isinstance(PNCounter(), Prunable)
    for state in (GSet(), LWWRegister(), LWWMap()):
        assert not isinstance(state, Prunable)
