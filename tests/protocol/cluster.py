"""A tiny deterministic network on virtual time, to drive several engines in a test.

No asyncio, no sockets, no sleeps: a heap of pending deliveries ordered by virtual
time, and the engines' own ``next_wakeup`` timers. Datagrams are lost with a seeded
probability; reliable (stream) frames are never lost but, like datagrams, do not cross
a partition and are not delivered to a stopped node. Every frame sent is logged, so a
test can compare two runs byte for byte or count the bytes of an exchange.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from crdtgossip.config import GossipConfig
from crdtgossip.protocol import Engine, Event, KeyChanged, Status

# Bounds every run loop: a test that would spin forever fails instead.
MAX_STEPS = 2_000_000


@dataclass(frozen=True, slots=True)
class Sent:
    """One frame handed to the network."""

    time: float
    source: str
    destination: str
    data: bytes
    reliable: bool


@dataclass(slots=True)
class VirtualCluster:
    """Engines on a simulated network.

    Attributes:
        seed: seeds the network and every engine.
        config: the engines' configuration.
        loss: probability that a datagram is lost.
        latency: (min, max) one-way delay in seconds, uniform.
    """

    seed: int
    config: GossipConfig = field(default_factory=GossipConfig.local)
    loss: float = 0.0
    latency: tuple[float, float] = (0.001, 0.005)
    now: float = 0.0
    engines: dict[str, Engine] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)
    #: Running engines that receive nothing (what they send still goes): a one-way cut.
    deaf: set[str] = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)
    events: dict[str, list[tuple[float, Event]]] = field(default_factory=dict)
    _groups: dict[str, int] = field(default_factory=dict)
    _heap: list[tuple[float, int, str, str, bytes]] = field(default_factory=list)
    # Engine timers: (time, serial, name), with stale entries skipped on pop; an
    # engine's next_wakeup only changes when it is called, so it is read back then.
    _timers: list[tuple[float, int, str]] = field(default_factory=list)
    _wakeups: dict[str, float] = field(default_factory=dict)
    _serial: int = 0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"network-{self.seed}")

    @staticmethod
    def address(name: str) -> str:
        return f"{name}.test:7000"

    def add(self, name: str, *, incarnation: int = 0, generation: int = 0) -> Engine:
        """Create (or replace, for a restart) the engine called ``name``."""
        rng = random.Random(f"engine-{self.seed}-{name}-{generation}")
        engine = Engine(
            name,
            self.address(name),
            self.config,
            rng,
            f"{name}-{generation}",
            incarnation=incarnation,
        )
        self.engines[name] = engine
        self.stopped.discard(name)
        self.events.setdefault(name, [])
        self._wakeups.pop(name, None)
        self._collect(name)
        return engine

    def start(self, count: int, *, prefix: str = "n") -> list[str]:
        """Add ``count`` engines and have each join through the first one."""
        names = [f"{prefix}{i}" for i in range(count)]
        for name in names:
            self.add(name)
        seed = self.address(names[0])
        for name in names:
            self.engines[name].join([seed], self.now)
            self._collect(name)
        return names

    def stop(self, name: str) -> None:
        """Crash ``name``: it neither runs nor receives from now on."""
        self.stopped.add(name)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut the network between the groups (members of no group are cut from all)."""
        self._groups = {name: index for index, group in enumerate(groups) for name in group}

    def heal(self) -> None:
        self._groups = {}

    def _reachable(self, source: str, destination: str) -> bool:
        if not self._groups:
            return True
        return self._groups.get(source, -1) == self._groups.get(destination, -2)

    def _deliverable(self, source: str, destination: str) -> bool:
        running = (
            destination in self.engines
            and destination not in self.stopped
            and destination not in self.deaf
        )
        return running and self._reachable(source, destination)

    def _collect(self, name: str) -> None:
        engine = self.engines[name]
        wakeup = engine.next_wakeup()
        if self._wakeups.get(name) != wakeup:
            self._wakeups[name] = wakeup
            self._serial += 1
            heapq.heappush(self._timers, (wakeup, self._serial, name))
        for frame in engine.take_outgoing():
            self.sent.append(Sent(self.now, name, frame.address, frame.data, frame.reliable))
            destination = frame.address.partition(".")[0]
            if not frame.reliable and self._rng.random() < self.loss:
                continue
            delay = self._rng.uniform(*self.latency)
            self._serial += 1
            heapq.heappush(
                self._heap, (self.now + delay, self._serial, name, destination, frame.data)
            )
        for event in engine.take_events():
            self.events[name].append((self.now, event))

    def _next_timer(self) -> tuple[float, str] | None:
        """The earliest current timer of a running engine (stale entries dropped)."""
        while self._timers:
            moment, _, name = self._timers[0]
            if name in self.stopped or self._wakeups.get(name) != moment:
                heapq.heappop(self._timers)
                continue
            return moment, name
        return None

    def run(self, seconds: float) -> None:
        """Advance virtual time by ``seconds``, delivering and ticking as due."""
        self.run_until(lambda: False, seconds)

    def run_until(self, done: Callable[[], bool], max_seconds: float) -> bool:
        """Run until ``done()`` holds (checked after every step) or time runs out.

        Returns:
            Whether ``done()`` became true.
        """
        deadline = self.now + max_seconds
        for _ in range(MAX_STEPS):
            if done():
                return True
            timer = self._next_timer()
            next_tick = math.inf if timer is None else timer[0]
            next_delivery = self._heap[0][0] if self._heap else math.inf
            moment = min(next_tick, next_delivery)
            if moment > deadline:
                self.now = deadline
                return done()
            self.now = max(self.now, moment)
            if next_delivery <= next_tick:
                _, _, source, destination, data = heapq.heappop(self._heap)
                if self._deliverable(source, destination):
                    self.engines[destination].receive(data, self.address(source), self.now)
                    self._collect(destination)
            elif timer is not None:
                heapq.heappop(self._timers)
                del self._wakeups[timer[1]]
                self.engines[timer[1]].tick(self.now)
                self._collect(timer[1])
        raise AssertionError("the virtual network did not settle within MAX_STEPS steps")

    def about(self, observer: str, node_id: str) -> list[tuple[float, Event]]:
        """The member events ``observer`` raised about ``node_id``, with their times."""
        return [
            (t, e)
            for t, e in self.events[observer]
            if not isinstance(e, KeyChanged) and e.member.node_id == node_id
        ]

    def status(self, observer: str, member: str) -> Status | None:
        for m in self.engines[observer].members():
            if m.node_id == member:
                return m.status
        return None

    def sees_all(self, names: Iterable[str], status: Status = Status.ALIVE) -> bool:
        """Whether each running engine in ``names`` sees every one of them as ``status``."""
        names = list(names)
        return all(
            self.status(observer, member) is status
            for observer in names
            if observer not in self.stopped
            for member in names
        )
