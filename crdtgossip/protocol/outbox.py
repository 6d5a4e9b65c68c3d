"""Packing outgoing messages into frames: datagrams that fit, streams for the rest.

During one call into the engine, messages for each destination are collected; at the
end they are packed into as few frames as possible. Datagram frames stay within the
budget (``max_datagram`` minus the keyring's :data:`SEAL_OVERHEAD`); a frame that
carries a ping, an ack or a gossip round is then topped up with queued broadcasts
(SWIM's piggybacking), skipping the ones the receiver is known to have. Messages too
large for a datagram, and anti-entropy messages, go in reliable frames up to
``max_reliable_frame``; a single message larger than that cannot be sent and is
counted as dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, TypeVar

from crdtgossip.protocol.broadcast import BroadcastQueue
from crdtgossip.protocol.events import Outgoing
from crdtgossip.protocol.messages import (
    MAX_ARRAY_LEN,
    SEAL_OVERHEAD,
    Message,
    encode_frame,
    encode_message,
    frame_overhead,
)

__all__ = ["Outbox"]

_MAX_MESSAGES_PER_FRAME: Final = MAX_ARRAY_LEN - 1  # the sender id takes one slot

T = TypeVar("T")


@dataclass(slots=True)
class _Batch:
    datagram: list[bytes] = field(default_factory=list)
    reliable: list[bytes] = field(default_factory=list)
    piggyback_to: str | None = None
    piggyback: bool = False


class Outbox:
    """Messages waiting to be framed, by destination address.

    Args:
        sender_id: this node's id, written in every frame.
        max_datagram: ``GossipConfig.max_datagram``.
        max_reliable_frame: ``GossipConfig.max_reliable_frame``.
    """

    def __init__(self, sender_id: str, max_datagram: int, max_reliable_frame: int) -> None:
        self._sender_id = sender_id
        overhead = frame_overhead(sender_id)
        #: Bytes of messages that fit in one datagram frame.
        self.datagram_room = max_datagram - SEAL_OVERHEAD - overhead
        #: Bytes of messages that fit in one reliable frame.
        self.reliable_room = max_reliable_frame - SEAL_OVERHEAD - overhead
        self._batches: dict[str, _Batch] = {}
        #: Messages dropped because they exceed even a reliable frame.
        self.oversize_drops = 0
        self._messages_framed = 0

    def _batch(self, address: str) -> _Batch:
        batch = self._batches.get(address)
        if batch is None:
            batch = self._batches[address] = _Batch()
        return batch

    def send(
        self,
        address: str,
        message: Message | bytes,
        *,
        reliable: bool = False,
        piggyback_to: str | None = None,
    ) -> None:
        """Queue one message for ``address``.

        Args:
            address: the destination.
            message: a message, or one already packed by ``encode_message``.
            reliable: it must go by stream (anti-entropy, full state).
            piggyback_to: the destination's node id, when queued broadcasts may ride
                along in its datagram.
        """
        packed = message if isinstance(message, bytes) else encode_message(message)
        batch = self._batch(address)
        if reliable or len(packed) > self.datagram_room:
            batch.reliable.append(packed)
        else:
            batch.datagram.append(packed)
        if piggyback_to is not None:
            batch.piggyback = True
            batch.piggyback_to = piggyback_to

    def gossip(self, address: str, node_id: str) -> None:
        """Give ``address`` a datagram of queued broadcasts (a gossip round), sharing
        any datagram already bound there.

        Args:
            address: the destination.
            node_id: its node id (for the broadcasts' exclusions).
        """
        batch = self._batch(address)
        batch.piggyback = True
        batch.piggyback_to = node_id

    def flush(self, queue: BroadcastQueue[T], limit: int) -> list[Outgoing]:
        """Pack everything queued into frames and empty the outbox.

        Args:
            queue: the broadcasts to piggyback.
            limit: the current retransmit limit.

        Returns:
            The frames, by destination in the order first used.
        """
        frames: list[Outgoing] = []
        batches, self._batches = self._batches, {}
        for address, batch in batches.items():
            datagrams = self._pack(batch.datagram, self.datagram_room)
            if batch.piggyback:
                if not datagrams:
                    datagrams.append([])
                last = datagrams[-1]
                room = self.datagram_room - sum(len(m) for m in last)
                last.extend(queue.take(room, limit, destination=batch.piggyback_to))
            for messages in datagrams:
                if messages:
                    frames.append(Outgoing(address, self._frame(messages), False))
            for messages in self._pack(batch.reliable, self.reliable_room):
                frames.append(Outgoing(address, self._frame(messages), True))
        return frames

    @property
    def empty(self) -> bool:
        """Whether nothing is waiting for :meth:`flush`."""
        return not self._batches

    def take_message_count(self) -> int:
        """Messages framed since the last call (for the engine's counters)."""
        count, self._messages_framed = self._messages_framed, 0
        return count

    def _frame(self, messages: list[bytes]) -> bytes:
        self._messages_framed += len(messages)
        return encode_frame(self._sender_id, messages)

    def _pack(self, messages: list[bytes], room: int) -> list[list[bytes]]:
        """Split messages, in order, into groups that fit ``room`` bytes each."""
        groups: list[list[bytes]] = []
        current: list[bytes] = []
        used = 0
        for packed in messages:
            if len(packed) > room:
                self.oversize_drops += 1
                continue
            if current and (used + len(packed) > room or len(current) >= _MAX_MESSAGES_PER_FRAME):
                groups.append(current)
                current, used = [], 0
            current.append(packed)
            used += len(packed)
        if current:
            groups.append(current)
        return groups
