"""G-Set: a grow-only set.

Elements are added and never removed; the join is set union. Use it where removal is
not needed: it is the cheapest set (no dots, no context).

Cost: the elements; a delta is the one element added.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Generic, Self, TypeVar

from crdtgossip.crdts._digest import digest_of, element_hash
from crdtgossip.crdts._values import check_key
from crdtgossip.errors import MergeError

__all__ = ["GSet"]

E = TypeVar("E", bound=Hashable)


class GSet(Generic[E]):
    """A grow-only set.

    Example:
        >>> from crdtgossip import GSet
        >>> a, b = GSet(), GSet()
        >>> d = a.add("x")
        >>> _ = b.add("y")
        >>> b.merge(d)
        >>> sorted(b.value)
        ['x', 'y']
    """

    __slots__ = ("_elements", "_hashes", "_value")

    def __init__(self) -> None:
        self._elements: set[E] = set()
        # The elements as a frozenset, cached between changes (None: rebuild).
        self._value: frozenset[E] | None = None
        # The sum of the elements' hashes, kept up to date once anti-entropy first asks.
        self._hashes: int | None = None

    @classmethod
    def _from_elements(cls, elements: set[E]) -> Self:
        gset = cls()
        gset._elements = elements
        return gset

    @property
    def value(self) -> frozenset[E]:
        """The elements: built once after each change (O(n)), then cached."""
        value = self._value
        if value is None:
            value = self._value = frozenset(self._elements)
        return value

    def add(self, element: E) -> Self:
        """Add ``element``. Returns the delta: a set of that one element.

        Raises:
            OperationError: ``element`` is not something the codec can encode (see
                :mod:`crdtgossip.crdts._values`); the set is unchanged.
        """
        check_key(element, "a G-Set element")
        elements = self._elements
        if element not in elements:
            if self._hashes is not None:
                self._hashes += element_hash(element)
            elements.add(element)
            self._value = None
        return type(self)._from_elements({element})

    def __contains__(self, element: object) -> bool:
        return element in self._elements

    def __len__(self) -> int:
        return len(self._elements)

    def __iter__(self) -> Iterator[E]:
        return iter(list(self._elements))

    def merge(self, other: Self) -> None:
        """Join ``other`` in place: the union."""
        if type(other) is not type(self):
            raise MergeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        elements = self._elements
        if self._hashes is not None:
            self._hashes += sum(map(element_hash, other._elements - elements))
        size = len(elements)
        elements |= other._elements
        if len(elements) != size:
            self._value = None

    def copy(self) -> Self:
        """An independent copy."""
        fresh = type(self)._from_elements(set(self._elements))
        fresh._hashes = self._hashes
        return fresh

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, GSet)
        return self._elements == other._elements

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"GSet({self._elements!r})"

    # ---- digests and repair by difference (used by anti-entropy) ----------------------
    def _live_sum(self) -> int:
        if self._hashes is None:
            self._hashes = sum(map(element_hash, self._elements))
        return self._hashes

    def _digest(self) -> bytes:
        """A canonical digest of the state, kept up to date as elements arrive."""
        return digest_of(b"GSet", self._live_sum())

    def _positions(self) -> list[tuple[int, int, E]]:
        """Each element as (64-bit position, 128-bit hash, element)."""
        hashes = [(element_hash(element), element) for element in self._elements]
        return [(value >> 64, value, element) for value, element in hashes]

    def _subset_items(self, elements: Iterable[E]) -> Self:
        """A G-Set of those of ``elements`` held here."""
        return type(self)._from_elements({e for e in elements if e in self._elements})
