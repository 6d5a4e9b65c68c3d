"""The transmit-limited broadcast queue: what gossip sends, and how many times.

Every update to spread (a delta, a membership change) is queued under a *name*
(``("key", k)`` or ``("member", node_id)``). Each time an item goes out its transmit
count rises; after ``retransmit_mult * ceil(log10(N + 1))`` transmits it leaves the
queue, which is enough for push gossip to reach every member with high probability
while the load stays logarithmic in the cluster size. Fresher items (fewer transmits)
go first, and among equally fresh ones the larger first so small ones fill the gaps
(memberlist ``queue.go``).

A newer item under the same name *supersedes* the older one: the older is dropped, so
the queue never spends bytes on news that is already out of date. For data keys the
engine first joins the older delta into the newer one (the join of deltas is a delta),
so superseding loses nothing.

Each item may name members that must not receive it (``exclude``): the member a delta
came from already has it, and sending it back is pure waste (Enes et al., 2018).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

__all__ = ["MAX_QUEUE_ITEMS", "BroadcastQueue", "QueuedItem", "retransmit_limit"]

MAX_QUEUE_ITEMS: Final = 4096
"""Most items queued at once; past it the most transmitted (oldest) are dropped (an
eighth of the queue at once), and
anti-entropy repairs what they would have carried. Serf's ``MaxQueueDepth`` default is
the same 4096."""

_HEAP_SLACK: Final = 64
"""Stale heap entries (of items sent, replaced or gone) tolerated beyond a quarter of
the number of queued items before the heap is rebuilt: a rebuild is O(n) and comes
after at least n/4 pushes, so it costs amortised O(1) per push, and the heap stays
within 1.25 n + 64 entries (an entry is an int of about 40 bytes)."""

Name = tuple[str, str]
T = TypeVar("T")
# A heap entry is a key: an int packing (transmits, -size, -serial), the order take()
# sends in (cheaper to hold and to compare than a tuple); the serial in it finds the
# item, and the entry is current while that item holds the same key (QueuedItem.key).
_SERIAL_BITS: Final = 40  # a trillion puts
_SIZE_BITS: Final = 32  # larger than any frame
_SERIAL_MASK: Final = (1 << _SERIAL_BITS) - 1
_SIZE_MASK: Final = (1 << _SIZE_BITS) - 1
_TRANSMITS_SHIFT: Final = _SERIAL_BITS + _SIZE_BITS
_ONE_TRANSMIT: Final = 1 << _TRANSMITS_SHIFT  # what a send adds to an item's key


def _key(transmits: int, size: int, serial: int) -> int:
    """The heap key: fewer transmits first, then larger, then newer."""
    return (
        (transmits << _TRANSMITS_SHIFT)
        | ((_SIZE_MASK - min(size, _SIZE_MASK)) << _SERIAL_BITS)
        | (_SERIAL_MASK - (serial & _SERIAL_MASK))
    )


def retransmit_limit(retransmit_mult: int, members: int) -> int:
    """How many times an item is sent before it leaves the queue.

    Args:
        retransmit_mult: ``GossipConfig.retransmit_mult``.
        members: the number of members in the cluster.

    Returns:
        ``retransmit_mult * ceil(log10(members + 1))``, at least 1.
    """
    return max(1, retransmit_mult * math.ceil(math.log10(max(0, members) + 1)))


@dataclass(slots=True)
class QueuedItem(Generic[T]):
    """One queued broadcast.

    Attributes:
        name: what it is about; a newer item with the same name replaces it.
        packed: the packed message, ready to go into a frame.
        exclude: node ids that must not be sent this item (they have it): a few, so
            any collection will do (a member rumor's is a tuple of two).
        extra: what the owner keeps with it (the engine: the delta object, to join
            with a newer delta of the same key).
        transmits: how many times it was sent.
        serial: insertion order; newer is higher.
        key: the heap key of its current entry (from ``transmits``, the size and
            ``serial``); older entries of the item, left in the heap, are stale.
    """

    name: Name
    packed: bytes
    exclude: Collection[str]
    extra: T | None
    transmits: int
    serial: int
    key: int


class BroadcastQueue(Generic[T]):
    """Items to gossip, each sent a limited number of times.

    Args:
        max_items: the bound on queued items (:data:`MAX_QUEUE_ITEMS`).
    """

    def __init__(self, max_items: int = MAX_QUEUE_ITEMS) -> None:
        self._items: dict[Name, QueuedItem[T]] = {}
        # The same items by the serial part of their keys (key & _SERIAL_MASK), for the
        # heap's entries.
        self._by_serial: dict[int, QueuedItem[T]] = {}
        # The send order, kept as a heap so that taking k items costs O(k log n), not
        # a sort of the whole queue (thousands of member rumors while a large cluster
        # forms, on every gossip target and every piggybacked datagram).
        self._heap: list[int] = []
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
        return len(self._items)

    def get(self, name: Name) -> QueuedItem[T] | None:
        """The queued item of ``name``, if any (to join a newer delta with it)."""
        return self._items.get(name)

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
        items = self._items
        older = items.pop(name, None)
        if older is not None:
            del self._by_serial[older.key & _SERIAL_MASK]
        size = len(packed)
        if not items:
            self._min_size = self._max_size = size
        elif size < self._min_size:
            self._min_size = size
        elif size > self._max_size:
            self._max_size = size
        self._serial += 1
        key = _key(0, size, self._serial)
        item = QueuedItem(name, packed, exclude, extra, 0, self._serial, key)
        items[name] = self._by_serial[key & _SERIAL_MASK] = item
        heapq.heappush(self._heap, key)
        if len(items) > self._max_items:
            self._prune()
        self._compact()

    def discard(self, name: Name) -> None:
        """Drop the queued item of ``name``, if any (what it carries is void)."""
        item = self._items.get(name)
        if item is not None:
            self._remove(item)

    def _compact(self) -> None:
        """Rebuild the heap from the queued items once stale entries dominate it."""
        if len(self._heap) > len(self._items) + len(self._items) // 4 + _HEAP_SLACK:
            self._heap = [i.key for i in self._items.values()]
            heapq.heapify(self._heap)

    def _prune(self) -> None:
        # Down to 7/8 of the bound at once, so a stream of puts into a full queue
        # sorts it once per max_items / 8 puts rather than on every put.
        keep = self._max_items - self._max_items // 8
        ordered = sorted(self._items.values(), key=lambda i: (-i.transmits, i.serial))
        for item in ordered[: len(self._items) - keep]:
            self._remove(item)
            self.overflow_drops += 1

    def _remove(self, item: QueuedItem[T]) -> None:
        del self._items[item.name]
        del self._by_serial[item.key & _SERIAL_MASK]

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
                a datagram, which go by stream).

        Returns:
            The packed messages chosen, freshest first.
        """
        if not self._items or budget <= 0:
            return []
        self._compact()
        if min_size > 0:
            return self._take_large(budget, limit, destination, per_item_overhead, min_size)
        chosen: list[bytes] = []
        left = budget
        items, by_serial, heap, pop = self._items, self._by_serial, self._heap, heapq.heappop
        # Entries popped and still current, to push back (with their new count).
        kept: list[int] = []
        # The loop runs once per item sent (tens of millions in a simulated join of
        # 1,000 nodes): _send inlined.
        floor = self._min_size + per_item_overhead
        mask, step = _SERIAL_MASK, _ONE_TRANSMIT
        while heap and left >= floor:
            key = pop(heap)
            item = by_serial.get(key & mask)
            if item is None or item.key != key:
                continue  # stale: the item was sent, replaced or dropped since
            packed = item.packed
            cost = len(packed) + per_item_overhead
            if cost > left or (destination is not None and destination in item.exclude):
                kept.append(key)
                continue
            chosen.append(packed)
            item.transmits += 1
            if item.transmits >= limit:
                del items[item.name]
                del by_serial[key & mask]
            else:
                item.key = key = key + step
                kept.append(key)
            left -= cost
            if left <= per_item_overhead:
                break
        for key in kept:
            heapq.heappush(heap, key)
        if not items:
            heap.clear()
        return chosen

    def _send(self, item: QueuedItem[T], limit: int, chosen: list[bytes], kept: list[int]) -> None:
        """Count ``item`` as sent: into ``chosen``, and out of the queue at ``limit``."""
        chosen.append(item.packed)
        item.transmits += 1
        if item.transmits >= limit:
            self._remove(item)
        else:
            item.key += _ONE_TRANSMIT
            kept.append(item.key)

    def _take_large(
        self,
        budget: int,
        limit: int,
        destination: str | None,
        per_item_overhead: int,
        min_size: int,
    ) -> list[bytes]:
        """:meth:`take` of the items of at least ``min_size`` bytes (rare: most
        rounds have none, which the size bound tells without a scan)."""
        if self._max_size < min_size:
            return []
        large = [i for i in self._items.values() if len(i.packed) >= min_size]
        # The scan saw every item: the bound can come down to the truth.
        self._max_size = max((len(i.packed) for i in large), default=min_size - 1)
        large.sort(key=lambda i: (i.transmits, -len(i.packed), -i.serial))
        chosen: list[bytes] = []
        kept: list[int] = []
        left = budget
        for item in large:
            cost = len(item.packed) + per_item_overhead
            if cost > left or (destination is not None and destination in item.exclude):
                continue
            self._send(item, limit, chosen, kept)
            left -= cost
            if left <= per_item_overhead:
                break
        for key in kept:
            heapq.heappush(self._heap, key)
        return chosen
