"""An incarnation that could not be refuted is hostile input: refused and counted."""

from __future__ import annotations

import random

import pytest

from crdtgossip.config import GossipConfig
from crdtgossip.protocol import Engine, Status
from crdtgossip.protocol.membership import MAX_INCARNATION
from crdtgossip.protocol.messages import Alive, Dead, Message, Suspect
from crdtgossip.protocol.outbox import Outbox
from crdtgossip.storage import MAX_INCARNATION as STORED_MAX_INCARNATION
from tests.protocol.cluster import VirtualCluster

CONFIG = GossipConfig.local()


def _deliver(engine: Engine, *messages: Message, sender: str = "evil") -> None:
    outbox = Outbox(sender, CONFIG.max_datagram, CONFIG.max_reliable_frame)
    for message in messages:
        outbox.send(engine.address, message)
    for frame in outbox.flush(None, 1):
        engine.receive(frame.data, f"{sender}:1", 0.0)


def test_the_bound_is_what_a_storage_keeps() -> None:
    assert MAX_INCARNATION == STORED_MAX_INCARNATION


@pytest.mark.parametrize("incarnation", [MAX_INCARNATION, 2**64 - 1])
@pytest.mark.parametrize("kind", [Suspect, Dead])
def test_an_accusation_that_cannot_be_refuted_is_refused(
    kind: type[Suspect | Dead], incarnation: int
) -> None:
    engine = Engine("a", "a:1", CONFIG, random.Random(0), "a-1")
    _deliver(engine, kind("a", incarnation, "evil"))
    assert engine.incarnation == 0  # no refutation past the bound
    assert engine.stats()["drop_out_of_range"] == 1
    for step in range(1, 50):  # the timers run on, with nothing to raise
        engine.tick(step * CONFIG.probe_interval)
        engine.take_outgoing()


def test_one_below_the_bound_is_refuted_to_the_bound() -> None:
    engine = Engine("a", "a:1", CONFIG, random.Random(0), "a-1")
    _deliver(engine, Suspect("a", MAX_INCARNATION - 1, "evil"))
    assert engine.incarnation == MAX_INCARNATION
    assert engine.stats()["drop_out_of_range"] == 0


def test_news_of_another_member_past_the_bound_changes_nothing() -> None:
    cluster = VirtualCluster(seed=5, config=CONFIG)
    names = cluster.start(2)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=30)
    target = cluster.engines[names[0]]
    other = names[1]
    before = next(m for m in target.members() if m.node_id == other)
    _deliver(target, Alive(other, "elsewhere:1", 2**64 - 1))
    _deliver(target, Dead(other, MAX_INCARNATION, "evil"))
    after = next(m for m in target.members() if m.node_id == other)
    assert after == before
    assert after.status is Status.ALIVE
    assert target.stats()["drop_out_of_range"] == 2
