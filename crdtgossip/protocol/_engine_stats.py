"""What the engine counts: one dict of counters, drops by reason and gauges.

Most counters are kept where they happen (``_counters``, ``_drops``); the parts that
count in their own objects (the outbox, the queue, the prober, the quorum tracker, the
delivery log, the clock) are read into them here, when the driver asks.
"""

from __future__ import annotations

from crdtgossip.protocol._engine_base import DROP_REASONS, EngineCore
from crdtgossip.protocol.delivery import DeliveryLog
from crdtgossip.protocol.states import Status

__all__ = ["DROP_REASONS", "StatsEngine"]


class StatsEngine(EngineCore):
    """The counting half of :class:`~crdtgossip.protocol.Engine`."""

    _delivery: DeliveryLog

    def _clock_stats(self, stats: dict[str, int]) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """Counters since construction.

        Returns:
            ``frames_in``/``bytes_in``/``messages_in`` and the same ``_out``,
            ``datagrams_out``, ``reliable_frames_out``, ``decode_errors`` (malformed
            frames and undecodable payloads), ``merge_errors`` (payloads of the wrong
            type or that failed to merge), ``duplicate_deltas``, ``deltas_merged``,
            ``states_merged``, ``local_updates``, ``push_pulls``, ``keys_restored``,
            ``keys_deleted``, the quorum counters (``quorum_writes``, ``quorum_reads``,
            ``quorum_failures``, ``quorum_late_answers``, ``write_requests_served``,
            ``read_requests_served``, ``read_repairs``, ``held_acks_dropped``), one
            ``drop_<reason>`` per reason in :data:`DROP_REASONS`, ``buddy_suspicions``
            (suspicions sent on a probe to the suspect), the delivery counters
            ``delivery_retransmits``, ``delivery_abandoned`` ((delta, member) pairs
            left to anti-entropy at the buffer's cap) and ``delivery_stale_acks``, and
            the gauges ``members_alive``, ``queue_length``, ``delivery_pending`` (local
            deltas not yet acknowledged by every live member), ``keys``,
            ``tombstones`` (deleted keys whose record is kept, see
            :mod:`crdtgossip.keylife`), ``health_score``, and the clock's
            ``clock_behind`` and ``clock_carries`` (see ``_engine_clock``).
        """
        self._drops["oversize"] = self._outbox.oversize_drops
        self._drops["queue_overflow"] = self._queue.overflow_drops
        self._drops["relay_limit"] = self._prober.relay_drops
        self._drops["stale_reply"] = self._prober.stale_replies
        self._drops["out_of_range"] = self._membership.refused_rumors
        self._counters["quorum_failures"] = self._quorum.failures
        self._counters["quorum_late_answers"] = self._quorum.late_answers
        self._counters["held_acks_dropped"] = self._quorum.held_dropped
        stats = dict(self._counters)
        stats.update({f"drop_{reason}": n for reason, n in self._drops.items()})
        stats["members_alive"] = self._membership.count(Status.ALIVE)
        stats["queue_length"] = len(self._queue)
        stats["keys"] = len(self._store)
        stats["tombstones"] = len(self._tombstones)
        stats["buddy_suspicions"] = self._prober.buddy_suspicions
        stats["delivery_pending"] = len(self._delivery)
        stats["delivery_retransmits"] = self._delivery.retransmits
        stats["delivery_abandoned"] = self._delivery.abandoned
        stats["delivery_stale_acks"] = self._delivery.stale_acks
        stats["health_score"] = self._awareness.score
        self._clock_stats(stats)
        return stats
