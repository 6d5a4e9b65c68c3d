"""EW-Flag: an enable-wins flag.

``enable`` makes a new dot (and covers the dots it saw); ``disable`` removes the dots it
saw. The flag is on while any dot is live, so an enable concurrent with a disable wins:
the disable could not have seen the enable's dot.

Cost: one dot per replica that enabled concurrently, plus the causal context (one
integer per replica); no tombstones.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Self

from crdtgossip.crdts._base import check_replica
from crdtgossip.crdts._causal import CausalContext, CausalCRDT, Dot, join_dot_sets

__all__ = ["EWFlag"]


class EWFlag(CausalCRDT):
    """An enable-wins flag.

    Example:
        >>> from crdtgossip import EWFlag
        >>> a = EWFlag()
        >>> d = a.enable("a")
        >>> b = a.copy()
        >>> off = b.disable()
        >>> on = a.enable("a")          # concurrent with b's disable
        >>> a.merge(off); b.merge(on)
        >>> a.value, b.value
        (True, True)
    """

    __slots__ = ("_dots",)

    def __init__(self) -> None:
        super().__init__()
        self._dots: set[Dot] = set()

    @property
    def value(self) -> bool:
        """Whether the flag is on."""
        return bool(self._dots)

    def enable(self, replica: str) -> Self:
        """Turn the flag on. Returns the delta (the new dot; covers the dots seen).

        Raises:
            OperationError: ``replica`` is not a valid replica id, or its dot counter is
                exhausted (the flag is unchanged).
        """
        check_replica(replica)
        seen = list(self._dots)
        dot = self._context.next_dot(replica)
        self._dots = {dot}
        delta = self._empty_bound(CausalContext.from_dots([*seen, dot]))
        delta._dots = {dot}
        return delta

    def disable(self) -> Self:
        """Turn the flag off. Returns the delta (no dots; covers the dots seen)."""
        delta = self._empty_bound(CausalContext.from_dots(self._dots))
        self._dots = set()
        return delta

    def _join_store(
        self, other: Self, my_context: CausalContext, their_context: CausalContext
    ) -> None:
        join_dot_sets(self._dots, my_context, other._dots, their_context)

    def _prune_store(self, removed: str, into: str) -> None:
        for dot in sorted(dot for dot in self._dots if dot[0] == removed):
            self._dots.discard(dot)
            self._dots.add(self._context.next_dot(into))

    def _drop_store(self, removed: str) -> None:
        self._dots = {dot for dot in self._dots if dot[0] != removed}

    def _store_dots(self) -> Iterator[Dot]:
        return iter(self._dots)

    def _store_is_empty(self) -> bool:
        return not self._dots

    def _store_has(self, dot: Dot) -> bool:
        return dot in self._dots

    def _store_equal(self, other: Self) -> bool:
        return self._dots == other._dots

    def _copy_store_into(self, target: Self) -> None:
        target._dots = set(self._dots)

    def __repr__(self) -> str:
        return f"EWFlag(dots={sorted(self._dots)!r}, context={self._context!r})"

    # ---- repair by difference (used by anti-entropy) ----------------------------------
    def _subset(self, dots: Iterable[Dot], context: CausalContext) -> Self:
        fresh = self._empty_bound(context)
        fresh._dots = {dot for dot in dots if dot in self._dots}
        return fresh
