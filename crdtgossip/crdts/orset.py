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
independently) the whole block is taken with one dict copy. Lookups by element
(``add``, ``remove``, ``in``) go through a reverse index per replica,
``element -> counter``, built lazily in C (``dict(zip(block.values(), block))``); a
merge patches the reverse index of a replica whose block changed a little and drops it
when the block changed a lot, so neither the merge nor the next read pays a per-element
Python loop.

Cost: one dot (replica id and integer) per live element per concurrent adder, plus the
causal context (one integer per replica once contiguous). A delta is one element with
its dot, or (for a remove) just the dots it covers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Iterator
from itertools import chain
from typing import Any, Generic, Self, TypeVar

from crdtgossip.crdts._base import check_replica
from crdtgossip.crdts._causal import CausalContext, CausalCRDT, Dot
from crdtgossip.crdts._digest import DotHashes
from crdtgossip.crdts._values import check_element

__all__ = ["ORSet"]

E = TypeVar("E", bound=Hashable)

# A merge that changes more of a replica's block than this drops that replica's reverse
# index instead of patching it entry by entry; the next lookup rebuilds it in C, which
# costs about as much as patching a few hundred entries in Python.
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

    __slots__ = ("_count", "_dots", "_hashes", "_reverse", "_value")

    def __init__(self) -> None:
        super().__init__()
        # replica -> counter -> element; no empty inner dicts.
        self._dots: dict[str, dict[int, E]] = {}
        # replica -> element -> counter (or a list of counters when one replica has
        # several live dots for an element, which out-of-order delivery can cause);
        # a replica absent here has its reverse index built on first use.
        self._reverse: dict[str, dict[E, Any]] = {}
        # The elements, cached between changes.
        self._value: frozenset[E] | None = frozenset()
        # element -> number of live dots (so ``in`` and ``len()`` are O(1)); None until
        # first needed, and after a merge that changed too much to patch it.
        self._count: dict[E, int] | None = None
        # The hashes of the live dots, kept up to date once anti-entropy first asks.
        self._hashes: DotHashes | None = None

    # ---- reading -----------------------------------------------------------------------
    def _reverse_of(self, replica: str) -> dict[E, Any]:
        reverse = self._reverse.get(replica)
        if reverse is None:
            block = self._dots[replica]
            reverse = dict(zip(block.values(), block, strict=True))
            if len(reverse) != len(block):
                # Some element has several dots of this replica: keep them all.
                reverse = {}
                for counter, element in block.items():
                    known = reverse.get(element)
                    if known is None:
                        reverse[element] = counter
                    elif type(known) is list:
                        known.append(counter)
                    else:
                        reverse[element] = [known, counter]
            self._reverse[replica] = reverse
        return reverse

    def _dots_of(self, element: E) -> list[Dot]:
        dots: list[Dot] = []
        for replica in self._dots:
            found = self._reverse_of(replica).get(element)
            if found is None:
                continue
            if type(found) is list:
                dots.extend((replica, counter) for counter in found)
            else:
                dots.append((replica, found))
        return dots

    def _count_of(self) -> dict[E, int]:
        count = self._count
        if count is None:
            # Counter counts an iterable in C: one pass, no per-element Python code.
            count = self._count = Counter(
                chain.from_iterable(block.values() for block in self._dots.values())
            )
        return count

    @property
    def value(self) -> frozenset[E]:
        """The elements in the set: built once after each change (O(n)), then cached."""
        value = self._value
        if value is None:
            value = frozenset(chain.from_iterable(block.values() for block in self._dots.values()))
            self._value = value
        return value

    def __contains__(self, element: object) -> bool:
        return element in self._count_of()

    def __len__(self) -> int:
        return len(self._count_of())

    def __iter__(self) -> Iterator[E]:
        return iter(self.value)

    # ---- mutators ----------------------------------------------------------------------
    def _forget(self, replica: str, counter: int, element: E) -> None:
        """Patch the reverse index of ``replica`` (if built) for a dot removed."""
        reverse = self._reverse.get(replica)
        if reverse is None:
            return
        known = reverse[element]
        if type(known) is list:
            known.remove(counter)
            if len(known) == 1:
                reverse[element] = known[0]
        else:
            del reverse[element]

    def _learn(self, replica: str, counter: int, element: E) -> None:
        """Patch the reverse index of ``replica`` (if built) for a dot added."""
        reverse = self._reverse.get(replica)
        if reverse is None:
            return
        known = reverse.get(element)
        if known is None:
            reverse[element] = counter
        elif type(known) is list:
            known.append(counter)
        else:
            reverse[element] = [known, counter]

    def _uncount(self, element: E) -> None:
        """Patch the element count (if built) for one live dot of ``element`` dropped."""
        count = self._count
        if count is not None:
            left = count[element] - 1
            if left:
                count[element] = left
            else:
                del count[element]

    def _drop_dots(self, dots: list[Dot]) -> None:
        if self._hashes is not None:
            for replica, counter in dots:
                self._hashes.discard(replica, counter)
        for replica, counter in dots:
            block = self._dots[replica]
            element = block.pop(counter)
            self._forget(replica, counter, element)
            self._uncount(element)
            if not block:
                del self._dots[replica]
                self._reverse.pop(replica, None)
        self._value = None

    def add(self, element: E, replica: str) -> Self:
        """Add ``element`` under a new dot of ``replica``.

        Returns:
            The delta: the element with its new dot; its context covers the new dot and
            the element's dots this replica had seen.

        Raises:
            OperationError: ``replica`` is not a valid replica id, ``element`` is not
                something the codec can encode (see :mod:`crdtgossip.crdts._values`), or
                the replica's dot counter is exhausted. Nothing has changed then.
        """
        check_element(element)
        check_replica(replica)
        seen = self._dots_of(element)
        dot = self._context.next_dot(replica)  # the last step that can fail
        if seen:
            self._drop_dots(seen)
        block = self._dots.get(replica)
        if block is None:
            self._dots[replica] = {dot[1]: element}
            self._reverse[replica] = {element: dot[1]}
        else:
            block[dot[1]] = element
            self._learn(replica, dot[1], element)
        count = self._count
        if count is not None:
            count[element] = count.get(element, 0) + 1
        if self._hashes is not None:
            self._hashes.add(replica, dot[1])
        self._value = None
        delta = self._empty_bound(CausalContext.from_dots([*seen, dot]))
        delta._dots = {replica: {dot[1]: element}}
        delta._value = None
        return delta

    def remove(self, element: E) -> Self:
        """Remove ``element`` as observed here (a concurrent add survives).

        Returns:
            The delta: no elements; its context covers the element's dots seen here.
            Removing an absent element changes nothing and returns an empty delta.

        Raises:
            OperationError: ``element`` is not something a set can hold.
        """
        check_element(element)
        seen = self._dots_of(element)
        if seen:
            self._drop_dots(seen)
        return self._empty_bound(CausalContext.from_dots(seen))

    def clear(self) -> Self:
        """Remove every element as observed here. Returns the delta (covers those dots)."""
        seen = CausalContext.from_dots(self._store_dots())
        self._dots = {}
        self._reverse = {}
        self._value = frozenset()
        self._count = {}
        if self._hashes is not None:
            self._hashes = DotHashes()
        return self._empty_bound(seen)

    # ---- the dot-store join --------------------------------------------------------------
    def _join_store(
        self, other: Self, my_context: CausalContext, their_context: CausalContext
    ) -> None:
        if other is self:
            return
        mine_all, theirs_all = self._dots, other._dots
        changed = False

        for replica, theirs in theirs_all.items():
            mine = mine_all.get(replica)
            if not my_context.knows(replica) or min(theirs) > my_context.max_counter(replica):
                # Nothing of theirs has been seen here (so none of it is in mine either,
                # as a store only holds dots its context has seen): take it whole.
                fresh = dict(theirs)
            elif max(theirs) <= my_context.vector.get(replica, 0):
                fresh = {}  # every dot of theirs was seen here: nothing new
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
            gone = (
                [] if mine is None else self._seen_elsewhere(replica, mine, theirs, their_context)
            )
            if gone or fresh:
                changed = True
                self._apply(replica, gone, fresh)

        for replica in [r for r in mine_all if r not in theirs_all]:
            if their_context.knows(replica):
                gone = self._seen_elsewhere(replica, mine_all[replica], None, their_context)
                if gone:
                    changed = True
                    self._apply(replica, gone, {})

        if changed:
            self._value = None

    def _apply(self, replica: str, gone: list[int], fresh: dict[int, E]) -> None:
        """Remove the dots ``gone`` and add ``fresh`` to ``replica``'s block."""
        if self._hashes is not None:
            self._hashes_apply(replica, gone, fresh)
        block = self._dots.get(replica)
        small = len(gone) + len(fresh) <= _INDEX_PATCH_LIMIT
        patch = small and replica in self._reverse
        if not patch:
            self._reverse.pop(replica, None)
        count = self._count
        if not small:
            count = self._count = None
        elif count is not None:
            for element in fresh.values():
                count[element] = count.get(element, 0) + 1
        if block is None:
            self._dots[replica] = fresh
            return
        for counter in gone:
            element = block.pop(counter)
            if patch:
                self._forget(replica, counter, element)
            if count is not None:
                self._uncount(element)
        if fresh:
            block.update(fresh)
            if patch:
                for counter, element in fresh.items():
                    self._learn(replica, counter, element)
        if not block:
            del self._dots[replica]
            self._reverse.pop(replica, None)

    @staticmethod
    def _seen_elsewhere(
        replica: str,
        mine: dict[int, E],
        theirs: dict[int, E] | None,
        their_context: CausalContext,
    ) -> list[int]:
        """The counters of ``mine`` the other side saw and no longer holds."""
        if not their_context.knows(replica):
            return []
        if their_context.size(replica) < len(mine):
            # Walk the other side's few known dots (typical of a delta).
            return [
                counter
                for counter in their_context.dots_of(replica)
                if counter in mine and (theirs is None or counter not in theirs)
            ]
        pool = mine.keys() - theirs.keys() if theirs is not None else mine.keys()
        return [counter for counter in pool if their_context.covers(replica, counter)]

    # ---- pruning removed replicas (see crdtgossip.crdts._pruning) ---------------------
    def _store_replicas(self) -> set[str]:
        return set(self._dots)

    def _prune_cost(self, removed: str) -> int:
        return len(self._dots.get(removed, ()))

    def _prune_store(self, removed: str, into: str) -> None:
        block = self._dots.pop(removed, None)
        self._reverse.pop(removed, None)
        if block is None:
            return
        self._reverse.pop(into, None)  # rebuilt on first use
        target = self._dots.setdefault(into, {})
        hashes = self._hashes
        # One live dot for one: the element counts and the value stay as they are.
        for counter in sorted(block):
            fresh = self._context.next_dot(into)[1]
            target[fresh] = block[counter]
            if hashes is not None:
                hashes.discard(removed, counter)
                hashes.add(into, fresh)

    def _drop_store(self, removed: str) -> None:
        block = self._dots.pop(removed, None)
        self._reverse.pop(removed, None)
        if block is None:
            return
        for counter, element in block.items():
            self._uncount(element)
            if self._hashes is not None:
                self._hashes.discard(removed, counter)
        self._value = None

    def _store_dots(self) -> Iterator[Dot]:
        for replica, block in self._dots.items():
            for counter in block:
                yield (replica, counter)

    def _store_is_empty(self) -> bool:
        return not self._dots

    def _store_has(self, dot: Dot) -> bool:
        block = self._dots.get(dot[0])
        return block is not None and dot[1] in block

    def _store_equal(self, other: Self) -> bool:
        return self._dots == other._dots

    def _copy_store_into(self, target: Self) -> None:
        target._dots = {replica: dict(block) for replica, block in self._dots.items()}
        target._reverse = {}
        target._value = self._value
        target._count = None if self._count is None else dict(self._count)
        target._hashes = None if self._hashes is None else self._hashes.copy()

    def entries(self) -> dict[E, set[Dot]]:
        """Each element with its live dots (a copy; for inspection and tests)."""
        entries: dict[E, set[Dot]] = {}
        for replica, block in self._dots.items():
            for counter, element in block.items():
                entries.setdefault(element, set()).add((replica, counter))
        return entries

    def __repr__(self) -> str:
        return f"ORSet({self.entries()!r}, context={self._context!r})"

    # ---- digests and repair by difference (used by anti-entropy) ----------------------
    def _hashes_apply(self, replica: str, gone: list[int], fresh: dict[int, E]) -> None:
        hashes = self._hashes
        assert hashes is not None
        for counter in gone:
            hashes.discard(replica, counter)
        for counter in fresh:
            hashes.add(replica, counter)

    def _dot_hashes(self) -> DotHashes:
        hashes = self._hashes
        if hashes is None:
            # First use: one pass, then every change keeps it current.
            hashes = self._hashes = DotHashes.of(self._store_dots())
        return hashes

    def _live_of(self, replica: str) -> Collection[int]:
        return self._dots.get(replica, {}).keys()

    def _subset(self, dots: Iterable[Dot], context: CausalContext) -> Self:
        fresh = self._empty_bound(context)
        for replica, counter in dots:
            block = self._dots.get(replica)
            if block is not None and counter in block:
                fresh._dots.setdefault(replica, {})[counter] = block[counter]
        fresh._value = None
        return fresh
