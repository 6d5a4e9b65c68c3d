"""Pruning a removed replica out of an ORMap: the store half of ``prune`` and
``drop_replica`` (see :mod:`crdtgossip.crdts._pruning`), mixed into ORMap.

Everything in a map shares the map's causal context, so one prune covers it all:

* a **presence tag** of the removed replica becomes a fresh tag of the pruner;
* a **causal nested value** (ORSet, EWFlag, MVRegister, ORMap) prunes its own store,
  taking its fresh dots from the same context;
* the **contributions** of a non-causal nested value are what the key's value is the
  join of. When the nested type is :class:`~crdtgossip.crdts._pruning.Prunable` (a
  counter), the removed replica's contribution must be *added* to the pruner's, which
  a join (a maximum per slot) cannot do across two contributions: so every
  contribution of the key that names the removed replica or the pruner is joined into
  one, pruned there (the removed slot added to the pruner's), and kept under one fresh
  tag of the pruner. When it is not (G-Set, LWW types, which name no replica that
  pruning must remove), each tag of the removed replica is re-tagged as the pruner's,
  its contribution unchanged.

``drop_replica`` forgets the removed replica's tags, its dots in nested values and its
slots in contributions; a key that no live dot holds any more vanishes from the copy.
Both reset the map's dot index and digest, rebuilt on first use: pruning is rare.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crdtgossip.crdts._causal import CausalContext, Dot
from crdtgossip.crdts._mapentry import MapEntry
from crdtgossip.crdts._pruning import Prunable

if TYPE_CHECKING:
    from crdtgossip.crdts._dotindex import DotIndex
    from crdtgossip.crdts._mapdigest import MapHashes

__all__ = ["MapPruning"]


class MapPruning:
    """The pruning half of ORMap's store (mixed into it; see the module docstring)."""

    __slots__ = ()

    if TYPE_CHECKING:
        _context: CausalContext
        _entries: dict[Any, MapEntry]
        _index: DotIndex | None
        _hashes: MapHashes | None
        _prototype: Any

    def _store_replicas(self) -> set[str]:
        found: set[str] = set()
        for entry in self._entries.values():
            found.update(replica for replica, _ in entry.tags)
            if entry.nested is not None:
                found |= entry.nested._store_replicas()
            else:
                for contribution in entry.tags.values():
                    if isinstance(contribution, Prunable):
                        found |= contribution.replicas()
        return found

    def _prune_cost(self, removed: str) -> int:
        cost = 0
        for entry in self._entries.values():
            if entry.nested is not None:
                cost += sum(1 for replica, _ in entry.tags if replica == removed)
                cost += entry.nested._prune_cost(removed)
            else:
                cost += len(entry.tags)  # at most one fresh tag per tag
        return cost

    def _check_prune_store(self, removed: str, into: str) -> None:
        for entry in self._entries.values():
            if entry.nested is not None:
                entry.nested._check_prune_store(removed, into)
            else:
                self._pruned_tags(entry, removed, into)  # raises if a sum overflows

    def _pruned_tags(
        self, entry: MapEntry, removed: str, into: str
    ) -> tuple[dict[Dot, Any], list[Any]] | None:
        """The tags of a non-causal entry that pruning keeps, and the contributions it
        puts under fresh tags of ``into``; None when the entry does not name
        ``removed``. Changes nothing.

        Raises:
            OperationError: a folded counter slot would pass 2**64 - 1.
        """
        tags = entry.tags
        if not isinstance(self._prototype, Prunable):
            moved = sorted(dot for dot in tags if dot[0] == removed)
            if not moved:
                return None
            kept = {dot: payload for dot, payload in tags.items() if dot[0] != removed}
            return kept, [tags[dot] for dot in moved]
        names = {removed, into}
        folded = [
            dot for dot, payload in tags.items() if dot[0] in names or payload.replicas() & names
        ]
        if not any(dot[0] == removed or removed in tags[dot].replicas() for dot in folded):
            return None
        combined: Any = type(self._prototype)()
        for dot in folded:
            combined.merge(tags[dot])
        combined.prune(removed, into)
        kept = {dot: payload for dot, payload in tags.items() if dot not in folded}
        return kept, [combined]

    def _prune_store(self, removed: str, into: str) -> None:
        context = self._context
        for entry in self._entries.values():
            if entry.nested is not None:
                for dot in sorted(dot for dot in entry.tags if dot[0] == removed):
                    del entry.tags[dot]
                    entry.tags[context.next_dot(into)] = None
                entry.nested._prune_store(removed, into)
                continue
            pruned = self._pruned_tags(entry, removed, into)
            if pruned is not None:
                kept, moved = pruned
                for contribution in moved:
                    kept[context.next_dot(into)] = contribution
                entry.tags = kept
        self._index = None  # type: ignore[misc]  # ORMap's slot
        self._hashes = None  # type: ignore[misc]  # ORMap's slot

    def _drop_store(self, removed: str) -> None:
        entries = self._entries
        for key in list(entries):
            entry = entries[key]
            for dot in [dot for dot in entry.tags if dot[0] == removed]:
                del entry.tags[dot]
            if entry.nested is not None:
                entry.nested._drop_store(removed)
            else:
                for contribution in entry.tags.values():
                    if isinstance(contribution, Prunable):
                        contribution.drop_replica(removed)
            if not entry.tags and (entry.nested is None or entry.nested._store_is_empty()):
                del entries[key]
        self._index = None  # type: ignore[misc]  # ORMap's slot
        self._hashes = None  # type: ignore[misc]  # ORMap's slot
