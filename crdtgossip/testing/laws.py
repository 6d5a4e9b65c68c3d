"""A property-based checker for the laws every convergent replicated data type must keep.

:func:`check_laws` generates random histories over a few replicas with hypothesis (local
operations, deltas delivered late, out of order and twice, full-state merges) and checks
after every step and at the end that the type is a proper delta-state CRDT:

* **delta law**: after an operation, ``before.merge(delta) == after``; the delta is a
  separate object of the same type; the operation changed nothing but its own state;
* **merge** is commutative, associative and idempotent, has the empty state as identity,
  and leaves its argument unchanged, on the replicas' states and on deltas alike;
* **copy** is independent: changing a copy never changes the original, and back;
* **convergence**: every delta, delivered in any order with duplicates to a fresh
  replica, gives the join of all replicas; and after a partial delivery, full-state
  anti-entropy makes all replicas equal, with equal ``value``;
* **codec** (optional): ``decode(encode(s)) == s`` with the same type and exactly typed
  ``value`` (a bool stays a bool), and the encoding is canonical: equal states, however
  they were reached, give equal bytes, so ``encode(a ⊔ b) == encode(b ⊔ a)``.

A violation raises :class:`AssertionError` whose message starts with
``CRDT law violated (<law>)``, where ``<law>`` is one of :class:`Law`; the history that
led to it is attached as a note, and hypothesis shrinks it to a minimal one first.

The checks :func:`check_laws` is built from are public too, for tests of your own:
:func:`assert_delta_law`, :func:`assert_merge_laws`, :func:`assert_merge_identity`,
:func:`assert_copy_independent`, :func:`assert_converged`,
:func:`assert_codec_round_trip` and :func:`assert_canonical_encoding`.

Example: a user-defined "max register" (the largest int written wins)::

    from typing import Self
    from hypothesis import strategies as st
    from crdtgossip.testing import Operation, check_laws

    class MaxRegister:
        def __init__(self, value: int = 0) -> None:
            self._value = value

        @property
        def value(self) -> int:
            return self._value

        def write(self, n: int) -> Self:
            self._value = max(self._value, n)
            return type(self)(self._value)      # the delta: just the new maximum

        def merge(self, other: Self) -> None:
            self._value = max(self._value, other._value)

        def copy(self) -> Self:
            return type(self)(self._value)

        def __eq__(self, other: object) -> bool:
            return isinstance(other, MaxRegister) and self._value == other._value

    def write(n: int) -> Operation[MaxRegister]:
        return Operation("write", (n,), lambda state, replica: state.write(n))

    def test_max_register_is_a_crdt() -> None:
        check_laws(MaxRegister, st.integers(0, 100).map(write), check_codec=False)

A type that crdtgossip's codec does not know either skips the codec laws
(``check_codec=False``) or passes its own ``encode`` and ``decode``.
"""

from __future__ import annotations

import copy as _copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

import hypothesis
from hypothesis import HealthCheck
from hypothesis import strategies as st

from crdtgossip.crdts import CRDT

__all__ = [
    "Law",
    "Operation",
    "assert_canonical_encoding",
    "assert_codec_round_trip",
    "assert_converged",
    "assert_copy_independent",
    "assert_delta_law",
    "assert_merge_identity",
    "assert_merge_laws",
    "check_laws",
    "join",
    "strictly_equal",
]

T = TypeVar("T")
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

# Hypothesis judges a test by the time it takes to *generate* data; a law check does
# real work per example (merges, codec round trips), and nested maps draw many values.
_SUPPRESSED_HEALTH_CHECKS = (HealthCheck.too_slow, HealthCheck.data_too_large)


class Law(StrEnum):
    """The laws :func:`check_laws` checks; each error message names one of them."""

    DELTA = "delta law"
    OPERATION_ISOLATION = "operation isolation"
    MERGE_COMMUTATIVITY = "merge commutativity"
    MERGE_ASSOCIATIVITY = "merge associativity"
    MERGE_IDEMPOTENCE = "merge idempotence"
    MERGE_IDENTITY = "merge identity"
    MERGE_ARGUMENT_UNCHANGED = "merge leaves its argument unchanged"
    COPY_INDEPENDENCE = "copy independence"
    DELTA_CONVERGENCE = "delta convergence"
    ANTI_ENTROPY_CONVERGENCE = "anti-entropy convergence"
    CODEC_ROUND_TRIP = "codec round trip"
    CANONICAL_ENCODING = "canonical encoding"


@dataclass(frozen=True)
class Operation(Generic[T]):
    """One mutation of a ``T`` that a replica can make: a named, printable callable.

    ``operation(state, replica)`` changes ``state`` in place as ``replica`` and returns
    the delta. ``name`` and ``args`` only serve to print the operation in a failing
    history (``add('x')``); equality compares them, not ``apply``.

    Attributes:
        name: the mutator's name, e.g. ``"add"``.
        args: the arguments to show, e.g. ``("x",)``.
        apply: ``(state, replica) -> delta``.
    """

    name: str
    args: tuple[object, ...]
    apply: Callable[[T, str], T] = field(compare=False)

    def __call__(self, state: T, replica: str) -> T:
        """Apply the operation to ``state`` as ``replica``; returns the delta."""
        return self.apply(state, replica)

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(repr(arg) for arg in self.args)})"


def _violation(law: Law, detail: str, **shown: object) -> AssertionError:
    lines = [f"CRDT law violated ({law}): {detail}"]
    lines.extend(f"  {name} = {value!r}" for name, value in shown.items())
    return AssertionError("\n".join(lines))


def strictly_equal(left: object, right: object) -> bool:
    """Equality that also demands the same types, recursively.

    Python's ``==`` says ``1 == 1.0 == True`` and ``0.0 == -0.0``; a codec that turned a
    bool into an int would pass it. This one does not: tuples, lists, dicts, sets and
    frozensets are compared element by element with their types; floats by their exact
    bits (so ``-0.0`` differs from ``0.0`` and a NaN equals a NaN).

    Args:
        left: any value.
        right: any value.

    Returns:
        Whether the two are equal and of the same types all the way down.
    """
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        assert isinstance(right, float)
        return left.hex() == right.hex()
    if isinstance(left, tuple | list):
        assert isinstance(right, tuple | list)
        return len(left) == len(right) and all(map(strictly_equal, left, right))
    if isinstance(left, dict):
        assert isinstance(right, dict)
        # Look each key up in ``right`` to get *its* key object, then compare strictly.
        right_keys = {key: key for key in right}
        return len(left) == len(right) and all(
            key in right_keys
            and strictly_equal(key, right_keys[key])
            and strictly_equal(item, right[key])
            for key, item in left.items()
        )
    if isinstance(left, set | frozenset):
        assert isinstance(right, set | frozenset)
        right_elements = {element: element for element in right}
        return len(left) == len(right) and all(
            element in right_elements and strictly_equal(element, right_elements[element])
            for element in left
        )
    return bool(left == right)


def join(left: S, right: S) -> S:
    """The join ``left ⊔ right`` as a new state; neither argument is changed.

    Args:
        left: a state.
        right: a state of the same type.

    Returns:
        ``left.copy()`` with ``right`` merged into it.
    """
    joined = left.copy()
    joined.merge(right)
    return joined


class _Snapshot(Generic[S]):
    """What a state was at one moment, recorded independently of the state itself.

    A copy alone cannot witness that a state did not change when ``copy()`` itself is
    shallow (the copy would change along with it), so the snapshot also keeps a deep
    copy of ``value`` and, when a codec is given, the encoded bytes.

    Attributes:
        state: a copy of the state, taken when the snapshot was.
    """

    __slots__ = ("_encode", "_encoded", "_value", "state")

    def __init__(self, state: S, encode: Callable[[S], bytes] | None) -> None:
        self._encode = encode
        self._value = _copy.deepcopy(state.value)
        self._encoded = encode(state) if encode is not None else None
        self.state = state.copy()

    def difference(self, state: S) -> str | None:
        """Describe how ``state`` differs from the snapshot, or None when it does not."""
        if state != self.state:
            return f"state is now {state!r}, was {self.state!r}"
        if not strictly_equal(state.value, self._value):
            return f"value is now {state.value!r}, was {self._value!r}"
        if self._encode is not None and self._encode(state) != self._encoded:
            return "its encoding changed"
        return None


def _check_unchanged(
    law: Law,
    what: str,
    snapshot: _Snapshot[S],
    state: S,
) -> None:
    difference = snapshot.difference(state)
    if difference is not None:
        raise _violation(law, f"{what} changed: {difference}")


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


def assert_codec_round_trip(
    state: S, encode: Callable[[S], bytes], decode: Callable[[bytes], object]
) -> None:
    """Check ``decode(encode(state)) == state``, with the same type and exact value types.

    Also checks that re-encoding the decoded state gives the same bytes.

    Args:
        state: any state.
        encode: the encoder, e.g. :func:`crdtgossip.encode`.
        decode: the matching decoder, e.g. :func:`crdtgossip.decode`.

    Raises:
        AssertionError: :attr:`Law.CODEC_ROUND_TRIP` is violated.
    """
    encoded = encode(state)
    decoded = decode(encoded)
    if type(decoded) is not type(state):
        raise _violation(
            Law.CODEC_ROUND_TRIP,
            f"decoded a {type(decoded).__name__}, encoded a {type(state).__name__}",
            state=state,
            decoded=decoded,
        )
    assert isinstance(decoded, type(state))
    if decoded != state:
        raise _violation(Law.CODEC_ROUND_TRIP, "decode(encode(s)) != s", s=state, decoded=decoded)
    if not strictly_equal(decoded.value, state.value):
        raise _violation(
            Law.CODEC_ROUND_TRIP,
            "the decoded value differs in its types",
            value=state.value,
            decoded_value=decoded.value,
        )
    if encode(decoded) != encoded:
        raise _violation(
            Law.CODEC_ROUND_TRIP,
            "encode(decode(encode(s))) != encode(s)",
            s=state,
            encoded=encoded,
            reencoded=encode(decoded),
        )


def assert_canonical_encoding(a: S, b: S, encode: Callable[[S], bytes]) -> None:
    """Check that the encoding is canonical for ``a`` and ``b``.

    ``encode(a ⊔ b) == encode(b ⊔ a)``, and when ``a == b``, ``encode(a) == encode(b)``.

    Args:
        a: a state.
        b: a state of the same type.
        encode: the encoder, e.g. :func:`crdtgossip.encode`.

    Raises:
        AssertionError: :attr:`Law.CANONICAL_ENCODING` is violated.
    """
    ab, ba = join(a, b), join(b, a)
    if ab == ba and encode(ab) != encode(ba):
        raise _violation(
            Law.CANONICAL_ENCODING,
            "encode(a ⊔ b) != encode(b ⊔ a) although the joins are equal",
            a=a,
            b=b,
            a_join_b=encode(ab),
            b_join_a=encode(ba),
        )
    if a == b and encode(a) != encode(b):
        raise _violation(
            Law.CANONICAL_ENCODING,
            "equal states encode to different bytes",
            a=a,
            b=b,
            encoded_a=encode(a),
            encoded_b=encode(b),
        )


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
        a, b = finale.canonical_pair
        assert_canonical_encoding(pool[a], pool[b], encode)
        # States reached by different paths (deltas only, anti-entropy) must encode alike.
        for reached in [fresh, *replicas]:
            assert_canonical_encoding(reached, expected, encode)


def check_laws(
    factory: Callable[[], S],
    operations: st.SearchStrategy[Operation[S]],
    *,
    max_examples: int = 200,
    replicas: int = 3,
    check_codec: bool = True,
    settings: hypothesis.settings | None = None,
    encode: Callable[[S], bytes] | None = None,
    decode: Callable[[bytes], object] | None = None,
) -> None:
    """Check with hypothesis that a type obeys every CRDT law (see the module docstring).

    Runs ``max_examples`` random histories. Call it from a plain test function (not
    one decorated with ``@given``): it runs hypothesis itself.

    Args:
        factory: returns a new, empty state, e.g. ``ORSet`` or ``lambda: ORMap(ORSet)``.
        operations: a strategy of :class:`Operation` on the type (see
            :mod:`crdtgossip.testing.strategies`).
        max_examples: how many histories to try.
        replicas: how many replicas a history runs over (at least 1).
        check_codec: whether to check the codec laws.
        settings: hypothesis settings to start from; by default the current profile's,
            without the explain phase (it slows shrinking many times over).
            ``max_examples``, ``deadline=None`` and ``report_multiple_bugs=False`` are
            applied on top.
        encode: the encoder for the codec laws; default :func:`crdtgossip.encode`.
        decode: the decoder for the codec laws; default :func:`crdtgossip.decode`.

    Raises:
        AssertionError: a law is violated; the message names it (a :class:`Law`) and a
            note on the error gives the history that led to it.
        ValueError: ``replicas`` or ``max_examples`` is less than 1.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, not {replicas}")
    if max_examples < 1:
        raise ValueError(f"max_examples must be at least 1, not {max_examples}")
    if check_codec:
        if encode is None or decode is None:
            # Imported here so that the checker stays usable on user types with
            # check_codec=False even where the codec is not wanted.
            from crdtgossip import codec

            encode = codec.encode if encode is None else encode
            decode = codec.decode if decode is None else decode
    else:
        encode = decode = None

    from crdtgossip.testing.strategies import replica_ids

    base = settings if settings is not None else hypothesis.settings()
    phases = base.phases
    if settings is None:
        # The explain phase traces every line a failing example runs, which makes a law
        # check several times slower: a 5 s shrink of an ORSet bug took 150 s with it.
        phases = tuple(phase for phase in phases if phase is not hypothesis.Phase.explain)
    run_settings = hypothesis.settings(
        base,
        max_examples=max_examples,
        deadline=None,
        phases=phases,
        # One clear AssertionError rather than an ExceptionGroup of several.
        report_multiple_bugs=False,
        suppress_health_check=(*base.suppress_health_check, *_SUPPRESSED_HEALTH_CHECKS),
    )

    names = st.lists(replica_ids(), min_size=replicas, max_size=replicas, unique=True)
    steps = _steps(operations, replicas)
    # Built once per number of deltas: hypothesis validates each new strategy, which
    # costs more than drawing from it.
    finales = {
        deltas: _finale(operations, replicas, deltas, replicas + deltas + 1)
        for deltas in range(MAX_HISTORY_STEPS + 1)
    }

    @run_settings
    @hypothesis.given(st.data())
    def check_one_history(data: st.DataObject) -> None:
        history = _History(factory, data.draw(names, label="replica ids"), encode)
        try:
            _run_history(history, data.draw(steps, label="history"))
            finale = data.draw(finales[len(history.deltas)], label="final checks")
            _check_final_laws(history, finale, encode, decode)
        except AssertionError as error:
            error.add_note("history (replica: step):\n  " + "\n  ".join(history.trace))
            raise

    # Hypothesis keys its example database by the test function's source, which is the
    # same for every type checked here; tell it which type this run is about, so that a
    # failure saved for one type is replayed on that type (hypothesis' own stateful
    # testing marks its runs the same way).
    check_one_history.hypothesis.inner_test._hypothesis_internal_add_digest = (  # type: ignore[attr-defined]
        _describe_run(factory, operations, replicas, check_codec).encode()
    )
    check_one_history()


def _describe_run(
    factory: Callable[[], object],
    operations: st.SearchStrategy[object],
    replicas: int,
    check_codec: bool,
) -> str:
    name = getattr(factory, "__qualname__", type(factory).__qualname__)
    module = getattr(factory, "__module__", "")
    return f"{module}.{name}|{operations!r}|{replicas}|{check_codec}"
