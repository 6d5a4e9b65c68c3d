"""G-Counter: a grow-only counter.

Each replica owns one slot and only ever raises it; the value is the sum of the slots
and the join takes the per-slot maximum. Concurrent increments therefore add up.

Cost: one integer per replica that ever incremented; a delta is a single slot. A
removed replica's slot is folded into a live one with :meth:`GCounter.prune` (see
:mod:`crdtgossip.crdts._pruning`), so the slots stay bounded by the live replicas.
"""

from __future__ import annotations

from typing import Self

from crdtgossip.crdts._base import check_amount, check_counter, check_replica
from crdtgossip.crdts._digest import digest_of, element_hash
from crdtgossip.crdts._pruning import check_prune
from crdtgossip.crdts._values import INT_MAX
from crdtgossip.errors import MergeError

__all__ = ["GCounter"]

# Makes a delta without running __init__ (whose empty dict the delta would replace):
# an increment is one slot write plus this, the cheapest object Python can make.
_new = object.__new__


class GCounter:
    """A grow-only counter.

    Example:
        >>> from crdtgossip import GCounter
        >>> a, b = GCounter(), GCounter()
        >>> delta = a.increment("a", 2)
        >>> _ = b.increment("b")
        >>> b.merge(delta)
        >>> b.value
        3
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    @classmethod
    def _from_counts(cls, counts: dict[str, int]) -> Self:
        counter = cls()
        counter._counts = {replica: n for replica, n in counts.items() if n > 0}
        return counter

    @property
    def counts(self) -> dict[str, int]:
        """A copy of the per-replica slots."""
        return dict(self._counts)

    @property
    def value(self) -> int:
        """The sum of every replica's slot."""
        return sum(self._counts.values())

    def increment(self, replica: str, n: int = 1) -> Self:
        """Add ``n`` (>= 0) to the slot of ``replica``.

        Returns:
            The delta: a counter holding the new value of that one slot.

        Raises:
            OperationError: ``replica`` is not a valid replica id, ``n`` is negative or
                not an int, or the slot would pass 2**64 - 1 (the counter is unchanged).
        """
        # The hot path: an existing slot (whose replica id was checked when it was made)
        # and a small int step. Anything else goes through the full checks.
        if type(n) is not int or n < 0:
            check_amount(n)
        counts = self._counts
        try:
            total = counts[replica] + n
        except (KeyError, TypeError):  # a new slot, or an unhashable replica id
            check_replica(replica)
            total = n
        if total > INT_MAX:
            check_counter(total, f"the slot of replica {replica!r:.60}")
        delta = _new(type(self))
        if total:
            counts[replica] = total
            delta._counts = {replica: total}
        else:
            delta._counts = {}
        return delta

    def merge(self, other: Self) -> None:
        """Join ``other`` in place: the per-replica maximum."""
        if type(other) is not type(self):
            raise MergeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        counts = self._counts
        for replica, n in other._counts.items():
            if n > counts.get(replica, 0):
                counts[replica] = n

    def copy(self) -> Self:
        """An independent copy."""
        return type(self)._from_counts(self._counts)

    # ---- pruning removed replicas (see crdtgossip.crdts._pruning) ---------------------
    def replicas(self) -> frozenset[str]:
        """The replicas that own a slot."""
        return frozenset(self._counts)

    def _pruned_total(self, removed: str, into: str) -> int | None:
        """The slot of ``into`` once ``removed`` is folded in, or None (no such slot).

        Raises:
            OperationError: the sum would pass 2**64 - 1.
        """
        taken = self._counts.get(removed)
        if taken is None:
            return None
        return check_counter(
            self._counts.get(into, 0) + taken, f"the slot of replica {into!r:.60}, pruned into,"
        )

    def prune(self, removed: str, into: str) -> None:
        """Add the slot of ``removed`` to the slot of ``into`` and delete it, in place.

        The value is unchanged. Nothing happens when ``removed`` has no slot.

        Raises:
            OperationError: an invalid replica id, ``removed == into``, or the slot of
                ``into`` would pass 2**64 - 1 (the counter is unchanged).
        """
        check_prune(removed, into)
        total = self._pruned_total(removed, into)
        if total is not None:
            self._counts[into] = total
            del self._counts[removed]

    def drop_replica(self, removed: str) -> None:
        """Forget the slot of ``removed``, in place (the value drops by it).

        Raises:
            OperationError: ``removed`` is not a valid replica id.
        """
        check_replica(removed)
        self._counts.pop(removed, None)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, GCounter)
        return self._counts == other._counts

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"GCounter({self._counts!r})"

    # ---- digests and repair by difference (used by anti-entropy) ----------------------
    def _digest(self) -> bytes:
        """A canonical digest of the state (a counter is small: computed each time)."""
        total = sum(element_hash((replica, n)) for replica, n in self._counts.items())
        return digest_of(b"GCounter", total)

    def _delta_over(self, other: Self) -> Self | None:
        """The slots where this counter is ahead of ``other``, or None if none is."""
        theirs = other._counts
        ahead = {r: n for r, n in self._counts.items() if n > theirs.get(r, 0)}
        return type(self)._from_counts(ahead) if ahead else None
