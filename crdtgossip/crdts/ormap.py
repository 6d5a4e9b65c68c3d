"""OR-Map: an observed-remove map of nested CRDTs.

``ORMap(value_type)`` maps keys to nested convergent values of one type: a type
(``ORMap(PNCounter)``) or an empty instance used as the prototype for new keys
(``ORMap(ORMap(ORSet))``). Any type here nests, maps included.

Semantics
---------
* ``update(key, replica, fn)`` calls ``fn`` on the key's nested value (a fresh empty one
  for a new key) and returns a map delta carrying ``fn``'s *nested delta*, never the
  nested state. Each update also tags the key with a presence dot of ``replica``
  (replacing that replica's earlier tag), so a key stays present after an update that
  left its nested value empty (a set emptied by removes, a flag disabled).
* ``remove(key)`` is an observed remove: it discards the key's tags and nested updates
  that this replica has seen. An update concurrent with the remove survives, so the key
  stays, holding (at least) that update's effect and nothing the remove saw.
* A removed counter is reset, per replica: the remove discards each contribution it
  saw. A replica that updates the key concurrently with the remove re-tags its *own*
  running contribution, so the key survives with that replica's whole contribution
  (including what the remove had seen of it) and nothing of the other replicas'
  observed ones. Updated after the remove, the key starts again from zero. For causal
  nested types (sets, flags, MV-registers, maps) the remove is exact: only what it did
  not see remains.

How it works
------------
One causal context covers the whole map. Causal nested types (ORSet, EWFlag,
MVRegister, ORMap) share it: their dots are the map's dots, so a remove simply covers
them. Non-causal nested types (counters, G-Set, LWW types) cannot be "un-merged", so
each replica's contribution to a key is kept under that replica's presence dot: an
update by replica ``r`` joins ``r``'s previous contribution with the nested delta under
a new dot, and a remove covers the dots it saw. The nested value is the join of the
contributions still live. For counters and registers a contribution is the same size
as the nested delta (one slot, one write); for G-Set and LWW-Map it is everything ``r``
wrote to that key, which is why ORSet and ORMap are the better nested collections.

Cost: per key, one presence dot per replica that updated it concurrently plus the
nested state; removed keys cost nothing beyond the context.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Iterator
from typing import Any, Generic, Self, TypeVar

from crdtgossip.crdts._base import CRDT, check_replica
from crdtgossip.crdts._causal import CausalContext, CausalCRDT, Dot
from crdtgossip.crdts._digest import DotHashes, digest_of, dot_hash
from crdtgossip.errors import OperationError

__all__ = ["ORMap"]

K = TypeVar("K", bound=Hashable)


class _Entry:
    """One key: its presence tags and its nested value.

    ``tags`` maps each live presence dot to the contribution made under it (non-causal
    nested types) or None (causal nested types, whose state is ``nested``).
    """

    __slots__ = ("nested", "tags")

    def __init__(self, tags: dict[Dot, Any], nested: CausalCRDT | None) -> None:
        self.tags = tags
        self.nested = nested


class _MapHashes:
    """What an ORMap keeps to maintain its digest: per key, its tag dots, the sum of
    their hashes and its nested value's sum; their total; and, while nothing changes,
    the index of live dots by replica (built for anti-entropy on demand)."""

    __slots__ = ("index", "keys", "total")

    def __init__(self) -> None:
        self.total = 0
        self.keys: dict[Any, tuple[frozenset[Dot], int, int]] = {}
        self.index: tuple[dict[str, dict[int, Any]], DotHashes] | None = None

    def copy(self) -> _MapHashes:
        fresh = _MapHashes()
        fresh.total = self.total
        fresh.keys = dict(self.keys)
        return fresh


def signature(value: object) -> tuple[Any, ...]:
    """What must agree for two maps to merge: the nested types, all the way down."""
    if isinstance(value, ORMap):
        return ("ORMap", signature(value._prototype))
    return (type(value).__module__, type(value).__qualname__)


class ORMap(CausalCRDT, Generic[K]):
    """An observed-remove map of nested CRDTs (see the module docstring).

    Example:
        >>> from crdtgossip import ORMap, ORSet, PNCounter
        >>> carts = ORMap(ORSet)
        >>> d = carts.update("alice", "r1", lambda s: s.add("book", "r1"))
        >>> carts["alice"].value
        frozenset({'book'})
        >>> stock = ORMap(PNCounter)
        >>> _ = stock.update("apples", "r1", lambda c: c.increment("r1", 10))
        >>> other = stock.copy()
        >>> gone = other.remove("apples")
        >>> more = stock.update("apples", "r1", lambda c: c.decrement("r1", 3))
        >>> other.merge(more); stock.merge(gone)
        >>> stock.value == other.value == {"apples": 7}
        True
    """

    __slots__ = ("_causal", "_entries", "_hashes", "_prototype")

    def __init__(self, value_type: type[Any] | Any) -> None:
        super().__init__()
        prototype = value_type() if isinstance(value_type, type) else value_type
        if not isinstance(prototype, CRDT):
            raise OperationError(
                f"ORMap needs a CRDT type or an empty CRDT instance, not {value_type!r}"
            )
        blank = prototype._blank() if isinstance(prototype, CausalCRDT) else type(prototype)()
        if prototype != blank:
            raise OperationError(
                "the ORMap prototype must be empty: pass a type, or a new empty instance"
            )
        self._prototype: Any = blank
        self._causal = isinstance(blank, CausalCRDT)
        self._entries: dict[K, _Entry] = {}
        self._hashes: _MapHashes | None = None

    # ---- configuration ----------------------------------------------------------------
    @property
    def value_type(self) -> type[Any]:
        """The type of the nested values."""
        return type(self._prototype)

    @property
    def prototype(self) -> Any:
        """A new empty nested value of the configured type."""
        return self._new_nested(CausalContext())

    def _blank(self) -> Self:
        # Skips __init__'s validation: the prototype was checked when self was made.
        fresh = type(self).__new__(type(self))
        CausalCRDT.__init__(fresh)
        fresh._prototype = self._prototype
        fresh._causal = self._causal
        fresh._entries = {}
        fresh._hashes = None
        return fresh

    def _same_kind(self, other: object) -> bool:
        return type(other) is type(self) and signature(other) == signature(self)

    def _new_nested(self, context: CausalContext) -> Any:
        if self._causal:
            return self._prototype._empty_bound(context)
        return type(self._prototype)()

    # ---- reading ----------------------------------------------------------------------
    def _nested_value(self, entry: _Entry) -> Any:
        """The nested object of ``entry`` (the live one for causal types)."""
        if entry.nested is not None:
            return entry.nested
        joined = type(self._prototype)()
        for contribution in entry.tags.values():
            joined.merge(contribution)
        return joined

    def __getitem__(self, key: K) -> Any:
        """A detached copy of the nested value at ``key``; mutate through update().

        Raises:
            KeyError: ``key`` is absent.
        """
        entry = self._entries[key]
        nested = self._nested_value(entry)
        if entry.nested is not None:
            return nested._copy_bound(self._context.copy())
        return nested

    def get(self, key: K, default: Any = None) -> Any:
        """``self[key]``, or ``default`` when absent."""
        return self[key] if key in self._entries else default

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._entries))

    def keys(self) -> list[K]:
        """The keys present."""
        return list(self._entries)

    @property
    def value(self) -> dict[K, Any]:
        """Each present key with its nested value's ``value``."""
        return {key: self._nested_value(entry).value for key, entry in self._entries.items()}

    # ---- mutators ---------------------------------------------------------------------
    def update(self, key: K, replica: str, fn: Callable[[Any], Any]) -> Self:
        """Apply ``fn`` to the nested value at ``key`` (created empty when absent).

        Args:
            key: the key.
            replica: this replica's id (it tags the key and makes any new dots).
            fn: ``fn(nested) -> nested_delta``: call one mutator of the nested value and
                return what it returned.

        Returns:
            The map delta: the key's new presence dot and ``fn``'s nested delta.

        Raises:
            OperationError: a bad replica id, or ``fn`` did not return a delta of the
                nested type.
        """
        check_replica(replica)
        entry = self._entries.get(key)
        own = [dot for dot in entry.tags if dot[0] == replica] if entry is not None else []
        if self._causal:
            nested = entry.nested if entry is not None else self._new_nested(self._context)
            nested_delta = fn(nested)
            self._check_delta(nested_delta)
            tag = self._context.next_dot(replica)
            delta_context = nested_delta._context.copy()
            for dot in (*own, tag):
                delta_context.add(*dot)
            nested_delta._rebind(delta_context)
            if entry is None:
                entry = self._entries[key] = _Entry({}, nested)
            for dot in own:
                del entry.tags[dot]
            entry.tags[tag] = None
            delta = self._empty_bound(delta_context)
            delta._entries = {key: _Entry({tag: None}, nested_delta)}
            self._rehash(key)
            return delta

        current = (
            self._nested_value(entry) if entry is not None else self._new_nested(self._context)
        )
        nested_delta = fn(current)
        self._check_delta(nested_delta)
        contribution = nested_delta.copy()
        for dot in own:
            contribution.merge(entry.tags[dot])  # type: ignore[union-attr]
        tag = self._context.next_dot(replica)
        if entry is None:
            entry = self._entries[key] = _Entry({}, None)
        for dot in own:
            del entry.tags[dot]
        entry.tags[tag] = contribution
        delta = self._empty_bound(CausalContext.from_dots([*own, tag]))
        delta._entries = {key: _Entry({tag: contribution.copy()}, None)}
        self._rehash(key)
        return delta

    def _check_delta(self, nested_delta: object) -> None:
        prototype = self._prototype
        ok = (
            prototype._same_kind(nested_delta)
            if self._causal
            else type(nested_delta) is type(prototype)
        )
        if not ok:
            raise OperationError(
                f"the update function must return the delta its mutator returned (a "
                f"{type(prototype).__name__}), not {nested_delta!r:.80}"
            )

    def remove(self, key: K) -> Self:
        """Remove ``key`` as observed here (see the module docstring).

        Returns:
            The delta: no entries; its context covers the key's dots seen here. Removing
            an absent key changes nothing and returns an empty delta.
        """
        entry = self._entries.pop(key, None)
        if entry is None:
            return self._empty_bound(CausalContext())
        self._rehash(key)
        return self._empty_bound(CausalContext.from_dots(self._entry_dots(entry)))

    # ---- the dot-store join -----------------------------------------------------------
    @staticmethod
    def _entry_dots(entry: _Entry) -> Iterator[Dot]:
        yield from entry.tags
        if entry.nested is not None:
            yield from entry.nested._store_dots()

    def _join_store(
        self, other: Self, my_context: CausalContext, their_context: CausalContext
    ) -> None:
        if other is self:
            return
        mine_all = self._entries
        for key, theirs in other._entries.items():
            mine = mine_all.get(key)
            if mine is None:
                tags = {
                    dot: (None if payload is None else payload.copy())
                    for dot, payload in theirs.tags.items()
                    if not my_context.covers(*dot)
                }
                nested = None
                if theirs.nested is not None:
                    nested = self._new_nested(self._context)
                    nested._join_store(theirs.nested, my_context, their_context)
                mine = _Entry(tags, nested)
            else:
                self._join_tags(mine.tags, my_context, theirs.tags, their_context)
                if mine.nested is not None and theirs.nested is not None:
                    mine.nested._join_store(theirs.nested, my_context, their_context)
            self._keep_or_drop(key, mine)
        if their_context.is_empty():
            return
        empty = self._new_nested(their_context)
        for key in [key for key in mine_all if key not in other._entries]:
            mine = mine_all[key]
            self._join_tags(mine.tags, my_context, {}, their_context)
            if mine.nested is not None:
                mine.nested._join_store(empty, my_context, their_context)
            self._keep_or_drop(key, mine)

    def _keep_or_drop(self, key: K, entry: _Entry) -> None:
        if entry.tags or (entry.nested is not None and not entry.nested._store_is_empty()):
            self._entries[key] = entry
        else:
            self._entries.pop(key, None)
        self._rehash(key)

    @staticmethod
    def _join_tags(
        mine: dict[Dot, Any],
        my_context: CausalContext,
        theirs: dict[Dot, Any],
        their_context: CausalContext,
    ) -> None:
        for dot in [d for d in mine if d not in theirs and their_context.covers(*d)]:
            del mine[dot]
        for dot, payload in theirs.items():
            if dot not in mine and not my_context.covers(*dot):
                mine[dot] = None if payload is None else payload.copy()

    def _store_dots(self) -> Iterator[Dot]:
        for entry in self._entries.values():
            yield from self._entry_dots(entry)

    def _store_is_empty(self) -> bool:
        return not self._entries

    def _store_equal(self, other: Self) -> bool:
        if self._entries.keys() != other._entries.keys():
            return False
        for key, mine in self._entries.items():
            theirs = other._entries[key]
            if mine.tags != theirs.tags:
                return False
            if mine.nested is not None and theirs.nested is not None:
                if not mine.nested._store_equal(theirs.nested):
                    return False
            elif mine.nested is not theirs.nested:
                return False
        return True

    def _copy_store_into(self, target: Self) -> None:
        context = target._context
        target._entries = {
            key: _Entry(
                {dot: (None if p is None else p.copy()) for dot, p in entry.tags.items()},
                None if entry.nested is None else entry.nested._copy_bound(context),
            )
            for key, entry in self._entries.items()
        }
        target._hashes = None if self._hashes is None else self._hashes.copy()

    def _rebind(self, context: CausalContext) -> None:
        self._context = context
        for entry in self._entries.values():
            if entry.nested is not None:
                entry.nested._rebind(context)

    def __repr__(self) -> str:
        items = ", ".join(
            f"{key!r}: {sorted(entry.tags)!r}/{self._nested_value(entry).value!r}"
            for key, entry in self._entries.items()
        )
        return f"ORMap({self.value_type.__name__}, {{{items}}}, context={self._context!r})"

    # ---- digests and repair by difference (used by anti-entropy) ----------------------
    def _rehash(self, key: K) -> None:
        """Bring the running digest up to date after ``key``'s entry may have changed."""
        hashes = self._hashes
        if hashes is None:
            return
        entry = self._entries.get(key)
        old = hashes.keys.get(key)
        if entry is None:
            if old is not None:
                del hashes.keys[key]
                hashes.total -= old[1] + old[2]
                hashes.index = None
            return
        nested_sum = 0 if entry.nested is None else entry.nested._live_sum()
        if old is not None and entry.tags.keys() == old[0]:
            if nested_sum == old[2]:
                return  # unchanged: the common case of a join's pass over every key
            tags, tag_sum = old[0], old[1]
        else:
            tags = frozenset(entry.tags)
            tag_sum = sum(dot_hash(replica, counter) for replica, counter in tags)
        hashes.keys[key] = (tags, tag_sum, nested_sum)
        hashes.total += tag_sum + nested_sum - (0 if old is None else old[1] + old[2])
        hashes.index = None

    def _map_hashes(self) -> _MapHashes:
        hashes = self._hashes
        if hashes is None:
            # First use: one pass, then every change keeps it current.
            hashes = self._hashes = _MapHashes()
            for key in self._entries:
                self._rehash(key)
        return hashes

    def _live_sum(self) -> int:
        return self._map_hashes().total

    def _digest(self) -> bytes:
        tag = b"ORMap" + repr(signature(self._prototype)).encode()
        return digest_of(tag, self._live_sum(), self._context)

    def _dot_index(self) -> tuple[dict[str, dict[int, Any]], DotHashes]:
        """Live dots by replica (``replica -> counter -> key``) and their hashes; built
        in one pass on demand and kept until the map next changes."""
        hashes = self._map_hashes()
        if hashes.index is None:
            by_replica: dict[str, dict[int, Any]] = {}
            for key, entry in self._entries.items():
                for replica, counter in self._entry_dots(entry):
                    by_replica.setdefault(replica, {})[counter] = key
            table = DotHashes.of(
                (replica, counter) for replica, block in by_replica.items() for counter in block
            )
            hashes.index = (by_replica, table)
        return hashes.index

    def _dot_hashes(self) -> DotHashes:
        return self._dot_index()[1]

    def _live_of(self, replica: str) -> Collection[int]:
        return self._dot_index()[0].get(replica, {}).keys()

    def _subset(self, dots: Iterable[Dot], context: CausalContext) -> Self:
        by_replica = self._dot_index()[0]
        by_key: dict[Any, list[Dot]] = {}
        for replica, counter in dots:
            block = by_replica.get(replica)
            if block is not None and counter in block:
                by_key.setdefault(block[counter], []).append((replica, counter))
        fresh = self._empty_bound(context)
        for key, found in by_key.items():
            entry = self._entries[key]
            tags = {
                dot: (None if entry.tags[dot] is None else entry.tags[dot].copy())
                for dot in found
                if dot in entry.tags
            }
            nested = None if entry.nested is None else entry.nested._subset(found, context)
            if tags or (nested is not None and not nested._store_is_empty()):
                fresh._entries[key] = _Entry(tags, nested)
        return fresh
