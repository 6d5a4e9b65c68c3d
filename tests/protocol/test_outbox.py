"""Framing: datagrams within budget, piggybacking, reliable overflow."""

from __future__ import annotations

from crdtgossip.protocol.broadcast import BroadcastQueue
from crdtgossip.protocol.messages import (
    SEAL_OVERHEAD,
    Ack,
    Delta,
    Ping,
    decode_frame,
    encode_message,
)
from crdtgossip.protocol.outbox import Outbox

MAX_DATAGRAM = 1400


def _outbox() -> Outbox:
    return Outbox("me", MAX_DATAGRAM, 1 << 20)


def test_messages_to_one_address_share_a_datagram() -> None:
    outbox = _outbox()
    outbox.send("a:1", Ack(1))
    outbox.send("a:1", Ack(2))
    outbox.send("b:1", Ack(3))
    frames = outbox.flush(BroadcastQueue(), limit=3)
    assert [(f.address, f.reliable) for f in frames] == [("a:1", False), ("b:1", False)]
    assert decode_frame(frames[0].data, MAX_DATAGRAM).messages == (Ack(1), Ack(2))
    assert outbox.take_message_count() == 3
    assert outbox.flush(BroadcastQueue(), limit=3) == []


def test_piggybacked_broadcasts_fill_the_datagram_up_to_the_budget() -> None:
    queue: BroadcastQueue[None] = BroadcastQueue()
    for i in range(100):
        queue.put(("key", f"k{i}"), encode_message(Delta(f"k{i}", b"x" * 40)))
    outbox = _outbox()
    outbox.send("a:1", Ping(1, "a"), piggyback_to="a")
    frames = outbox.flush(queue, limit=3)
    assert len(frames) == 1
    assert not frames[0].reliable
    assert MAX_DATAGRAM - SEAL_OVERHEAD - 60 < len(frames[0].data) <= MAX_DATAGRAM - SEAL_OVERHEAD
    messages = decode_frame(frames[0].data, MAX_DATAGRAM).messages
    assert messages[0] == Ping(1, "a")
    assert len(messages) > 10


def test_overflow_spills_into_more_datagrams_and_large_messages_go_reliable() -> None:
    outbox = _outbox()
    for i in range(60):
        outbox.send("a:1", Delta(f"k{i}", b"y" * 40))
    outbox.send("a:1", Delta("big", b"z" * 5000))
    outbox.send("a:1", Delta("huge", b"z" * (2 << 20)))
    frames = outbox.flush(BroadcastQueue(), limit=3)
    datagrams = [f for f in frames if not f.reliable]
    reliable = [f for f in frames if f.reliable]
    assert len(datagrams) >= 2
    assert all(len(f.data) <= MAX_DATAGRAM - SEAL_OVERHEAD for f in datagrams)
    assert sum(len(decode_frame(f.data, MAX_DATAGRAM).messages) for f in datagrams) == 60
    assert len(reliable) == 1
    assert decode_frame(reliable[0].data, 1 << 20).messages == (Delta("big", b"z" * 5000),)
    assert outbox.oversize_drops == 1


def test_a_gossip_round_with_nothing_queued_sends_nothing() -> None:
    outbox = _outbox()
    outbox.gossip("a:1", "a")
    assert outbox.flush(BroadcastQueue(), limit=3) == []
