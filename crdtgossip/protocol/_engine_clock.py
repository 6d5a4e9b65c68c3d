"""The engine's clock half: its hybrid logical clock, and the check of received stamps.

Every delta, state and repair patch the engine merges passes :meth:`ClockEngine._admit`
first: its highest LWW stamp (:func:`~crdtgossip.protocol.clock.max_stamp`) must be at
most this node's wall clock plus ``GossipConfig.max_clock_offset``. One beyond is
refused whole and counted (``drop_clock_ahead``); the writers refused lately tell
whether this node's own clock is the one behind (``clock_behind``, see
:class:`~crdtgossip.protocol.clock.SkewMonitor`). An admitted stamp advances the clock,
so the node's next write is ordered after it.
"""

from __future__ import annotations

from typing import cast

from crdtgossip.codec import decode
from crdtgossip.crdts import CRDT
from crdtgossip.errors import DecodeError
from crdtgossip.protocol._engine_base import EngineCore
from crdtgossip.protocol.clock import HLC, SkewMonitor, max_stamp, may_hold_stamps
from crdtgossip.protocol.states import Status

__all__ = ["ClockEngine"]


class ClockEngine(EngineCore):
    """The clock half of :class:`~crdtgossip.protocol.Engine` (see the module doc)."""

    clock: HLC
    _skew: SkewMonitor
    _now: float

    def _admit(self, value: object) -> bool:
        """Whether a received state or delta may be merged; advance the clock past it.

        Returns:
            False (counted in ``drop_clock_ahead``) when its highest stamp is beyond
            this node's clock plus ``max_clock_offset``.
        """
        stamp, writer = max_stamp(value)
        if stamp == 0 or self.clock.observe(stamp):
            return True
        self._drops["clock_ahead"] += 1
        lead = stamp - self.clock.now()
        self._skew.refuse(writer, lead, self._now, self._membership.count(Status.ALIVE) - 1)
        return False

    def _admit_patch(self, key: str, payload: bytes) -> bool:
        """:meth:`_admit` for an encoded repair patch of ``key`` (decoded only when the
        key's type holds stamps, or while the rollback check watches merges; a malformed
        one is left to the repair to count)."""
        state = self._store.get(key)
        if not payload or state is None:
            return True
        if not (may_hold_stamps(state) or self._watching_rollback()):
            return True
        try:
            value = decode(payload)
        except DecodeError:
            return True
        self._rollback_watch(key, cast(CRDT, value))
        return self._admit(value)

    def _clock_stats(self, stats: dict[str, int]) -> None:
        """Add the clock's gauges to ``stats``: ``clock_behind`` (1 when this node's
        clock looks behind its peers') and ``clock_carries``."""
        self._skew.review(self._now, self._membership.count(Status.ALIVE) - 1)
        stats["clock_behind"] = int(self._skew.behind)
        stats["clock_carries"] = self.clock.carries
