"""Random histories over a few replicas, and the laws checked at their end.

:func:`~crdtgossip.testing.laws.check_laws` draws a history (:func:`_steps`), runs it
step by step on a :class:`_History` (every operation checked against the delta law,
every merge against isolation), then draws the final checks (:func:`_finale`) and runs
them (:func:`_check_final_laws`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hypothesis import strategies as st

from crdtgossip import codec
from crdtgossip.crdts import CRDT
from crdtgossip.testing._codec_laws import (
    assert_canonical_encoding,
    assert_codec_round_trip,
    assert_registered_codec,
)
from crdtgossip.testing._law import Law, Operation, _check_unchanged, _Snapshot, _violation
from crdtgossip.testing._state_laws import (
    _delta_law,
    _explain_by_merge_laws,
    assert_converged,
    assert_copy_independent,
    assert_merge_identity,
    assert_merge_laws,
)

S = TypeVar("S", bound=CRDT)

#: The longest history one example runs (they average about ten steps). The bugs
#: planted in our toy types, and the mutations we tried on our own types (a remove that
#: ships no dots, a context merge that drops the dot cloud, a missing LWW tie-break),
#: all show in fewer than ten steps over three replicas; longer histories only slow a
#: 200-example run down.
MAX_HISTORY_STEPS = 24

#: How many (a, b, c) triples of states and deltas the merge laws are checked on at the
#: end of each history, beyond the replicas' own states.
MERGE_LAW_TRIPLES = 3

#: How many extra deliveries (duplicates) of deltas the convergence check may add on top
#: of delivering each delta once.
MAX_DUPLICATE_DELIVERIES = 8


@dataclass
class _Delta(Generic[S]):
    """A delta produced during a history, with what it was when produced."""

    delta: S
    made_by: str
    operation: object
    snapshot: _Snapshot[S]
    index: int

    def __repr__(self) -> str:
        return f"delta#{self.index} ({self.operation!r} by {self.made_by!r})"


class _History(Generic[S]):
    """One random history over a few replicas, checked step by step."""

    def __init__(
        self,
        factory: Callable[[], S],
        replica_ids: list[str],
        encode: Callable[[S], bytes] | None,
    ) -> None:
        self.factory = factory
        self.replica_ids = replica_ids
        self.encode = encode
        self.states = [factory() for _ in replica_ids]
        # Copies to compare against: a replica not touched by a step must equal its own.
        self.copies = [state.copy() for state in self.states]
        self.deltas: list[_Delta[S]] = []
        self.trace: list[str] = []

    def run_operation(self, index: int, operation: Callable[[S, str], S]) -> None:
        replica = self.replica_ids[index]
        self.trace.append(f"{replica!r}: {operation!r}")
        delta, snapshot = _delta_law(self.states[index], operation, replica, self.encode)
        self._check_others_unchanged(index, Law.OPERATION_ISOLATION, f"{operation!r}")
        self.deltas.append(_Delta(delta, replica, operation, snapshot, len(self.deltas)))
        self.copies[index] = self.states[index].copy()

    def deliver(self, index: int, delta_indexes: Sequence[int]) -> None:
        deliveries = [self.deltas[i] for i in delta_indexes]
        self.trace.append(f"{self.replica_ids[index]!r}: receive {deliveries}")
        if len(deliveries) == 1:
            payload = deliveries[0].delta
        else:
            # A delta group: the join of several deltas, sent as one message.
            payload = self.factory()
            for delivery in deliveries:
                payload.merge(delivery.delta)
        self.states[index].merge(payload)
        self._check_others_unchanged(index, Law.MERGE_ARGUMENT_UNCHANGED, "merging a delta")
        self.copies[index] = self.states[index].copy()

    def merge_state(self, into: int, source: int) -> None:
        self.trace.append(
            f"{self.replica_ids[into]!r}: merge the full state of {self.replica_ids[source]!r}"
        )
        self.states[into].merge(self.states[source])
        self._check_others_unchanged(into, Law.MERGE_ARGUMENT_UNCHANGED, "a full-state merge")
        self.copies[into] = self.states[into].copy()

    def _check_others_unchanged(self, changed: int, law: Law, step: str) -> None:
        for index, state in enumerate(self.states):
            if index != changed and state != self.copies[index]:
                raise _violation(
                    law,
                    f"{step} on replica {self.replica_ids[changed]!r} also changed replica "
                    f"{self.replica_ids[index]!r}",
                    now=state,
                    was=self.copies[index],
                )
        for produced in self.deltas:
            if produced.delta != produced.snapshot.state:
                raise _violation(
                    law,
                    f"{step} on replica {self.replica_ids[changed]!r} also changed "
                    f"{produced!r}: does a delta share structure with a state, or does "
                    "merge keep a reference into its argument?",
                    now=produced.delta,
                    was=produced.snapshot.state,
                )

    def check_deltas_unchanged(self) -> None:
        for produced in self.deltas:
            _check_unchanged(
                Law.OPERATION_ISOLATION,
                f"{produced!r}, after later steps of the history,",
                produced.snapshot,
                produced.delta,
            )


@dataclass(frozen=True)
class _Operate:
    """History step: ``replica`` runs ``operation``."""

    replica: int
    operation: Operation[Any]


@dataclass(frozen=True)
class _Deliver:
    """History step: ``replica`` merges earlier deltas (reduced modulo their number);
    several at once are delivered as one delta group (their join)."""

    replica: int
    deltas: tuple[int, ...]


@dataclass(frozen=True)
class _MergeState:
    """History step: ``replica`` merges the full state of the replica ``offset`` after it."""

    replica: int
    offset: int


_Step = _Operate | _Deliver | _MergeState

#: The largest delta group a history delivers in one merge.
MAX_DELTA_GROUP = 4


def _steps(
    operations: st.SearchStrategy[Operation[Any]], replicas: int
) -> st.SearchStrategy[list[_Step]]:
    """Whole histories, drawn at once (one draw is much cheaper than one per step)."""
    replica = st.integers(0, replicas - 1)
    delta = st.integers(0, MAX_HISTORY_STEPS - 1)
    operate = st.builds(_Operate, replica, operations)
    deliver = st.builds(_Deliver, replica, st.tuples(delta))
    deliver_group = st.builds(
        _Deliver, replica, st.lists(delta, min_size=2, max_size=MAX_DELTA_GROUP).map(tuple)
    )
    # Half the steps are operations (listed first: hypothesis shrinks towards the first
    # alternative), so that histories hold enough writes to deliver.
    kinds: list[st.SearchStrategy[_Step]] = [operate, operate, operate, deliver, deliver_group]
    if replicas > 1:
        kinds.append(st.builds(_MergeState, replica, st.integers(1, replicas - 1)))
    # sampled_from keeps the repeats (one_of would fold them into one alternative).
    step = st.sampled_from(kinds).flatmap(lambda kind: kind)
    # Three lists, concatenated: one list averages about five steps whatever its
    # maximum, three about ten; and unlike a drawn length, they shrink by deleting
    # steps anywhere.
    part = st.lists(step, max_size=MAX_HISTORY_STEPS // 3)
    return st.tuples(part, part, part).map(lambda parts: [*parts[0], *parts[1], *parts[2]])


def _run_history(history: _History[S], steps: list[_Step]) -> None:
    replicas = len(history.states)
    for step in steps:
        if isinstance(step, _Operate):
            history.run_operation(step.replica, step.operation)
        elif isinstance(step, _Deliver):
            # Delivering before any delta exists does nothing (shrinks away).
            if history.deltas:
                count = len(history.deltas)
                history.deliver(step.replica, [index % count for index in step.deltas])
        else:
            history.merge_state(step.replica, (step.replica + step.offset) % replicas)


@dataclass(frozen=True)
class _Finale:
    """The random choices of the checks made at the end of a history."""

    merge_law_triples: list[tuple[int, int, int]]
    delivery_order: list[int]
    partial_delivery: list[tuple[int, int]]
    copy_check: tuple[int, Operation[Any]]
    canonical_pair: tuple[int, int]


def _finale(
    operations: st.SearchStrategy[Operation[Any]], replicas: int, deltas: int, pool: int
) -> st.SearchStrategy[_Finale]:
    in_pool = st.integers(0, pool - 1)
    if deltas:
        delta = st.integers(0, deltas - 1)
        # Every delta once, some again, all in a random order.
        order = st.lists(delta, max_size=MAX_DUPLICATE_DELIVERIES).flatmap(
            lambda duplicates: st.permutations([*range(deltas), *duplicates])
        )
        partial = st.lists(st.tuples(st.integers(0, replicas - 1), delta), max_size=deltas)
    else:
        order = partial = st.just([])
    return st.builds(
        _Finale,
        st.lists(st.tuples(in_pool, in_pool, in_pool), min_size=1, max_size=MERGE_LAW_TRIPLES),
        order,
        partial,
        st.tuples(st.integers(0, replicas - 1), operations),
        st.tuples(in_pool, in_pool),
    )


def _explain_by_merge_laws_from(symptom: AssertionError, pool: Sequence[S]) -> None:
    try:
        _explain_by_merge_laws(pool)
    except AssertionError as cause:
        cause.add_note(f"found while looking for the cause of: {str(symptom).splitlines()[0]}")
        raise cause from symptom


def _check_final_laws(
    history: _History[S],
    finale: _Finale,
    encode: Callable[[S], bytes] | None,
    decode: Callable[[bytes], object] | None,
) -> None:
    factory = history.factory
    history.check_deltas_unchanged()
    deltas = [produced.delta for produced in history.deltas]
    states = history.states

    empty = factory()
    if empty != factory():
        raise _violation(Law.MERGE_IDENTITY, "two empty states from the factory differ")
    pool = [*states, *deltas, empty]

    # Merge laws: always on the replicas themselves, then on random mixes of states,
    # deltas and the empty state.
    if len(states) >= 3:
        assert_merge_laws(states[0], states[1], states[2], encode=encode)
    for a, b, c in finale.merge_law_triples:
        assert_merge_laws(pool[a], pool[b], pool[c], encode=encode)
    for state in pool:
        assert_merge_identity(empty, state)

    # Convergence through deltas alone: every delta, any order, some twice.
    expected = factory()
    for state in states:
        expected.merge(state)
    fresh = factory()
    for index in finale.delivery_order:
        fresh.merge(deltas[index])
    try:
        assert_converged(Law.DELTA_CONVERGENCE, [fresh], expected)
    except AssertionError as symptom:
        _explain_by_merge_laws_from(symptom, pool)
        raise

    # Convergence through anti-entropy: deliver some deltas, then a ring of full-state
    # merges: forward so the last replica has everything, then back to every replica.
    replicas = [state.copy() for state in states]
    for replica, delta in finale.partial_delivery:
        replicas[replica].merge(deltas[delta])
    for index in range(1, len(replicas)):
        replicas[index].merge(replicas[index - 1])
    for index in range(len(replicas) - 1):
        replicas[index].merge(replicas[-1])
    try:
        assert_converged(Law.ANTI_ENTROPY_CONVERGENCE, replicas, expected)
    except AssertionError as symptom:
        _explain_by_merge_laws_from(symptom, pool)
        raise

    # Copies are independent of their originals.
    target, operation = finale.copy_check
    assert_copy_independent(states[target], operation, history.replica_ids[target], encode=encode)

    if encode is not None and decode is not None:
        for state in [*pool, expected]:
            assert_codec_round_trip(state, encode, decode)
            if encode is codec.encode:
                assert_registered_codec(state)
        a, b = finale.canonical_pair
        assert_canonical_encoding(pool[a], pool[b], encode)
        # States reached by different paths (deltas only, anti-entropy) must encode alike.
        for reached in [fresh, *replicas]:
            assert_canonical_encoding(reached, expected, encode)
