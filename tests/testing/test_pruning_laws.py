"""The pruning laws fail on broken prunes, naming the law, and pass on correct ones.

Each broken type below is one of crdtgossip's, with one planted bug in ``prune`` or
``drop_replica``; check_laws, or assert_pruning_laws on states built to show the bug,
must name the law that bug breaks. The other direct calls of assert_pruning_laws show
the setting it checks, and the documented limit it allows.
"""

from __future__ import annotations

import re

import pytest

from crdtgossip import GCounter, ORMap, ORSet, PNCounter
from crdtgossip.crdts import Element
from crdtgossip.testing import Law, Operation, assert_pruning_laws, check_laws
from crdtgossip.testing import strategies as ops

# The bugs show within a few examples; as many as the other broken toys run.
EXAMPLES = 200


def law_named(law: Law) -> str:
    """The pytest.raises pattern for an error naming ``law``."""
    return re.escape(f"CRDT law violated ({law})")


class LosingCounter(GCounter):
    """Deletes the removed slot instead of adding it to the pruner's."""

    def prune(self, removed: str, into: str) -> None:
        self._counts.pop(removed, None)


class MaxCounter(GCounter):
    """Keeps the larger of the two slots: a join, where a prune must add."""

    def prune(self, removed: str, into: str) -> None:
        taken = self._counts.pop(removed, None)
        if taken is not None:
            self._counts[into] = max(self._counts.get(into, 0), taken)


class ForgetfulCounter(GCounter):
    """Prunes right, but its clean-up forgets nothing."""

    def drop_replica(self, removed: str) -> None:
        pass


class ZeroSlotCounter(GCounter):
    """Prunes right, but a prune of an absent replica leaves an empty slot behind."""

    def prune(self, removed: str, into: str) -> None:
        self._counts.setdefault(into, 0)
        super().prune(removed, into)


class DoublingSet(ORSet[Element]):
    """Prunes right, but its clean-up keeps the removed replica's live dots, renamed to
    dots of a replica "z" that never wrote: the elements come back twice over."""

    def drop_replica(self, removed: str) -> None:
        block = self._dots.pop(removed, {})
        self._reverse.pop(removed, None)
        self._count = None
        self._value = None
        for element in block.values():
            counter = self._context.max_counter("z") + 1
            self._context.add("z", counter)
            self._dots.setdefault("z", {})[counter] = element
        self._context.forget(removed)


class NameKeepingSet(ORSet[Element]):
    """Re-dots the removed replica's elements right, but leaves it in the context."""

    def prune(self, removed: str, into: str) -> None:
        if removed in self.replicas():
            self._prune_store(removed, into)


class StaleDotSet(ORSet[Element]):
    """Gives the removed replica's dots to the pruner with their counters, where a prune
    must take fresh ones: a dot the pruner already holds is overwritten. Random
    histories catch it about nine runs in ten at 200 examples (two prunes must meet on
    a counter), so the test below builds the meeting."""

    def _prune_store(self, removed: str, into: str) -> None:
        block = self._dots.pop(removed, None)
        self._reverse.clear()
        self._count = self._value = self._hashes = None
        if block is not None:
            for counter, element in block.items():
                self._dots.setdefault(into, {})[counter] = element
                self._context.add(into, counter)


@pytest.mark.parametrize(
    ("factory", "law"),
    [
        (LosingCounter, Law.PRUNE_VALUE),
        (MaxCounter, Law.PRUNE_VALUE),
        (ForgetfulCounter, Law.PRUNE_CONVERGENCE),
        (ZeroSlotCounter, Law.PRUNE_IDEMPOTENCE),
    ],
)
def test_a_broken_counter_prune_is_named(factory: type[GCounter], law: Law) -> None:
    with pytest.raises(AssertionError, match=law_named(law)):
        check_laws(factory, ops.gcounter_ops(), max_examples=EXAMPLES, check_codec=False)


@pytest.mark.parametrize(
    ("factory", "law"),
    [(NameKeepingSet, Law.PRUNE_VALUE), (DoublingSet, Law.PRUNE_CONVERGENCE)],
)
def test_a_broken_set_prune_or_clean_up_is_named(factory: type[ORSet[Element]], law: Law) -> None:
    with pytest.raises(AssertionError, match=law_named(law)):
        check_laws(factory, ops.orset_ops(), max_examples=EXAMPLES, check_codec=False)


def test_a_prune_reusing_the_removed_counters_breaks_the_order_law() -> None:
    """Each prune alone keeps the value here (the pruner holds no dot yet); the second
    one, in either order, overwrites the first one's element at ("keeper", 1)."""
    states = {name: StaleDotSet() for name in ("gone", "keeper", "other")}
    states["gone"].add("x", "gone")
    states["other"].add("y", "other")
    with pytest.raises(AssertionError, match=law_named(Law.PRUNE_ORDER)):
        assert_pruning_laws(states, "gone", "keeper")
    correct = {name: ORSet[str]() for name in ("gone", "keeper", "other")}
    correct["gone"].add("x", "gone")
    correct["other"].add("y", "other")
    assert_pruning_laws(correct, "gone", "keeper")


def test_pruning_can_be_switched_off() -> None:
    check_laws(
        LosingCounter, ops.gcounter_ops(), max_examples=20, check_codec=False, check_pruning=False
    )


def _increment(n: int) -> Operation[PNCounter]:
    return Operation("increment", (n,), lambda state, replica: state.increment(replica, n))


def test_the_laws_hold_for_a_counter_pruned_while_others_keep_counting() -> None:
    states = {name: PNCounter() for name in ("gone", "keeper", "other")}
    states["gone"].increment("gone", 5)
    states["other"].merge(states["gone"])
    states["keeper"].decrement("keeper", 2)
    assert_pruning_laws(
        states,
        "gone",
        "keeper",
        updates=[("other", _increment(3))],
        pruner_updates=[_increment(1)],
    )


def test_the_laws_allow_the_documented_limit_of_a_concurrent_remove() -> None:
    """``other`` removes the element only ``gone`` carried: the pruned state brings it
    back (the limit), which the laws allow; they still check everything else."""
    states: dict[str, ORSet[str]] = {name: ORSet() for name in ("gone", "keeper", "other")}
    states["gone"].add("x", "gone")
    states["other"].merge(states["gone"])
    remove: Operation[ORSet[str]] = Operation("remove", ("x",), lambda s, r: s.remove("x"))
    assert_pruning_laws(states, "gone", "keeper", updates=[("other", remove)])


def test_the_laws_allow_a_concurrent_remove_of_a_count_the_prune_joined() -> None:
    """In an ORMap of counters, ``other`` removes the key after seeing only the
    pruner's count: the prune joined both counts under a fresh tag, which the remove
    has not seen, so both come back (the limit, for the pruner's count too)."""
    states: dict[str, ORMap[str]] = {name: ORMap(GCounter) for name in ("gone", "keeper", "other")}
    states["keeper"].update("k", "keeper", lambda counter: counter.increment("keeper", 4))
    states["other"].merge(states["keeper"])
    states["gone"].update("k", "gone", lambda counter: counter.increment("gone", 1))
    remove: Operation[ORMap[str]] = Operation("remove", ("k",), lambda s, r: s.remove("k"))
    assert_pruning_laws(states, "gone", "keeper", updates=[("other", remove)])


def test_misuse_of_assert_pruning_laws_is_refused() -> None:
    states = {"a": GCounter(), "b": GCounter()}
    with pytest.raises(ValueError, match="must differ"):
        assert_pruning_laws(states, "a", "a")
    with pytest.raises(ValueError, match="an update by"):
        assert_pruning_laws(states, "a", "b", updates=[("b", ops_increment())])


def ops_increment() -> Operation[GCounter]:
    return Operation("increment", (), lambda state, replica: state.increment(replica))
