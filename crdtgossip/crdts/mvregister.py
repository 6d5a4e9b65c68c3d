"""MV-Register: a multi-value register.

``set`` replaces every value it has seen with one new value under a new dot. Writes
that did not see each other are all kept, so a reader sees every concurrent value and
can resolve the conflict (a later ``set`` replaces them all).

Cost: one value per concurrent writer, plus the causal context; no tombstones.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Iterable, Iterator
from typing import Generic, Self, TypeVar

from crdtgossip.crdts._base import check_replica, order_key
from crdtgossip.crdts._causal import CausalContext, CausalCRDT, Dot
from crdtgossip.crdts._values import check_value

__all__ = ["MVRegister"]

V = TypeVar("V")


class MVRegister(CausalCRDT, Generic[V]):
    """A multi-value register.

    Example:
        >>> from crdtgossip import MVRegister
        >>> a, b = MVRegister(), MVRegister()
        >>> da = a.set("red", "a")
        >>> db = b.set("blue", "b")     # concurrent
        >>> a.merge(db); b.merge(da)
        >>> a.value
        ['blue', 'red']
        >>> d = a.set("green", "a")     # resolves the conflict
        >>> b.merge(d)
        >>> b.value
        ['green']
    """

    __slots__ = ("_values",)

    def __init__(self) -> None:
        super().__init__()
        self._values: dict[Dot, V] = {}

    @property
    def value(self) -> list[V]:
        """The concurrent values, in the total order of
        :func:`~crdtgossip.crdts._base.order_key` (the same on every replica, and
        unchanged when a removed writer's dots are pruned into another's)."""
        ordered = sorted(self._values.values(), key=order_key)
        return [_copy.deepcopy(value) for value in ordered]

    def set(self, value: V, replica: str) -> Self:
        """Replace every value seen with ``value``.

        Returns:
            The delta: the new value under its new dot, covering the dots it replaced.

        Raises:
            OperationError: ``replica`` is not a valid replica id, ``value`` is not
                something the codec can encode (see :mod:`crdtgossip.crdts._values`), or
                the replica's dot counter is exhausted. Nothing has changed then.
        """
        check_value(value)
        check_replica(replica)
        seen = list(self._values)
        # Keep a copy: the caller may change its object later, and replicas that got
        # the delta must not diverge from this one when it does.
        kept, sent = _copy.deepcopy(value), _copy.deepcopy(value)
        dot = self._context.next_dot(replica)  # the last step that can fail
        self._values = {dot: kept}
        delta = self._empty_bound(CausalContext.from_dots([*seen, dot]))
        delta._values = {dot: sent}
        return delta

    def _join_store(
        self, other: Self, my_context: CausalContext, their_context: CausalContext
    ) -> None:
        if other is self:
            return
        mine, theirs = self._values, other._values
        for dot in [dot for dot in mine if dot not in theirs and their_context.covers(*dot)]:
            del mine[dot]
        for dot, value in theirs.items():
            if dot not in mine and not my_context.covers(*dot):
                mine[dot] = _copy.deepcopy(value)

    def _prune_store(self, removed: str, into: str) -> None:
        for dot in sorted(dot for dot in self._values if dot[0] == removed):
            self._values[self._context.next_dot(into)] = self._values.pop(dot)

    def _drop_store(self, removed: str) -> None:
        for dot in [dot for dot in self._values if dot[0] == removed]:
            del self._values[dot]

    def _store_dots(self) -> Iterator[Dot]:
        return iter(self._values)

    def _store_is_empty(self) -> bool:
        return not self._values

    def _store_has(self, dot: Dot) -> bool:
        return dot in self._values

    def _store_equal(self, other: Self) -> bool:
        return self._values == other._values

    def _copy_store_into(self, target: Self) -> None:
        target._values = _copy.deepcopy(self._values)

    def __repr__(self) -> str:
        return f"MVRegister({dict(sorted(self._values.items()))!r}, context={self._context!r})"

    # ---- repair by difference (used by anti-entropy) ----------------------------------
    def _subset(self, dots: Iterable[Dot], context: CausalContext) -> Self:
        fresh = self._empty_bound(context)
        fresh._values = {
            dot: _copy.deepcopy(self._values[dot]) for dot in dots if dot in self._values
        }
        return fresh
