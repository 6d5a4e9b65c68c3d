"""The laws of pruning a removed replica (:class:`~crdtgossip.crdts.Prunable`).

The setting the cluster protocol guarantees: ``P``, the pruner's state, has seen
everything (the join of every replica's state); every other replica's state ``X`` is
below it; ``U`` are later updates by replicas other than the removed one, made on top
of their ``X``; ``W`` are updates the pruner makes after pruning. Then:

1. **prune keeps the value and removes the name**: ``P.prune(r, t)`` has ``P``'s value
   and ``r`` is not in its ``replicas()``;
2. **nothing lost or doubled**: ``value(prune(P) ⊔ W ⊔ drop(X ⊔ U)...)`` equals
   ``value(P ⊔ W ⊔ (X ⊔ U)...)``, whenever ``U`` leaves every contribution of ``r``
   and of the pruner as it was (the join of ``P`` and ``U``, restricted to either
   replica, is ``P`` restricted to it); and ``drop`` only forgets: a cleaned copy
   names neither ``r`` nor any replica its state did not. A remove, disable or
   overwrite by ``U`` of something only ``r`` carried is undone by the pruned state's
   re-add: the documented limit, which counters never meet (they have no removes). In
   an ORMap of counters the limit reaches the pruner's own count too: where ``r`` had
   counted under a key, the prune makes the two counts one slot of the pruner under a
   fresh tag, which a concurrent remove of the key has not seen. (Only that type needs
   the pruner in the condition; that the other types' prunes leave the pruner's own
   dots alone is checked by their own tests.)
3. **idempotence and order**: ``drop(prune(P)) == prune(P)``, a second prune changes
   nothing, pruning or dropping a replica that is not named changes nothing; pruning
   two removed replicas in either order gives equal values and names, and states that
   differ at most in which fresh dots of the pruner carry what (equal once the pruner
   itself is dropped from both); merges of pruned and cleaned states are commutative,
   associative and idempotent;
4. the **delta law** holds for updates made after a prune, and the codec round-trips
   pruned and cleaned states, canonically.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import strategies as st

from crdtgossip.crdts import CRDT, Prunable
from crdtgossip.testing._codec_laws import assert_canonical_encoding, assert_codec_round_trip
from crdtgossip.testing._law import Law, Operation, _violation, strictly_equal
from crdtgossip.testing._state_laws import _delta_law, assert_merge_laws

__all__ = ["MAX_PRUNER_UPDATES", "MAX_UPDATES_AFTER_JOIN", "assert_pruning_laws"]

S = TypeVar("S", bound=CRDT)

#: The most updates the other replicas make, after the pruner's join, in one example.
MAX_UPDATES_AFTER_JOIN = 4

#: The most updates the pruner makes after pruning, in one example.
MAX_PRUNER_UPDATES = 2


def _prunable(state: CRDT) -> Prunable:
    if not isinstance(state, Prunable):
        raise TypeError(f"{type(state).__name__} is not Prunable")
    return state


def _pruned(state: S, removed: str, into: str) -> S:
    fresh = state.copy()
    _prunable(fresh).prune(removed, into)
    return fresh


def _dropped(state: S, removed: str) -> S:
    """A copy of ``state`` with ``removed`` dropped, checked to name nothing new.

    Raises:
        AssertionError: :attr:`Law.PRUNE_CONVERGENCE`, the copy still names
            ``removed`` or names a replica ``state`` did not (a clean-up must only
            forget).
    """
    fresh = state.copy()
    _prunable(fresh).drop_replica(removed)
    left = _prunable(fresh).replicas() - (_prunable(state).replicas() - {removed})
    if left:
        raise _violation(
            Law.PRUNE_CONVERGENCE,
            f"drop_replica({removed!r}) left the state naming {sorted(left)!r}",
            before=state,
            after=fresh,
        )
    return fresh


def _only_replica(state: S, replica: str) -> S:
    """A copy of ``state`` holding only what ``replica`` contributed: every other
    replica it names is dropped.

    Args:
        state: a :class:`~crdtgossip.crdts.Prunable` state.
        replica: the replica to keep.

    Returns:
        The restricted copy (``state`` is unchanged).
    """
    kept = state.copy()
    for other in _prunable(kept).replicas() - {replica}:
        _prunable(kept).drop_replica(other)
    return kept


def _absent_id(state: Prunable, *taken: str) -> str:
    absent = "absent"
    while absent in state.replicas() or absent in taken:
        absent += "'"
    return absent


def assert_pruning_laws(
    states: Mapping[str, S],
    removed: str,
    pruner: str,
    *,
    updates: Sequence[tuple[str, Callable[[S, str], S]]] = (),
    pruner_updates: Sequence[Callable[[S, str], S]] = (),
    encode: Callable[[S], bytes] | None = None,
    decode: Callable[[bytes], object] | None = None,
) -> None:
    """Check the pruning laws (see the module docstring) on one cluster's states.

    ``states`` are not changed: the checks work on copies.

    Args:
        states: each replica's state by replica id; the pruner's state is taken to be
            their join (it has seen everything), whatever ``states[pruner]`` holds.
        removed: the replica pruned (need not be a key of ``states``).
        pruner: the replica it is folded into.
        updates: ``(replica, operation)`` made after the pruner's join by replicas of
            ``states`` other than ``removed`` and ``pruner``, on their own states.
        pruner_updates: operations the pruner makes after pruning.
        encode: when given with ``decode``, the codec laws run on the pruned and
            cleaned states too.
        decode: the decoder for the codec laws.

    Raises:
        AssertionError: a law is violated (:attr:`Law.PRUNE_VALUE`,
            :attr:`Law.PRUNE_CONVERGENCE`, :attr:`Law.PRUNE_IDEMPOTENCE`,
            :attr:`Law.PRUNE_ORDER`, or a merge, delta or codec law).
        ValueError: ``removed == pruner``, or an update is by one of them or by a
            replica not in ``states``.
        TypeError: the states are not :class:`~crdtgossip.crdts.Prunable`.
    """
    if removed == pruner:
        raise ValueError("the removed replica and the pruner must differ")
    others = [replica for replica in states if replica not in (removed, pruner)]
    for replica, _ in updates:
        if replica not in others:
            raise ValueError(f"an update by {replica!r} (not another replica of states)")
    everything = list(states.values())
    seen_all = everything[0].copy()
    for state in everything[1:]:
        seen_all.merge(state)

    pruned = _check_prune(seen_all, removed, pruner)
    _check_idempotence(seen_all, pruned, removed, pruner)

    # Law 2: the pruned world against the world without pruning.
    updated = {replica: states[replica].copy() for replica in others}
    for replica, operation in updates:
        operation(updated[replica], replica)
    world, reference = pruned.copy(), seen_all.copy()
    for operation in pruner_updates:
        _delta_law(world, operation, pruner, encode)  # law 4
        operation(reference, pruner)
    cleaned = [_dropped(state, removed) for state in updated.values()]
    for replica, state in zip(updated, cleaned, strict=True):
        world.merge(state)
        reference.merge(updated[replica])
    if removed in _prunable(world).replicas():
        raise _violation(
            Law.PRUNE_CONVERGENCE,
            f"{removed!r} is named again after the cleaned copies merged",
            world=world,
        )
    seen_updates = seen_all.copy()
    for state in updated.values():
        seen_updates.merge(state)
    intact = all(
        _only_replica(seen_updates, replica) == _only_replica(seen_all, replica)
        for replica in (removed, pruner)
    )
    if intact and not strictly_equal(world.value, reference.value):
        raise _violation(
            Law.PRUNE_CONVERGENCE,
            f"pruning {removed!r} into {pruner!r} changed the value the cluster reaches",
            pruned_world=world,
            without_pruning=reference,
            pruned_value=world.value,
            expected_value=reference.value,
        )
    for replica, state in zip(updated, cleaned, strict=True):
        for operation in pruner_updates[:1]:
            _delta_law(state.copy(), operation, replica, encode)  # law 4, on a cleaned copy

    if others:
        _check_order(seen_all, removed, others[0], pruner)

    # Law 3: merges among pruned and cleaned states.
    pool = [pruned, world, *cleaned, _dropped(seen_all, removed)]
    for index in range(min(len(pool), 3)):
        assert_merge_laws(pool[index], pool[(index + 1) % len(pool)], pool[(index + 2) % len(pool)])
    if encode is not None and decode is not None:
        for state in pool:
            assert_codec_round_trip(state, encode, decode)
        for state in cleaned:
            assert_canonical_encoding(world, state, encode)


def _check_prune(seen_all: S, removed: str, pruner: str) -> S:
    """Law 1; returns the pruned state."""
    pruned = _pruned(seen_all, removed, pruner)
    if not strictly_equal(pruned.value, seen_all.value):
        raise _violation(
            Law.PRUNE_VALUE,
            f"prune({removed!r}, into={pruner!r}) changed the value",
            before=seen_all,
            after=pruned,
        )
    before, after = _prunable(seen_all).replicas(), _prunable(pruned).replicas()
    if removed in after or not after <= (before - {removed}) | {pruner}:
        raise _violation(
            Law.PRUNE_VALUE,
            f"after prune({removed!r}, into={pruner!r}) the state names {sorted(after)!r}",
            before=seen_all,
            after=pruned,
        )
    return pruned


def _check_idempotence(seen_all: S, pruned: S, removed: str, pruner: str) -> None:
    absent = _absent_id(_prunable(seen_all), removed, pruner)
    for description, result, expected in (
        ("drop(prune(P))", _dropped(pruned, removed), pruned),
        ("prune(prune(P))", _pruned(pruned, removed, pruner), pruned),
        (f"prune of the absent {absent!r}", _pruned(seen_all, absent, pruner), seen_all),
        (f"drop of the absent {absent!r}", _dropped(seen_all, absent), seen_all),
    ):
        if result != expected:
            raise _violation(
                Law.PRUNE_IDEMPOTENCE,
                f"{description} changed the state",
                expected=expected,
                result=result,
            )


def _check_order(seen_all: S, first: str, second: str, pruner: str) -> None:
    one = _pruned(_pruned(seen_all, first, pruner), second, pruner)
    two = _pruned(_pruned(seen_all, second, pruner), first, pruner)
    same = (
        strictly_equal(one.value, two.value)
        and _prunable(one).replicas() == _prunable(two).replicas()
        and _dropped(one, pruner) == _dropped(two, pruner)
    )
    if not same:
        raise _violation(
            Law.PRUNE_ORDER,
            f"pruning {first!r} then {second!r} into {pruner!r} differs from the other order",
            first_then_second=one,
            second_then_first=two,
        )


@dataclass(frozen=True)
class _PruningPlan:
    """The random choices of the pruning laws at the end of a history: which replica
    is removed, which prunes (``offset`` after it), and the updates made afterwards
    (by the index of another replica among the rest)."""

    removed: int
    offset: int
    updates: list[tuple[int, Operation[Any]]]
    pruner_updates: list[Operation[Any]]


def _pruning_plan(
    operations: st.SearchStrategy[Operation[Any]], replicas: int
) -> st.SearchStrategy[_PruningPlan]:
    others = max(replicas - 2, 0)
    updates = (
        st.lists(st.tuples(st.integers(0, others - 1), operations), max_size=MAX_UPDATES_AFTER_JOIN)
        if others
        else st.just([])
    )
    return st.builds(
        _PruningPlan,
        st.integers(0, replicas - 1),
        st.integers(1, replicas - 1),
        updates,
        st.lists(operations, max_size=MAX_PRUNER_UPDATES),
    )


def _check_pruning_plan(
    replica_ids: Sequence[str],
    states: Sequence[S],
    plan: _PruningPlan,
    encode: Callable[[S], bytes] | None,
    decode: Callable[[bytes], object] | None,
) -> None:
    """Run :func:`assert_pruning_laws` on a history's replicas as ``plan`` says."""
    count = len(replica_ids)
    removed = replica_ids[plan.removed]
    pruner = replica_ids[(plan.removed + plan.offset) % count]
    others = [replica for replica in replica_ids if replica not in (removed, pruner)]
    assert_pruning_laws(
        dict(zip(replica_ids, states, strict=True)),
        removed,
        pruner,
        updates=[(others[index], operation) for index, operation in plan.updates],
        pruner_updates=plan.pruner_updates,
        encode=encode,
        decode=decode,
    )
