"""An in-process network with seeded faults, for tests and the simulator.

:class:`MemoryNetwork` connects :class:`MemoryTransport` objects by address and loses,
delays, duplicates and reorders their frames, and cuts partitions between groups of
addresses. All randomness comes from one ``random.Random(seed)``, so a run replays
exactly given the same seed and the same sends in the same order.

Deliveries are scheduled through a :class:`Scheduler`. The default,
:class:`AsyncioScheduler`, uses the running event loop's ``call_later``;
:class:`ManualScheduler` runs on virtual time with no event loop at all, which is what
a deterministic simulator needs: it advances the clock itself and every delivery
happens at an exact virtual instant, ties broken by the order they were scheduled.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable
from functools import partial
from typing import Protocol

from crdtgossip.errors import ConfigError, TransportError
from crdtgossip.transport._address import parse_address
from crdtgossip.transport._base import ReceiveCallback, TransportStats, deliver

__all__ = [
    "MEMORY_MAX_DATAGRAM",
    "REORDER_HOLDBACK",
    "AsyncioScheduler",
    "ManualScheduler",
    "MemoryNetwork",
    "MemoryTransport",
    "Scheduler",
]

MEMORY_MAX_DATAGRAM = 16 * 1024 * 1024
"""Default largest frame a memory transport carries: the same bound as TCP frames, so
one memory transport can stand in for both the UDP and the TCP path. Pass
``max_datagram=1400`` to model UDP alone."""

REORDER_HOLDBACK = 0.010
"""Seconds a reordered frame is held back *beyond* the largest configured delay, so
that frames sent up to this long after it arrive first. 10 ms is well inside a LAN
probe timeout (memberlist: 500 ms), so reordering alone does not look like loss."""


class Scheduler(Protocol):
    """Runs callbacks after a delay; how the memory network schedules deliveries."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback()`` once, ``delay`` seconds from now (0 means soon, not now).

        Args:
            delay: seconds, at least 0.
            callback: what to run.
        """
        ...


class AsyncioScheduler:
    """Schedules on the running asyncio event loop (the default scheduler).

    The loop is looked up at each call, so one network can be built outside the loop
    and used inside it.
    """

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback()`` on the running loop after ``delay`` seconds.

        Raises:
            RuntimeError: no event loop is running in this thread.
        """
        asyncio.get_running_loop().call_later(delay, callback)


class ManualScheduler:
    """A virtual clock with a queue of timed callbacks and no event loop.

    Time moves only when :meth:`advance` or :meth:`run` is called. Callbacks due at
    the same instant run in the order they were scheduled, so runs are exactly
    repeatable.

    Args:
        start: the initial virtual time in seconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()

    @property
    def now(self) -> float:
        """The current virtual time in seconds."""
        return self._now

    @property
    def pending(self) -> int:
        """How many callbacks wait to run."""
        return len(self._queue)

    def next_time(self) -> float | None:
        """The virtual time of the earliest pending callback, or None if none waits."""
        return self._queue[0][0] if self._queue else None

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Queue ``callback()`` to run at ``now + delay`` virtual seconds.

        Raises:
            ConfigError: ``delay`` is negative or not finite.
        """
        if not (math.isfinite(delay) and delay >= 0):
            raise ConfigError(f"a delay must be a finite number of seconds >= 0, not {delay!r}")
        heapq.heappush(self._queue, (self._now + delay, next(self._sequence), callback))

    def advance(self, seconds: float) -> int:
        """Move the clock forward by ``seconds``, running every callback that falls due.

        Callbacks scheduled while this runs are run too if they fall due in the window.

        Args:
            seconds: how far to move, at least 0.

        Returns:
            How many callbacks ran.

        Raises:
            ConfigError: ``seconds`` is negative or not finite.
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ConfigError(f"cannot advance by {seconds!r} seconds")
        deadline = self._now + seconds
        ran = 0
        while self._queue and self._queue[0][0] <= deadline:
            due, _, callback = heapq.heappop(self._queue)
            self._now = due
            callback()
            ran += 1
        self._now = deadline
        return ran

    def run(self, max_callbacks: int) -> int:
        """Run pending callbacks in time order until none is left or ``max_callbacks``
        have run, moving the clock to each one's time.

        Args:
            max_callbacks: the bound on callbacks run (callbacks may schedule more).

        Returns:
            How many callbacks ran.
        """
        ran = 0
        while self._queue and ran < max_callbacks:
            due, _, callback = heapq.heappop(self._queue)
            self._now = due
            callback()
            ran += 1
        return ran


def _check_probability(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise ConfigError(f"{name} must be a probability from 0 to 1, not {value!r}")
    return float(value)


class MemoryNetwork:
    """An in-process network of :class:`MemoryTransport` objects with seeded faults.

    Each frame sent is, in this order: dropped if a partition separates sender and
    receiver; lost with probability ``loss``; duplicated with probability
    ``duplicate`` (the copy gets its own delay); each copy delayed by a uniform draw
    from ``delay``; and held back by an extra ``delay[1] + REORDER_HOLDBACK`` seconds
    with probability ``reorder``, so frames sent after it overtake it. The partition
    is checked again at delivery, so frames in flight when a partition forms are lost,
    as on a cut link. The same number of random draws is made for every frame sent
    past the partition check, so changing one fault rate does not reshuffle the others.

    Args:
        seed: seeds the network's own ``random.Random``; nothing else is random.
        loss: probability a frame is lost.
        delay: ``(low, high)`` seconds; each frame's delay is uniform in it.
        duplicate: probability a frame is delivered twice.
        reorder: probability a frame is held back so later frames overtake it.
        scheduler: runs deliveries; an :class:`AsyncioScheduler` when not given.

    Raises:
        ConfigError: a probability is outside 0..1, or the delay range is not
            ``0 <= low <= high`` in finite seconds.
    """

    def __init__(
        self,
        seed: int,
        loss: float = 0.0,
        delay: tuple[float, float] = (0.0, 0.0),
        duplicate: float = 0.0,
        reorder: float = 0.0,
        *,
        scheduler: Scheduler | None = None,
    ) -> None:
        self._loss = _check_probability("loss", loss)
        self._duplicate = _check_probability("duplicate", duplicate)
        self._reorder = _check_probability("reorder", reorder)
        low, high = delay
        if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low <= high):
            raise ConfigError(f"delay must be (low, high) seconds with 0 <= low <= high: {delay!r}")
        self._delay = (float(low), float(high))
        self._random = random.Random(seed)
        self._scheduler: Scheduler = scheduler if scheduler is not None else AsyncioScheduler()
        self._transports: dict[str, MemoryTransport] = {}
        self._cut: set[tuple[str, str]] = set()
        self._counts = dict.fromkeys(
            (
                "sent",
                "delivered",
                "lost",
                "duplicated",
                "reordered",
                "partitioned",
                "undeliverable",
            ),
            0,
        )

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler deliveries run on."""
        return self._scheduler

    def transport(
        self,
        address: str,
        on_receive: ReceiveCallback,
        *,
        max_datagram: int = MEMORY_MAX_DATAGRAM,
    ) -> MemoryTransport:
        """Create a transport at ``address``, attached to this network at once.

        Args:
            address: a ``"host:port"`` no attached transport of this network holds;
                any host name will do, nothing is resolved (``"node-7:7000"``).
            on_receive: called with ``(data, sender_address)`` for every frame.
            max_datagram: the largest frame it sends; larger ones are dropped and
                counted.

        Returns:
            The transport; :meth:`MemoryTransport.start` is a no-op for it.

        Raises:
            ConfigError: the address is malformed, its port is 0, or it is taken.
        """
        transport = MemoryTransport(self, address, on_receive, max_datagram=max_datagram)
        transport.attach()
        return transport

    def partition(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        """Cut every link between an address of ``group_a`` and one of ``group_b``,
        both ways. Cuts add up until :meth:`heal`.

        Args:
            group_a: addresses on one side.
            group_b: addresses on the other side.
        """
        side_b = list(group_b)
        for a in group_a:
            for b in side_b:
                if a != b:
                    self._cut.add((a, b))
                    self._cut.add((b, a))

    def heal(self) -> None:
        """Remove every partition."""
        self._cut.clear()

    def stats(self) -> dict[str, int]:
        """Network-wide counters.

        Returns:
            ``sent`` (frames handed to the network), ``delivered``, ``lost``,
            ``duplicated`` (extra copies made), ``reordered`` (copies held back),
            ``partitioned`` (dropped by a partition, at send or at delivery) and
            ``undeliverable`` (no transport attached at the address).
        """
        return dict(self._counts)

    def _attach(self, transport: MemoryTransport) -> None:
        holder = self._transports.get(transport.address)
        if holder is not None and holder is not transport:
            raise ConfigError(f"address {transport.address} is already taken on this network")
        self._transports[transport.address] = transport

    def _detach(self, transport: MemoryTransport) -> None:
        if self._transports.get(transport.address) is transport:
            del self._transports[transport.address]

    def _send(self, sender: str, receiver: str, data: bytes) -> None:
        counts = self._counts
        counts["sent"] += 1
        if (sender, receiver) in self._cut:
            counts["partitioned"] += 1
            return
        rng = self._random
        lost = rng.random() < self._loss
        duplicated = rng.random() < self._duplicate
        if lost:
            counts["lost"] += 1
            return
        low, high = self._delay
        copies = 2 if duplicated else 1
        counts["duplicated"] += copies - 1
        for _ in range(copies):
            delay = rng.uniform(low, high)
            if rng.random() < self._reorder:
                delay += high + REORDER_HOLDBACK
                counts["reordered"] += 1
            self._scheduler.call_later(delay, partial(self._deliver, sender, receiver, data))

    def _deliver(self, sender: str, receiver: str, data: bytes) -> None:
        if (sender, receiver) in self._cut:
            self._counts["partitioned"] += 1
            return
        target = self._transports.get(receiver)
        if target is None:
            self._counts["undeliverable"] += 1
            return
        self._counts["delivered"] += 1
        target._receive(data, sender)


class MemoryTransport:
    """A :class:`~crdtgossip.transport.Transport` on a :class:`MemoryNetwork`.

    Made by :meth:`MemoryNetwork.transport`, attached at once. Besides the async
    ``start``/``close`` of the protocol it has synchronous :meth:`attach` and
    :meth:`detach`, for a simulator that runs without an event loop (a crash is a
    detach; a restart, a new transport at the same address).
    """

    def __init__(
        self,
        network: MemoryNetwork,
        address: str,
        on_receive: ReceiveCallback,
        *,
        max_datagram: int = MEMORY_MAX_DATAGRAM,
    ) -> None:
        _, port = parse_address(address)
        if port == 0:
            raise ConfigError(f"a memory transport needs a port other than 0: {address!r}")
        if max_datagram < 1:
            raise ConfigError(f"max_datagram must be at least 1 byte, not {max_datagram}")
        self.max_datagram = max_datagram
        self._network = network
        self._address = address
        self._on_receive = on_receive
        self._attached = False
        self._stats = TransportStats()

    @property
    def address(self) -> str:
        """The address this transport was given."""
        return self._address

    @property
    def attached(self) -> bool:
        """Whether it sends and receives on the network now."""
        return self._attached

    def attach(self) -> None:
        """Join the network: receive frames sent to this address; idempotent.

        Raises:
            ConfigError: another transport holds the address.
        """
        self._network._attach(self)
        self._attached = True

    def detach(self) -> None:
        """Leave the network: frames to this address are undeliverable; idempotent."""
        self._network._detach(self)
        self._attached = False

    async def start(self) -> None:
        """Attach (a no-op when attached, as after :meth:`MemoryNetwork.transport`).

        Raises:
            TransportError: another transport took the address since this one was
                detached.
        """
        try:
            self.attach()
        except ConfigError as exc:
            raise TransportError(str(exc)) from exc

    async def close(self) -> None:
        """Detach; idempotent."""
        self.detach()

    def send(self, address: str, data: bytes) -> None:
        """Hand ``data`` to the network for ``address``; never raises.

        Dropped and counted as ``send_errors`` when detached, and as
        ``oversize_drops`` when larger than ``max_datagram``. Whether it arrives is
        up to the network's faults.
        """
        if not self._attached:
            self._stats.send_errors += 1
            return
        if len(data) > self.max_datagram:
            self._stats.oversize_drops += 1
            return
        self._stats.frames_sent += 1
        self._stats.bytes_sent += len(data)
        self._network._send(self._address, address, bytes(data))

    def stats(self) -> dict[str, int]:
        """Counters of this transport (see :class:`TransportStats`)."""
        return self._stats.as_dict()

    def _receive(self, data: bytes, sender: str) -> None:
        deliver(self._on_receive, self._stats, data, sender)
