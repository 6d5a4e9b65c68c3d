"""Acknowledged delivery of local writes: every delta is pushed to every live member.

This is the delta-interval anti-entropy of Almeida, Shoker and Baquero ("Delta state
replicated data types", 2018, Algorithm 2) on a full membership: a writer numbers its
local deltas in a *stream* and keeps them in one buffer shared by all members; per
member it keeps only two sequence numbers, the highest it has acknowledged and the
highest sent. Each gossip round it sends every live member the deltas past what that
member acknowledged, as :class:`~crdtgossip.protocol.delivery_messages.DeltaInterval`
messages (the deltas of one key joined into one payload, so a burst of writes to a key
costs one delta's bytes), and retransmits what stays unacknowledged: every round for
the first :data:`STEADY_RETRIES` attempts, then with doubling backoff up to
:data:`MAX_BACKOFF_ROUNDS`, until the member acknowledges or is no longer live. An
entry leaves the buffer once every live member has acknowledged it.

Receivers merge an interval and acknowledge it; they do not relay it (the writer
reaches everyone itself), so a delta costs one interval and one ack per member, where
push gossip sends each delta ``retransmit_limit`` times per member.

Memory is bounded: at most :data:`MAX_PENDING_DELTAS` entries and
:data:`MAX_PENDING_BYTES` payload bytes are kept. Past that the oldest entry is
dropped, and each member that had not acknowledged it is left to anti-entropy for it;
those (delta, member) pairs are counted in :attr:`DeliveryLog.abandoned`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from crdtgossip.codec import encode
from crdtgossip.crdts import CRDT
from crdtgossip.errors import MergeError
from crdtgossip.keylife import unwrap, wrap
from crdtgossip.protocol.delivery_messages import DeltaAck, DeltaInterval
from crdtgossip.protocol.messages import encode_message

__all__ = [
    "MAX_BACKOFF_ROUNDS",
    "MAX_JOINED_PER_ENTRY",
    "MAX_PENDING_BYTES",
    "MAX_PENDING_DELTAS",
    "STEADY_RETRIES",
    "DeliveryLog",
]

MAX_PENDING_DELTAS: Final = 4096
"""Most local deltas kept for members that have not acknowledged them: the size of
the gossip queue (:data:`~crdtgossip.protocol.broadcast.MAX_QUEUE_ITEMS`), which
bounds what push gossip kept too. A member that falls further behind is left to
anti-entropy for the rest (counted)."""

MAX_PENDING_BYTES: Final = 8 << 20
"""Most payload bytes kept in the buffer (8 MiB): a few large deltas must not hold
unbounded memory for a member that never answers."""

STEADY_RETRIES: Final = 6
"""Attempts retransmitted every gossip round before backoff starts. An exchange (the
interval, then its ack) fails with probability 0.19 at 10% loss each way, so six
attempts in a row all fail with probability 0.19**6 (5e-5): an update reaches every
member within 6 rounds at that loss, inside the 3 x log2(N) rounds of the issue."""

MAX_BACKOFF_ROUNDS: Final = 32
"""The longest wait between retransmissions, in gossip rounds (6.4 s at the LAN
preset), so a member that is slow or briefly partitioned costs one interval per that
many rounds until the failure detector declares it dead."""

MAX_JOINED_PER_ENTRY: Final = 64
"""Most deltas of one key joined into one payload of an interval: each join re-encodes
the joined delta, so an unbounded join would cost O(burst) per write (the same bound
as the gossip queue's ``MAX_JOINED_DELTAS``)."""

MAX_AHEAD_RANGES: Final = 16
"""Acknowledged ranges kept per member beyond its contiguous watermark (acks that came
in out of order): enough for a retransmission to skip what arrived; older ones are
forgotten and their deltas simply resent."""

_ENTRY_OVERHEAD: Final = 16
"""Bytes an interval entry costs around its key and payload (array and length
headers), for sizing chunks before encoding them."""


@dataclass(slots=True)
class _Entry:
    seq: int
    key: str
    delta: CRDT | None
    payload: bytes


@dataclass(slots=True)
class _Peer:
    acked: int  # every sequence number up to this one is acknowledged
    sent: int  # the highest sequence number sent
    wait: int = 0  # gossip rounds until (acked, sent] is retransmitted
    attempts: int = 0
    ahead: list[tuple[int, int]] = field(default_factory=list)


def _backoff(attempts: int) -> int:
    if attempts < STEADY_RETRIES:
        return 1
    return int(min(MAX_BACKOFF_ROUNDS, 2 ** (attempts - STEADY_RETRIES + 1)))


class DeliveryLog:
    """The local deltas not yet acknowledged by every live member, and who owes what.

    Args:
        stream: this writer's stream id (random per engine, so acks meant for a past
            life of this node are told apart).
        max_entries: :data:`MAX_PENDING_DELTAS`.
        max_bytes: :data:`MAX_PENDING_BYTES`.
    """

    def __init__(
        self,
        stream: int,
        *,
        max_entries: int = MAX_PENDING_DELTAS,
        max_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        self.stream = stream
        self._entries: deque[_Entry] = deque()
        self._bytes = 0
        self._last = 0
        self._peers: dict[str, _Peer] = {}
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        #: (delta, member) pairs left to anti-entropy because the buffer was full.
        self.abandoned = 0
        #: Intervals sent again because they were not acknowledged in time.
        self.retransmits = 0
        #: Acks of another stream (a past life of this node) or of no known member.
        self.stale_acks = 0

    def __len__(self) -> int:
        return len(self._entries)

    def owed(self, node_id: str) -> int:
        """How many buffered deltas ``node_id`` has not acknowledged (0 if unknown)."""
        peer = self._peers.get(node_id)
        return 0 if peer is None else self._last - peer.acked

    def add(self, key: str, delta: CRDT | None, payload: bytes, members: Iterable[str]) -> None:
        """Buffer a local delta for every live member; the log keeps ``delta``.

        Args:
            key: the data key.
            delta: the delta (the log's own object; never changed), or None for a
                delete (a payload with no content, never joined with another).
            payload: ``encode(delta)``.
            members: the node ids of the live members now: those not yet known start
                owing nothing older than this delta.
        """
        for node_id in members:
            if node_id not in self._peers:
                self._peers[node_id] = _Peer(self._last, self._last)
        self._last += 1
        self._entries.append(_Entry(self._last, key, delta, payload))
        self._bytes += len(payload)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            oldest = self._entries.popleft()
            self._bytes -= len(oldest.payload)
            for peer in self._peers.values():
                if peer.acked < oldest.seq:
                    self.abandoned += 1
                    peer.acked = oldest.seq
                    peer.sent = max(peer.sent, oldest.seq)

    def on_ack(self, node_id: str, ack: DeltaAck) -> None:
        """Record an acknowledgement from ``node_id``."""
        peer = self._peers.get(node_id)
        if peer is None or ack.stream != self.stream:
            self.stale_acks += 1
            return
        last = min(ack.last, self._last)
        if ack.first > peer.acked + 1:
            if len(peer.ahead) >= MAX_AHEAD_RANGES:
                peer.ahead.pop(0)
            peer.ahead.append((ack.first, last))
            return
        peer.acked = max(peer.acked, last)
        if peer.ahead:
            peer.ahead.sort()
            keep = []
            for first, end in peer.ahead:
                if first <= peer.acked + 1:
                    peer.acked = max(peer.acked, end)
                elif end > peer.acked:
                    keep.append((first, end))
            peer.ahead = keep
        if peer.acked >= peer.sent:
            peer.attempts = 0
        self._prune()

    def round(self, members: Iterable[tuple[str, str]], room: int) -> list[tuple[str, bytes]]:
        """One gossip round: what to send to whom, fresh deltas and retransmissions.

        Args:
            members: ``(node_id, address)`` of every live member now; members no
                longer in it are forgotten (dead or gone: anti-entropy takes over if
                they come back).
            room: the largest packed message that fits in a frame.

        Returns:
            ``(address, packed DeltaInterval)`` pairs, in member order.
        """
        live = dict(members)
        for node_id in [n for n in self._peers if n not in live]:
            del self._peers[node_id]
        out: list[tuple[str, bytes]] = []
        packed: dict[tuple[int, int], list[bytes]] = {}
        for node_id, address in live.items():
            peer = self._peers.get(node_id)
            if peer is None:
                self._peers[node_id] = _Peer(self._last, self._last)
                continue
            if peer.acked >= self._last:
                continue
            outstanding = peer.acked < peer.sent
            if outstanding:
                peer.wait -= 1
            if outstanding and peer.wait <= 0:
                start = peer.acked  # retransmit everything unacknowledged
                peer.attempts += 1
                peer.wait = _backoff(peer.attempts)
                self.retransmits += 1
            elif peer.sent < self._last:
                start = peer.sent  # only the fresh deltas
                if not outstanding:
                    peer.attempts = 0
                    peer.wait = _backoff(0)
            else:
                continue
            peer.sent = self._last
            span = (start, self._last)
            messages = packed.get(span)
            if messages is None:
                messages = packed[span] = self._pack(start, self._last, room)
            out.extend((address, message) for message in messages)
        self._prune()
        return out

    def _prune(self) -> None:
        floor = min((p.acked for p in self._peers.values()), default=self._last)
        entries = self._entries
        while entries and entries[0].seq <= floor:
            self._bytes -= len(entries.popleft().payload)

    def _pack(self, after: int, last: int, room: int) -> list[bytes]:
        """The intervals carrying the deltas ``after + 1 .. last``, each within ``room``."""
        offset = after + 1 - self._entries[0].seq if self._entries else 0
        chosen = [self._entries[i] for i in range(max(0, offset), len(self._entries))]
        chosen = [e for e in chosen if e.seq <= last]
        groups: list[list[_Entry]] = []
        current: list[_Entry] = []
        used = 0
        for entry in chosen:
            cost = len(entry.payload) + len(entry.key) + _ENTRY_OVERHEAD
            if current and used + cost > room:
                groups.append(current)
                current, used = [], 0
            current.append(entry)
            used += cost
        if current:
            groups.append(current)
        messages: list[bytes] = []
        for group in groups:
            messages.extend(self._encode(group, room))
        return messages

    def _encode(self, group: list[_Entry], room: int) -> list[bytes]:
        """One packed interval of ``group``, or more if the joins came out too large."""
        # Per item: key, delta (the log's own while count is 1, else a joined copy),
        # payload (while count is 1), count of deltas joined.
        # The payload kept is the newest joined delta's: its life record (this
        # replica's newest write of the key) is the joined delta's.
        items: list[tuple[str, CRDT | None, bytes, int]] = []
        open_item: dict[str, int] = {}
        for entry in group:
            index = open_item.get(entry.key)
            if index is not None and entry.delta is not None:
                name, joined, _, count = items[index]
                if (
                    count < MAX_JOINED_PER_ENTRY
                    and joined is not None
                    and type(joined) is type(entry.delta)
                ):
                    merged = joined if count > 1 else joined.copy()
                    try:
                        merged.merge(entry.delta)
                    except (MergeError, TypeError, ValueError):
                        pass  # nested types disagree: the delta goes apart
                    else:
                        items[index] = (name, merged, entry.payload, count + 1)
                        continue
            open_item[entry.key] = len(items)
            items.append((entry.key, entry.delta, entry.payload, 1))
        entries = tuple(
            (name, payload if count == 1 or joined is None else _joined_payload(payload, joined))
            for name, joined, payload, count in items
        )
        message = encode_message(DeltaInterval(self.stream, group[0].seq, group[-1].seq, entries))
        if len(message) <= room or len(group) == 1:
            return [message]
        half = len(group) // 2
        return self._encode(group[:half], room) + self._encode(group[half:], room)


def _joined_payload(newest: bytes, joined: CRDT) -> bytes:
    """The payload of deltas joined into ``joined``, with the life record of the
    newest one's payload (see :mod:`~crdtgossip.keylife`)."""
    record, _ = unwrap(newest)
    content = encode(joined)
    return content if record is None else wrap(record, content)
