"""The failure detector: direct and indirect probes, nacks, local health."""

from __future__ import annotations

import random

from crdtgossip.config import GossipConfig
from crdtgossip.protocol.awareness import Awareness
from crdtgossip.protocol.broadcast import BroadcastQueue
from crdtgossip.protocol.events import Event
from crdtgossip.protocol.membership import Membership
from crdtgossip.protocol.messages import Ack, Alive, Message, Nack, Ping, PingReq, Suspect
from crdtgossip.protocol.probe import MAX_RELAYS, Prober
from crdtgossip.protocol.states import Status
from tests.protocol.cluster import VirtualCluster

CONFIG = GossipConfig.lan()  # probe 1 s, timeout 0.5 s, 3 indirect checks


class Rig:
    def __init__(self, members: int = 5) -> None:
        self.sent: list[tuple[str, Message, str | None]] = []
        self.events: list[Event] = []
        self.awareness = Awareness(CONFIG.awareness_max_multiplier)
        rng = random.Random(0)
        self.table = Membership(
            "me",
            "me:1",
            0,
            config=CONFIG,
            rng=rng,
            awareness=self.awareness,
            broadcast=lambda rumor, exclude: None,
            events=self.events,
        )
        for i in range(members - 1):
            self.table.apply(Alive(f"n{i}", f"n{i}:1", 0), 0.0)
        self.prober = Prober(
            self.table,
            self.awareness,
            CONFIG,
            rng,
            lambda address, message, to: self.sent.append((address, message, to)),
        )
        self.prober.start(0.0)

    def status(self, node_id: str) -> Status | None:
        member = self.table.get(node_id)
        return None if member is None else member.status

    def first_probe(self) -> Ping:
        deadline = self.prober.next_deadline()
        assert deadline is not None
        assert 0.0 <= deadline <= CONFIG.probe_interval
        self.prober.tick(deadline)
        address, ping, to = self.sent.pop()
        assert isinstance(ping, Ping)
        assert to == ping.target
        assert address == f"{ping.target}:1"
        return ping


def test_an_ack_in_time_ends_the_probe_and_improves_health() -> None:
    rig = Rig()
    rig.awareness.apply(2)
    ping = rig.first_probe()
    rig.prober.on_ack(Ack(ping.seq))
    assert rig.prober.current is None
    assert rig.awareness.score == 1
    rig.prober.tick(10.0)
    assert rig.status(ping.target) is Status.ALIVE


def test_a_missed_ack_goes_indirect_then_suspects() -> None:
    rig = Rig()
    ping = rig.first_probe()
    probe = rig.prober.current
    assert probe is not None
    rig.prober.tick(probe.timeout_at)
    requests = [(a, m) for a, m, _ in rig.sent if isinstance(m, PingReq)]
    assert len(requests) == CONFIG.indirect_checks
    assert all(m == PingReq(ping.seq, ping.target, f"{ping.target}:1") for _, m in requests)
    assert ping.target not in {a.split(":")[0] for a, _ in requests}
    rig.prober.on_nack(Nack(ping.seq))  # one helper reports it could not reach it
    rig.prober.tick(probe.end_at)
    assert rig.status(ping.target) is Status.SUSPECT
    # Lifeguard: each nack that did not come back counts against this node.
    assert rig.awareness.score == CONFIG.indirect_checks - 1


def test_a_forwarded_ack_saves_the_target() -> None:
    rig = Rig()
    ping = rig.first_probe()
    probe = rig.prober.current
    assert probe is not None
    rig.prober.tick(probe.timeout_at)
    rig.prober.on_ack(Ack(ping.seq))
    rig.prober.tick(probe.end_at + 0.1)
    assert rig.status(ping.target) is Status.ALIVE


def test_slow_health_stretches_the_probe() -> None:
    rig = Rig()
    rig.awareness.apply(3)
    rig.first_probe()
    probe = rig.prober.current
    assert probe is not None
    start = probe.end_at - 4 * CONFIG.probe_interval
    assert probe.timeout_at - start == 4 * CONFIG.probe_timeout


def test_relay_forwards_the_ack_or_a_nack() -> None:
    rig = Rig()
    assert rig.prober.on_ping_req(PingReq(77, "n1", "n1:1"), "asker:1", 5.0)
    address, ping, _ = rig.sent.pop()
    assert address == "n1:1"
    assert isinstance(ping, Ping)
    assert ping.target == "n1"
    rig.prober.on_ack(Ack(ping.seq))
    assert rig.sent.pop() == ("asker:1", Ack(77), None)

    rig.prober.on_ping_req(PingReq(78, "n2", "n2:1"), "asker:1", 5.0)
    rig.sent.pop()
    rig.prober.tick(5.0 + CONFIG.probe_timeout)
    assert ("asker:1", Nack(78), None) in rig.sent


def test_relays_are_bounded() -> None:
    rig = Rig()
    for seq in range(MAX_RELAYS):
        assert rig.prober.on_ping_req(PingReq(seq, "n1", "n1:1"), "asker:1", 0.0)
    assert not rig.prober.on_ping_req(PingReq(0, "n1", "n1:1"), "asker:1", 0.0)
    assert rig.prober.relay_drops == 1


def test_pings_for_someone_else_are_not_answered() -> None:
    rig = Rig()
    assert not rig.prober.on_ping(Ping(1, "other"), "x:1", "x")
    assert rig.prober.on_ping(Ping(2, "me"), "x:1", "x")
    assert rig.sent == [("x:1", Ack(2), "x")]


def test_stale_replies_are_counted() -> None:
    rig = Rig()
    rig.prober.on_ack(Ack(12345))
    rig.prober.on_nack(Nack(12345))
    assert rig.prober.stale_replies == 2


def test_a_probe_of_a_suspect_carries_the_suspicion_to_it() -> None:
    rig = Rig()
    for i in range(4):
        rig.table.suspect(f"n{i}", 0.0)
    deadline = rig.prober.next_deadline()
    assert deadline is not None
    rig.sent.clear()
    rig.prober.tick(deadline)
    (ping_address, ping, _), (address, accusation, to) = rig.sent
    assert isinstance(ping, Ping)
    member = rig.table.get(ping.target)
    assert member is not None
    assert address == ping_address == member.address
    assert accusation == Suspect(ping.target, member.incarnation, "me")
    assert to is None  # gossip rides on the ping already
    assert rig.prober.buddy_suspicions == 1


def test_a_probe_of_an_alive_member_carries_no_suspicion() -> None:
    rig = Rig()
    rig.first_probe()
    assert not any(isinstance(m, Suspect) for _, m, _ in rig.sent)
    assert rig.prober.buddy_suspicions == 0


def test_a_suspected_engine_refutes_on_the_probe_alone() -> None:
    cluster = VirtualCluster(seed=5, config=CONFIG)
    names = cluster.start(2)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=30)
    prober, target = (cluster.engines[name] for name in names)
    before = target.incarnation
    prober._membership.suspect(names[1], cluster.now)
    # The suspicion's rumor spent elsewhere: only the probe can carry it now.
    prober._queue = BroadcastQueue()

    def refuted() -> bool:
        return target.incarnation > before and cluster.status(names[0], names[1]) is Status.ALIVE

    # Well inside the suspicion timeout (3 probe intervals and more): not declared dead.
    assert cluster.run_until(refuted, max_seconds=2 * CONFIG.probe_interval)
    assert prober.stats()["buddy_suspicions"] >= 1
