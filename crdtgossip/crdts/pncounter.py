"""PN-Counter: a counter that goes up and down.

Two G-Counters: one of increments, one of decrements; the value is their difference.
Concurrent increments and decrements all count.

Cost: up to two integers per replica that ever changed it; a delta is a single slot.
Pruning a removed replica folds both of its slots into a live replica's.
"""

from __future__ import annotations

from typing import Self

from crdtgossip.crdts._base import check_replica
from crdtgossip.crdts._digest import digest_of, element_hash
from crdtgossip.crdts._pruning import check_prune
from crdtgossip.crdts.gcounter import GCounter
from crdtgossip.errors import MergeError

__all__ = ["PNCounter"]

_new = object.__new__


class PNCounter:
    """A counter with increments and decrements.

    Example:
        >>> from crdtgossip import PNCounter
        >>> a, b = PNCounter(), PNCounter()
        >>> d1 = a.increment("a", 5)
        >>> d2 = b.decrement("b", 2)
        >>> a.merge(d2); b.merge(d1)
        >>> a.value, b.value, a == b
        (3, 3, True)
    """

    __slots__ = ("_decrements", "_increments")

    def __init__(self) -> None:
        self._increments = GCounter()
        self._decrements = GCounter()

    @classmethod
    def _from_parts(cls, increments: GCounter, decrements: GCounter) -> Self:
        counter = _new(cls)  # no __init__: its two empty counters would be replaced
        counter._increments = increments
        counter._decrements = decrements
        return counter

    @property
    def increments(self) -> GCounter:
        """A copy of the counter of increments."""
        return self._increments.copy()

    @property
    def decrements(self) -> GCounter:
        """A copy of the counter of decrements."""
        return self._decrements.copy()

    @property
    def value(self) -> int:
        """Increments minus decrements."""
        return self._increments.value - self._decrements.value

    def increment(self, replica: str, n: int = 1) -> Self:
        """Add ``n`` (>= 0). Returns the delta (one slot). Raises OperationError."""
        return type(self)._from_parts(self._increments.increment(replica, n), GCounter())

    def decrement(self, replica: str, n: int = 1) -> Self:
        """Subtract ``n`` (>= 0). Returns the delta (one slot). Raises OperationError."""
        return type(self)._from_parts(GCounter(), self._decrements.increment(replica, n))

    def merge(self, other: Self) -> None:
        """Join ``other`` in place: each half joined separately."""
        if type(other) is not type(self):
            raise MergeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        self._increments.merge(other._increments)
        self._decrements.merge(other._decrements)

    def copy(self) -> Self:
        """An independent copy."""
        return type(self)._from_parts(self._increments.copy(), self._decrements.copy())

    # ---- pruning removed replicas (see crdtgossip.crdts._pruning) ---------------------
    def replicas(self) -> frozenset[str]:
        """The replicas that own a slot of increments or of decrements."""
        return self._increments.replicas() | self._decrements.replicas()

    def prune(self, removed: str, into: str) -> None:
        """Fold both slots of ``removed`` into those of ``into``, in place.

        The value is unchanged. Nothing happens when ``removed`` has no slot.

        Raises:
            OperationError: an invalid replica id, ``removed == into``, or a slot of
                ``into`` would pass 2**64 - 1 (both halves are checked first: the
                counter is unchanged).
        """
        check_prune(removed, into)
        self._increments._pruned_total(removed, into)
        self._decrements._pruned_total(removed, into)
        self._increments.prune(removed, into)
        self._decrements.prune(removed, into)

    def drop_replica(self, removed: str) -> None:
        """Forget both slots of ``removed``, in place.

        Raises:
            OperationError: ``removed`` is not a valid replica id.
        """
        check_replica(removed)
        self._increments.drop_replica(removed)
        self._decrements.drop_replica(removed)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, PNCounter)
        return self._increments == other._increments and self._decrements == other._decrements

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"PNCounter(increments={self._increments.counts!r}, "
            f"decrements={self._decrements.counts!r})"
        )

    # ---- digests and repair by difference (used by anti-entropy) ----------------------
    def _digest(self) -> bytes:
        """A canonical digest of the state (a counter is small: computed each time)."""
        total = sum(element_hash(("+", r, n)) for r, n in self._increments._counts.items())
        total += sum(element_hash(("-", r, n)) for r, n in self._decrements._counts.items())
        return digest_of(b"PNCounter", total)

    def _delta_over(self, other: Self) -> Self | None:
        """The slots where this counter is ahead of ``other``, or None if none is."""
        up = self._increments._delta_over(other._increments)
        down = self._decrements._delta_over(other._decrements)
        if up is None and down is None:
            return None
        return type(self)._from_parts(up or GCounter(), down or GCounter())
