"""The digest of an ORMap, kept up to date as it changes, and its repair by difference.

An ORMap's digest sums the hashes of all its live dots: each key's presence tags plus
its nested value's own sum (which a nested ORSet or ORMap keeps up to date itself).
:class:`MapHashes` keeps, per key, the tags' dots, the sum of their hashes and the
nested sum last seen, so bringing the total up to date after a key changes costs that
key's tags, and a key a join only looked at costs a comparison. ORMap calls
:meth:`MapDigest._rehash` wherever an entry may have changed (update, remove, and the
end of every key a join visits); :class:`MapDigest` is the half of ORMap that uses it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, Self

from crdtgossip.crdts._causal import CausalContext, Dot
from crdtgossip.crdts._digest import DotHashes, digest_of, dot_hash

if TYPE_CHECKING:
    from crdtgossip.crdts._dotindex import DotIndex

__all__ = ["MapDigest", "MapHashes"]


class MapHashes:
    """What an ORMap keeps to maintain its digest: per key, its tag dots, the sum of
    their hashes and its nested value's sum; their total; and, while nothing changes,
    the hashes of the live dots by counter range (built for anti-entropy on demand)."""

    __slots__ = ("keys", "table", "total")

    def __init__(self) -> None:
        self.total = 0
        self.keys: dict[Any, tuple[frozenset[Dot], int, int]] = {}
        self.table: DotHashes | None = None

    def copy(self) -> MapHashes:
        """An independent copy (without the table, rebuilt on demand)."""
        fresh = MapHashes()
        fresh.total = self.total
        fresh.keys = dict(self.keys)
        return fresh


def _signature(value: object) -> tuple[Any, ...]:
    if isinstance(value, MapDigest):
        return ("ORMap", _signature(value._prototype))
    return (type(value).__module__, type(value).__qualname__)


class MapDigest:
    """The digest and repair-by-difference methods of ORMap (mixed into it)."""

    __slots__ = ()

    if TYPE_CHECKING:
        _context: CausalContext
        _entries: dict[Any, Any]
        _hashes: MapHashes | None
        _prototype: Any

        def _index_of(self) -> DotIndex: ...

        def _empty_bound(self, context: CausalContext) -> Self: ...

    def _rehash(self, key: Any) -> None:
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
                hashes.table = None
            return
        nested_sum = 0 if entry.nested is None else entry.nested._live_sum()
        if old is not None and entry.tags.keys() == old[0]:
            if nested_sum == old[2]:
                return  # unchanged: the common case of a key a join only looked at
            tags, tag_sum = old[0], old[1]
        else:
            tags = frozenset(entry.tags)
            tag_sum = sum(dot_hash(replica, counter) for replica, counter in tags)
        hashes.keys[key] = (tags, tag_sum, nested_sum)
        hashes.total += tag_sum + nested_sum - (0 if old is None else old[1] + old[2])
        hashes.table = None

    def _map_hashes(self) -> MapHashes:
        hashes = self._hashes
        if hashes is None:
            # First use: one pass, then every change keeps it current.
            hashes = MapHashes()
            self._hashes = hashes  # type: ignore[misc]  # ORMap's slot
            for key in self._entries:
                self._rehash(key)
        return hashes

    def _live_sum(self) -> int:
        """The sum of the hashes of every live dot, nested ones included."""
        return self._map_hashes().total

    def _digest(self) -> bytes:
        """A canonical digest of the state: equal states give equal digests."""
        tag = b"ORMap" + repr(_signature(self._prototype)).encode()
        return digest_of(tag, self._live_sum(), self._context)

    def _dot_hashes(self) -> DotHashes:
        """The hashes of the live dots by counter range, built from the dot index on
        demand and kept until the map next changes."""
        hashes = self._map_hashes()
        if hashes.table is None:
            hashes.table = DotHashes.of(
                (replica, counter)
                for replica, block in self._index_of().items()
                for counter in block
            )
        return hashes.table

    def _live_of(self, replica: str) -> Collection[int]:
        """The counters of the live dots of ``replica`` (a read-only view)."""
        return self._index_of().get(replica, {}).keys()

    def _subset(self, dots: Iterable[Dot], context: CausalContext) -> Self:
        """A new map bound to ``context`` holding those of ``dots`` live here, with the
        keys, contributions and nested values they belong to."""
        by_replica = self._index_of()
        by_key: dict[Any, list[Dot]] = {}
        for replica, counter in dots:
            block = by_replica.get(replica)
            if block is not None and counter in block:
                by_key.setdefault(block[counter], []).append((replica, counter))
        fresh = self._empty_bound(context)
        entries: dict[Any, Any] = fresh._entries
        for key, found in by_key.items():
            entry = self._entries[key]
            tags = {
                dot: (None if entry.tags[dot] is None else entry.tags[dot].copy())
                for dot in found
                if dot in entry.tags
            }
            nested = None if entry.nested is None else entry.nested._subset(found, context)
            if tags or (nested is not None and not nested._store_is_empty()):
                entries[key] = type(entry)(tags, nested)
        return fresh
