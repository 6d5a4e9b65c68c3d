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

:func:`run_chaos` runs one seeded mixed-fault scenario and checks the invariants; the
command line replays one or soaks many::

    python -m crdtgossip.testing.simulation --replay 1234
    python -m crdtgossip.testing.simulation --soak 10000

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

import argparse
import dataclasses
import enum
import heapq
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TextIO, TypeVar

from crdtgossip.codec import encode
from crdtgossip.config import GossipConfig
from crdtgossip.consistency import DEFAULT_TIMEOUT, Consistency, Local, Majority
from crdtgossip.crdts import CRDT, GCounter, ORSet
from crdtgossip.crdts._base import delta_of, state_of
from crdtgossip.errors import ConfigError, CRDTGossipError
from crdtgossip.node import LEAVE_GOSSIP_ROUNDS
from crdtgossip.protocol import Engine, KeyChanged, Member, Status
from crdtgossip.protocol.membership import FormedTable
from crdtgossip.protocol.messages import MemberRecord
from crdtgossip.protocol.quorum import QuorumResult
from crdtgossip.transport.memory import REORDER_HOLDBACK

__all__ = [
    "CHAOS_MAX_NODES",
    "CHAOS_MIN_NODES",
    "DEFAULT_DELAY",
    "MAX_STEPS_PER_RUN",
    "ChaosOutcome",
    "RunResult",
    "Simulation",
    "main",
    "replay_command",
    "run_chaos",
    "soak",
]

T = TypeVar("T", bound=CRDT)

DEFAULT_DELAY: Final = (0.0005, 0.002)
"""One-way delay in seconds, uniform between the two: a LAN (memberlist's LAN preset
assumes sub-millisecond to few-millisecond round trips)."""

MAX_STEPS_PER_RUN: Final = 50_000_000
"""Deliveries and ticks one ``run*`` call may perform before it gives up with an
error: a guard against a protocol bug that schedules timers without end. A 1,000-node
cluster takes some tens of thousands of steps per virtual second, so this is far above
any sane run."""

SIM_EPOCH_NS: Final = 1_700_000_000 * 10**9
"""The Unix time (ns) at virtual time 0, for the engines' LWW clocks (November 2023)."""

PORT: Final = 7946
"""The port of every simulated address (memberlist's default gossip port)."""

JOIN_SEEDS: Final = 3
"""Seeds a restarted node is given: a few, as an operator lists a few in a config file.
They are drawn from the running nodes: a node whose every seed is down stays alone
(members that saw it leave never contact it again), which is an operator's error,
not the protocol's."""

CHAOS_MIN_NODES: Final = 3
CHAOS_MAX_NODES: Final = 20
"""Cluster sizes of :func:`run_chaos` (issue 5: 3 to 20 nodes)."""

_CHAOS_CONFIG: Final = dataclasses.replace(
    GossipConfig.local(), gossip_interval=0.2, push_pull_interval=5.0, reconnect_interval=5.0
)
"""Chaos scenarios use the local preset with LAN gossip (every 200 ms, not 100 ms: half
the ticks) and anti-entropy and reconnection every 5 s instead of 15 s: the same
protocol, but a scenario costs less real time per virtual second and needs fewer
virtual seconds to repair what the faults broke."""

_CHAOS_CHECK_INTERVAL: Final = 0.5
"""Virtual seconds between two convergence checks in a chaos scenario: a check compares
every node's table and store, which costs more than the protocol work of a few gossip
intervals in a small cluster."""

_CHAOS_CONVERGENCE_PUSH_PULLS: Final = 6
"""The bound checked by :func:`run_chaos`: after the last fault, everything converges
within this many anti-entropy intervals plus the longest
suspicion timeout. One interval gives each node one exchange with a random peer; a
healed partition first needs a reconnection (``reconnect_interval``, as long) and a
refutation of the deaths each side declared, then the data exchange."""

_COUNTER_KEY: Final = "chaos-counter"
_SET_KEY: Final = "chaos-set"

_CHAOS_ACTIONS: Final = (
    *("increment", "increment", "add", "majority"),
    *("partition", "heal", "crash", "restart", "leave"),
)
"""What a chaos step may do, drawn uniformly (counter increments twice as often)."""

_CHAOS_MAJORITY: Final = Majority(timeout=2.0)
"""The level of the chaos scenarios' quorum writes: ten gossip intervals of the chaos
configuration, so a write fails under a partition and succeeds on a lossy network."""


class _Life(enum.Enum):
    """Where a simulated node is in its life."""

    RUNNING = enum.auto()
    LEAVING = enum.auto()  # left gracefully, still gossiping the goodbye
    LEFT = enum.auto()
    CRASHED = enum.auto()


@dataclass(slots=True)
class _Slot:
    """One simulated node: its current engine and what survives a restart."""

    engine: Engine
    life: _Life
    generation: int
    saved: dict[str, CRDT] = field(default_factory=dict)


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


def _check_probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a probability, not {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be between 0 and 1, not {value}")
    return float(value)


def _check_delay(delay: tuple[float, float]) -> tuple[float, float]:
    low, high = delay
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low <= high):
        raise ConfigError(f"delay must be (low, high) seconds with 0 <= low <= high, not {delay}")
    return float(low), float(high)


class Simulation:
    """N gossip engines on a simulated network, on virtual time, seeded.

    Nodes are numbered ``0 .. nodes-1``; node ``i`` is called ``n<i>`` and listens at
    ``"n<i>:7946"``. At construction every node joins through node 0 (node 0 through
    node 1), as a real cluster would; pass ``formed=True`` to start instead with every
    node already knowing every other as alive and nothing queued, which large
    simulations need because joining N nodes costs O(N²) work. A formed start shares
    one member table among the engines, each copying only the rows it changes
    (:meth:`Engine.adopt_formed`): 10,000 formed nodes build in about a second and
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
        self._loss = 0.0
        self._delay = DEFAULT_DELAY
        self._duplicate = 0.0
        self._reorder = 0.0
        self.set_faults(loss=loss, delay=delay, duplicate=duplicate, reorder=reorder)
        self._network_rng = random.Random(f"crdtgossip-sim-network-{seed}")
        self._now = 0.0
        self._serial = 0
        # (time, serial, destination index, source index, data)
        self._deliveries: list[tuple[float, int, int, int, bytes]] = []
        # (time, serial, index, stop): an engine tick, or the end of a graceful leave.
        self._timers: list[tuple[float, int, int, bool]] = []
        self._wakeups: list[float] = [math.nan] * nodes
        self._stream_clock: dict[tuple[int, int], float] = {}
        self._groups: list[int] | None = None
        self._holders: dict[str, set[int]] = {}
        self._quorum_results: dict[tuple[int, int], QuorumResult] = {}
        # The serial of the one valid "stop" timer of each leaving node.
        self._stops: dict[int, int] = {}
        self.frames_sent = 0
        self.bytes_sent = 0
        self._addresses = [f"n{i}:{PORT}" for i in range(nodes)]
        self._index = {address: i for i, address in enumerate(self._addresses)}
        self._slots = [
            _Slot(self._new_engine(i, 0, incarnation=0), _Life.RUNNING, 0) for i in range(nodes)
        ]
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
        if loss is not None:
            self._loss = _check_probability("loss", loss)
        if duplicate is not None:
            self._duplicate = _check_probability("duplicate", duplicate)
        if reorder is not None:
            self._reorder = _check_probability("reorder", reorder)
        if delay is not None:
            self._delay = _check_delay(delay)

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

    def running(self, i: int) -> bool:
        """Whether node ``i`` runs and has not started leaving."""
        return self._slot(i).life is _Life.RUNNING

    def engine(self, i: int) -> Engine:
        """Node ``i``'s engine (its last one, if it is down), for inspection."""
        return self._slot(i).engine

    def members(self, i: int) -> list[Member]:
        """Every member node ``i`` knows, itself included, sorted by node id."""
        return self._slot(i).engine.members()

    def holders(self, key: str) -> int:
        """How many nodes (running or not) hold a state of ``key``; O(1)."""
        return len(self._holders.get(key, ()))

    def _slot(self, i: int) -> _Slot:
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
                MemberRecord(f"n{i}", address, 0, Status.ALIVE)
                for i, address in enumerate(self._addresses)
            ),
            self._now,
        )
        for i, slot in enumerate(self._slots):
            slot.engine.adopt_formed(table, self._now)
            self._collect(i)

    # --- data ----------------------------------------------------------------------

    def update(self, i: int, key: str, value_type: type[T] | T, fn: Callable[[T], Any]) -> T:
        """Apply a mutation on node ``i`` and spread it, like :meth:`Node.update`.

        Args:
            i: the node.
            key: the data key.
            value_type: the key's CRDT type, or an empty prototype instance.
            fn: ``fn(state) -> delta``: call one mutator and return what it returned.

        Returns:
            The key's live state on node ``i`` after the write (read-only).

        Raises:
            CRDTGossipError: node ``i`` is not running.
            MergeError: the key holds another type, or ``fn`` returned something else.
        """
        engine = self._apply(i, key, value_type, fn)[0]
        state = engine.get(key)
        assert state is not None  # the engine just merged the delta
        return state  # type: ignore[return-value]

    def write(
        self,
        i: int,
        key: str,
        value_type: type[T] | T,
        fn: Callable[[T], Any],
        consistency: Consistency,
    ) -> int:
        """Apply a mutation on node ``i`` and ask members to merge it, as
        :meth:`Node.update` does with a quorum level.

        The write applies and spreads at once, as with :meth:`update`; the quorum
        request then runs on virtual time. Its outcome, once the engine has one, is
        :meth:`quorum_result` ``(i, id)``: success when the level's members merged the
        write in time. A node that crashes meanwhile never reports one.

        Args:
            i: the node.
            key: the data key.
            value_type: the key's CRDT type, or an empty prototype instance.
            fn: ``fn(state) -> delta``: call one mutator and return what it returned.
            consistency: the level; :class:`~crdtgossip.Local` succeeds at once.

        Returns:
            The request id.

        Raises:
            CRDTGossipError: node ``i`` is not running.
            MergeError: as :meth:`update`.
        """
        engine, delta = self._apply(i, key, value_type, fn)
        needed = consistency.required(engine.quorum_members())
        timeout = DEFAULT_TIMEOUT if isinstance(consistency, Local) else consistency.timeout
        request = engine.start_write(key, delta, needed, timeout, self._now)
        self._collect(i)
        return request

    def quorum_result(self, i: int, request: int) -> QuorumResult | None:
        """The outcome of quorum request ``request`` of node ``i``; ``None`` while it runs
        (or when the node went down before it ended)."""
        self._slot(i)
        return self._quorum_results.get((i, request))

    def _apply(
        self, i: int, key: str, value_type: type[T] | T, fn: Callable[[T], Any]
    ) -> tuple[Engine, T]:
        """Apply ``fn``'s delta on running node ``i``; return its engine and the delta."""
        slot = self._slot(i)
        if slot.life is not _Life.RUNNING:
            raise CRDTGossipError(f"node {i} is {slot.life.name.lower()}: it cannot write")
        state = self.get(i, key, value_type)
        delta = delta_of(state, fn, slot.engine.clock.stamp)
        slot.engine.commit_local(key, state, delta, self._now)
        self._collect(i)
        return slot.engine, delta

    def get(self, i: int, key: str, value_type: type[T] | T) -> T:
        """The state of ``key`` on node ``i`` (an empty state when absent).

        As :meth:`Node.get`, the node's live state, read-only: ``copy()`` it to keep
        or change it. Works on a node that is down too: it shows the state it had when
        it stopped.

        Raises:
            MergeError: the key holds a state of another type.
        """
        return state_of(key, self._slot(i).engine.get(key), value_type)

    # --- faults --------------------------------------------------------------------

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
        self._groups = assignment

    def heal(self) -> None:
        """Remove the partition: every node reaches every other again."""
        self._groups = None

    def crash(self, i: int) -> None:
        """Stop node ``i`` at once, as a killed process: no goodbye, no more frames.

        Its data at that moment is what :meth:`restart` with ``keep_state`` brings back
        (as a node with durable storage would). A node crashed while leaving counts as
        having left: its goodbye went to every live member when it started leaving.

        Raises:
            CRDTGossipError: node ``i`` is not running.
        """
        slot = self._slot(i)
        if slot.life not in (_Life.RUNNING, _Life.LEAVING):
            raise CRDTGossipError(f"node {i} is already down")
        self._stop(i, _Life.LEFT if slot.life is _Life.LEAVING else _Life.CRASHED)

    def leave(self, i: int) -> None:
        """Have node ``i`` leave gracefully; it stops after a few gossip intervals.

        Raises:
            CRDTGossipError: node ``i`` is not running.
        """
        slot = self._slot(i)
        if slot.life is not _Life.RUNNING:
            raise CRDTGossipError(f"node {i} is {slot.life.name.lower()}: it cannot leave")
        slot.engine.leave(self._now)
        slot.life = _Life.LEAVING
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
        if slot.life not in (_Life.CRASHED, _Life.LEFT):
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
            for key, state in sorted(slot.saved.items()):
                engine.update(key, state, self._now)
        else:
            slot.generation += 1
            engine = self._new_engine(i, slot.generation, incarnation=incarnation)
            for holders in self._holders.values():
                holders.discard(i)
        slot.engine = engine
        slot.life = _Life.RUNNING
        slot.saved = {}
        self._wakeups[i] = math.nan
        # Seeds among the running nodes, as an operator points a returning node at
        # members that are up; if none is, at any others (join retries meanwhile).
        others = [j for j, other in enumerate(self._slots) if j != i]
        up = [j for j in others if self._slots[j].life is _Life.RUNNING]
        pool = up or others
        seeds = self._network_rng.sample(pool, min(JOIN_SEEDS, len(pool)))
        engine.join([self._addresses[j] for j in seeds], self._now)
        self._collect(i)

    def _stop(self, i: int, life: _Life) -> None:
        slot = self._slot(i)
        engine = slot.engine
        keys = engine.keys()
        slot.saved = {key: state for key in keys if (state := engine.get(key)) is not None}
        slot.life = life
        self._wakeups[i] = math.nan

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
        if any(slot.life is _Life.LEAVING for slot in self._slots):
            return False  # settles once the goodbye is out and the node has stopped
        live = [i for i, slot in enumerate(self._slots) if slot.life is _Life.RUNNING]
        if not live:
            return True
        views = [{m.node_id: m for m in self._slots[i].engine.members()} for i in live]
        for j, slot in enumerate(self._slots):
            node_id = f"n{j}"
            found = [view.get(node_id) for view in views]
            if slot.life is _Life.RUNNING:
                if any(m is None or m.status is not Status.ALIVE for m in found):
                    return False
            elif slot.life is _Life.CRASHED:
                incarnation = slot.engine.incarnation
                for m in found:
                    if m is None or m.status is Status.DEAD:
                        continue
                    if m.status is not Status.LEFT or m.incarnation >= incarnation:
                        return False
            else:
                statuses = {m.status for m in found if m is not None}
                if statuses not in ({Status.LEFT}, {Status.DEAD}, set()):
                    return False
        reference = self._encoded_store(live[0])
        return all(self._encoded_store(i) == reference for i in live[1:])

    def _encoded_store(self, i: int) -> dict[str, bytes]:
        engine = self._slots[i].engine
        keys = engine.keys()
        return {key: encode(state) for key in keys if (state := engine.get(key)) is not None}

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
        """
        deadline = self._now + max_seconds
        next_check = self._now
        step_checks = check_interval is None
        interval = 0.0 if check_interval is None else check_interval
        deliveries, timers, slots, wakeups = (
            self._deliveries,
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
                    if slots[i].life is _Life.LEAVING and self._stops.get(i) == serial:
                        break
                elif wakeups[i] == moment and slots[i].life in (_Life.RUNNING, _Life.LEAVING):
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
            if next_delivery <= next_tick:
                _, _, destination, source, data = heapq.heappop(deliveries)
                slot = slots[destination]
                if slot.life in (_Life.RUNNING, _Life.LEAVING) and self._reachable(
                    source, destination
                ):
                    slot.engine.receive(data, self._addresses[source], self._now)
                    self._collect(destination)
            else:
                _, _, i, stop = heapq.heappop(timers)
                if stop:
                    self._stop(i, _Life.LEFT)
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

    def _reachable(self, source: int, destination: int) -> bool:
        groups = self._groups
        return groups is None or groups[source] == groups[destination]

    def _collect(self, i: int) -> None:
        """Take what engine ``i`` produced: frames into the network, its next timer."""
        engine = self._slots[i].engine
        wakeup = engine.next_wakeup()
        if wakeup != self._wakeups[i]:
            self._wakeups[i] = wakeup
            self._serial += 1
            heapq.heappush(self._timers, (wakeup, self._serial, i, False))
        for event in engine.take_events():
            if isinstance(event, KeyChanged):
                self._holders.setdefault(event.key, set()).add(i)
        for result in engine.take_quorum_results():
            self._quorum_results[(i, result.request_id)] = result
        outgoing = engine.take_outgoing()
        if not outgoing:
            return
        rng = self._network_rng
        low, high = self._delay
        now = self._now
        for frame in outgoing:
            self.frames_sent += 1
            self.bytes_sent += len(frame.data)
            destination = self._index.get(frame.address)
            if destination is None or not self._reachable(i, destination):
                continue
            if frame.reliable:
                # A stream: in order per pair of nodes, never lost or duplicated.
                pair = (i, destination)
                arrival = max(now + rng.uniform(low, high), self._stream_clock.get(pair, 0.0))
                self._stream_clock[pair] = arrival
                self._serial += 1
                heapq.heappush(
                    self._deliveries, (arrival, self._serial, destination, i, frame.data)
                )
                continue
            if self._loss and rng.random() < self._loss:
                continue
            copies = 2 if self._duplicate and rng.random() < self._duplicate else 1
            for _ in range(copies):
                arrival = now + rng.uniform(low, high)
                if self._reorder and rng.random() < self._reorder:
                    arrival += high + REORDER_HOLDBACK
                self._serial += 1
                heapq.heappush(
                    self._deliveries, (arrival, self._serial, destination, i, frame.data)
                )


# --- chaos -------------------------------------------------------------------------


@dataclass(slots=True)
class ChaosOutcome:
    """What one :func:`run_chaos` scenario did and whether its invariants held.

    Attributes:
        seed: the scenario's seed; :func:`replay_command` replays it.
        nodes: the cluster size.
        actions: the faults and writes, in order, one short line each.
        failures: the invariants that did not hold (empty when all held).
        settle_seconds: virtual seconds from the end of the faults to convergence
            (``nan`` when it did not converge).
        bound_seconds: the bound convergence had to meet.
    """

    seed: int
    nodes: int
    actions: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    settle_seconds: float = math.nan
    bound_seconds: float = math.nan

    @property
    def ok(self) -> bool:
        """Whether every invariant held."""
        return not self.failures

    def describe(self) -> str:
        """A report of a failed scenario: seed, faults, failures and the replay command."""
        lines = [
            f"chaos scenario seed={self.seed} nodes={self.nodes}: "
            + ("ok" if self.ok else "FAILED"),
            *(f"  did: {action}" for action in self.actions),
            *(f"  broke: {failure}" for failure in self.failures),
            f"  replay: {replay_command(self.seed)}",
        ]
        return "\n".join(lines)


def replay_command(seed: int) -> str:
    """The one-line shell command that replays chaos scenario ``seed``."""
    return f"python -m crdtgossip.testing.simulation --replay {seed}"


@dataclass(slots=True)
class _Lineage:
    """Writes of one node's data lineage (ended by a restart without state)."""

    increments: int = 0
    elements: set[str] = field(default_factory=set)
    last_seen: int = 0
    wiped: int = 0
    """Restarts of this node without its state so far, across lineages."""


@dataclass(frozen=True, slots=True)
class _QuorumWrite:
    """A Majority write of one set element, and what every node had lost before it."""

    node: int
    request: int
    element: str
    needed: int
    wiped_before: tuple[int, ...]


def _settle_bound(config: GossipConfig, nodes: int) -> float:
    """Virtual seconds within which a healed, fault-free cluster must converge."""
    scale = max(1.0, math.log10(nodes))
    suspicion = config.suspicion_mult * scale * config.probe_interval
    longest_suspicion = suspicion * config.suspicion_max_timeout_mult
    interval = max(config.push_pull_interval, config.reconnect_interval)
    return _CHAOS_CONVERGENCE_PUSH_PULLS * interval + longest_suspicion


def run_chaos(seed: int, *, nodes: int | None = None) -> ChaosOutcome:
    """Run one seeded mixed-fault scenario and check the invariants.

    The cluster (3 to 20 nodes, small ones far more often: the size is 3 + 17u³
    rounded, u uniform) forms; then, under datagram loss, delay, duplication and
    reordering, a few steps each do one thing: write a counter or set on a random
    node (some set writes at :class:`~crdtgossip.Majority`), cut a random partition,
    heal it, crash a node, restart one with or without its state, or have one leave,
    and let a few virtual seconds pass.
    Finally the faults stop, the network heals and the cluster must converge within
    a bound of anti-entropy intervals (see ``_settle_bound``).

    Invariants: the cluster converges in data and membership
    (:meth:`Simulation.converged`); no node's counter ever decreases within one data
    lineage (a life, or several joined by restarts with state); every write of a
    lineage still running at the end is in the final state (none lost); the counter
    never exceeds the increments made (none invented); every acknowledged
    :class:`~crdtgossip.Majority` write is in the final state, unless as many nodes as
    it needed have since lost their state or are down (see ``_check_quorum_writes``).

    Args:
        seed: selects everything; the same seed replays the same scenario.
        nodes: force the cluster size instead of drawing it.

    Returns:
        The outcome; :meth:`ChaosOutcome.describe` reports a failure.
    """
    rng = random.Random(f"crdtgossip-chaos-{seed}")
    span = CHAOS_MAX_NODES - CHAOS_MIN_NODES
    size = nodes if nodes is not None else CHAOS_MIN_NODES + int(span * rng.random() ** 3 + 0.5)
    high_delay = rng.choice((0.002, 0.01, 0.05))
    loss = rng.choice((0.0, 0.05, 0.2))
    duplicate = rng.choice((0.0, 0.05, 0.2))
    reorder = rng.choice((0.0, 0.1))
    outcome = ChaosOutcome(seed, size)
    outcome.actions.append(
        f"network loss={loss} delay=(0.0005, {high_delay}) duplicate={duplicate} reorder={reorder}"
    )
    sim = Simulation(size, seed, _CHAOS_CONFIG, delay=(0.0005, high_delay))
    bound = _settle_bound(_CHAOS_CONFIG, size)
    outcome.bound_seconds = bound
    # The cluster forms on a sound network: under 20% loss SWIM's failure detector
    # keeps suspecting someone somewhere, so "everyone sees everyone alive" need not
    # hold at any one instant until the loss stops.
    if not sim.run_until(sim.converged, bound, check_interval=_CHAOS_CHECK_INTERVAL):
        outcome.failures.append(f"the cluster did not form within {bound:.0f} s")
        return outcome
    sim.set_faults(loss=loss, duplicate=duplicate, reorder=reorder)
    lineages = [_Lineage() for _ in range(size)]
    quorum_writes: list[_QuorumWrite] = []
    ever_incremented = 0
    for step in range(rng.randint(3, 8)):
        action = _chaos_action(sim, rng, lineages, quorum_writes, step)
        outcome.actions.append(f"t={sim.now:.2f} {action}")
        if action.startswith("increment"):
            ever_incremented += int(action.rsplit(" ", 1)[1])
        sim.run(rng.uniform(0.2, 3.0))
        _check_counters(sim, lineages, outcome)
    sim.heal()
    sim.set_faults(loss=0.0, duplicate=0.0, reorder=0.0)
    outcome.actions.append(f"t={sim.now:.2f} heal, faults stop")
    start = sim.now
    if sim.run_until(sim.converged, bound, check_interval=_CHAOS_CHECK_INTERVAL):
        outcome.settle_seconds = sim.now - start
    else:
        outcome.failures.append(f"no convergence within {bound:.0f} virtual s after healing")
    _check_counters(sim, lineages, outcome)
    _check_final(sim, lineages, ever_incremented, outcome)
    _check_quorum_writes(sim, lineages, quorum_writes, outcome)
    return outcome


def _chaos_action(
    sim: Simulation,
    rng: random.Random,
    lineages: list[_Lineage],
    quorum_writes: list[_QuorumWrite],
    step: int,
) -> str:
    """Do one random thing to the cluster; return what, in a few words."""
    size = sim.size
    up = [i for i in range(size) if sim.running(i)]
    down = [i for i in range(size) if not sim.running(i) and not _leaving(sim, i)]
    choice = rng.choice(_CHAOS_ACTIONS)
    if choice == "crash" and len(up) > 1:
        i = rng.choice(up)
        sim.crash(i)
        return f"crash n{i}"
    if choice == "leave" and len(up) > 1:
        i = rng.choice(up)
        sim.leave(i)
        return f"leave n{i}"
    if choice == "restart" and down:
        i = rng.choice(down)
        keep = rng.random() < 0.5
        sim.restart(i, keep_state=keep)
        if not keep:
            lineages[i] = _Lineage(wiped=lineages[i].wiped + 1)
        return f"restart n{i} keep_state={keep}"
    if choice == "partition" and size > 1:
        order = list(range(size))
        rng.shuffle(order)
        cut = rng.randint(1, size - 1)
        sim.partition(order[:cut], order[cut:])
        return f"partition {sorted(order[:cut])} | {sorted(order[cut:])}"
    if choice == "heal":
        sim.heal()
        return "heal"
    i = rng.choice(up)
    if choice == "majority":
        element = f"m{step}-n{i}"
        before = tuple(lineage.wiped for lineage in lineages)
        request = sim.write(
            i, _SET_KEY, ORSet, lambda s: s.add(element, sim.replica_id(i)), _CHAOS_MAJORITY
        )
        needed = _CHAOS_MAJORITY.required(sim.engine(i).quorum_members())
        quorum_writes.append(_QuorumWrite(i, request, element, needed, before))
        return f"majority add {element} on n{i} (needs {needed})"
    if choice == "add":
        element = f"e{step}-n{i}"
        sim.update(i, _SET_KEY, ORSet, lambda s: s.add(element, sim.replica_id(i)))
        lineages[i].elements.add(element)
        return f"add {element} on n{i}"
    amount = rng.randint(1, 5)
    sim.update(i, _COUNTER_KEY, GCounter, lambda c: c.increment(sim.replica_id(i), amount))
    lineages[i].increments += amount
    return f"increment on n{i} by {amount}"


def _leaving(sim: Simulation, i: int) -> bool:
    return sim._slots[i].life is _Life.LEAVING


def _check_counters(sim: Simulation, lineages: list[_Lineage], outcome: ChaosOutcome) -> None:
    """No running node's counter went down within its lineage."""
    for i in range(sim.size):
        if not sim.running(i):
            continue
        value = sim.get(i, _COUNTER_KEY, GCounter).value
        lineage = lineages[i]
        if value < lineage.last_seen:
            outcome.failures.append(
                f"t={sim.now:.2f} n{i}'s counter went down from {lineage.last_seen} to {value}"
            )
        lineage.last_seen = max(lineage.last_seen, value)


def _check_final(
    sim: Simulation, lineages: list[_Lineage], ever_incremented: int, outcome: ChaosOutcome
) -> None:
    """Writes of surviving lineages are all there, and nothing was invented."""
    live = [i for i in range(sim.size) if sim.running(i)]
    if not live:
        return
    counter = sim.get(live[0], _COUNTER_KEY, GCounter).value
    elements = sim.get(live[0], _SET_KEY, ORSet).value
    survived = sum(lineages[i].increments for i in live)
    if counter < survived:
        outcome.failures.append(f"increments lost: counter {counter} < {survived} made by live")
    if counter > ever_incremented:
        outcome.failures.append(f"counter {counter} > {ever_incremented} increments ever made")
    for i in live:
        missing = lineages[i].elements - elements
        if missing:
            outcome.failures.append(f"n{i}'s set adds lost: {sorted(missing)}")


def _check_quorum_writes(
    sim: Simulation,
    lineages: list[_Lineage],
    quorum_writes: list[_QuorumWrite],
    outcome: ChaosOutcome,
) -> None:
    """No acknowledged Majority write is lost.

    An acknowledged write was merged by ``needed`` members, each of which keeps it for
    good unless it later restarts without its state, or is down at the end. So while
    fewer than ``needed`` nodes did either, at least one member that merged the write
    is running with it, and the converged cluster must hold it. (When as many members
    lost their state as a majority counts, a write can be lost, as it can with any
    quorum system whose disks are wiped; that is not checked.)
    """
    live = [i for i in range(sim.size) if sim.running(i)]
    if not live:
        return
    elements = sim.get(live[0], _SET_KEY, ORSet).value
    for write in quorum_writes:
        result = sim.quorum_result(write.node, write.request)
        if result is None or not result.ok:
            outcome.actions.append(f"majority add {write.element}: not acknowledged")
            continue
        lost = sum(
            1
            for j, lineage in enumerate(lineages)
            if lineage.wiped > write.wiped_before[j] or not sim.running(j)
        )
        verdict = "acknowledged"
        if lost < write.needed and write.element not in elements:
            outcome.failures.append(
                f"acknowledged majority add {write.element} lost ({lost} of the nodes "
                f"lost their state or are down, fewer than the {write.needed} that merged it)"
            )
            verdict = "acknowledged, LOST"
        outcome.actions.append(f"majority add {write.element}: {verdict}")


def soak(count: int, *, first_seed: int = 0, out: TextIO | None = None) -> list[ChaosOutcome]:
    """Run ``count`` chaos scenarios from ``first_seed`` on; print each failure.

    Args:
        count: how many scenarios.
        first_seed: the seed of the first; the others follow in order.
        out: where to print (a text stream; ``sys.stdout`` when ``None``).

    Returns:
        The failed outcomes (empty when every scenario held).
    """
    stream = out if out is not None else sys.stdout
    failed: list[ChaosOutcome] = []
    started = time.perf_counter()
    settle_max = 0.0
    for seed in range(first_seed, first_seed + count):
        outcome = run_chaos(seed)
        if not outcome.ok:
            failed.append(outcome)
            print(outcome.describe(), file=stream, flush=True)
        elif outcome.settle_seconds > settle_max:
            settle_max = outcome.settle_seconds
    elapsed = time.perf_counter() - started
    print(
        f"{count} chaos scenarios (seeds {first_seed}..{first_seed + count - 1}): "
        f"{count - len(failed)} held, {len(failed)} failed; slowest convergence after "
        f"healing {settle_max:.1f} virtual s; {elapsed:.1f} s",
        file=stream,
    )
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: replay one chaos scenario or soak many.

    Returns:
        0 when every scenario held, 1 when one failed.
    """
    parser = argparse.ArgumentParser(
        prog="python -m crdtgossip.testing.simulation",
        description="Replay a seeded chaos scenario, or run many (a soak).",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--replay", type=int, metavar="SEED", help="run one scenario verbosely")
    mode.add_argument("--soak", type=int, metavar="COUNT", help="run COUNT scenarios")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed of a soak")
    args = parser.parse_args(argv)
    if args.replay is not None:
        outcome = run_chaos(args.replay)
        print(outcome.describe())
        if outcome.ok:
            print(f"  converged {outcome.settle_seconds:.2f} virtual s after healing")
        return 0 if outcome.ok else 1
    return 0 if not soak(args.soak, first_seed=args.first_seed) else 1


if __name__ == "__main__":
    sys.exit(main())
