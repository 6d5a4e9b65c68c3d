"""Leaving gracefully: the goodbye reaches every member, and the seed of a join under way."""

from __future__ import annotations

from crdtgossip.config import GossipConfig
from crdtgossip.node import LEAVE_GOSSIP_ROUNDS
from crdtgossip.protocol import MemberDead, MemberLeft, MemberSuspect, Status

from .cluster import VirtualCluster

CONFIG = GossipConfig.local()


def test_graceful_leave_shows_as_left_not_dead() -> None:
    cluster = VirtualCluster(seed=4, config=CONFIG)
    names = cluster.start(5)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    leaver, others = names[4], names[:4]
    cluster.engines[leaver].leave(cluster.now)
    cluster._collect(leaver)
    cluster.run(2.0)  # the driver keeps the leaver running briefly so the goodbye spreads
    cluster.stop(leaver)
    assert all(cluster.status(o, leaver) is Status.LEFT for o in others)
    cluster.run(60.0)  # and it stays left: no suspicion of a member that said goodbye
    assert all(cluster.status(o, leaver) is Status.LEFT for o in others)
    for other in others:
        assert MemberLeft in [type(e) for _, e in cluster.about(other, leaver)]
        assert not any(
            isinstance(e, MemberDead | MemberSuspect) and e.member.node_id == leaver
            for _, e in cluster.events[other]
        )


def test_a_node_that_leaves_before_its_join_reply_still_says_goodbye_to_the_seed() -> None:
    cluster = VirtualCluster(seed=4, config=CONFIG)
    names = cluster.start(3)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    late = cluster.add("late")
    late.join([cluster.address(names[0])], cluster.now)
    cluster._collect("late")
    # The seed takes it in; its reply, and every frame after it, is lost on the way.
    cluster.deaf.add("late")
    assert cluster.run_until(lambda: cluster.status(names[0], "late") is Status.ALIVE, 5.0)
    assert [m.node_id for m in late.members()] == ["late"]
    late.leave(cluster.now)
    cluster._collect("late")
    cluster.run(CONFIG.gossip_interval * LEAVE_GOSSIP_ROUNDS)  # as long as a Node lingers
    cluster.stop("late")
    assert cluster.status(names[0], "late") is Status.LEFT
    cluster.run(30.0)
    # The others hear it left, or never hear of it (the goodbye overtook the news).
    assert {cluster.status(n, "late") for n in names} <= {Status.LEFT, None}
