"""Quorum writes and reads on the engine, over the virtual network of :mod:`.cluster`."""

from __future__ import annotations

import random

import pytest

from crdtgossip.codec import encode
from crdtgossip.config import GossipConfig
from crdtgossip.crdts import GCounter
from crdtgossip.errors import DecodeError
from crdtgossip.protocol import Engine, Status
from crdtgossip.protocol.messages import (
    ReadReply,
    ReadRequest,
    WriteAck,
    WriteRequest,
    decode_frame,
    encode_frame,
    encode_message,
)
from crdtgossip.protocol.quorum import (
    FIRST_ROUND_SPARE,
    HEDGE_FRACTION,
    MAX_HELD_ACKS,
    QuorumResult,
    QuorumTracker,
)

from .cluster import VirtualCluster

TIMEOUT = 1.0


def _ready(seed: int, count: int = 3) -> tuple[VirtualCluster, list[str]]:
    cluster = VirtualCluster(seed)
    names = cluster.start(count)
    assert cluster.run_until(lambda: cluster.sees_all(names), 30.0)
    return cluster, names


def _increment(cluster: VirtualCluster, name: str, key: str) -> GCounter:
    engine = cluster.engines[name]
    state = engine.get(key)
    counter = state if isinstance(state, GCounter) else GCounter()
    delta = counter.increment(engine.replica_id)
    engine.update(key, delta, cluster.now)
    cluster._collect(name)
    return delta


def _wait_result(cluster: VirtualCluster, name: str, seconds: float) -> QuorumResult:
    found: list[QuorumResult] = []

    def done() -> bool:
        found.extend(cluster.engines[name].take_quorum_results())
        return bool(found)

    assert cluster.run_until(done, seconds), "no quorum result"
    assert len(found) == 1
    return found[0]


def _value(engine: Engine, key: str) -> int | None:
    state = engine.get(key)
    return None if state is None else state.value


def test_majority_write_is_acknowledged_by_a_member_that_merged_it() -> None:
    cluster, names = _ready(1)
    a = cluster.engines[names[0]]
    delta = _increment(cluster, names[0], "k")
    request = a.start_write("k", delta, 2, TIMEOUT, cluster.now)
    cluster._collect(names[0])
    result = _wait_result(cluster, names[0], TIMEOUT)
    assert result == QuorumResult(request, True, 2, 2)
    assert sum(_value(cluster.engines[n], "k") == 1 for n in names[1:]) >= 1
    assert a.stats()["quorum_writes"] == 1
    assert a.stats()["quorum_failures"] == 0


def test_write_to_all_reaches_every_member_before_success() -> None:
    cluster, names = _ready(2, count=5)
    delta = _increment(cluster, names[0], "k")
    cluster.engines[names[0]].start_write("k", delta, 5, TIMEOUT, cluster.now)
    cluster._collect(names[0])
    found: list[QuorumResult] = []

    def done() -> bool:
        found.extend(cluster.engines[names[0]].take_quorum_results())
        return bool(found)

    assert cluster.run_until(done, TIMEOUT)
    # At the moment of success every member has merged it (not only by gossip later).
    assert found[0].ok
    assert found[0].answered == 5
    assert all(_value(cluster.engines[n], "k") == 1 for n in names)


def test_write_fails_at_its_deadline_with_answered_and_needed_and_stays_local() -> None:
    cluster, names = _ready(3)
    for name in names[1:]:
        cluster.stop(name)
    start = cluster.now
    delta = _increment(cluster, names[0], "k")
    request = cluster.engines[names[0]].start_write("k", delta, 2, TIMEOUT, cluster.now)
    cluster._collect(names[0])
    result = _wait_result(cluster, names[0], 2 * TIMEOUT)
    assert result == QuorumResult(request, False, 1, 2)
    assert start + TIMEOUT <= cluster.now <= start + TIMEOUT * 1.01  # virtual time: exact
    assert _value(cluster.engines[names[0]], "k") == 1
    assert cluster.engines[names[0]].stats()["quorum_failures"] == 1


def test_needing_only_this_member_succeeds_at_once_without_messages() -> None:
    cluster, names = _ready(4)
    a = cluster.engines[names[0]]
    delta = _increment(cluster, names[0], "k")
    cluster._collect(names[0])
    before = a.stats()["messages_out"]
    request = a.start_write("k", delta, 1, TIMEOUT, cluster.now)
    assert a.take_quorum_results() == [QuorumResult(request, True, 1, 1)]
    read = a.start_read("k", 1, TIMEOUT, cluster.now)
    assert a.take_quorum_results() == [QuorumResult(read, True, 1, 1)]
    assert a.stats()["messages_out"] == before


def test_read_joins_replies_and_repairs_members_behind() -> None:
    cluster, names = _ready(5)
    # Give the state to one member without gossip, as a restored node holds it.
    counter = GCounter()
    counter.increment("elsewhere", 7)
    cluster.engines[names[1]].restore("k", counter)
    reader = cluster.engines[names[0]]
    request = reader.start_read("k", 3, TIMEOUT, cluster.now)
    cluster._collect(names[0])
    result = _wait_result(cluster, names[0], TIMEOUT)
    assert result == QuorumResult(request, True, 3, 3)
    assert _value(reader, "k") == 7
    assert reader.stats()["read_repairs"] == 1  # the member that had nothing
    assert cluster.run_until(lambda: _value(cluster.engines[names[2]], "k") == 7, TIMEOUT)


def _first_targets(
    cluster: VirtualCluster,
    source: str,
    since: float,
    kind: type[ReadRequest | WriteRequest] = ReadRequest,
) -> set[str]:
    """The members ``source`` sent a request of ``kind`` at the moment ``since``."""
    targets = set()
    for sent in cluster.sent:
        if sent.source != source or sent.time != since:
            continue
        messages = decode_frame(sent.data, 1 << 20).messages
        if any(isinstance(message, kind) for message in messages):
            targets.add(sent.destination.partition(".")[0])
    return targets


def test_slow_targets_make_the_read_ask_other_members() -> None:
    both_stopped_first = 0
    # Two of four peers are stopped; the read asks two first (one answer missing plus
    # the spare), both stopped one time in six: 32 seeds all miss that with
    # probability (5/6)^32, under 0.3%, whatever the engines' random streams.
    for seed in range(32):
        cluster, names = _ready(10 + seed, count=5)
        for name in names[3:]:
            cluster.stop(name)  # still alive to the others when the read starts
        reader = cluster.engines[names[0]]
        start = cluster.now
        request = reader.start_read("k", 2, TIMEOUT, cluster.now)
        cluster._collect(names[0])
        first = _first_targets(cluster, names[0], start)
        assert len(first) == 1 + FIRST_ROUND_SPARE, seed
        both_stopped_first += first == set(names[3:])
        result = _wait_result(cluster, names[0], TIMEOUT * 2)
        # When both members asked first are stopped, the read succeeds only because
        # the others are asked after HEDGE_FRACTION of the timeout.
        assert result == QuorumResult(request, True, 2, 2), seed
        assert cluster.now < start + TIMEOUT * (HEDGE_FRACTION + 0.1)
    assert both_stopped_first >= 1  # the hedge was needed at least once


def test_a_write_asks_as_many_as_it_needs_plus_a_spare_then_hedges() -> None:
    hedged = 0
    for seed in range(8):
        cluster, names = _ready(30 + seed, count=5)
        for name in names[3:]:
            cluster.stop(name)  # both still alive to the others when the write starts
        start = cluster.now
        delta = _increment(cluster, names[0], "k")
        request = cluster.engines[names[0]].start_write("k", delta, 3, TIMEOUT, cluster.now)
        cluster._collect(names[0])
        first = _first_targets(cluster, names[0], start, WriteRequest)
        # Two acks are missing: two members and the spare are asked first, of four.
        assert len(first) == 2 + FIRST_ROUND_SPARE, seed
        hedged += set(names[3:]) <= first
        result = _wait_result(cluster, names[0], TIMEOUT * 2)
        # With both stopped members asked first, the hedge finds the third ack.
        assert result == QuorumResult(request, True, 3, 3), seed
        assert cluster.now < start + TIMEOUT * (HEDGE_FRACTION + 0.1)
        assert _value(cluster.engines[names[1]], "k") == _value(cluster.engines[names[2]], "k") == 1
    assert hedged >= 1  # the hedge was needed at least once


def test_the_first_requests_go_to_alive_members_before_suspect_ones() -> None:
    for seed in range(8):
        cluster, names = _ready(50 + seed, count=5)
        writer = cluster.engines[names[0]]
        for name in names[3:]:
            assert writer._membership.suspect(name, cluster.now)
        assert {m.node_id for m in writer.members() if m.status is Status.SUSPECT} == set(names[3:])
        start = cluster.now
        delta = _increment(cluster, names[0], "k")
        writer.start_write("k", delta, 2, TIMEOUT, cluster.now)
        writer.start_read("k", 3, TIMEOUT, cluster.now)
        cluster._collect(names[0])
        # One ack missing plus the spare: the two alive members, no suspect.
        assert _first_targets(cluster, names[0], start, WriteRequest) == set(names[1:3]), seed
        # Two answers missing plus the spare, two alive members: one suspect too.
        read_targets = _first_targets(cluster, names[0], start, ReadRequest)
        assert len(read_targets) == 3, seed
        assert set(names[1:3]) <= read_targets, seed


def test_held_acks_wait_for_release() -> None:
    config = GossipConfig.local()
    b = Engine("b", "b:1", config, random.Random(2), "b-1", hold_write_acks=True)
    payload = encode(GCounter().increment("a-1"))
    frame = encode_frame("a", [encode_message(WriteRequest(5, "k", payload))])
    b.receive(frame, "a:1", 0.0)
    assert _value(b, "k") == 1  # merged at once
    assert b.held_acks == 1
    sent = [m for f in b.take_outgoing() for m in decode_frame(f.data, 1 << 20).messages]
    assert not any(isinstance(m, WriteAck) for m in sent)
    mark = b.ack_mark()
    b.receive(encode_frame("a", [encode_message(WriteRequest(6, "k", payload))]), "a:1", 0.1)
    b.release_acks(mark, 0.2)
    released = [m for f in b.take_outgoing() for m in decode_frame(f.data, 1 << 20).messages]
    assert [m for m in released if isinstance(m, WriteAck)] == [WriteAck(5)]
    assert b.held_acks == 1  # the later one waits for the next mark


def test_unknown_and_unasked_answers_are_counted_late_and_ignored() -> None:
    cluster, names = _ready(6)
    a = cluster.engines[names[0]]
    delta = _increment(cluster, names[0], "k")
    request = a.start_write("k", delta, 3, TIMEOUT, cluster.now)
    # An ack for another id, and an ack from a stranger, count nothing.
    a.receive(encode_frame(names[1], [encode_message(WriteAck(request + 1))]), "x:1", cluster.now)
    a.receive(encode_frame("stranger", [encode_message(WriteAck(request))]), "x:1", cluster.now)
    assert a.take_quorum_results() == []
    assert a.stats()["quorum_late_answers"] == 2


def test_restore_neither_gossips_nor_emits_events() -> None:
    engine = Engine("a", "a:1", GossipConfig.local(), random.Random(1), "a-1")
    counter = GCounter()
    counter.increment("old", 3)
    engine.restore("k", counter)
    assert _value(engine, "k") == 3
    assert engine.take_events() == []
    engine.tick(0.0)
    engine.tick(10.0)
    assert engine.take_outgoing() == []  # no member, and nothing queued either
    assert engine.stats()["queue_length"] == 0
    assert engine.stats()["keys_restored"] == 1


def test_quorum_runs_replay_byte_for_byte() -> None:
    def run() -> list[bytes]:
        cluster, names = _ready(7)
        delta = _increment(cluster, names[0], "k")
        cluster.engines[names[0]].start_write("k", delta, 3, TIMEOUT, cluster.now)
        cluster.engines[names[1]].start_read("k", 3, TIMEOUT, cluster.now)
        cluster._collect(names[0])
        cluster._collect(names[1])
        cluster.run(2.0)
        return [sent.data for sent in cluster.sent]

    assert run() == run()


@pytest.mark.parametrize(
    "message",
    [
        WriteRequest(0, "k", b"\x01"),
        WriteAck((1 << 64) - 1),
        ReadRequest(3, "key"),
        ReadReply(4, "key", b""),
        ReadReply(4, "key", b"payload"),
    ],
)
def test_quorum_messages_round_trip(message: object) -> None:
    frame = encode_frame("a", [encode_message(message)])  # type: ignore[arg-type]
    assert decode_frame(frame, 1 << 20).messages == (message,)


@pytest.mark.parametrize(
    "fields",
    [
        [13, -1, "k", b""],  # negative id
        [13, 1, "", b""],  # empty key
        [14],  # no id
        [15, 1, "k", "extra"],
        [16, 1, "k", "not bytes"],
    ],
)
def test_malformed_quorum_messages_raise_decode_error(fields: list[object]) -> None:
    import msgpack

    frame = bytes((1,)) + msgpack.packb(["a", fields], use_bin_type=True)
    with pytest.raises(DecodeError):
        decode_frame(frame, 1 << 20)


def test_tracker_bounds_held_acks() -> None:
    tracker = QuorumTracker("a", random.Random(0))
    for index in range(MAX_HELD_ACKS + 3):
        tracker.hold("b:1", index)
    assert tracker.held == MAX_HELD_ACKS
    assert tracker.held_dropped == 3
    released = tracker.release(tracker.mark)
    assert released[0] == ("b:1", 3)
    assert tracker.held == 0


def test_stopped_members_are_still_counted_until_declared_dead() -> None:
    cluster, names = _ready(8)
    assert cluster.engines[names[0]].quorum_members() == 3
    cluster.stop(names[2])
    assert cluster.run_until(lambda: cluster.status(names[0], names[2]) is Status.DEAD, 60.0)
    assert cluster.engines[names[0]].quorum_members() == 2
