"""A deterministic cluster simulator: many engines on a simulated network, virtual time.

:class:`Simulation` drives N copies of the very :class:`~crdtgossip.protocol.Engine`
that :class:`~crdtgossip.Node` runs, over an in-process network with seeded faults
(loss, delay, duplication, reordering, partitions), and lets a test crash, restart
(with or without state) and remove nodes. Nothing sleeps: a heap of pending
deliveries and a heap of engine timers are popped in virtual-time order, so an hour of
cluster life takes as long as the work the engines do in it. Every random choice
(the network's and each engine's) comes from generators seeded by ``seed``: the same
seed and the same calls replay a run exactly, down to the byte.

The network models what :class:`~crdtgossip.Node` uses: frames the engine marks
unreliable go by datagram (lost, duplicated or reordered with the configured
probabilities), reliable frames by stream (never lost or duplicated, delivered in
order per pair of nodes). Both take a delay drawn uniformly from ``delay``, neither
crosses a partition (a frame in flight when the cut happens is lost too), and neither
reaches a crashed node.

:func:`~crdtgossip.testing.chaos.run_chaos` (in :mod:`crdtgossip.testing.chaos`,
which builds on this module) runs one seeded mixed-fault scenario and checks the
invariants; its command line replays one or soaks many::

    python -m crdtgossip.testing.chaos --replay 1234
    python -m crdtgossip.testing.chaos --soak 10000

Example:
    >>> from crdtgossip import GCounter
    >>> from crdtgossip.testing import Simulation
    >>> sim = Simulation(nodes=5, seed=7)
    >>> _ = sim.update(0, "hits", GCounter, lambda c: c.increment(sim.replica_id(0)))
    >>> result = sim.run_until_converged(max_seconds=60.0)
    >>> result.converged, sim.get(4, "hits", GCounter).value
    (True, 1)
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from crdtgossip.config import GossipConfig
from crdtgossip.crdts import CRDT
from crdtgossip.errors import ConfigError, CRDTGossipError
from crdtgossip.protocol import Engine, KeyChanged, Member
from crdtgossip.protocol.membership import FormedTable
from crdtgossip.protocol.messages import MemberRecord
from crdtgossip.protocol.quorum import QuorumResult
from crdtgossip.protocol.states import Status
from crdtgossip.testing._sim_convergence import Convergence, Life, Slot
from crdtgossip.testing._sim_data import DataOps
from crdtgossip.testing._sim_gc import collector_paused
from crdtgossip.testing._sim_lives import NodeLives
from crdtgossip.testing._sim_network import DEFAULT_DELAY, SimNetwork

__all__ = [
    "DEFAULT_DELAY",
    "MAX_STEPS_PER_RUN",
    "RunResult",
    "Simulation",
]

T = TypeVar("T", bound=CRDT)

MAX_STEPS_PER_RUN: Final = 50_000_000
"""Deliveries and ticks one ``run*`` call may perform before it gives up with an
error: a guard against a protocol bug that schedules timers without end. A 1,000-node
cluster takes some tens of thousands of steps per virtual second, so this is far above
any sane run."""

SIM_EPOCH_NS: Final = 1_700_000_000 * 10**9
"""The Unix time (ns) at virtual time 0, for the engines' LWW clocks (November 2023)."""

REBASE_INTERVAL: Final = 1.0
"""Virtual seconds between two :meth:`FormedTable.rebase` calls in a formed run: a
refutation reaches a cluster in a few gossip rounds (under a second), after which
its N row copies can be shared again; the call costs about the rows it looks at."""

PORT: Final = 7946
"""The port of every simulated address (memberlist's default gossip port)."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one :meth:`Simulation.run_until_converged` call saw.

    Attributes:
        converged: whether :meth:`Simulation.converged` held before ``max_seconds``.
        virtual_seconds: virtual time the call ran (until convergence, or all of it).
        gossip_rounds: ``virtual_seconds / gossip_interval``.
        messages: frames the engines handed to the network during the call
            (datagrams and stream frames, each counted once however it fared).
        bytes: the bytes of those frames.
    """

    converged: bool
    virtual_seconds: float
    gossip_rounds: float
    messages: int
    bytes: int


class Simulation(DataOps, NodeLives):
    """N gossip engines on a simulated network, on virtual time, seeded.

    Nodes are numbered ``0 .. nodes-1``; node ``i`` is called ``n<i>`` and listens at
    ``"n<i>:7946"``. At construction every node joins through node 0 (node 0 through
    node 1), as a real cluster would; pass ``formed=True`` to start instead with every
    node already knowing every other as alive and nothing queued, which large
    simulations need because joining N nodes costs O(N²) work. A formed start shares
    one member table among the engines, each copying only the rows it changes
    (:meth:`Engine.adopt_formed`), and each virtual second the rows most engines
    changed alike (a refutation that reached the cluster) are shared again
    (:meth:`FormedTable.rebase`): 10,000 formed nodes build in about a second and
    take about 100 MB (``benchmarks/bench_simulation.py``). Each engine's first
    anti-entropy exchange then falls anywhere in its size-scaled interval, as in a
    cluster that has run for a while.

    Args:
        nodes: how many nodes (at least 1).
        seed: seeds the network and every engine; the same seed and calls replay a run.
        config: the engines' configuration (``GossipConfig.lan()`` when ``None``).
        loss: probability that a datagram is lost.
        delay: ``(low, high)`` one-way delay in seconds, uniform.
        duplicate: probability that a datagram is delivered twice.
        reorder: probability that a datagram is held back past later ones (by the
            largest delay plus :data:`~crdtgossip.transport.memory.REORDER_HOLDBACK`).
        formed: start with the membership complete instead of joining.

    Attributes:
        config: the engines' configuration.
        seed: the seed.
        frames_sent: frames the engines handed to the network so far (whatever
            became of them).
        bytes_sent: the bytes of those frames.

    Raises:
        ConfigError: a count, probability or delay is out of range.
    """

    def __init__(
        self,
        nodes: int,
        seed: int,
        config: GossipConfig | None = None,
        loss: float = 0.0,
        delay: tuple[float, float] = DEFAULT_DELAY,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        *,
        formed: bool = False,
    ) -> None:
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise ConfigError(f"nodes must be a positive int, not {nodes!r}")
        self.config = config if config is not None else GossipConfig.lan()
        if not isinstance(self.config, GossipConfig):
            raise ConfigError(f"config must be a GossipConfig, not {config!r}")
        self.seed = seed
        self._network = SimNetwork(seed)
        self.set_faults(loss=loss, delay=delay, duplicate=duplicate, reorder=reorder)
        self._now = 0.0
        self._serial = 0
        # (time, serial, destination index, source index, data)
        # (time, serial, index, stop): an engine tick, or the end of a graceful leave.
        self._timers: list[tuple[float, int, int, bool]] = []
        self._wakeups: list[float] = [math.nan] * nodes
        self._holders: dict[str, set[int]] = {}
        self._quorum_results: dict[tuple[int, int], QuorumResult] = {}
        # The serial of the one valid "stop" timer of each leaving node.
        self._stops: dict[int, int] = {}
        self.frames_sent = 0
        self.bytes_sent = 0
        self._addresses = [f"n{i}:{PORT}" for i in range(nodes)]
        self._index = {address: i for i, address in enumerate(self._addresses)}
        self._slots = [
            Slot(self._new_engine(i, 0, incarnation=0), Life.RUNNING, 0) for i in range(nodes)
        ]
        self._convergence = Convergence(self._slots, formed=formed)
        self._table: FormedTable | None = None
        self._next_rebase = REBASE_INTERVAL
        if formed:
            self._form()
        else:
            for i, slot in enumerate(self._slots):
                seed_index = 1 if i == 0 else 0
                seeds = [self._addresses[seed_index]] if nodes > 1 else []
                slot.engine.join(seeds, self._now)
                self._collect(i)

    # --- configuration -------------------------------------------------------------

    def set_faults(
        self,
        *,
        loss: float | None = None,
        delay: tuple[float, float] | None = None,
        duplicate: float | None = None,
        reorder: float | None = None,
    ) -> None:
        """Change the network's faults from now on (``None`` keeps a setting).

        Raises:
            ConfigError: a probability or delay is out of range.
        """
        self._network.set_faults(loss=loss, delay=delay, duplicate=duplicate, reorder=reorder)

    # --- nodes ---------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The virtual time in seconds since the simulation started."""
        return self._now

    @property
    def size(self) -> int:
        """How many nodes the simulation has (running or not)."""
        return len(self._slots)

    def node_id(self, i: int) -> str:
        """The node id of node ``i``."""
        self._slot(i)
        return f"n{i}"

    def address(self, i: int) -> str:
        """The ``"host:port"`` of node ``i``."""
        self._slot(i)
        return self._addresses[i]

    def replica_id(self, i: int) -> str:
        """The replica id node ``i``'s mutators must use in its current life."""
        return self._slot(i).engine.replica_id

    def leaving(self, i: int) -> bool:
        """Whether node ``i`` is leaving (gossiping its goodbye before it stops)."""
        return self._slot(i).life is Life.LEAVING

    def running(self, i: int) -> bool:
        """Whether node ``i`` runs and has not started leaving."""
        return self._slot(i).life is Life.RUNNING

    def engine(self, i: int) -> Engine:
        """Node ``i``'s engine (its last one, if it is down), for inspection."""
        return self._slot(i).engine

    def members(self, i: int) -> list[Member]:
        """Every member node ``i`` knows, itself included, sorted by node id."""
        return self._slot(i).engine.members()

    def holders(self, key: str) -> int:
        """How many nodes (running or not) hold a state of ``key``; O(1)."""
        return len(self._holders.get(key, ()))

    def _slot(self, i: int) -> Slot:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self._slots):
            raise ConfigError(f"no node {i!r}: nodes are 0 .. {len(self._slots) - 1}")
        return self._slots[i]

    def _new_engine(self, i: int, generation: int, *, incarnation: int) -> Engine:
        rng = random.Random(f"crdtgossip-sim-engine-{self.seed}-{i}-{generation}")
        return Engine(
            f"n{i}",
            self._addresses[i],
            self.config,
            rng,
            f"n{i}.{generation}",
            incarnation=incarnation,
            wall_clock=self._wall_ns,
        )

    def _wall_ns(self) -> int:
        # The engines' LWW clock: virtual time from a fixed epoch, so a seed replays.
        return SIM_EPOCH_NS + round(self._now * 1e9)

    def _form(self) -> None:
        """Give every node the complete member table, as a join finished long ago.

        One :class:`~crdtgossip.protocol.membership.FormedTable` is built and every
        engine adopts it (:meth:`Engine.adopt_formed`): the engines share its rows
        until each changes one, so forming N nodes costs O(N), not O(N²). Nothing is
        queued: in a formed cluster every node already has the news of every member.
        """
        table = FormedTable(
            (
                MemberRecord(f"n{i}", address, 0, Status.ALIVE, slot.engine.replica_id)
                for i, (address, slot) in enumerate(zip(self._addresses, self._slots, strict=True))
            ),
            self._now,
        )
        # Kept to share again the rows every engine changed alike (see run_until).
        self._table = table
        for i, slot in enumerate(self._slots):
            slot.engine.adopt_formed(table, self._now)
            self._collect(i)

    # --- convergence ---------------------------------------------------------------

    def converged(self) -> bool:
        """Whether the cluster has settled.

        Data: every running node holds the same keys with equal states (compared by
        their canonical encoding). Membership: every running node sees each running
        node alive, each crashed node dead and each node that left as left, with two
        exceptions where no protocol can know better:

        * a node that left while cut off from every running node (its goodbye
          reached no one who is still up) may be seen dead instead, as long as every
          running node agrees;
        * a crashed node may be seen as left in an earlier life (it left, came back
          and crashed while the observer was cut off: the later death reaches the
          observer as a suspicion of a newer incarnation, which the transition
          table, like memberlist, ignores for a member that left).

        A down node an observer never heard of, or forgot, counts as settled; a node
        still leaving (gossiping its goodbye) does not.
        """
        return self._convergence.converged()

    # --- running -------------------------------------------------------------------

    def run(self, seconds: float) -> None:
        """Advance virtual time by ``seconds``, delivering frames and ticking timers.

        Raises:
            CRDTGossipError: the run took more than :data:`MAX_STEPS_PER_RUN` steps.
        """
        self.run_until(lambda: False, seconds, check_interval=math.inf)

    def run_until(
        self,
        done: Callable[[], bool],
        max_seconds: float,
        *,
        check_interval: float | None = None,
    ) -> bool:
        """Run until ``done()`` holds or ``max_seconds`` of virtual time have passed.

        Args:
            done: the condition.
            max_seconds: the virtual time limit.
            check_interval: check ``done()`` at most once per this many virtual
                seconds (and at the start and end); ``None`` checks after every step,
                which suits a cheap condition such as :meth:`holders`.

        Returns:
            Whether ``done()`` held; the clock stops at the step that made it hold
            (or at the next check), or at the limit.

        Raises:
            CRDTGossipError: the run took more than :data:`MAX_STEPS_PER_RUN` steps.

        The cyclic garbage collector is paused for the call and put back as it was when
        it returns (see ``crdtgossip/testing/_sim_gc.py`` for why).
        """
        with collector_paused():
            return self._run_until(done, max_seconds, check_interval)

    def _run_until(
        self, done: Callable[[], bool], max_seconds: float, check_interval: float | None
    ) -> bool:
        deadline = self._now + max_seconds
        next_check = self._now
        step_checks = check_interval is None
        interval = 0.0 if check_interval is None else check_interval
        deliveries, timers, slots, wakeups = (
            self._network.deliveries,
            self._timers,
            self._slots,
            self._wakeups,
        )
        for _ in range(MAX_STEPS_PER_RUN):
            if (step_checks or self._now >= next_check) and done():
                return True
            if not step_checks and self._now >= next_check:
                next_check = self._now + interval
            # Drop timers that no longer apply (the engine rescheduled, or went down).
            while timers:
                moment, serial, i, stop = timers[0]
                if stop:
                    if slots[i].life is Life.LEAVING and self._stops.get(i) == serial:
                        break
                elif wakeups[i] == moment and slots[i].life in (Life.RUNNING, Life.LEAVING):
                    break
                heapq.heappop(timers)
            next_tick = timers[0][0] if timers else math.inf
            next_delivery = deliveries[0][0] if deliveries else math.inf
            moment = min(next_tick, next_delivery)
            if not step_checks and next_check < moment and next_check <= deadline:
                self._now = max(self._now, next_check)
                continue
            if moment > deadline:
                self._now = max(self._now, deadline)
                return done()
            self._now = max(self._now, moment)
            if self._table is not None and self._now >= self._next_rebase:
                # Keeps a formed run's memory O(N): see FormedTable.rebase.
                self._next_rebase = self._now + REBASE_INTERVAL
                self._table.rebase()
            if next_delivery <= next_tick:
                _, _, destination, source, data = heapq.heappop(deliveries)
                slot = slots[destination]
                if slot.life in (Life.RUNNING, Life.LEAVING) and self._network.reachable(
                    source, destination
                ):
                    slot.engine.receive(data, self._addresses[source], self._now)
                    self._collect(destination)
            else:
                _, _, i, stop = heapq.heappop(timers)
                if stop:
                    self._stop(i, Life.LEFT)
                else:
                    wakeups[i] = math.nan
                    slots[i].engine.tick(self._now)
                    self._collect(i)
        raise CRDTGossipError(f"the simulation did not settle within {MAX_STEPS_PER_RUN} steps")

    def run_until_converged(self, max_seconds: float) -> RunResult:
        """Run until :meth:`converged` holds, checking once per gossip interval.

        Args:
            max_seconds: the virtual time limit.

        Returns:
            The outcome, with the virtual time, rounds, frames and bytes it took.

        Raises:
            CRDTGossipError: the run took more than :data:`MAX_STEPS_PER_RUN` steps.
        """
        start, frames, sent = self._now, self.frames_sent, self.bytes_sent
        converged = self.run_until(
            self.converged, max_seconds, check_interval=self.config.gossip_interval
        )
        seconds = self._now - start
        return RunResult(
            converged,
            seconds,
            seconds / self.config.gossip_interval,
            self.frames_sent - frames,
            self.bytes_sent - sent,
        )

    # --- the network ---------------------------------------------------------------

    def _collect(self, i: int) -> None:
        """Take what engine ``i`` produced: frames into the network, its next timer."""
        engine = self._slots[i].engine
        wakeup = engine.next_wakeup()
        if wakeup != self._wakeups[i]:
            self._wakeups[i] = wakeup
            self._serial += 1
            heapq.heappush(self._timers, (wakeup, self._serial, i, False))
        events = engine.take_events()
        self._convergence.observe(i, events)
        for event in events:
            if not isinstance(event, KeyChanged):
                continue
            if not event.deleted:
                self._holders.setdefault(event.key, set()).add(i)
            elif (holding := self._holders.get(event.key)) is not None:
                holding.discard(i)  # deleted or expired there
                if not holding:
                    del self._holders[event.key]
        for result in engine.take_quorum_results():
            self._quorum_results[(i, result.request_id)] = result
        outgoing = engine.take_outgoing()
        if not outgoing:
            return
        network, now = self._network, self._now
        for frame in outgoing:
            self.frames_sent += 1
            self.bytes_sent += len(frame.data)
            destination = self._index.get(frame.address)
            if destination is not None:
                network.send(now, i, destination, frame.data, frame.reliable)
