"""The engine over the library's own MemoryNetwork: loss, then a partition that heals.

The driver here is the smallest one possible: each engine gets a MemoryTransport, every
frame received is fed to the engine, every frame the engine produces is sent, and the
engine's wake-up time becomes a callback on the network's virtual clock.
"""

from __future__ import annotations

import dataclasses
import random

from crdtgossip import GCounter, ORSet
from crdtgossip.config import GossipConfig
from crdtgossip.protocol import Engine, Status
from crdtgossip.transport import ManualScheduler, MemoryNetwork

CONFIG = dataclasses.replace(GossipConfig.local(), push_pull_interval=5.0, reconnect_interval=5.0)
NODES = 8
LOSS = 0.2
#: Bounds on virtual time, never on real time.
SETTLE = 60.0
HEAL_LIMIT = 600.0


class Driven:
    """One engine wired to one MemoryTransport on a virtual clock."""

    def __init__(self, network: MemoryNetwork, clock: ManualScheduler, index: int) -> None:
        self.address = f"10.0.0.{index}:7946"
        self.clock = clock
        self.engine = Engine(f"n{index}", self.address, CONFIG, random.Random(index), f"n{index}.r")
        self.transport = network.transport(self.address, self._receive)
        self._timer_at: float | None = None

    def _receive(self, data: bytes, sender: str) -> None:
        self.engine.receive(data, sender, self.clock.now)
        self.pump()

    def _tick(self) -> None:
        self._timer_at = None
        self.engine.tick(self.clock.now)
        self.pump()

    def pump(self) -> None:
        for frame in self.engine.take_outgoing():
            self.transport.send(frame.address, frame.data)
        self.engine.take_events()
        wake = max(self.engine.next_wakeup(), self.clock.now)
        if self._timer_at is None or wake < self._timer_at:
            self._timer_at = wake
            self.clock.call_later(wake - self.clock.now, self._tick_if_due(wake))

    def _tick_if_due(self, when: float) -> object:
        def fire() -> None:
            if self._timer_at == when:
                self._tick()

        return fire


def run_until(clock: ManualScheduler, condition: object, limit: float) -> bool:
    deadline = clock.now + limit
    while clock.now < deadline:
        clock.advance(0.5)
        if condition():  # type: ignore[operator]
            return True
    return False


def test_twenty_percent_loss_and_a_healed_partition_converge() -> None:
    clock = ManualScheduler()
    network = MemoryNetwork(seed=2026, loss=LOSS, delay=(0.001, 0.02), scheduler=clock)
    nodes = [Driven(network, clock, index) for index in range(NODES)]
    nodes[0].engine.join([], clock.now)
    nodes[0].pump()
    for node in nodes[1:]:
        node.engine.join([nodes[0].address], clock.now)
        node.pump()

    def members_alive() -> bool:
        return all(
            sum(m.status is Status.ALIVE for m in n.engine.members()) == NODES for n in nodes
        )

    assert run_until(clock, members_alive, SETTLE), "the cluster forms despite 20% loss"

    left = [n.address for n in nodes[:4]]
    right = [n.address for n in nodes[4:]]
    network.partition(left, right)
    for node in nodes:
        counter = node.engine.get("hits") or GCounter()
        node.engine.update("hits", counter.increment(node.engine.replica_id), clock.now)
        names = node.engine.get("names") or ORSet()
        node.engine.update(
            "names", names.add(node.engine.node_id, node.engine.replica_id), clock.now
        )
        node.pump()
    clock.advance(30.0)
    # While cut, neither side can have the other's writes.
    for node in nodes:
        hits = node.engine.get("hits")
        assert hits is not None
        assert hits.value == NODES // 2

    network.heal()

    def converged() -> bool:
        for node in nodes:
            hits, names = node.engine.get("hits"), node.engine.get("names")
            if hits is None or hits.value != NODES or names is None or len(names.value) != NODES:
                return False
        return members_alive()

    assert run_until(clock, converged, HEAL_LIMIT), "data and membership converge after the heal"
    assert network.stats()["lost"] > 0, "the loss was real"
    assert network.stats()["partitioned"] > 0, "the partition was real"
