"""OR-Set: an observed-remove set without tombstones (add wins).

Every ``add`` tags the element with a new dot and covers the dots of that element it
saw; ``remove`` covers the element's dots it saw and keeps nothing. An element is in the
set while any of its dots is live, so an add concurrent with a remove wins: the remove
could not have seen the add's dot. Removed elements cost nothing: the causal context
remembers removed dots as part of its version vector (riak_dt's ORSWOT design).

Layout. The store is kept per replica, ``replica -> {counter: element}``, because that
is the shape the join works on: for each replica, the dots one side has and the other
has not are found with C-level dict/set operations, and when one side's context has
never seen the other side's dots for a replica (the common case when replicas wrote
independently) the whole block is added with one ``dict.update``. An index
``element -> {dots}`` serves ``add``/``remove``/``in``; a large merge drops it and the
next call that needs it rebuilds it once.

Cost: one dot (replica id and integer) per live element per concurrent adder, plus the
causal context (one integer per replica once contiguous). A delta is one element with
its dot, or (for a remove) just the dots it covers.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from itertools import chain
from typing import Generic, Self, TypeVar

from crdtgossip.crdts._base import check_replica
from crdtgossip.crdts._causal import CausalContext, CausalCRDT, Dot

__all__ = ["ORSet"]

E = TypeVar("E", bound=Hashable)

# A merge that changes more entries than this drops the element index instead of
# patching it entry by entry (the index is rebuilt once, on the next call needing it).
_INDEX_PATCH_LIMIT = 256


class ORSet(CausalCRDT, Generic[E]):
    """An observed-remove (add-wins) set with no tombstones.

    Example:
        >>> from crdtgossip import ORSet
        >>> a = ORSet()
        >>> _ = a.add("x", "a")
        >>> b = a.copy()
        >>> removed = b.remove("x")
        >>> readded = a.add("x", "a")      # concurrent with b's remove
        >>> a.merge(removed); b.merge(readded)
        >>> a.value, b.value
        (frozenset({'x'}), frozenset({'x'}))
    """

    __slots__ = ("_dots", "_index")

    def __init__(self) -> None:
        super().__init__()
        # replica -> counter -> element; no empty inner dicts.
        self._dots: dict[str, dict[int, E]] = {}
        # element -> its live dots; None when it must be rebuilt from _dots.
        self._index: dict[E, set[Dot]] | None = {}

    # ---- reading -----------------------------------------------------------------------
    def _element_index(self) -> dict[E, set[Dot]]:
        index = self._index
        if index is None:
            index = {}
            for replica, block in self._dots.items():
                for counter, element in block.items():
                    dots = index.get(element)
                    if dots is None:
                        index[element] = {(replica, counter)}
                    else:
                        dots.add((replica, counter))
            self._index = index
        return index

    @property
    def value(self) -> frozenset[E]:
        """The elements in the set."""
        if self._index is not None:
            return frozenset(self._index)
        return frozenset(chain.from_iterable(block.values() for block in self._dots.values()))

    def __contains__(self, element: object) -> bool:
        return element in self._element_index()

    def __len__(self) -> int:
        return len(self._element_index())

    def __iter__(self) -> Iterator[E]:
        return iter(list(self._element_index()))

    # ---- mutators ----------------------------------------------------------------------
    def _drop_dots(self, dots: set[Dot]) -> None:
        for replica, counter in dots:
            block = self._dots[replica]
            del block[counter]
            if not block:
                del self._dots[replica]

    def add(self, element: E, replica: str) -> Self:
        """Add ``element`` under a new dot of ``replica``.

        Returns:
            The delta: the element with its new dot; its context covers the new dot and
            the element's dots this replica had seen.

        Raises:
            OperationError: ``replica`` is not a non-empty str.
        """
        check_replica(replica)
        index = self._element_index()
        seen = index.get(element)
        if seen:
            self._drop_dots(seen)
        dot = self._context.next_dot(replica)
        self._dots.setdefault(replica, {})[dot[1]] = element
        index[element] = {dot}
        delta = self._empty_bound(CausalContext.from_dots([*(seen or ()), dot]))
        delta._dots = {replica: {dot[1]: element}}
        delta._index = {element: {dot}}
        return delta

    def remove(self, element: E) -> Self:
        """Remove ``element`` as observed here (a concurrent add survives).

        Returns:
            The delta: no elements; its context covers the element's dots seen here.
            Removing an absent element changes nothing and returns an empty delta.
        """
        seen = self._element_index().pop(element, None)
        if seen:
            self._drop_dots(seen)
        return self._empty_bound(CausalContext.from_dots(seen or ()))

    def clear(self) -> Self:
        """Remove every element as observed here. Returns the delta (covers those dots)."""
        seen = CausalContext.from_dots(self._store_dots())
        self._dots = {}
        self._index = {}
        return self._empty_bound(seen)

    # ---- the dot-store join --------------------------------------------------------------
    def _join_store(
        self, other: Self, my_context: CausalContext, their_context: CausalContext
    ) -> None:
        if other is self:
            return
        mine_all, theirs_all = self._dots, other._dots
        added: list[tuple[str, dict[int, E]]] = []
        removed: list[tuple[str, int, E]] = []
        budget = _INDEX_PATCH_LIMIT if self._index is not None else -1

        for replica, theirs in theirs_all.items():
            mine = mine_all.get(replica)
            if not my_context.knows(replica) or min(theirs) > my_context.max_counter(replica):
                # Nothing of theirs has been seen here (so none of it is in mine either,
                # as a store only holds dots its context has seen): take it whole.
                fresh = dict(theirs)
            elif mine is None:
                fresh = {
                    counter: element
                    for counter, element in theirs.items()
                    if not my_context.covers(replica, counter)
                }
            else:
                # Set difference in C first, so the Python-level check only walks the
                # dots this side lacks (few, when the replicas have mostly synced).
                fresh = {
                    counter: theirs[counter]
                    for counter in theirs.keys() - mine.keys()
                    if not my_context.covers(replica, counter)
                }
            if mine is not None:
                self._remove_seen(
                    replica, mine, theirs, their_context, removed=removed, budget=budget
                )
            if fresh:
                if mine is None:
                    mine_all[replica] = fresh
                    mine = fresh
                else:
                    mine.update(fresh)
                added.append((replica, fresh))
            if mine is not None and not mine:
                del mine_all[replica]

        for replica in [r for r in mine_all if r not in theirs_all]:
            if their_context.knows(replica):
                mine = mine_all[replica]
                self._remove_seen(
                    replica, mine, None, their_context, removed=removed, budget=budget
                )
                if not mine:
                    del mine_all[replica]

        self._patch_index(added, removed)

    @staticmethod
    def _remove_seen(
        replica: str,
        mine: dict[int, E],
        theirs: dict[int, E] | None,
        their_context: CausalContext,
        *,
        removed: list[tuple[str, int, E]],
        budget: int,
    ) -> None:
        """Drop from ``mine`` the dots the other side saw and no longer holds."""
        if not their_context.knows(replica):
            return
        if their_context.size(replica) < len(mine):
            # Walk the other side's few known dots (typical of a delta).
            candidates = [
                counter
                for counter in their_context.dots_of(replica)
                if counter in mine and (theirs is None or counter not in theirs)
            ]
        else:
            pool = mine.keys() - theirs.keys() if theirs is not None else mine.keys()
            candidates = [counter for counter in pool if their_context.covers(replica, counter)]
        track = budget >= 0
        for counter in candidates:
            element = mine.pop(counter)
            if track:
                removed.append((replica, counter, element))

    def _patch_index(
        self, added: list[tuple[str, dict[int, E]]], removed: list[tuple[str, int, E]]
    ) -> None:
        index = self._index
        if index is None or (not added and not removed):
            return
        if len(removed) + sum(len(block) for _, block in added) > _INDEX_PATCH_LIMIT:
            self._index = None
            return
        for replica, counter, element in removed:
            dots = index[element]  # present: the element had this live dot
            dots.discard((replica, counter))
            if not dots:
                del index[element]
        for replica, block in added:
            for counter, element in block.items():
                known = index.get(element)
                if known is None:
                    index[element] = {(replica, counter)}
                else:
                    known.add((replica, counter))

    def _store_dots(self) -> Iterator[Dot]:
        for replica, block in self._dots.items():
            for counter in block:
                yield (replica, counter)

    def _store_is_empty(self) -> bool:
        return not self._dots

    def _store_equal(self, other: Self) -> bool:
        return self._dots == other._dots

    def _copy_store_into(self, target: Self) -> None:
        target._dots = {replica: dict(block) for replica, block in self._dots.items()}
        target._index = None

    def entries(self) -> dict[E, set[Dot]]:
        """Each element with its live dots (a copy; for inspection and tests)."""
        return {element: set(dots) for element, dots in self._element_index().items()}

    def __repr__(self) -> str:
        return f"ORSet({self.entries()!r}, context={self._context!r})"
