"""The engine's write path that costs the change: live states, held keys, the queue."""

from __future__ import annotations

import random

from crdtgossip.codec import decode
from crdtgossip.config import GossipConfig
from crdtgossip.crdts import GCounter, ORSet
from crdtgossip.keylife import unwrap
from crdtgossip.protocol import Engine, KeyChanged
from crdtgossip.protocol.delivery import MAX_JOINED_PER_ENTRY
from crdtgossip.protocol.messages import DeltaInterval, ReadReply, ReadRequest, decode_frame
from crdtgossip.protocol.outbox import Outbox
from tests.protocol.cluster import VirtualCluster

CONFIG = GossipConfig.local()


def _engine(name: str = "a") -> Engine:
    return Engine(name, f"{name}:1", CONFIG, random.Random(0), f"{name}-1")


def _key_events(engine: Engine) -> list[KeyChanged]:
    return [e for e in engine.take_events() if isinstance(e, KeyChanged)]


def test_commit_local_keeps_a_new_state_and_mutates_nothing_again() -> None:
    engine = _engine()
    state: ORSet[str] = ORSet()
    delta = state.add("x", "a-1")
    engine.commit_local("k", state, delta, 0.0)
    assert engine.get("k") is state  # adopted, not copied
    more = state.add("y", "a-1")  # the driver mutates the live state ...
    engine.commit_local("k", state, more, 0.0)  # ... and hands over the delta
    assert engine.get("k") is state
    assert state.value == frozenset({"x", "y"})
    events = _key_events(engine)
    assert [(e.key, e.local) for e in events] == [("k", True), ("k", True)]
    assert events[1].change is more
    assert decode(unwrap(events[1].payload)[1]) == more
    assert engine.stats()["local_updates"] == 2


def test_commit_local_joins_into_a_state_that_appeared_meanwhile() -> None:
    engine = _engine()
    fresh: GCounter = GCounter()
    delta = fresh.increment("a-1", 2)
    engine.restore("k", GCounter().increment("b-1", 5))  # arrived while persisting
    engine.commit_local("k", fresh, delta, 0.0)
    held = engine.get("k")
    assert isinstance(held, GCounter)
    assert held.value == 7


def _read_request(engine: Engine, key: str, request_id: int) -> None:
    outbox = Outbox("b", CONFIG.max_datagram, CONFIG.max_reliable_frame)
    outbox.send("a:1", ReadRequest(request_id, key))
    for frame in outbox.flush(None, 1):
        engine.receive(frame.data, "b:1", 0.0)


def _replies(engine: Engine) -> list[ReadReply]:
    replies = []
    for frame in engine.take_outgoing():
        replies += [
            m
            for m in decode_frame(frame.data, CONFIG.max_reliable_frame).messages
            if isinstance(m, ReadReply)
        ]
    return replies


def test_a_held_key_answers_read_requests_only_once_committed() -> None:
    engine = _engine()
    state: GCounter = GCounter()
    engine.commit_local("k", state, state.increment("a-1"), 0.0)
    engine.begin_local("k")
    assert engine.is_held("k")
    delta = state.increment("a-1")  # in memory, not on disk yet
    _read_request(engine, "k", 7)
    assert _replies(engine) == []  # nothing of the unpersisted write leaves
    engine.commit_local("k", state, delta, 0.0)
    assert not engine.is_held("k")
    (reply,) = _replies(engine)
    assert reply.request_id == 7
    assert decode(unwrap(reply.payload)[1]) == GCounter().increment("a-1", 2)


def test_abort_local_puts_back_the_stored_state_and_answers_waiting_reads() -> None:
    engine = _engine()
    state: GCounter = GCounter()
    engine.commit_local("k", state, state.increment("a-1"), 0.0)
    engine.take_events()
    engine.begin_local("k")
    state.increment("a-1", 10)  # the write that fails to persist
    _read_request(engine, "k", 3)
    stored = GCounter().increment("a-1")
    engine.abort_local("k", stored, 0.0)
    assert engine.get("k") is stored
    (reply,) = _replies(engine)
    assert decode(unwrap(reply.payload)[1]) == stored
    (event,) = _key_events(engine)
    assert event.change is None
    assert event.local
    engine.begin_local("new")
    engine.abort_local("new", None, 0.0)  # a key that was absent goes away again
    assert engine.get("new") is None


def _intervals(cluster: VirtualCluster, source: str) -> list[DeltaInterval]:
    return [
        m
        for s in cluster.sent
        if s.source == source
        for m in decode_frame(s.data, CONFIG.max_reliable_frame).messages
        if isinstance(m, DeltaInterval)
    ]


def test_a_burst_of_writes_to_one_key_joins_into_bounded_payloads() -> None:
    cluster = VirtualCluster(seed=3, config=CONFIG)
    names = cluster.start(2)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=30)
    source = cluster.engines[names[0]]
    state: ORSet[int] = ORSet()
    writes = 2 * MAX_JOINED_PER_ENTRY + 1
    for i in range(writes):
        source.commit_local("k", state, state.add(i, "w"), cluster.now)
    assert source.stats()["delivery_pending"] == writes
    assert cluster.run_until(lambda: cluster.engines[names[1]].get("k") == state, max_seconds=30)
    first, *_ = _intervals(cluster, names[0])
    assert (first.first, first.last) == (1, writes)
    assert [len(decode(unwrap(p)[1]).value) for _, p in first.entries] == [64, 64, 1]
    cluster.run(CONFIG.gossip_interval * 2)
    assert source.stats()["delivery_pending"] == 0  # acknowledged, so forgotten


def test_a_delta_already_sent_is_never_joined_into() -> None:
    cluster = VirtualCluster(seed=4, config=CONFIG)
    names = cluster.start(2)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=30)
    source, target = cluster.engines[names[0]], cluster.engines[names[1]]
    state: ORSet[str] = ORSet()
    source.commit_local("k", state, state.add("first", "w"), cluster.now)
    cluster.run(CONFIG.gossip_interval * 2)  # the first delta goes out at least once
    source.commit_local("k", state, state.add("second", "w"), cluster.now)
    assert cluster.run_until(lambda: target.get("k") == state, max_seconds=30)
    # Each delta travelled as written: the second was not joined into the first.
    sent = [decode(unwrap(p)[1]) for m in _intervals(cluster, names[0]) for _, p in m.entries]
    assert all(len(d.value) == 1 for d in sent)
    assert {e for d in sent for e in d.value} == {"first", "second"}
