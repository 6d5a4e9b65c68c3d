"""Acknowledged delivery: who is owed which deltas, what each round sends, acks, caps."""

from __future__ import annotations

import itertools
import random

import pytest

from crdtgossip.codec import decode, encode
from crdtgossip.config import GossipConfig
from crdtgossip.crdts import GCounter, ORSet
from crdtgossip.errors import DecodeError
from crdtgossip.protocol import Engine
from crdtgossip.protocol._engine_data import MAX_ACK_RANGES
from crdtgossip.protocol.delivery import (
    MAX_BACKOFF_ROUNDS,
    MAX_JOINED_PER_ENTRY,
    STEADY_RETRIES,
    DeliveryLog,
)
from crdtgossip.protocol.messages import (
    DeltaAck,
    DeltaInterval,
    decode_frame,
    encode_frame,
    encode_message,
)

ROOM = 60_000
MEMBERS = [("b", "b:1"), ("c", "c:1")]


def _log(**limits: int) -> DeliveryLog:
    return DeliveryLog(77, **limits)


def _add(log: DeliveryLog, key: str, amount: int, replica: str = "a") -> GCounter:
    delta = GCounter().increment(replica, amount)
    log.add(key, delta, encode(delta), [node for node, _ in MEMBERS])
    return delta


def _decoded(sent: list[tuple[str, bytes]]) -> list[tuple[str, DeltaInterval]]:
    out = []
    for address, packed in sent:
        (message,) = decode_frame(encode_frame("a", [packed]), 1 << 20).messages
        assert isinstance(message, DeltaInterval)
        out.append((address, message))
    return out


def test_every_live_member_gets_every_delta_until_it_acks() -> None:
    log = _log()
    _add(log, "x", 1)
    _add(log, "y", 2)
    sent = _decoded(log.round(MEMBERS, ROOM))
    assert [address for address, _ in sent] == ["b:1", "c:1"]
    for _, interval in sent:
        assert (interval.stream, interval.first, interval.last) == (77, 1, 2)
        assert [key for key, _ in interval.entries] == ["x", "y"]
    log.on_ack("b", DeltaAck(77, 1, 2))
    assert log.owed("b") == 0
    assert log.owed("c") == 2
    assert len(log) == 2  # c still owes them
    # c is sent them again next round; b nothing
    again = _decoded(log.round(MEMBERS, ROOM))
    assert [(a, m.first, m.last) for a, m in again] == [("c:1", 1, 2)]
    assert log.retransmits == 1
    log.on_ack("c", DeltaAck(77, 1, 2))
    assert len(log) == 0  # everyone has them: forgotten
    assert log.round(MEMBERS, ROOM) == []


def test_after_the_acks_a_round_sends_only_the_new_deltas() -> None:
    log = _log()
    _add(log, "x", 1)
    log.round(MEMBERS, ROOM)
    log.on_ack("b", DeltaAck(77, 1, 1))
    log.on_ack("c", DeltaAck(77, 1, 1))
    _add(log, "x", 2)
    (first, _) = _decoded(log.round(MEMBERS, ROOM))
    assert (first[1].first, first[1].last) == (2, 2)
    assert decode(first[1].entries[0][1]) == GCounter().increment("a", 2)


def test_unacknowledged_deltas_are_resent_every_round_then_with_doubling_backoff() -> None:
    log = _log()
    _add(log, "x", 1)
    rounds_sent = []
    for round_number in range(200):
        if any(address == "b:1" for address, _ in log.round([("b", "b:1")], ROOM)):
            rounds_sent.append(round_number)
    gaps = [later - earlier for earlier, later in itertools.pairwise(rounds_sent)]
    assert gaps[:STEADY_RETRIES] == [1] * STEADY_RETRIES
    assert gaps[STEADY_RETRIES : STEADY_RETRIES + 4] == [2, 4, 8, 16]
    assert max(gaps) == MAX_BACKOFF_ROUNDS
    assert set(gaps[STEADY_RETRIES + 5 :]) == {MAX_BACKOFF_ROUNDS}


def test_a_member_no_longer_live_is_forgotten_and_a_new_one_owes_nothing_older() -> None:
    log = _log()
    _add(log, "x", 1)
    log.round(MEMBERS, ROOM)
    log.on_ack("b", DeltaAck(77, 1, 1))
    # c died: nothing is kept for it
    assert log.round([("b", "b:1")], ROOM) == []
    assert len(log) == 0
    # d joined later: it is owed the deltas written since, not those before
    delta = GCounter().increment("a", 5)
    log.add("x", delta, encode(delta), ["b", "d"])
    sent = _decoded(log.round([("b", "b:1"), ("d", "d:1")], ROOM))
    assert [(a, m.first, m.last) for a, m in sent] == [("b:1", 2, 2), ("d:1", 2, 2)]


def test_acks_of_another_stream_or_member_count_as_stale_and_change_nothing() -> None:
    log = _log()
    _add(log, "x", 1)
    log.round(MEMBERS, ROOM)
    log.on_ack("b", DeltaAck(78, 1, 1))  # a past life of this node
    log.on_ack("zz", DeltaAck(77, 1, 1))  # no such member
    assert log.stale_acks == 2
    assert log.owed("b") == 1
    log.on_ack("b", DeltaAck(77, 1, 999))  # past what was ever written
    assert log.owed("b") == 0
    _add(log, "x", 1)
    assert log.owed("b") == 1  # the bogus range did not acknowledge the future


def test_acks_out_of_order_are_kept_and_joined_when_the_gap_fills() -> None:
    log = _log()
    for amount in range(1, 4):
        _add(log, "k", amount)
        log.round([("b", "b:1")], ROOM)
    log.on_ack("b", DeltaAck(77, 3, 3))
    log.on_ack("b", DeltaAck(77, 2, 2))
    assert log.owed("b") == 3
    log.on_ack("b", DeltaAck(77, 1, 1))
    assert log.owed("b") == 0


def test_one_keys_deltas_are_joined_in_an_interval_in_bounded_payloads() -> None:
    log = _log()
    state: ORSet[int] = ORSet()
    writes = MAX_JOINED_PER_ENTRY + 3
    for i in range(writes):
        delta = state.add(i, "a")
        log.add("s", delta, encode(delta), ["b"])
    ((_, interval),) = _decoded(log.round([("b", "b:1")], ROOM))
    sizes = [len(decode(payload).value) for _, payload in interval.entries]
    assert sizes == [MAX_JOINED_PER_ENTRY, 3]
    joined = ORSet[int]()
    for _, payload in interval.entries:
        joined.merge(decode(payload))
    assert joined == state


def test_an_interval_too_large_for_the_room_is_split_into_contiguous_ones() -> None:
    log = _log()
    for i in range(40):
        _add(log, f"key-{i:03d}", i + 1)
    room = 300
    sent = _decoded(log.round([("b", "b:1")], room))
    assert len(sent) > 1
    assert all(len(encode_message(m)) <= room for _, m in sent)
    ranges = [(m.first, m.last) for _, m in sent]
    assert ranges[0][0] == 1
    assert ranges[-1][1] == 40
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))


def test_past_the_cap_the_oldest_deltas_are_left_to_anti_entropy_and_counted() -> None:
    log = _log(max_entries=3)
    for amount in range(1, 6):
        _add(log, "k", amount)
    assert len(log) == 3
    assert log.abandoned == 2 * len(MEMBERS)  # two deltas, for each of two members
    (first, _) = _decoded(log.round(MEMBERS, ROOM))
    assert (first[1].first, first[1].last) == (3, 5)
    byte_capped = _log(max_bytes=20)
    for amount in range(1, 6):
        _add(byte_capped, "k", amount)
    assert len(byte_capped) < 5
    assert byte_capped.abandoned > 0


@pytest.mark.parametrize(
    "fields",
    [
        [19, 1, 2, 1, [["k", b"x"]]],  # first above last
        [19, 1, 0, 0, [["k", b"x"]]],  # sequence numbers start at 1
        [19, 1, 1, 1, []],  # an interval carries something
        [19, 1, 1, 1, [["k"]]],  # an entry is a key and a payload
        [19, 1, 1, 1, [["", b"x"]]],  # an empty key
        [19, 1, 1, 1, [["k", "text"]]],  # the payload is bytes
        [19, -1, 1, 1, [["k", b"x"]]],  # the stream is unsigned
        [19, 1, 1, 1, {"k": b"x"}],  # no maps
        [20, 1, 3, 2],  # ack: first above last
        [20, 1, True, 2],  # a bool is not a sequence number
        [20, 1, 1],  # ack: missing field
    ],
)
def test_malformed_delivery_messages_are_refused(fields: list[object]) -> None:
    import msgpack

    frame = encode_frame("a", [msgpack.packb(fields, use_bin_type=True)])
    with pytest.raises(DecodeError):
        decode_frame(frame, 1 << 20)


def test_delivery_messages_survive_a_round_trip() -> None:
    messages = [
        DeltaInterval(2**64 - 1, 1, 2**64 - 1, (("k\u00e9y", b""), ("x", b"\x01"))),
        DeltaAck(0, 5, 5),
    ]
    frame = encode_frame("a", [encode_message(m) for m in messages])
    assert decode_frame(frame, 1 << 20).messages == tuple(messages)


def _engine() -> Engine:
    return Engine("me", "me:1", GossipConfig.local(), random.Random(3), "me-1")


def _acks(engine: Engine) -> list[DeltaAck]:
    return [
        m
        for frame in engine.take_outgoing()
        for m in decode_frame(frame.data, 1 << 22).messages
        if isinstance(m, DeltaAck)
    ]


def test_an_engine_merges_an_interval_once_and_acknowledges_every_copy() -> None:
    engine = _engine()
    delta = GCounter().increment("w-1", 4)
    interval = DeltaInterval(9, 1, 3, (("hits", encode(delta)),))
    frame = encode_frame("w", [encode_message(interval)])
    engine.receive(frame, "w:1", 0.0)
    engine.receive(frame, "w:1", 0.1)  # retransmitted: its ack was lost
    assert engine.get("hits") == delta
    assert engine.stats()["deltas_merged"] == 1
    assert engine.stats()["duplicate_deltas"] == 1
    assert _acks(engine) == [DeltaAck(9, 1, 3), DeltaAck(9, 1, 3)]


def test_contiguous_intervals_in_one_frame_get_one_ack() -> None:
    engine = _engine()
    packed = [
        encode_message(DeltaInterval(9, 1, 2, (("a", encode(GCounter().increment("w", 1))),))),
        encode_message(DeltaInterval(9, 3, 5, (("b", encode(GCounter().increment("w", 2))),))),
        encode_message(DeltaInterval(9, 8, 8, (("c", encode(GCounter().increment("w", 3))),))),
    ]
    engine.receive(encode_frame("w", packed), "w:1", 0.0)
    assert _acks(engine) == [DeltaAck(9, 1, 5), DeltaAck(9, 8, 8)]


def test_a_frame_of_many_intervals_gets_a_bounded_number_of_acks() -> None:
    engine = _engine()
    payload = encode(GCounter().increment("w", 1))
    count = MAX_ACK_RANGES + 44
    packed = [
        encode_message(DeltaInterval(stream, 1, 1, ((f"k{stream}", payload),)))
        for stream in range(count)
    ]
    engine.receive(encode_frame("w", packed), "w:1", 0.0)
    assert len(_acks(engine)) == MAX_ACK_RANGES
    assert engine.stats()["drop_ack_limit"] == 44
    assert len(engine.keys()) == count  # every one merged all the same
