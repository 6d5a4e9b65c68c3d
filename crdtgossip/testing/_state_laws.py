"""The laws of one state, checked directly: deltas, merges, identity, copies, convergence."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TypeVar

from crdtgossip.crdts import CRDT
from crdtgossip.testing._law import (
    Law,
    _check_unchanged,
    _Snapshot,
    _violation,
    join,
    strictly_equal,
)

__all__ = [
    "MAX_EXPLAINED_POOL",
    "assert_converged",
    "assert_copy_independent",
    "assert_delta_law",
    "assert_merge_identity",
    "assert_merge_laws",
]

S = TypeVar("S", bound=CRDT)


def assert_delta_law(
    state: S,
    operation: Callable[[S, str], S],
    replica: str,
    *,
    encode: Callable[[S], bytes] | None = None,
) -> S:
    """Apply ``operation`` to ``state`` as ``replica`` and check the delta it returns.

    Checks that the delta is a separate object of the state's type, that
    ``before.merge(delta) == after`` (with equal values), that this merge left the delta
    unchanged, and that the state's copy taken before the operation did not change with
    it.

    Args:
        state: the state to mutate (in place).
        operation: ``(state, replica) -> delta``, e.g. an :class:`Operation`.
        replica: the replica id making the change.
        encode: when given, also compares encodings to detect shared structure.

    Returns:
        The delta.

    Raises:
        AssertionError: a law is violated (:attr:`Law.DELTA`,
            :attr:`Law.MERGE_ARGUMENT_UNCHANGED` or :attr:`Law.COPY_INDEPENDENCE`).
    """
    return _delta_law(state, operation, replica, encode)[0]


def _delta_law(
    state: S,
    operation: Callable[[S, str], S],
    replica: str,
    encode: Callable[[S], bytes] | None,
) -> tuple[S, _Snapshot[S]]:
    """:func:`assert_delta_law`, also returning the delta's snapshot for later checks."""
    snapshot = _Snapshot(state, encode)
    before = state.copy()
    delta = operation(state, replica)
    if type(delta) is not type(state):
        raise _violation(
            Law.DELTA,
            f"{operation!r} returned a {type(delta).__name__}, not a {type(state).__name__}",
            delta=delta,
        )
    if delta is state:
        raise _violation(Law.DELTA, f"{operation!r} returned the state itself instead of a delta")
    _check_unchanged(Law.COPY_INDEPENDENCE, f"a copy taken before {operation!r}", snapshot, before)
    delta_snapshot = _Snapshot(delta, encode)
    before.merge(delta)
    _check_unchanged(
        Law.MERGE_ARGUMENT_UNCHANGED,
        f"the delta of {operation!r}, merged into the state before it,",
        delta_snapshot,
        delta,
    )
    if before != state or not strictly_equal(before.value, state.value):
        raise _violation(
            Law.DELTA,
            f"before.merge(delta) != after for {operation!r} by {replica!r}",
            before=snapshot.state,
            delta=delta,
            before_merged_with_delta=before,
            after=state,
        )
    return delta, delta_snapshot


def assert_merge_laws(
    a: S,
    b: S,
    c: S,
    *,
    encode: Callable[[S], bytes] | None = None,
) -> None:
    """Check that merge is commutative, associative and idempotent on ``a``, ``b``, ``c``.

    Also checks that merging never changes its argument. ``a``, ``b`` and ``c`` are not
    changed (the checks work on copies).

    Args:
        a: a state.
        b: a state of the same type.
        c: a state of the same type.
        encode: when given, also compares encodings to detect shared structure.

    Raises:
        AssertionError: a law is violated (:attr:`Law.MERGE_COMMUTATIVITY`,
            :attr:`Law.MERGE_ASSOCIATIVITY`, :attr:`Law.MERGE_IDEMPOTENCE` or
            :attr:`Law.MERGE_ARGUMENT_UNCHANGED`).
    """
    snapshots = [
        (name, state, _Snapshot(state, encode))
        for name, state in zip("abc", (a, b, c), strict=True)
    ]
    try:
        ab = _check_commutative(a, b)
        _check_associative(a, b, c, ab=ab)
        for name, state in (("a", a), ("b", b), ("a ⊔ b", ab)):
            _check_idempotent(state, name)
    finally:
        # A merge that changed its argument makes every later law fail on the wrong
        # states: report that first, whatever else failed.
        for name, state, snapshot in snapshots:
            _check_unchanged(
                Law.MERGE_ARGUMENT_UNCHANGED, f"{name}, only ever merged from,", snapshot, state
            )


def _check_commutative(a: S, b: S) -> S:
    """Raise unless ``a ⊔ b == b ⊔ a``; returns ``a ⊔ b``."""
    ab, ba = join(a, b), join(b, a)
    if ab != ba:
        raise _violation(
            Law.MERGE_COMMUTATIVITY, "a ⊔ b != b ⊔ a", a=a, b=b, a_join_b=ab, b_join_a=ba
        )
    return ab


def _check_associative(a: S, b: S, c: S, *, ab: S | None = None) -> None:
    """Raise unless ``(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)``."""
    ab_c = join(ab if ab is not None else join(a, b), c)
    a_bc = join(a, join(b, c))
    if ab_c != a_bc:
        raise _violation(
            Law.MERGE_ASSOCIATIVITY,
            "(a ⊔ b) ⊔ c != a ⊔ (b ⊔ c)",
            a=a,
            b=b,
            c=c,
            left=ab_c,
            right=a_bc,
        )


def _check_idempotent(state: S, name: str) -> None:
    """Raise unless ``x ⊔ x == x``."""
    twice = join(state, state)
    if twice != state:
        raise _violation(
            Law.MERGE_IDEMPOTENCE, f"x ⊔ x != x for x = {name}", x=state, x_join_x=twice
        )


#: The most states and deltas searched (all pairs, all triples) for a merge-law
#: violation that explains a convergence failure: 10 gives 1,000 triples, a second or
#: two on nested maps, spent only when a check has already failed.
MAX_EXPLAINED_POOL = 10


def _explain_by_merge_laws(pool: Sequence[S]) -> None:
    """Raise the merge-law violation among ``pool``, if there is one.

    A convergence failure is a symptom; a merge that is not idempotent, commutative or
    associative on some of the states and deltas involved is the cause, and the more
    useful thing to report. Checked in that order, from the simplest counterexample.
    """
    pool = pool[:MAX_EXPLAINED_POOL]
    for index, state in enumerate(pool):
        _check_idempotent(state, f"pool[{index}]")
    for a, b in itertools.combinations(pool, 2):
        _check_commutative(a, b)
    for a, b, c in itertools.product(pool, repeat=3):
        _check_associative(a, b, c)


def assert_merge_identity(empty: S, state: S) -> None:
    """Check that the empty state is the identity of merge: ``∅ ⊔ s == s ⊔ ∅ == s``.

    Args:
        empty: a fresh, empty state (what the type's factory returns).
        state: any state of the same type.

    Raises:
        AssertionError: :attr:`Law.MERGE_IDENTITY` is violated.
    """
    for description, result in (
        ("empty ⊔ s", join(empty, state)),
        ("s ⊔ empty", join(state, empty)),
    ):
        if result != state:
            raise _violation(
                Law.MERGE_IDENTITY, f"{description} != s", s=state, empty=empty, result=result
            )


def assert_copy_independent(
    state: S,
    operation: Callable[[S, str], S],
    replica: str,
    *,
    encode: Callable[[S], bytes] | None = None,
) -> None:
    """Check that changing a copy leaves the original as it was, and the other way round.

    ``state`` itself is not changed: the operation runs on copies.

    Args:
        state: the state to copy.
        operation: a mutation that changes the state (one that changes nothing proves
            nothing).
        replica: the replica id to run it as.
        encode: when given, also compares encodings to detect shared structure.

    Raises:
        AssertionError: :attr:`Law.COPY_INDEPENDENCE` is violated.
    """
    snapshot = _Snapshot(state, encode)
    mutated_copy = state.copy()
    operation(mutated_copy, replica)
    _check_unchanged(
        Law.COPY_INDEPENDENCE, f"the original, after {operation!r} on its copy,", snapshot, state
    )
    original = state.copy()
    untouched_copy = original.copy()
    operation(original, replica)
    _check_unchanged(
        Law.COPY_INDEPENDENCE,
        f"a copy, after {operation!r} on the original,",
        snapshot,
        untouched_copy,
    )


def assert_converged(law: Law, states: Sequence[S], expected: S) -> None:
    """Check that every state equals ``expected``, with an equal ``value``.

    Args:
        law: the law to name if they differ.
        states: the replicas' states.
        expected: the state they must all have reached.

    Raises:
        AssertionError: ``law`` is violated.
    """
    for index, state in enumerate(states):
        if state != expected:
            raise _violation(
                law, f"replica {index} did not converge", state=state, expected=expected
            )
        if not strictly_equal(state.value, expected.value):
            raise _violation(
                law,
                f"replica {index} equals the expected state but its value differs",
                value=state.value,
                expected=expected.value,
            )
