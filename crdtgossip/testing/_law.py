"""The vocabulary of the law checker: the laws, operations, strict equality and joins.

The leaf of :mod:`crdtgossip.testing`: the checks (``_state_laws``, ``_codec_laws``),
the histories (``_history``), the strategies and :mod:`~crdtgossip.testing.laws` all
build on it, and it imports none of them.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from crdtgossip.crdts import CRDT

__all__ = ["Law", "Operation", "join", "strictly_equal"]

T = TypeVar("T")
S = TypeVar("S", bound=CRDT)


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
    PRUNE_VALUE = "prune keeps the value and removes the name"
    PRUNE_CONVERGENCE = "pruning loses or doubles nothing"
    PRUNE_IDEMPOTENCE = "prune and drop idempotence"
    PRUNE_ORDER = "pruning order"


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
