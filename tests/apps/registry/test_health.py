"""Health from the latest event: the rules, and when events expire."""

from __future__ import annotations

from typing import Any

import pytest

from crdtgossip.apps.registry.health import (
    CRITICAL,
    PASSING,
    WARNING,
    expired,
    expires_at,
    instance_health,
    next_expiry,
    shown_event,
)


def event(state: str = "ok", time: float = 100.0, ttl: float = 10.0) -> dict[str, Any]:
    return {"state": state, "time": time, "ttl": ttl}


def test_no_event_is_passing() -> None:
    assert instance_health(None, 1e12) == PASSING


@pytest.mark.parametrize(
    ("state", "health"), [("ok", PASSING), ("warning", WARNING), ("critical", CRITICAL)]
)
def test_latest_event_state_holds_until_time_plus_ttl(state: str, health: str) -> None:
    assert instance_health(event(state), 100.0) == health
    assert instance_health(event(state), 109.999) == health
    assert instance_health(event(state), 110.0) == CRITICAL
    assert instance_health(event(state), 1e12) == CRITICAL


def test_an_unknown_state_counts_as_critical() -> None:
    assert instance_health(event("bogus"), 100.0) == CRITICAL


def test_expired_and_next_expiry() -> None:
    events = {
        "a": event(time=100, ttl=10),
        "b": event(time=100, ttl=20),
        "c": event(time=50, ttl=1),
    }
    assert expires_at(events["a"]) == 110.0
    assert expired(events, 105.0) == {"c"}
    assert expired(events, 110.0) == {"a", "c"}
    assert next_expiry(events, 105.0) == 110.0
    assert next_expiry(events, 110.0) == 120.0
    assert next_expiry(events, 120.0) is None
    assert next_expiry({}, 0.0) is None


def test_an_expired_event_is_shown_as_riemann_re_emits_it() -> None:
    stored = {**event("warning", time=100.0, ttl=10.0), "host": "h", "metric": 0.5}
    assert shown_event(None, 200.0) is None
    assert shown_event(stored, 109.0) == stored
    shown = shown_event(stored, 150.0)
    assert shown is not None
    assert shown["state"] == "expired"
    assert shown["expired_state"] == "warning"
    assert shown["time"] == 110.0  # the moment it expired, the same on every agent
    assert shown["host"] == "h"
    assert shown["metric"] == 0.5
    assert shown_event(stored, 110.0) == shown_event(stored, 1e9)  # no drift
    assert stored["state"] == "warning"  # the stored event is left as it was


def test_an_instance_whose_agent_is_gone_is_critical_whatever_its_event() -> None:
    assert instance_health(None, 100.0, agent_alive=False) == CRITICAL
    assert instance_health(event("ok"), 100.0, agent_alive=False) == CRITICAL
    assert instance_health(event("ok"), 100.0, agent_alive=True) == PASSING
