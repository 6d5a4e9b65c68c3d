"""Reassembly of chunked states: the receiving half of a large state's transfer.

A state that cannot be split into independent parts arrives as
:class:`~crdtgossip.protocol.messages.StateChunk` messages. Until the last one comes
the chunks are kept here, and anything a peer sends could be a lie, so every claim is
bounded before it costs memory:

* nothing is allocated for what a header announces: a transfer holds only the chunks
  that arrived (a claimed 4 GiB transfer costs its first chunk);
* a transfer's announced size is at most ``max_key_bytes`` (else it is refused);
* at most :data:`MAX_TRANSFERS` transfers in all and :data:`MAX_TRANSFERS_PER_SENDER`
  per sender are open, and a sender's open transfers hold at most ``max_key_bytes``,
  all of them together at most :data:`TOTAL_BYTES_FACTOR` times that;
* a transfer not complete :data:`TRANSFER_DEADLINE` seconds after its first chunk is
  dropped;
* a chunk that disagrees with its transfer (another key, count or size), repeats an
  index already held, or would pass the announced size is dropped.

Every refusal is counted in the engine's drop counters (``chunk_*``). A complete
transfer is handed back as the whole encoding, which the engine decodes and merges
like any state: garbage never merges, because it does not decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from crdtgossip.protocol.messages import State, StateChunk

__all__ = [
    "DROP_REASONS",
    "MAX_TRANSFERS",
    "MAX_TRANSFERS_PER_SENDER",
    "TOTAL_BYTES_FACTOR",
    "TRANSFER_DEADLINE",
    "Reassembly",
]

MAX_TRANSFERS: Final = 16
"""Chunked transfers open at once, from all senders: a joining node receives a few
large keys at a time from its seed; more wait (the sender retries at the next
exchange)."""

MAX_TRANSFERS_PER_SENDER: Final = 4
"""Chunked transfers one sender may have open, so one peer cannot take every slot."""

TOTAL_BYTES_FACTOR: Final = 2
"""All open transfers together hold at most this many times ``max_key_bytes``: two
largest keys in flight at once, a bounded multiple of what one key may cost anyway."""

TRANSFER_DEADLINE: Final = 120.0
"""Seconds from a transfer's first chunk to its last: 64 MiB at a modest 1 MB/s
takes about a minute; a transfer still open after twice that is abandoned."""

DROP_REASONS: Final = (
    "chunk_too_large",
    "chunk_mismatch",
    "chunk_duplicate",
    "chunk_overflow",
    "chunk_slots",
    "chunk_bytes",
    "chunk_expired",
)
"""The drop counters of reassembly: a transfer announced past ``max_key_bytes``; a
chunk that disagrees with its transfer; a repeated index; bytes past the announced
size (or a wrong total at the end); no free slot; a sender's or the total byte bound
reached; a transfer past its deadline."""


@dataclass(slots=True)
class _Transfer:
    key: str
    count: int
    total: int
    deadline: float
    chunks: dict[int, bytes] = field(default_factory=dict)
    received: int = 0
    written: int = 0


class Reassembly:
    """The open chunked transfers, by sender and transfer id.

    Args:
        max_key_bytes: ``GossipConfig.max_key_bytes``.
        drops: the engine's drop counters; :data:`DROP_REASONS` are added to it.
    """

    def __init__(self, max_key_bytes: int, drops: dict[str, int]) -> None:
        self._max_key_bytes = max_key_bytes
        self._max_total = TOTAL_BYTES_FACTOR * max_key_bytes
        self._drops = drops
        for reason in DROP_REASONS:
            drops.setdefault(reason, 0)
        self._open: dict[tuple[str, int], _Transfer] = {}
        self._by_sender: dict[str, int] = {}  # bytes held per sender
        self._held = 0  # bytes held in all

    @property
    def held_bytes(self) -> int:
        """Bytes of chunks held in all (for tests and stats)."""
        return self._held

    def __len__(self) -> int:
        return len(self._open)

    def on_chunk(self, sender: str, chunk: StateChunk, now: float) -> State | None:
        """Take one chunk; the key's whole state once the transfer is complete.

        Args:
            sender: the sender's node id.
            chunk: the chunk (already checked by the wire decoder).
            now: the driver's time in seconds.

        Returns:
            The :class:`State` (key, whole encoding, and the largest last-write stamp
            the chunks carried) when this chunk completed its transfer, else None.
        """
        self.expire(now)
        name = (sender, chunk.transfer_id)
        transfer = self._open.get(name)
        if transfer is None:
            transfer = self._open_transfer(name, chunk, now)
            if transfer is None:
                return None
        elif (transfer.key, transfer.count, transfer.total) != (
            chunk.key,
            chunk.count,
            chunk.total,
        ):
            self._drops["chunk_mismatch"] += 1
            return None
        if chunk.index in transfer.chunks:
            self._drops["chunk_duplicate"] += 1
            return None
        size = len(chunk.data)
        if transfer.received + size > transfer.total:
            self._drops["chunk_overflow"] += 1
            self._close(name)
            return None
        if (
            self._by_sender.get(sender, 0) + size > self._max_key_bytes
            or self._held + size > self._max_total
        ):
            self._drops["chunk_bytes"] += 1
            self._close(name)
            return None
        transfer.chunks[chunk.index] = chunk.data
        transfer.received += size
        transfer.written = max(transfer.written, chunk.written)
        self._by_sender[sender] = self._by_sender.get(sender, 0) + size
        self._held += size
        if len(transfer.chunks) < transfer.count:
            return None
        self._close(name)
        if transfer.received != transfer.total:
            self._drops["chunk_overflow"] += 1
            return None
        encoding = b"".join(transfer.chunks[i] for i in range(transfer.count))
        return State(transfer.key, encoding, transfer.written)

    def _open_transfer(
        self, name: tuple[str, int], chunk: StateChunk, now: float
    ) -> _Transfer | None:
        if chunk.total > self._max_key_bytes:
            self._drops["chunk_too_large"] += 1
            return None
        sender = name[0]
        from_sender = sum(1 for other, _ in self._open if other == sender)
        if len(self._open) >= MAX_TRANSFERS or from_sender >= MAX_TRANSFERS_PER_SENDER:
            self._drops["chunk_slots"] += 1
            return None
        transfer = _Transfer(chunk.key, chunk.count, chunk.total, now + TRANSFER_DEADLINE)
        self._open[name] = transfer
        return transfer

    def _close(self, name: tuple[str, int]) -> None:
        transfer = self._open.pop(name)
        sender = name[0]
        left = self._by_sender.get(sender, 0) - transfer.received
        if left > 0:
            self._by_sender[sender] = left
        else:
            self._by_sender.pop(sender, None)
        self._held -= transfer.received

    def expire(self, now: float) -> None:
        """Drop every transfer past its deadline.

        Args:
            now: the driver's time in seconds.
        """
        for name in [n for n, t in self._open.items() if t.deadline <= now]:
            self._drops["chunk_expired"] += 1
            self._close(name)

    def next_deadline(self) -> float | None:
        """The earliest deadline of an open transfer, or None."""
        return min((t.deadline for t in self._open.values()), default=None)
