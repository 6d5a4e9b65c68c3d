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
nested state; removed keys cost nothing beyond the context. The map also keeps an
index ``dot -> key`` of every live dot (presence tags and nested dots), so that a merge
finds the keys a delta's context touches by walking that context's few dots, never every
key: merging a delta costs O(size of the delta), whatever the size of the map. (A full
state, whose context is large, is matched the other way round, by walking the index.)
The index is built lazily from the entries; code that fills ``_entries`` directly (the
decoder) leaves ``_index`` None.

Pruning a removed replica (:mod:`crdtgossip.crdts._mappruning`) re-tags its presence
dots and prunes the nested values and contributions, all within the map's context.

Reading: ``m[key]`` is a detached copy of the nested value (O(its size));
``m.view(key)`` is the live nested object (O(1) for causal nested types), to read only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, Self, TypeVar

from crdtgossip.crdts._base import CRDT, check_replica
from crdtgossip.crdts._causal import CausalContext, CausalCRDT, Dot
from crdtgossip.crdts._dotindex import DotIndex, covered_dots, index_add, index_discard
from crdtgossip.crdts._mapdigest import MapDigest, MapHashes
from crdtgossip.crdts._mapentry import MapEntry
from crdtgossip.crdts._mappruning import MapPruning
from crdtgossip.crdts._values import MAX_DEPTH, check_key
from crdtgossip.errors import OperationError

__all__ = ["ORMap"]

K = TypeVar("K", bound=Hashable)

#: The dots one update may make for its replica: a presence tag per level of nesting
#: (at most the codec's depth limit) plus one for the innermost mutator. An update
#: checks there is room for that many before calling ``fn``, so it never fails halfway.
_DOTS_PER_UPDATE = MAX_DEPTH + 2

# The entry of one key (the codec builds them by this name too).
_Entry = MapEntry


def signature(value: object) -> tuple[Any, ...]:
    """What must agree for two maps to merge: the nested types, all the way down."""
    if isinstance(value, ORMap):
        return ("ORMap", signature(value._prototype))
    return (type(value).__module__, type(value).__qualname__)


class ORMap(MapDigest, MapPruning, CausalCRDT, Generic[K]):
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

    __slots__ = ("_causal", "_entries", "_hashes", "_index", "_prototype")

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
        # Every live dot -> its key; None until first needed (see the module docstring).
        self._index: DotIndex | None = None
        self._hashes: MapHashes | None = None  # the digest, once asked (see MapDigest)

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
        fresh._index = None
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
        """The nested object of ``entry``: the live one for causal types, else a new join
        of the contributions (which the caller may change)."""
        if entry.nested is not None:
            return entry.nested
        joined = type(self._prototype)()
        for contribution in entry.tags.values():
            joined.merge(contribution)
        return joined

    def _nested_view(self, entry: _Entry) -> Any:
        """Like :meth:`_nested_value`, but a lone contribution is returned as it is."""
        if entry.nested is None and len(entry.tags) == 1:
            for contribution in entry.tags.values():
                return contribution
        return self._nested_value(entry)

    def view(self, key: K) -> Any:
        """The nested value at ``key``, without a copy: read it, never change it.

        For causal nested types (ORSet, EWFlag, MVRegister, ORMap) this is the live
        nested object, in O(1); it shares the map's causal context, so its ``context``
        is the whole map's, and it compares equal only to a nested value of this same
        map: compare ``view(key).value`` instead. For the other types it is the join of
        the replicas' contributions to the key (the contribution itself when one replica
        wrote the key, else a new object, O(writers)). Changing it, other than through
        :meth:`update`, corrupts the map. Use ``m[key]`` for a copy of your own.

        Raises:
            KeyError: ``key`` is absent.
        """
        return self._nested_view(self._entries[key])

    def get_view(self, key: K, default: Any = None) -> Any:
        """``self.view(key)``, or ``default`` when absent (read-only, see :meth:`view`)."""
        entry = self._entries.get(key)
        return default if entry is None else self._nested_view(entry)

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
        """Each present key with its nested value's ``value`` (O(size of the map))."""
        view = self._nested_view
        return {key: view(entry).value for key, entry in self._entries.items()}

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
            OperationError: a bad replica id, a key the codec cannot encode (see
                :mod:`crdtgossip.crdts._values`), the replica's dot counter is exhausted
                (all three before ``fn`` runs, so nothing has changed), or ``fn`` did
                not return a delta of the nested type.
        """
        check_key(key, "an ORMap key")
        check_replica(replica)
        if not self._context.has_room(replica, _DOTS_PER_UPDATE):
            raise OperationError(
                f"replica {replica!r:.60} has used every dot counter up to 2**64 - 1; "
                "nothing changed (a node then needs a fresh replica id)"
            )
        entry = self._entries.get(key)
        own = [dot for dot in entry.tags if dot[0] == replica] if entry is not None else []
        index = self._index_of()
        if self._causal:
            nested: Any = entry.nested if entry is not None else self._new_nested(self._context)
            nested_delta = fn(nested)
            self._check_delta(nested_delta)
            if nested_delta is nested or nested_delta._context is self._context:
                raise OperationError(
                    "the update function returned the nested state itself: return the "
                    "delta its mutator returned"
                )
            tag = self._context.next_dot(replica)
            if entry is None:
                entry = self._entries[key] = _Entry({}, nested)
            # The nested delta's context covers exactly the dots the mutator made or
            # removed: bring the index up to date for those alone.
            for dot in nested_delta._context.dots():
                if nested._store_has(dot):
                    index_add(index, dot, key)
                else:
                    index_discard(index, dot, key)
            delta_context = nested_delta._context.copy()
            for dot in (*own, tag):
                delta_context.add(*dot)
            nested_delta._rebind(delta_context)
            for dot in own:
                del entry.tags[dot]
                index_discard(index, dot, key)
            entry.tags[tag] = None
            index_add(index, tag, key)
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
            index_discard(index, dot, key)
        entry.tags[tag] = contribution
        index_add(index, tag, key)
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

        Raises:
            OperationError: ``key`` is not something a map can hold.
        """
        check_key(key, "an ORMap key")
        entry = self._entries.pop(key, None)
        if entry is None:
            return self._empty_bound(CausalContext())
        dots = list(self._entry_dots(entry))
        index = self._index_of()
        for dot in dots:
            index_discard(index, dot, key)
        self._rehash(key)
        return self._empty_bound(CausalContext.from_dots(dots))

    # ---- the dot-store join -----------------------------------------------------------
    @staticmethod
    def _entry_dots(entry: _Entry) -> Iterator[Dot]:
        yield from entry.tags
        if entry.nested is not None:
            yield from entry.nested._store_dots()

    def _index_of(self) -> DotIndex:
        """The dot index, built from the entries when first needed."""
        index = self._index
        if index is None:
            index = {}
            for key, entry in self._entries.items():
                for dot in self._entry_dots(entry):
                    index_add(index, dot, key)
            self._index = index
        return index

    @staticmethod
    def _entry_has(entry: _Entry, dot: Dot) -> bool:
        return dot in entry.tags or (entry.nested is not None and entry.nested._store_has(dot))

    def _join_store(
        self, other: Self, my_context: CausalContext, their_context: CausalContext
    ) -> None:
        if other is self:
            return
        mine_all = self._entries
        index = self._index_of()
        covered = [] if their_context.is_empty() else covered_dots(index, their_context)
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
            if self._keep_or_drop(key, mine):
                for dot in self._entry_dots(theirs):
                    if self._entry_has(mine, dot):
                        index_add(index, dot, key)
        if not covered:
            return
        # Keys that the other side does not hold but whose dots it has seen: it removed
        # them (or some of their nested content). No other key can change.
        theirs_all = other._entries
        touched = dict.fromkeys(key for _, _, key in covered if key not in theirs_all)
        if touched:
            empty = self._new_nested(their_context)
            for key in touched:
                mine = mine_all[key]
                self._join_tags(mine.tags, my_context, {}, their_context)
                if mine.nested is not None:
                    mine.nested._join_store(empty, my_context, their_context)
                self._keep_or_drop(key, mine)
        for replica, counter, key in covered:
            entry = mine_all.get(key)
            if entry is None or not self._entry_has(entry, (replica, counter)):
                index_discard(index, (replica, counter), key)

    def _keep_or_drop(self, key: K, entry: _Entry) -> bool:
        """Store ``entry`` at ``key`` if it holds a dot, else drop the key; say which."""
        if entry.tags or (entry.nested is not None and not entry.nested._store_is_empty()):
            self._entries[key] = entry
            self._rehash(key)
            return True
        self._entries.pop(key, None)
        self._rehash(key)
        return False

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

    def _store_has(self, dot: Dot) -> bool:
        block = self._index_of().get(dot[0])
        return block is not None and dot[1] in block

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
        index = self._index
        target._index = None if index is None else {r: dict(b) for r, b in index.items()}
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
