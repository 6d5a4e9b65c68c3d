"""The contract every convergent type here keeps, stated once.

A *state* is an element of a join-semilattice; :meth:`CRDT.merge` computes the join
(least upper bound) in place. For every type in :mod:`crdtgossip.crdts`:

* **Commutative, associative, idempotent merge.** ``a.merge(b)`` gives a state equal to
  ``b.merge(a)``; grouping does not matter; ``a.merge(a)`` leaves ``a`` unchanged. So
  replicas that have seen the same set of states are equal, whatever the order, batching
  or duplication of delivery.
* **Delta mutators.** A mutator changes the state in place and returns a *delta*: a
  state of the same type holding just that change, such that ``before.merge(delta)``
  equals the state after the mutation. A delta is small (a counter slot, one element's
  dots), so replicas ship deltas instead of whole states, and the join of every delta
  a replica made and received is its state.
* **Merge never changes its argument.** ``a.merge(b)`` leaves ``b`` as it was.
* ``copy()`` is deep: changing the copy never changes the original.
* ``==`` compares states (not values): two replicas that have converged are equal.
* ``value`` is the user-facing value, derived from the state; equal states have equal
  values.

The law checker in :mod:`crdtgossip.testing` tests exactly these properties, and runs
on every type here in our own suite.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from typing import Any, Protocol, Self, TypeAlias, TypeVar, runtime_checkable

from crdtgossip.crdts._values import INT_MAX, MAX_STR_BYTES, scalar_problem
from crdtgossip.errors import ConfigError, MergeError, OperationError

__all__ = [
    "CRDT",
    "Element",
    "StampSource",
    "Value",
    "check_amount",
    "check_counter",
    "check_replica",
    "check_timestamp",
    "current_stamps",
    "default_timestamp",
    "delta_of",
    "next_timestamp",
    "now_ns",
    "order_key",
    "state_of",
]

#: What an element of a set, a map key or a register value may be: None, bool, int,
#: float, str, bytes and tuples of these. Python's equality applies: ``1``, ``1.0`` and
#: ``True`` are the same element, as in a Python set; keep one type per element.
Element: TypeAlias = bool | int | float | str | bytes | tuple["Element", ...] | None

#: What a register or map value may be: an element, or lists and str-keyed dicts of
#: values.
Value: TypeAlias = Element | list["Value"] | dict[str, "Value"]

E = TypeVar("E", bound=Hashable)


@runtime_checkable
class CRDT(Protocol):
    """The protocol every convergent type implements (see the module docstring)."""

    def merge(self, other: Self) -> None:
        """Join ``other`` into ``self`` in place; ``other`` is left unchanged."""

    def copy(self) -> Self:
        """Return an independent deep copy."""

    @property
    def value(self) -> Any:
        """The user-facing value of the state."""


def now_ns() -> int:
    """Wall-clock time in integer nanoseconds: the LWW timestamp source of a write made
    outside a node (a node gives its hybrid logical clock, see :func:`delta_of`)."""
    return time.time_ns()


#: A source of default LWW timestamps: called with the highest timestamp the write
#: must beat, it returns a larger one (or raises OperationError when none fits).
StampSource: TypeAlias = Callable[[int], int]

# The stamp source of the update function running now, set by delta_of only while it
# runs (as decimal.localcontext scopes a context): the types keep no clock of their
# own, and outside a node's update a write falls back to max(now_ns, seen + 1).
_STAMPS: ContextVar[StampSource | None] = ContextVar("crdtgossip_stamps", default=None)


#: The stamp source of the update function running now, or None (the wall clock): the
#: context variable's own ``get``, so that a write pays one C call for it.
current_stamps: Callable[[], StampSource | None] = _STAMPS.get


def default_timestamp(seen: int) -> int:
    """The timestamp of an LWW write made without an explicit one.

    Inside :func:`delta_of` with a ``stamps`` source (a node's update) the source
    decides: a node's hybrid logical clock. Elsewhere: ``max(now_ns, seen + 1)``.

    Args:
        seen: the highest timestamp the write must beat (the key's current one).

    Raises:
        OperationError: no timestamp after ``seen`` fits in 64 bits.
    """
    source = _STAMPS.get()
    if source is None:
        return next_timestamp(seen, now_ns())
    return source(seen)


def check_replica(replica: object) -> str:
    """Validate a replica id: a non-empty ``str`` the codec can encode.

    Raises:
        OperationError: the id is not a non-empty string, or cannot be encoded (a lone
            surrogate, longer than the codec's string limit).
    """
    if type(replica) is str and replica and len(replica) <= MAX_STR_BYTES and replica.isascii():
        return replica
    if not isinstance(replica, str) or not replica:
        raise OperationError(f"a replica id must be a non-empty str, not {replica!r:.60}")
    problem = scalar_problem(replica) if type(replica) is str else "a str subclass"
    if problem is not None:
        raise OperationError(f"the replica id {replica!r:.60} cannot be encoded: {problem}")
    return replica


def check_amount(n: object) -> int:
    """Validate a counter step: a non-negative ``int`` up to 2**64 - 1 (bools refused).

    Raises:
        OperationError: ``n`` is negative, too large or not an integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= INT_MAX:
        raise OperationError(f"a counter step must be an int in 0 .. 2**64 - 1, not {n!r:.60}")
    return n


def check_timestamp(timestamp: object) -> int:
    """Validate an LWW timestamp: an ``int`` in 0 .. 2**64 - 1 (bools are refused).

    Raises:
        OperationError: the timestamp is negative, too large or not an integer.
    """
    if (
        isinstance(timestamp, bool)
        or not isinstance(timestamp, int)
        or not 0 <= timestamp <= INT_MAX
    ):
        raise OperationError(f"a timestamp must be an int in 0 .. 2**64 - 1, not {timestamp!r:.60}")
    return timestamp


def next_timestamp(seen: int, now: int) -> int:
    """The default LWW timestamp after ``seen``: ``max(now, seen + 1)``.

    Args:
        seen: the highest timestamp the write must beat.
        now: the clock's reading (:func:`now_ns`; the caller passes it so that tests
            can replace the clock of one module).

    Raises:
        OperationError: ``seen`` is already the largest timestamp the codec carries
            (2**64 - 1, which only a hostile or broken peer writes): no later write can
            win, so the write is refused and nothing changes. Pass an explicit timestamp
            to lose deliberately, or write another key.
    """
    stamp = max(now, seen + 1)
    if stamp > INT_MAX:
        raise OperationError(
            f"no timestamp after {seen} fits in 64 bits: the key holds the largest "
            "timestamp possible, so a new write to it cannot win"
        )
    return stamp


def check_counter(counter: int, what: str) -> int:
    """Return ``counter`` (a counter slot or dot counter) if it fits in 64 bits.

    Raises:
        OperationError: it passed 2**64 - 1, the largest integer the codec carries.
    """
    if counter > INT_MAX:
        raise OperationError(
            f"{what} would pass 2**64 - 1, the largest the codec carries; nothing changed"
        )
    return counter


# Rank of each kind of value in the total order used to break exact ties; numbers
# share a rank so that ``1 == 1.0`` values order consistently with equality.
_RANK_NONE, _RANK_BOOL, _RANK_NUMBER, _RANK_STR, _RANK_BYTES = 0, 1, 2, 3, 4
_RANK_TUPLE, _RANK_LIST, _RANK_DICT, _RANK_OTHER = 5, 6, 7, 8


def order_key(value: object) -> tuple[Any, ...]:
    """A sort key giving a total, deterministic order over every :data:`Value`.

    Used where two states must agree on a winner without any other information: two
    LWW writes with the same timestamp and replica, and the order of concurrent values
    of an MV-Register. Values that are equal and of the same types get equal keys.
    """
    if value is None:
        return (_RANK_NONE,)
    if isinstance(value, bool):
        return (_RANK_BOOL, value)
    if isinstance(value, int | float):
        # NaN never equals itself; give it a fixed place above every number. An int and
        # a float of equal value (1 and 1.0) encode differently, so the type breaks
        # their tie: every replica then keeps the same one.
        if math.isnan(value):
            return (_RANK_NUMBER, 1, 0.0, 0)
        return (_RANK_NUMBER, 0, value, 0 if isinstance(value, int) else 1)
    if isinstance(value, str):
        return (_RANK_STR, value)
    if isinstance(value, bytes):
        return (_RANK_BYTES, value)
    if isinstance(value, tuple):
        return (_RANK_TUPLE, tuple(order_key(v) for v in value))
    if isinstance(value, list):
        return (_RANK_LIST, tuple(order_key(v) for v in value))
    if isinstance(value, dict):
        items = sorted((order_key(k), order_key(v)) for k, v in value.items())
        return (_RANK_DICT, tuple(items))
    for key_of in OTHER_ORDER_KEYS:
        key = key_of(value)
        if key is not None:
            return (_RANK_OTHER, type(value).__qualname__, key)
    return (_RANK_OTHER, type(value).__qualname__, repr(value))


#: Order keys for values of other kinds: a type registered with the codec, held as a
#: value, is keyed by its canonical encoding (equal states, equal keys; a repr would
#: hold its id). Installed by :mod:`crdtgossip.codec`, a layer above this one.
OTHER_ORDER_KEYS: list[Callable[[object], bytes | None]] = []


C = TypeVar("C", bound=CRDT)


def state_of(key: str, state: CRDT | None, value_type: type[C] | C) -> C:
    """``state`` as the type a caller asked for, or a new empty one when it is None.

    Args:
        key: the key the state belongs to (for the error message).
        state: the state held, or None.
        value_type: a CRDT type, or an empty prototype instance (``ORMap(ORSet)``).

    Raises:
        ConfigError: ``value_type`` is neither a CRDT type nor an instance.
        MergeError: the state is of another type, or an ORMap of other nested types.
    """
    if isinstance(value_type, type):
        empty: C = value_type()
    elif isinstance(value_type, CRDT):
        empty = value_type.copy()
    else:
        raise ConfigError(f"expected a CRDT type or an empty instance, not {value_type!r}")
    if state is None:
        return empty
    same_kind = getattr(state, "_same_kind", None)
    if type(state) is not type(empty) or (same_kind is not None and not same_kind(empty)):
        raise MergeError(
            f"key {key!r} holds a {type(state).__name__}, not a {type(empty).__name__}"
        )
    found: C = state
    return found


def delta_of(state: C, fn: Callable[[C], object], stamps: StampSource | None = None) -> C:
    """Run an update function on ``state`` and check it returned the delta of a mutator.

    ``fn(state)`` must call one mutator of ``state`` (which changes it) and return what
    the mutator returned: a delta of the same type.

    Args:
        state: the state to mutate.
        fn: the update function.
        stamps: where LWW writes without an explicit timestamp made by ``fn`` take
            theirs (a node passes its hybrid logical clock); None: the wall clock.

    Raises:
        MergeError: ``fn`` returned something else (the mutator's return value was
            dropped, or a value of another type returned).
    """
    if stamps is None:
        delta = fn(state)
    else:
        token = _STAMPS.set(stamps)
        try:
            delta = fn(state)
        finally:
            _STAMPS.reset(token)
    if type(delta) is not type(state):
        raise MergeError(
            f"the update function must return the delta its mutator returned (a "
            f"{type(state).__name__}), not {delta!r:.80}"
        )
    found: C = delta  # the same type as state: checked above
    return found
