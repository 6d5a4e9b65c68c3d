"""Seeded dissemination runs: concurrent writes, and whether they reach every member.

:func:`spread` is the measurement behind the delivery guarantees of
:mod:`crdtgossip.protocol.delivery` (issue 13): a formed cluster in the simulator,
``writers`` writes made at the same virtual instant (writer ``w`` on node ``w mod N``,
each incrementing a :class:`~crdtgossip.GCounter`, on one shared key or on a key of its
own), then a fixed window of virtual time. It reports whether every running node holds
every write, how many gossip rounds that took, and the bytes the whole cluster sent in
the window. The tests run it with anti-entropy pushed out of reach (:func:`no_repair`),
so what arrives was pushed; the benchmark sets the bytes beside a run without writes to
get the bytes the writes cost.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Final

from crdtgossip.config import GossipConfig
from crdtgossip.crdts import GCounter
from crdtgossip.errors import ConfigError
from crdtgossip.testing.simulation import Simulation

__all__ = ["NO_REPAIR_INTERVAL", "SETTLE_SECONDS", "SpreadResult", "no_repair", "spread"]

NO_REPAIR_INTERVAL: Final = 1e7
"""Anti-entropy and reconnect intervals that put both out of reach of any run here
(115 virtual days), as the issue's measurements did."""

SETTLE_SECONDS: Final = 1.0
"""Virtual seconds a formed cluster runs before the writes: every engine's timers have
started and its random phases are spread, as in a cluster that has run for a while."""


def no_repair(config: GossipConfig) -> GossipConfig:
    """``config`` with anti-entropy and reconnects out of reach: push only.

    Args:
        config: a preset or any configuration.

    Returns:
        The same configuration with ``push_pull_interval`` and ``reconnect_interval``
        of :data:`NO_REPAIR_INTERVAL` seconds.
    """
    return dataclasses.replace(
        config, push_pull_interval=NO_REPAIR_INTERVAL, reconnect_interval=NO_REPAIR_INTERVAL
    )


@dataclass(frozen=True, slots=True)
class SpreadResult:
    """What one :func:`spread` run measured.

    Attributes:
        delivered: every running node held every write by the end of the window.
        rounds: gossip rounds from the writes until every node held every write
            (``inf`` if that never happened in the window).
        bytes_sent: bytes of every frame the cluster sent in the window.
        frames_sent: frames the cluster sent in the window.
        updates: the number of writes.
        nodes: the cluster size.
    """

    delivered: bool
    rounds: float
    bytes_sent: int
    frames_sent: int
    updates: int
    nodes: int


def spread(
    nodes: int,
    seed: int,
    config: GossipConfig,
    *,
    writers: int = 1,
    one_key: bool = True,
    loss: float = 0.0,
    window: float = 4.0,
) -> SpreadResult:
    """Make ``writers`` concurrent writes in a formed cluster and watch them spread.

    Args:
        nodes: the cluster size.
        seed: the simulation's seed.
        config: the engines' configuration.
        writers: how many writes, all at one virtual instant (0: none, a baseline of
            the cluster's own traffic).
        one_key: all writes to one key (``"k"``); else writer ``w`` writes ``"k<w>"``.
        loss: the probability that a datagram is lost.
        window: virtual seconds run after the writes.

    Returns:
        What the run measured.

    Raises:
        ConfigError: a negative number of writers or a window that is not positive.
    """
    if writers < 0 or not window > 0:
        raise ConfigError("writers must be >= 0 and the window positive")
    sim = Simulation(nodes, seed, config, loss=loss, formed=True)
    sim.run(SETTLE_SECONDS)
    expected: dict[str, int] = {}
    for w in range(writers):
        node = w % nodes
        key = "k" if one_key else f"k{w}"
        replica = sim.replica_id(node)
        sim.update(node, key, GCounter, lambda c: c.increment(replica))  # noqa: B023
        expected[key] = expected.get(key, 0) + 1
    start, frames, sent = sim.now, sim.frames_sent, sim.bytes_sent

    def delivered() -> bool:
        for i in range(nodes):
            engine = sim.engine(i)
            for key, value in expected.items():
                state = engine.get(key)
                if not isinstance(state, GCounter) or state.value != value:
                    return False
        return True

    reached = sim.run_until(delivered, window, check_interval=config.gossip_interval / 4)
    rounds = (sim.now - start) / config.gossip_interval if reached else math.inf
    sim.run(start + window - sim.now)
    return SpreadResult(
        delivered(),
        rounds,
        sim.bytes_sent - sent,
        sim.frames_sent - frames,
        writers,
        nodes,
    )
