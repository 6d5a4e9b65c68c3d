"""A hostile stream of state chunks is bounded and never merges garbage."""

from __future__ import annotations

from crdtgossip.codec import encode
from crdtgossip.crdts import GCounter
from crdtgossip.protocol.messages import State, StateChunk, encode_frame, encode_message
from crdtgossip.protocol.reassembly import (
    MAX_TRANSFERS_PER_SENDER,
    TRANSFER_DEADLINE,
    Reassembly,
)

from .cluster import VirtualCluster

LIMIT = 10_000


def _reassembly() -> tuple[Reassembly, dict[str, int]]:
    drops: dict[str, int] = {}
    return Reassembly(LIMIT, drops), drops


def _chunk(index: int, count: int, total: int, data: bytes, transfer: int = 1) -> StateChunk:
    return StateChunk("k", transfer, index, count, total, data)


def test_chunks_in_any_order_give_the_whole_once() -> None:
    reassembly, drops = _reassembly()
    assert reassembly.on_chunk("p", _chunk(2, 3, 6, b"ef"), 0.0) is None
    assert reassembly.on_chunk("p", _chunk(0, 3, 6, b"ab"), 0.0) is None
    assert reassembly.on_chunk("p", _chunk(0, 3, 6, b"ab"), 0.0) is None  # duplicate
    assert reassembly.on_chunk("p", _chunk(1, 3, 6, b"cd"), 0.0) == State("k", b"abcdef")
    assert drops["chunk_duplicate"] == 1
    assert len(reassembly) == 0
    assert reassembly.held_bytes == 0


def test_an_oversized_claim_costs_nothing() -> None:
    reassembly, drops = _reassembly()
    assert reassembly.on_chunk("p", _chunk(0, 2**32, 2**62, b"x"), 0.0) is None
    assert drops["chunk_too_large"] == 1
    assert len(reassembly) == 0
    assert reassembly.held_bytes == 0


def test_bytes_past_the_announced_size_or_a_changed_header_are_refused() -> None:
    reassembly, drops = _reassembly()
    reassembly.on_chunk("p", _chunk(0, 3, 4, b"abc"), 0.0)
    reassembly.on_chunk("p", _chunk(1, 4, 4, b"d"), 0.0)  # another count
    assert drops["chunk_mismatch"] == 1
    reassembly.on_chunk("p", _chunk(1, 3, 4, b"de"), 0.0)  # past the total
    assert drops["chunk_overflow"] == 1
    assert len(reassembly) == 0
    assert reassembly.held_bytes == 0


def test_open_transfers_are_bounded_per_sender_and_expire() -> None:
    reassembly, drops = _reassembly()
    for transfer in range(MAX_TRANSFERS_PER_SENDER + 3):
        reassembly.on_chunk("p", _chunk(0, 2, LIMIT, b"x" * 100, transfer), 0.0)
    assert len(reassembly) == MAX_TRANSFERS_PER_SENDER
    assert drops["chunk_slots"] == 3
    # A sender's open transfers together hold at most max_key_bytes.
    reassembly.on_chunk("q", _chunk(0, 2, LIMIT, b"y" * (LIMIT - 10), 1), 1.0)
    reassembly.on_chunk("q", _chunk(0, 2, LIMIT, b"z" * 20, 2), 1.0)
    assert drops["chunk_bytes"] == 1
    assert reassembly.held_bytes <= 2 * LIMIT
    # Never finished: gone at the deadline, and every byte with them.
    reassembly.expire(1.0 + TRANSFER_DEADLINE)
    assert len(reassembly) == 0
    assert reassembly.held_bytes == 0
    assert drops["chunk_expired"] == MAX_TRANSFERS_PER_SENDER + 1


def test_garbage_chunks_through_an_engine_never_merge() -> None:
    cluster = VirtualCluster(seed=3)
    engine = cluster.add("a")
    counter = GCounter()
    counter.increment("r", 3)
    good = encode(counter)
    garbage = b"\x93\x01" + bytes(40)
    for transfer, payload in ((1, garbage), (2, good[:-1] + b"\xff")):
        chunks = [payload[i : i + 7] for i in range(0, len(payload), 7)]
        messages = [
            encode_message(StateChunk("k", transfer, i, len(chunks), len(payload), chunk))
            for i, chunk in enumerate(chunks)
        ]
        engine.receive(encode_frame("evil", messages), "evil.test:7000", 0.0)
    stats = engine.stats()
    assert stats["chunked_states_in"] == 2
    assert stats["decode_errors"] + stats["merge_errors"] >= 2
    assert engine.get("k") is None
    # A valid state in chunks does merge.
    chunks = [good[i : i + 5] for i in range(0, len(good), 5)]
    messages = [
        encode_message(StateChunk("k", 9, i, len(chunks), len(good), chunk))
        for i, chunk in enumerate(chunks)
    ]
    engine.receive(encode_frame("peer", list(reversed(messages))), "peer.test:7000", 0.0)
    assert engine.get("k") == counter


def test_a_malformed_chunk_header_is_a_decode_error() -> None:
    cluster = VirtualCluster(seed=3)
    engine = cluster.add("a")
    for index, count, total, data in ((3, 3, 9, b"a"), (0, 5, 3, b"a"), (0, 1, 1, b"")):
        message = encode_message(StateChunk("k", 1, index, count, total, data))
        engine.receive(encode_frame("evil", [message]), "evil.test:7000", 0.0)
    assert engine.stats()["drop_malformed"] == 3
    assert engine.stats()["chunks_in"] == 0
