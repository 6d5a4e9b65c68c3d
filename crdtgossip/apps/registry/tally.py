"""Health counts per (env, service), kept up to date per instance, and event expiry.

``GET /v1/health`` and ``/metrics`` answer with counts per (env, service). Counting
every instance on every read would cost the whole registry, so a :class:`HealthTally`
keeps each registered instance's contribution (its env, health and maintenance) and
the sums, and moves them when one instance changes: a registration, a flag, an event.

Health also changes with no write at all: an event stops holding at ``time + ttl``.
The tally keeps a heap of the expiries still ahead; :meth:`HealthTally.advance` pops
the ones that are due and recounts only those instances, so time passing costs the
expiries that happen, not a scan of every event. An expiry already passed when its
event arrives is counted at once (the instance is critical). A wall clock set back
does not un-expire an event until that instance changes again.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Set
from typing import Any

from crdtgossip.apps.registry.health import (
    CRITICAL,
    PASSING,
    WARNING,
    expires_at,
    instance_health,
)

__all__ = ["HEAP_SLACK", "HealthTally"]

#: The heap keeps superseded expiries until they come up (a lazy delete). When it holds
#: more than this many times the live events (plus the constant below), it is rebuilt
#: from the live events: amortised O(1) per event, and memory stays proportional to
#: the events, however often an instance reports with a long ttl.
HEAP_SLACK = 2

#: Heap entries below which no rebuild is worth it.
HEAP_FLOOR = 1024

Path = tuple[str, str]
_Counts = dict[str, int]


def _zero() -> _Counts:
    return {PASSING: 0, WARNING: 0, CRITICAL: 0, "maintenance": 0, "available": 0}


class HealthTally:
    """Counts of instances by (env, service) and health (see the module docstring).

    The tally reads the mirrored plain values it is given (``records``, ``flags``,
    ``events``: ``(service, instance)`` -> value) and ``dead_agents`` (node ids of
    agents known dead or gone, whose instances count as critical); call :meth:`update`
    with an instance whenever one of these changed for it.
    """

    def __init__(
        self,
        records: Mapping[Path, Mapping[str, Any]],
        flags: Mapping[Path, Mapping[str, Any]],
        events: Mapping[Path, Mapping[str, Any]],
        dead_agents: Set[str] = frozenset(),
    ) -> None:
        self._records = records
        self._dead_agents = dead_agents
        self._flags = flags
        self._events = events
        # instance -> (env, health, in maintenance) as counted.
        self._counted: dict[Path, tuple[str, str, bool]] = {}
        # (env, service) -> counts, and how many instances are counted there.
        self._counts: dict[tuple[str, str], _Counts] = {}
        self._members: dict[tuple[str, str], int] = {}
        self._heap: list[tuple[float, int, Path]] = []
        # instance -> the expiry last pushed for it, so a recount pushes nothing new.
        self._scheduled: dict[Path, float] = {}
        self._sequence = itertools.count()

    def update(self, path: Path, now: float) -> bool:
        """Recount one instance as it is at ``now``.

        Returns:
            Whether its contribution changed.
        """
        record = self._records.get(path)
        event = self._events.get(path)
        before = self._counted.get(path)
        after: tuple[str, str, bool] | None = None
        if record is not None:
            flag = self._flags.get(path)
            maintained = bool(flag and flag.get("enabled"))
            agent = record.get("agent")
            alive = agent is None or agent not in self._dead_agents
            health = instance_health(event, now, agent_alive=alive)
            after = (str(record["env"]), health, maintained)
        if event is None:
            self._scheduled.pop(path, None)
        else:
            moment = expires_at(event)
            if moment > now and self._scheduled.get(path) != moment:
                self._scheduled[path] = moment
                heapq.heappush(self._heap, (moment, next(self._sequence), path))
                self._compact()
        if before == after:
            return False
        service = path[0]
        if before is not None:
            self._add(before, service, -1)
            del self._counted[path]
        if after is not None:
            self._add(after, service, 1)
            self._counted[path] = after
        return True

    def _add(self, contribution: tuple[str, str, bool], service: str, sign: int) -> None:
        env, health, maintained = contribution
        pair = (env, service)
        counts = self._counts.get(pair)
        if counts is None:
            counts = self._counts[pair] = _zero()
        counts[health] += sign
        counts["maintenance"] += sign * maintained
        counts["available"] += sign * (health == PASSING and not maintained)
        members = self._members.get(pair, 0) + sign
        if members:
            self._members[pair] = members
        else:
            del self._members[pair]
            del self._counts[pair]

    def _compact(self) -> None:
        if len(self._heap) <= max(HEAP_FLOOR, HEAP_SLACK * len(self._events)):
            return
        self._scheduled = {path: expires_at(event) for path, event in self._events.items()}
        self._heap = [
            (moment, next(self._sequence), path) for path, moment in self._scheduled.items()
        ]
        heapq.heapify(self._heap)

    def advance(self, now: float) -> bool:
        """Recount the instances whose event expired by ``now``.

        Returns:
            Whether any event expired or any count changed.
        """
        changed = False
        heap = self._heap
        while heap and heap[0][0] <= now:
            moment, _, path = heapq.heappop(heap)
            event = self._events.get(path)
            # An expiry of the event still stored changes what a reader sees even when
            # the counts stay (a critical event expiring: its ``last_event`` turns
            # ``expired``), so it counts as a change; a superseded entry does not.
            if event is not None and expires_at(event) == moment:
                changed = True
            changed = self.update(path, now) or changed
        return changed

    def next_expiry(self) -> float | None:
        """The soonest expiry still pending (possibly of a superseded event), or None."""
        return self._heap[0][0] if self._heap else None

    def summary(self, expectations: Mapping[tuple[str, str], int]) -> dict[str, Any]:
        """``GET /v1/health`` as :func:`~crdtgossip.apps.registry.view.health_view` has it.

        Costs the number of (env, service) pairs, not of instances. Call
        :meth:`advance` first so expiries up to now are counted.
        """
        pairs = set(self._counts)
        pairs.update(expectations)
        summary: dict[str, dict[str, Any]] = {}
        every_ok = True
        for env, service in sorted(pairs):
            found: dict[str, Any] = dict(self._counts.get((env, service)) or _zero())
            expected = expectations.get((env, service))
            shortfall = max(0, expected - found["available"]) if expected is not None else 0
            found.update(min_passing=expected, shortfall=shortfall, ok=shortfall == 0)
            every_ok = every_ok and shortfall == 0
            summary.setdefault(env, {})[service] = found
        return {"ok": every_ok, "health": summary}
