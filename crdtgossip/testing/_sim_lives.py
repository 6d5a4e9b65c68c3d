"""The simulator's faults and node lives: partitions, crashes, leaves and restarts.

One part of :class:`~crdtgossip.testing.simulation.Simulation` (a mixin over the state
it declares); see that class for the whole.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable
from typing import Final

from crdtgossip.config import GossipConfig
from crdtgossip.errors import ConfigError, CRDTGossipError
from crdtgossip.node import LEAVE_GOSSIP_ROUNDS
from crdtgossip.protocol import Engine
from crdtgossip.testing._sim_convergence import Convergence, Life, Slot
from crdtgossip.testing._sim_network import SimNetwork

__all__ = ["JOIN_SEEDS", "NodeLives"]

JOIN_SEEDS: Final = 3
"""Seeds a restarted node is given: a few, as an operator lists a few in a config file.
They are drawn from the running nodes: a node whose every seed is down stays alone
(members that saw it leave never contact it again), which is an operator's error,
not the protocol's."""


class NodeLives:
    """Partitions and the lives of nodes (the state is the simulation's)."""

    config: GossipConfig
    seed: int
    _now: float
    _serial: int
    _slots: list[Slot]
    _addresses: list[str]
    _network: SimNetwork
    _convergence: Convergence
    _timers: list[tuple[float, int, int, bool]]
    _wakeups: list[float]
    _stops: dict[int, int]
    _holders: dict[str, set[int]]

    def _slot(self, i: int) -> Slot:
        raise NotImplementedError

    def _collect(self, i: int) -> None:
        raise NotImplementedError

    def _new_engine(self, i: int, generation: int, *, incarnation: int) -> Engine:
        raise NotImplementedError

    def _wall_ns(self) -> int:
        raise NotImplementedError

    def partition(self, *groups: Iterable[int]) -> None:
        """Cut the network between groups of nodes; nodes in no group are cut from all.

        A later call replaces the earlier partition.

        Raises:
            ConfigError: a node is unknown or in two groups.
        """
        assignment = [-1 - i for i in range(len(self._slots))]  # alone unless grouped
        seen: set[int] = set()
        for number, group in enumerate(groups):
            for i in group:
                self._slot(i)
                if i in seen:
                    raise ConfigError(f"node {i} is in two groups of the partition")
                seen.add(i)
                assignment[i] = number
        self._network.cut(assignment)

    def heal(self) -> None:
        """Remove the partition: every node reaches every other again."""
        self._network.cut(None)

    def crash(self, i: int) -> None:
        """Stop node ``i`` at once, as a killed process: no goodbye, no more frames.

        Its data at that moment is what :meth:`restart` with ``keep_state`` brings back
        (as a node with durable storage would). A node crashed while leaving counts as
        having left: its goodbye went to every live member when it started leaving.

        Raises:
            CRDTGossipError: node ``i`` is not running.
        """
        slot = self._slot(i)
        if slot.life not in (Life.RUNNING, Life.LEAVING):
            raise CRDTGossipError(f"node {i} is already down")
        self._stop(i, Life.LEFT if slot.life is Life.LEAVING else Life.CRASHED)

    def leave(self, i: int) -> None:
        """Have node ``i`` leave gracefully; it stops after a few gossip intervals.

        Raises:
            CRDTGossipError: node ``i`` is not running.
        """
        slot = self._slot(i)
        if slot.life is not Life.RUNNING:
            raise CRDTGossipError(f"node {i} is {slot.life.name.lower()}: it cannot leave")
        slot.engine.leave(self._now)
        slot.life = Life.LEAVING
        self._convergence.life_changed()
        self._collect(i)
        self._serial += 1
        self._stops[i] = self._serial
        stop_at = self._now + self.config.gossip_interval * LEAVE_GOSSIP_ROUNDS
        heapq.heappush(self._timers, (stop_at, self._serial, i, True))

    def restart(self, i: int, keep_state: bool) -> None:
        """Start node ``i`` again after a crash or a leave, and have it rejoin.

        With ``keep_state`` it comes back with the data it had and the same replica
        id; without, with an empty store and a fresh replica id (a node that lost its
        state must not reuse its id: riak_kv#679). Either way its incarnation is one
        above its last life's, so peers take it as alive again at once.

        Raises:
            CRDTGossipError: node ``i`` is running.
        """
        slot = self._slot(i)
        if slot.life not in (Life.CRASHED, Life.LEFT):
            raise CRDTGossipError(f"node {i} is running: crash it or have it leave first")
        incarnation = slot.engine.incarnation + 1
        if keep_state:
            engine = Engine(
                f"n{i}",
                self._addresses[i],
                self.config,
                random.Random(f"crdtgossip-sim-engine-{self.seed}-{i}-{slot.generation}-r"),
                slot.engine.replica_id,
                incarnation=incarnation,
                wall_clock=self._wall_ns,
            )
            # As a real node restarts from its storage: the states and their records,
            # not news (a write of its own would be one no delete had seen).
            for key, state in sorted(slot.saved.items()):
                engine.restore(key, state, written=slot.saved_written.get(key, 0))
            for key, record in sorted(slot.saved_lives.items()):
                engine.restore_life(key, record)
        else:
            slot.generation += 1
            engine = self._new_engine(i, slot.generation, incarnation=incarnation)
            for holders in self._holders.values():
                holders.discard(i)
        slot.engine = engine
        self._convergence.new_engine(i)
        slot.life = Life.RUNNING
        slot.saved = {}
        slot.saved_lives = {}
        slot.saved_written = {}
        self._wakeups[i] = math.nan
        # Seeds among the running nodes, as an operator points a returning node at
        # members that are up; if none is, at any others (join retries meanwhile).
        others = [j for j, other in enumerate(self._slots) if j != i]
        up = [j for j in others if self._slots[j].life is Life.RUNNING]
        pool = up or others
        seeds = self._network.rng.sample(pool, min(JOIN_SEEDS, len(pool)))
        engine.join([self._addresses[j] for j in seeds], self._now)
        self._collect(i)

    def _stop(self, i: int, life: Life) -> None:
        slot = self._slot(i)
        engine = slot.engine
        keys = engine.keys()
        slot.saved = {key: state for key in keys if (state := engine.get(key)) is not None}
        slot.saved_lives = engine.lives()
        slot.saved_written = {key: stamp for key in slot.saved if (stamp := engine.written(key))}
        slot.life = life
        self._convergence.life_changed()
        self._wakeups[i] = math.nan
