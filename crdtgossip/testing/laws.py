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
  they were reached, give equal bytes, so ``encode(a ⊔ b) == encode(b ⊔ a)``; a type
  registered with :func:`crdtgossip.register_type` is also round-tripped as the value
  type of an ``ORMap`` and inside an ``LWWMap`` value;
* **pruning** (types that are :class:`~crdtgossip.crdts.Prunable`): one replica of the
  history is removed and pruned into another, which holds the join of all; the others
  make a few more updates and clean their copies; prune keeps the value, loses or
  doubles nothing, is idempotent and order-independent, and pruned and cleaned states
  keep the merge, delta and codec laws (:func:`assert_pruning_laws`, whose module
  states them).

A violation raises :class:`AssertionError` whose message starts with
``CRDT law violated (<law>)``, where ``<law>`` is one of :class:`Law`; the history that
led to it is attached as a note, and hypothesis shrinks it to a minimal one first.

The checks :func:`check_laws` is built from are public too, for tests of your own:
:func:`assert_delta_law`, :func:`assert_merge_laws`, :func:`assert_merge_identity`,
:func:`assert_copy_independent`, :func:`assert_converged`,
:func:`assert_codec_round_trip`, :func:`assert_canonical_encoding`,
:func:`assert_registered_codec` and :func:`assert_pruning_laws`.

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

A type that crdtgossip's codec does not know either registers with
:func:`crdtgossip.register_type` (then the codec laws run on it, and it gossips,
persists and nests; see the guide "Testing your own types"), skips the codec laws
(``check_codec=False``) or passes its own ``encode`` and ``decode``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import hypothesis
from hypothesis import HealthCheck
from hypothesis import strategies as st

from crdtgossip import codec
from crdtgossip.crdts import CRDT, Prunable
from crdtgossip.errors import EncodeError
from crdtgossip.testing._codec_laws import (
    assert_canonical_encoding,
    assert_codec_round_trip,
    assert_registered_codec,
)
from crdtgossip.testing._history import (
    MAX_DELTA_GROUP,
    MAX_DUPLICATE_DELIVERIES,
    MAX_HISTORY_STEPS,
    MERGE_LAW_TRIPLES,
    _check_final_laws,
    _finale,
    _History,
    _run_history,
    _steps,
)
from crdtgossip.testing._law import Law, Operation, join, strictly_equal
from crdtgossip.testing._pruning_laws import (
    MAX_PRUNER_UPDATES,
    MAX_UPDATES_AFTER_JOIN,
    _check_pruning_plan,
    _pruning_plan,
    assert_pruning_laws,
)
from crdtgossip.testing._state_laws import (
    MAX_EXPLAINED_POOL,
    assert_converged,
    assert_copy_independent,
    assert_delta_law,
    assert_merge_identity,
    assert_merge_laws,
)
from crdtgossip.testing.strategies import replica_ids

__all__ = [
    "MAX_DELTA_GROUP",
    "MAX_DUPLICATE_DELIVERIES",
    "MAX_EXPLAINED_POOL",
    "MAX_HISTORY_STEPS",
    "MAX_PRUNER_UPDATES",
    "MAX_UPDATES_AFTER_JOIN",
    "MERGE_LAW_TRIPLES",
    "Law",
    "Operation",
    "assert_canonical_encoding",
    "assert_codec_round_trip",
    "assert_converged",
    "assert_copy_independent",
    "assert_delta_law",
    "assert_merge_identity",
    "assert_merge_laws",
    "assert_pruning_laws",
    "assert_registered_codec",
    "check_laws",
    "join",
    "strictly_equal",
]

S = TypeVar("S", bound=CRDT)

# Hypothesis judges a test by the time it takes to *generate* data; a law check does
# real work per example (merges, codec round trips), and nested maps draw many values.
_SUPPRESSED_HEALTH_CHECKS = (HealthCheck.too_slow, HealthCheck.data_too_large)


def check_laws(
    factory: Callable[[], S],
    operations: st.SearchStrategy[Operation[S]],
    *,
    max_examples: int = 200,
    replicas: int = 3,
    check_codec: bool = True,
    check_pruning: bool = True,
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
        check_pruning: whether to check the pruning laws, on types that are
            :class:`~crdtgossip.crdts.Prunable` and histories of two replicas or more
            (the same ``max_examples`` histories).
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
        TypeError: the codec laws are on, with crdtgossip's codec, for a type it cannot
            write (neither built in nor registered with
            :func:`crdtgossip.register_type`).
    """
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, not {replicas}")
    if max_examples < 1:
        raise ValueError(f"max_examples must be at least 1, not {max_examples}")
    if check_codec:
        if encode is None:
            _check_encodable(factory)
        encode = codec.encode if encode is None else encode
        decode = codec.decode if decode is None else decode
    else:
        encode = decode = None

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

    pruning = (
        _pruning_plan(operations, replicas)
        if check_pruning and replicas >= 2 and isinstance(factory(), Prunable)
        else None
    )

    @run_settings
    @hypothesis.given(st.data())
    def check_one_history(data: st.DataObject) -> None:
        history = _History(factory, data.draw(names, label="replica ids"), encode)
        try:
            _run_history(history, data.draw(steps, label="history"))
            finale = data.draw(finales[len(history.deltas)], label="final checks")
            _check_final_laws(history, finale, encode, decode)
            if pruning is not None:
                plan = data.draw(pruning, label="pruning")
                history.trace.append(f"pruning: {plan!r}")
                _check_pruning_plan(history.replica_ids, history.states, plan, encode, decode)
        except AssertionError as error:
            error.add_note("history (replica: step):\n  " + "\n  ".join(history.trace))
            raise

    # Hypothesis keys its example database by the test function's source, which is the
    # same for every type checked here; tell it which type this run is about, so that a
    # failure saved for one type is replayed on that type (hypothesis' own stateful
    # testing marks its runs the same way).
    check_one_history.hypothesis.inner_test._hypothesis_internal_add_digest = (  # type: ignore[attr-defined]
        _describe_run(factory, operations, replicas, check_codec, pruning is not None).encode()
    )
    check_one_history()


def _check_encodable(factory: Callable[[], object]) -> None:
    """Raise a TypeError that says what to do when the codec cannot write the type."""
    empty = factory()
    try:
        codec.encode(empty)  # type: ignore[arg-type]
    except EncodeError as exc:
        name = type(empty).__qualname__
        raise TypeError(
            f"crdtgossip's codec cannot write {name} ({exc}): register it with "
            f"crdtgossip.register_type({name}, tag=..., encode_body=..., decode_body=...), "
            "or pass check_codec=False, or your own encode and decode"
        ) from exc


def _describe_run(
    factory: Callable[[], object],
    operations: st.SearchStrategy[object],
    replicas: int,
    check_codec: bool,
    check_pruning: bool,
) -> str:
    name = getattr(factory, "__qualname__", type(factory).__qualname__)
    module = getattr(factory, "__module__", "")
    pruning = "|pruning" if check_pruning else ""
    return f"{module}.{name}|{operations!r}|{replicas}|{check_codec}{pruning}"
