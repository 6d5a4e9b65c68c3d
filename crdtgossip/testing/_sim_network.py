"""The simulator's network: seeded faults, partitions, and frames in flight.

Frames the engine marks unreliable go by datagram (lost, duplicated or reordered with
the configured probabilities), reliable frames by stream (never lost or duplicated,
delivered in order per pair of nodes). Both take a delay drawn uniformly from
``delay``; neither crosses a partition. Frames in flight wait in a heap ordered by
arrival time, which :class:`~crdtgossip.testing.simulation.Simulation` pops.
"""

from __future__ import annotations

import heapq
import math
import random
from typing import Final

from crdtgossip.errors import ConfigError
from crdtgossip.transport.memory import REORDER_HOLDBACK

__all__ = ["DEFAULT_DELAY", "SimNetwork"]

DEFAULT_DELAY: Final = (0.0005, 0.002)
"""One-way delay in seconds, uniform between the two: a LAN (memberlist's LAN preset
assumes sub-millisecond to few-millisecond round trips)."""


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


class SimNetwork:
    """Frames between numbered nodes, with seeded faults.

    Args:
        seed: seeds the network's generator (delays, losses, and the simulator's
            other network-side draws).

    Attributes:
        rng: the network's random generator.
        deliveries: the frames in flight, a heap of ``(arrival, serial, destination,
            source, data)``.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"crdtgossip-sim-network-{seed}")
        self.deliveries: list[tuple[float, int, int, int, bytes]] = []
        self._serial = 0
        self._loss = 0.0
        self._delay = DEFAULT_DELAY
        self._duplicate = 0.0
        self._reorder = 0.0
        self._stream_clock: dict[tuple[int, int], float] = {}
        self._groups: list[int] | None = None

    def set_faults(
        self,
        *,
        loss: float | None = None,
        delay: tuple[float, float] | None = None,
        duplicate: float | None = None,
        reorder: float | None = None,
    ) -> None:
        """Change the faults from now on (``None`` keeps a setting).

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

    def cut(self, assignment: list[int] | None) -> None:
        """Partition: node ``i`` reaches node ``j`` only if their groups are equal
        (``None``: everyone reaches everyone)."""
        self._groups = assignment

    def reachable(self, source: int, destination: int) -> bool:
        """Whether a frame from ``source`` gets to ``destination`` now."""
        groups = self._groups
        return groups is None or groups[source] == groups[destination]

    def send(self, now: float, source: int, destination: int, data: bytes, reliable: bool) -> None:
        """Put one frame in flight (or lose it), by stream or by datagram."""
        if not self.reachable(source, destination):
            return
        rng = self.rng
        low, high = self._delay
        if reliable:
            # A stream: in order per pair of nodes, never lost or duplicated.
            pair = (source, destination)
            arrival = max(now + rng.uniform(low, high), self._stream_clock.get(pair, 0.0))
            self._stream_clock[pair] = arrival
            self._serial += 1
            heapq.heappush(self.deliveries, (arrival, self._serial, destination, source, data))
            return
        if self._loss and rng.random() < self._loss:
            return
        copies = 2 if self._duplicate and rng.random() < self._duplicate else 1
        for _ in range(copies):
            arrival = now + rng.uniform(low, high)
            if self._reorder and rng.random() < self._reorder:
                arrival += high + REORDER_HOLDBACK
            self._serial += 1
            heapq.heappush(self.deliveries, (arrival, self._serial, destination, source, data))
