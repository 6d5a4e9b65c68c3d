"""The transmit-limited broadcast queue: what gossip sends, and how many times.

Every update to spread (a delta, a membership change) is queued under a *name*
(``("key", k)`` or ``("member", node_id)``). Each time an item goes out its transmit
count rises; after ``retransmit_mult * ceil(log10(N + 1))`` transmits it leaves the
queue, which is enough for push gossip to reach every member with high probability
while the load stays logarithmic in the cluster size. Fresher items (fewer transmits)
go first, and among equally fresh ones the larger first so small ones fill the gaps,
then the newer first (memberlist ``queue.go``).

A newer item under the same name *supersedes* the older one: the older is dropped, so
the queue never spends bytes on news that is already out of date. For data keys the
engine first joins the older delta into the newer one (the join of deltas is a delta),
so superseding loses nothing.

Each item may name members that must not receive it (``exclude``): the member a delta
came from already has it, and sending it back is pure waste (Enes et al., 2018).

The items are kept in *buckets* of equal transmit count and equal size, each in
insertion order, and the buckets in send order. Every item of a bucket costs the same
bytes, so a take works out how many of a bucket fit with one division and moves them
to the next bucket as one slice: its work is per bucket, not per item (while a
1,000-node cluster forms, each member queues a rumor about each other member and
sends each of them ``retransmit_limit`` times, some 16 million sends in all, so the
per-item work of the queue was a quarter of a simulated join's CPU).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Collection
from dataclasses import dataclass
from itertools import repeat
from operator import contains, itemgetter
from typing import Final, Generic, TypeVar

__all__ = ["MAX_QUEUE_ITEMS", "BroadcastQueue", "QueuedItem", "retransmit_limit"]

MAX_QUEUE_ITEMS: Final = 4096
"""Most items queued at once; past it the most transmitted (oldest) are dropped (an
eighth of the queue at once), and
anti-entropy repairs what they would have carried. Serf's ``MaxQueueDepth`` default is
the same 4096."""

Name = tuple[str, str]
T = TypeVar("T")

# A bucket's key is an int packing (transmits, -size): the order buckets are sent in
# (fewer transmits first, then larger), cheaper to hold and compare than a tuple.
_SIZE_BITS: Final = 32  # larger than any frame
_SIZE_MASK: Final = (1 << _SIZE_BITS) - 1
_ONE_TRANSMIT: Final = 1 << _SIZE_BITS  # what a send adds to an item's bucket key

# A queued item is a tuple (serial, name, packed, exclude, extra) rather than an
# object: the cyclic garbage collector stops tracking a tuple once it has seen that
# its fields are plain, and a simulated 1,000-node join queues a million items at
# once, which every full collection walked. Tuples of a bucket sort by their serial
# (serials are unique, so no other field is ever compared).
_Entry = tuple[int, Name, bytes, Collection[str], T | None]
_SERIAL = itemgetter(0)
_PACKED = itemgetter(2)
_EXCLUDE = itemgetter(3)


def _bucket_key(transmits: int, size: int) -> int:
    """The key of the bucket of items sent ``transmits`` times, of ``size`` bytes."""
    return (transmits << _SIZE_BITS) | (_SIZE_MASK - min(size, _SIZE_MASK))


def _size_of(bucket_key: int) -> int:
    """The packed size of the items of a bucket (at most :data:`_SIZE_MASK`)."""
    return _SIZE_MASK - (bucket_key & _SIZE_MASK)


def retransmit_limit(retransmit_mult: int, members: int) -> int:
    """How many times an item is sent before it leaves the queue.

    Args:
        retransmit_mult: ``GossipConfig.retransmit_mult``.
        members: the number of members in the cluster.

    Returns:
        ``retransmit_mult * ceil(log10(members + 1))``, at least 1.
    """
    return max(1, retransmit_mult * math.ceil(math.log10(max(0, members) + 1)))


@dataclass(frozen=True, slots=True)
class QueuedItem(Generic[T]):
    """One queued broadcast, as :meth:`BroadcastQueue.get` sees it (a copy).

    Attributes:
        name: what it is about; a newer item with the same name replaces it.
        packed: the packed message, ready to go into a frame.
        exclude: node ids that must not be sent this item (they have it): a few, so
            any collection will do (a member rumor's is a tuple of two).
        extra: what the owner keeps with it (the engine: the delta object, to join
            with a newer delta of the same key).
        transmits: how many times it was sent.
        serial: insertion order; newer is higher.
    """

    name: Name
    packed: bytes
    exclude: Collection[str]
    extra: T | None
    transmits: int
    serial: int


class BroadcastQueue(Generic[T]):
    """Items to gossip, each sent a limited number of times.

    Args:
        max_items: the bound on queued items (:data:`MAX_QUEUE_ITEMS`).
    """

    def __init__(self, max_items: int = MAX_QUEUE_ITEMS) -> None:
        # Each item by its serial (insertion order), and the serial of each name.
        self._entries: dict[int, _Entry[T]] = {}
        self._serials: dict[Name, int] = {}
        # The items of each bucket, oldest first (a bucket is sent from its end), and
        # the bucket keys in send order.
        self._buckets: dict[int, list[_Entry[T]]] = {}
        self._order: list[int] = []
        # Bounds on the packed sizes queued: the least is never above the true least
        # and the largest never below the true largest (both reset when the queue
        # empties), so a take can stop once nothing more can fit.
        self._min_size = 0
        self._max_size = 0
        self._serial = 0
        self._max_items = max_items
        #: Items dropped because the queue was full, since construction.
        self.overflow_drops = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: Name) -> QueuedItem[T] | None:
        """The queued item of ``name``, if any (to join a newer delta with it)."""
        serial = self._serials.get(name)
        if serial is None:
            return None
        entry = self._entries[serial]
        _, _, packed, exclude, extra = entry
        transmits = self._bucket_of(entry) >> _SIZE_BITS
        return QueuedItem(name, packed, exclude, extra, transmits, serial)

    def items(self) -> list[QueuedItem[T]]:
        """Every queued item, in the order :meth:`take` would send them (copies, for
        inspection: O(n))."""
        return [
            QueuedItem(name, packed, exclude, extra, bucket_key >> _SIZE_BITS, serial)
            for bucket_key in self._order
            for serial, name, packed, exclude, extra in reversed(self._buckets[bucket_key])
        ]

    def _bucket_of(self, entry: _Entry[T]) -> int:
        """The key of the bucket holding ``entry``: one of those of its size (a few,
        one per transmit count), the one that holds its serial."""
        size_bits = _bucket_key(0, len(entry[2]))
        probe = (entry[0],)
        for bucket_key in self._order:
            if bucket_key & _SIZE_MASK == size_bits:
                bucket = self._buckets[bucket_key]
                at = bisect_left(bucket, probe)
                if at < len(bucket) and bucket[at] is entry:
                    return bucket_key
        raise AssertionError(f"queued item {entry[0]} is in no bucket")  # pragma: no cover

    def put(
        self,
        name: Name,
        packed: bytes,
        *,
        exclude: Collection[str] = (),
        extra: T | None = None,
    ) -> None:
        """Queue an item, replacing any older item of the same name.

        Args:
            name: what it is about.
            packed: the packed message.
            exclude: node ids that must not receive it.
            extra: kept with the item for the caller.
        """
        older = self._serials.get(name)
        if older is not None:
            self._remove(older)
        entries = self._entries
        size = len(packed)
        if not entries:
            self._min_size = self._max_size = size
        elif size < self._min_size:
            self._min_size = size
        elif size > self._max_size:
            self._max_size = size
        self._serial = serial = self._serial + 1
        entries[serial] = entry = (serial, name, packed, exclude, extra)
        self._serials[name] = serial
        bucket_key = _SIZE_MASK - size if size < _SIZE_MASK else 0  # _bucket_key(0, size)
        bucket = self._buckets.get(bucket_key)
        if bucket is None:
            self._buckets[bucket_key] = [entry]
            insort(self._order, bucket_key)
        else:
            bucket.append(entry)  # the newest: the bucket stays in serial order
        if len(entries) > self._max_items:
            self._prune()

    def discard(self, name: Name) -> None:
        """Drop the queued item of ``name``, if any (what it carries is void)."""
        serial = self._serials.get(name)
        if serial is not None:
            self._remove(serial)

    def _prune(self) -> None:
        # Down to 7/8 of the bound at once, so a stream of puts into a full queue
        # sorts it once per max_items / 8 puts rather than on every put.
        keep = self._max_items - self._max_items // 8
        by_age = [
            (-(bucket_key >> _SIZE_BITS), entry[0])
            for bucket_key in self._order
            for entry in self._buckets[bucket_key]
        ]
        by_age.sort()
        for _, serial in by_age[: len(self._entries) - keep]:
            self._remove(serial)
            self.overflow_drops += 1

    def _remove(self, serial: int) -> None:
        """Take one item out of the queue, wherever it is."""
        entry = self._entries[serial]
        bucket_key = self._bucket_of(entry)
        del self._entries[serial]
        del self._serials[entry[1]]
        bucket = self._buckets[bucket_key]
        bucket.remove(entry)
        if not bucket:
            del self._buckets[bucket_key]
            self._order.remove(bucket_key)

    def take(
        self,
        budget: int,
        limit: int,
        *,
        destination: str | None = None,
        per_item_overhead: int = 0,
        min_size: int = 0,
    ) -> list[bytes]:
        """Pick items that fit in ``budget`` bytes and count them as sent.

        Args:
            budget: bytes available.
            limit: :func:`retransmit_limit` for the current cluster size; an item sent
                that many times leaves the queue.
            destination: the node id it goes to; items excluding it are skipped and
                not counted.
            per_item_overhead: bytes each item costs beyond its packed size.
            min_size: only items at least this large (to pick the ones too large for
                a datagram, which go by stream; most rounds have none, which the size
                bound tells at once).

        Returns:
            The packed messages chosen, freshest first.
        """
        if not self._entries or budget <= 0:
            return []
        if min_size > 0:
            if self._max_size < min_size:
                return []
            # The bound can come down to the truth: the buckets name every size.
            self._max_size = max(_size_of(bucket_key) for bucket_key in self._order)
        chosen: list[bytes] = []
        # (bucket key, the items sent from it, freshest first; how many of the
        # bucket's last items they were found among)
        sent: list[tuple[int, list[_Entry[T]], int]] = []
        left = budget
        floor = max(self._min_size, min_size) + per_item_overhead
        buckets = self._buckets
        for bucket_key in self._order:
            if left < floor:
                break
            size = _SIZE_MASK - (bucket_key & _SIZE_MASK)
            cost = size + per_item_overhead
            if cost > left or size < min_size:
                continue
            bucket = buckets[bucket_key]
            fit = left // cost
            # The freshest items of the bucket are at its end.
            window = bucket[-fit:]
            if destination is not None and any(
                map(contains, map(_EXCLUDE, window), repeat(destination))
            ):
                taken = []
                depth = 0
                for entry in reversed(bucket):
                    depth += 1
                    if destination not in entry[3]:
                        taken.append(entry)
                        if len(taken) == fit:
                            break
                if not taken:
                    continue
                sent.append((bucket_key, taken, depth))
            else:
                taken = window[::-1]
                sent.append((bucket_key, taken, len(taken)))
            chosen += map(_PACKED, taken)
            left -= cost * len(taken)
            if left <= per_item_overhead:
                break
        # The latest bucket first: its items move on before earlier ones arrive in it.
        for bucket_key, taken, depth in reversed(sent):
            self._sent(bucket_key, taken, depth, limit)
        return chosen

    def _sent(self, bucket_key: int, taken: list[_Entry[T]], depth: int, limit: int) -> None:
        """Count the items ``taken`` from a bucket (freshest first, among its last
        ``depth`` items) as sent once more: into the next bucket, or out of the queue
        at ``limit``."""
        buckets = self._buckets
        bucket = buckets[bucket_key]
        if depth == len(taken):
            del bucket[-depth:]
        else:
            # Only the items looked at are rebuilt (a bucket may hold a thousand).
            gone = set(map(_SERIAL, taken))
            bucket[-depth:] = [entry for entry in bucket[-depth:] if entry[0] not in gone]
        if not bucket:
            del buckets[bucket_key]
            self._order.remove(bucket_key)
        next_key = bucket_key + _ONE_TRANSMIT
        if next_key >> _SIZE_BITS >= limit:
            entries, serials = self._entries, self._serials
            for serial, name, *_ in taken:
                del entries[serial]
                del serials[name]
            return
        taken.reverse()  # oldest first, as a bucket holds them
        following = buckets.get(next_key)
        if following is None:
            buckets[next_key] = taken
            insort(self._order, next_key)
            return
        # Usually the items fall in one gap of the bucket (they were the freshest of
        # theirs, and the bucket holds items sent before them, or after): a slice goes
        # in there; else they are merged with the bucket's items between their first
        # and their last (two sorted runs, sorted), not with the whole bucket.
        at = bisect_right(following, taken[0])
        end = bisect_right(following, taken[-1], at)
        if at == end:
            following[at:at] = taken
        else:
            between = following[at:end]
            between += taken
            between.sort()
            following[at:end] = between
