"""Expiry of idle keys, without tombstones: each key's last write, and when it is due.

A key matched by a rule of ``GossipConfig.expire_keys_after`` is dropped on every member
once no write has reached it for the rule's time (as Akka Distributed Data's
``expire-keys-after-inactivity``). Nothing is sent for it and nothing is left behind:
each member decides from the key's *last-write stamp* (Unix nanoseconds of the
physical clock the node's hybrid logical clock reads), which travels with the key's full
state, so the members agree on it. A stamp further ahead than ``max_clock_offset`` is
refused with its state (``drop_clock_ahead``), as LWW stamps are.

How the stamp moves:

* a change that arrives as a write (a local update, a delta delivered or relayed, a
  quorum write, a repair of missing dots) raises it to this node's clock now;
* a full state (anti-entropy, a large key's parts or chunks, a quorum read's replies,
  read repair) carries its sender's stamp, and the receiver keeps the larger of both.
  A state whose stamp is already past its key's expiry is dropped (``drop_expired``):
  that is how a member that has not expired the key yet cannot give it back to one
  that has;
* reads do not count: only writes keep a key alive.

So the members' stamps differ only by how long a write took to reach them, and every
member drops the key within that spread of the others. A state adopted by a member that
had expired the key keeps the sender's stamp, so it expires again at the sender's time,
never later: the cluster settles on the largest stamp and drops the key everywhere.

This module is the bookkeeping alone (:class:`ExpiryRules`, :class:`LastWrites`); the
engine applies it (``_engine_data`` stamps, ``_engine_delete`` drops).
"""

from __future__ import annotations

import heapq
from typing import Final

from crdtgossip.config import ExpiryRule
from crdtgossip.protocol.compaction import shrink

__all__ = ["ExpiryRules", "LastWrites"]

_NS: Final = 1_000_000_000


class ExpiryRules:
    """Which keys expire, and after how long: an exact pattern first, else the longest
    matching prefix (``"cache/*"``; ``"*"`` alone matches every key)."""

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, rules: tuple[ExpiryRule, ...]) -> None:
        self._exact = {p: round(s * _NS) for p, s in rules if not p.endswith("*")}
        prefixes = [(p[:-1], round(s * _NS)) for p, s in rules if p.endswith("*")]
        self._prefixes = sorted(prefixes, key=lambda rule: -len(rule[0]))

    def __bool__(self) -> bool:
        return bool(self._exact or self._prefixes)

    def ttl_ns(self, key: str) -> int | None:
        """How long ``key`` may stay unwritten, in ns; None: it never expires."""
        ttl = self._exact.get(key)
        if ttl is not None:
            return ttl
        for prefix, ttl in self._prefixes:
            if key.startswith(prefix):
                return ttl
        return None


class LastWrites:
    """The last-write stamps of the keys that expire, and a heap of their deadlines.

    The heap is lazy: a key written again keeps its old entry, which is skipped when it
    comes up (it no longer matches the key's deadline); the heap is rebuilt when stale
    entries outnumber live ones, so it stays within about twice the expiring keys.
    """

    __slots__ = ("_deadline", "_heap", "_rules", "active", "stamps")

    def __init__(self, rules: ExpiryRules) -> None:
        self._rules = rules
        #: Whether any key expires: a plain attribute, read on every change.
        self.active = bool(rules)
        #: key -> last-write stamp (ns) of every expiring key held here.
        self.stamps: dict[str, int] = {}
        self._deadline: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self.stamps)

    def ttl_ns(self, key: str) -> int | None:
        """The key's expiry time in ns, or None when it does not expire."""
        return self._rules.ttl_ns(key)

    def raise_to(self, key: str, stamp: int) -> None:
        """Raise ``key``'s stamp to ``stamp`` (kept when it is already later)."""
        old = self.stamps.get(key)
        if old is not None and old >= stamp:
            return
        ttl = self._rules.ttl_ns(key)
        if ttl is None:
            return
        self.stamps[key] = stamp
        self._schedule(key, stamp + ttl)

    def defer(self, key: str, until: int) -> None:
        """Look at ``key`` again at ``until`` (ns): it was due but could not be dropped."""
        if key in self.stamps:
            self._schedule(key, until)

    def _schedule(self, key: str, deadline: int) -> None:
        self._deadline[key] = deadline
        heapq.heappush(self._heap, (deadline, key))
        if len(self._heap) > 2 * len(self._deadline) + 64:
            self._heap = [(d, k) for k, d in self._deadline.items()]
            heapq.heapify(self._heap)

    def admit(self, key: str, stamp: int, now: int) -> int | None:
        """The stamp a full state of ``key`` stamped ``stamp`` (0: none) brings at
        ``now``; None: it is past its key's expiry, drop it.

        An unstamped state (a large key sent in byte chunks, or a sender whose rules
        differ) refreshes nothing: it brings the key's own stamp, or ``now`` for a key
        new here (0 for a key that does not expire).
        """
        ttl = self.ttl_ns(key)
        if ttl is None:
            return stamp
        if not stamp:
            return self.stamps.get(key) or now
        return None if stamp + ttl <= now else stamp

    def forget(self, key: str) -> None:
        """Drop ``key``'s stamp (it was deleted or expired here)."""
        if self.stamps.pop(key, None) is not None:
            del self._deadline[key]

    def compact(self) -> None:
        """Give back the memory of forgotten keys (see :mod:`~.compaction`)."""
        for table in (self.stamps, self._deadline):
            shrink(table)
        self._heap = [(d, k) for k, d in self._deadline.items()]
        heapq.heapify(self._heap)

    def next_deadline(self) -> int | None:
        """The earliest deadline (ns) still scheduled, or None."""
        heap = self._heap
        while heap:
            deadline, key = heap[0]
            if self._deadline.get(key) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def due(self, now: int) -> list[str]:
        """Pop and return the keys whose deadline is at or before ``now``. Their stamps
        stay until :meth:`forget` (or :meth:`defer`, for a key that cannot go yet)."""
        keys: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, key = heapq.heappop(heap)
            if self._deadline.get(key) == deadline:
                keys.append(key)
        return keys
