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

An event whose TTL ran out is shown as Riemann's index re-emits it when it expires one:
the same event with state ``expired`` (:func:`shown_event`). It is derived, not
written: every agent shows the same expired event, stamped with the moment of expiry
(``time + ttl``), with nothing replicated, and a fresh event replaces it at once.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

__all__ = [
    "CRITICAL",
    "EXPIRED",
    "HEALTH_STATES",
    "PASSING",
    "WARNING",
    "expired",
    "expires_at",
    "instance_health",
    "next_expiry",
    "shown_event",
]

PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"

#: The state of an event whose TTL ran out, as Riemann's index re-emits it.
EXPIRED = "expired"

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


def shown_event(event: Mapping[str, Any] | None, now: float) -> dict[str, Any] | None:
    """The latest event of an instance as it stands at ``now``.

    While it holds, the event itself. Once its ``time + ttl`` has passed, the expired
    event: the same fields, with state :data:`EXPIRED`, ``time`` the moment it expired,
    ``expired_state`` the state it held, and a description saying so. (Riemann's index
    emits the expired event with the fields of the one it expired, too.)

    Args:
        event: the stored event dict, or None (no event: None).
        now: the current Unix time.
    """
    if event is None:
        return None
    shown = dict(event)
    moment = expires_at(event)
    if now < moment:
        return shown
    shown["expired_state"] = shown.get("state")
    shown["state"] = EXPIRED
    shown["time"] = moment
    shown["description"] = (
        f"no event within its ttl of {float(event['ttl']):g} s; the last one "
        f"({event.get('state')!s}) was at {float(event['time']):.3f}"
    )
    return shown


def expired(events: Mapping[K, Mapping[str, Any]], now: float) -> frozenset[K]:
    """The keys of the events that no longer hold at ``now``."""
    return frozenset(key for key, event in events.items() if now >= expires_at(event))


def next_expiry(events: Mapping[Any, Mapping[str, Any]], now: float) -> float | None:
    """The soonest ``time + ttl`` still ahead of ``now``, or None when none is."""
    ahead = [moment for moment in map(expires_at, events.values()) if moment > now]
    return min(ahead, default=None)
