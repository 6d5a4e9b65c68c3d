"""Health of an instance from its latest pushed event (pure functions, no I/O).

The rules, as in Consul's TTL checks and Riemann's index:

* no event at all: **passing**. Health is opt-in; a service that pushes nothing is
  taken at its registration's word;
* otherwise the latest event's state: ``ok`` is **passing**, ``warning`` is
  **warning**, ``critical`` is **critical**;
* once ``time + ttl`` of that event has passed: **critical**, whatever it said. A host
  that stops reporting is presumed broken, not presumed fine;
* whatever the events say, **critical** while the agent that registered the instance
  is known dead or gone (Consul's serf health check does the same): an instance whose
  agent is not there to report for it is not taken at its registration's word.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

__all__ = [
    "CRITICAL",
    "HEALTH_STATES",
    "PASSING",
    "WARNING",
    "expired",
    "expires_at",
    "instance_health",
    "next_expiry",
]

PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"

#: Every health an instance can have, best first.
HEALTH_STATES: tuple[str, ...] = (PASSING, WARNING, CRITICAL)

K = TypeVar("K", bound=Hashable)

_FROM_EVENT_STATE = {"ok": PASSING, "warning": WARNING, "critical": CRITICAL}


def expires_at(event: Mapping[str, Any]) -> float:
    """When an event stops holding: its ``time + ttl``, in Unix seconds."""
    return float(event["time"]) + float(event["ttl"])


def instance_health(
    event: Mapping[str, Any] | None, now: float, *, agent_alive: bool = True
) -> str:
    """The health of an instance whose latest event is ``event`` (None: no event).

    Args:
        event: the stored event dict (``state``, ``time``, ``ttl`` ...), or None.
        now: the current Unix time.
        agent_alive: False when the agent that registered the instance is known dead
            or gone from the cluster.

    Returns:
        :data:`PASSING`, :data:`WARNING` or :data:`CRITICAL`.
    """
    if not agent_alive:
        return CRITICAL
    if event is None:
        return PASSING
    if now >= expires_at(event):
        return CRITICAL
    return _FROM_EVENT_STATE.get(str(event.get("state")), CRITICAL)


def expired(events: Mapping[K, Mapping[str, Any]], now: float) -> frozenset[K]:
    """The keys of the events that no longer hold at ``now``."""
    return frozenset(key for key, event in events.items() if now >= expires_at(event))


def next_expiry(events: Mapping[Any, Mapping[str, Any]], now: float) -> float | None:
    """The soonest ``time + ttl`` still ahead of ``now``, or None when none is."""
    ahead = [moment for moment in map(expires_at, events.values()) if moment > now]
    return min(ahead, default=None)
