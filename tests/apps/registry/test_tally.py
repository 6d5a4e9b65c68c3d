"""Health counts follow single instances; expiries come from a heap, not a scan."""

from __future__ import annotations

from typing import Any

import pytest

from crdtgossip.apps.registry import tally as tally_module
from crdtgossip.apps.registry.health import instance_health
from crdtgossip.apps.registry.tally import HealthTally
from crdtgossip.apps.registry.view import Snapshot, health_view

Path = tuple[str, str]


def make() -> tuple[HealthTally, dict[Path, Any], dict[Path, Any], dict[Path, Any]]:
    records: dict[Path, Any] = {}
    flags: dict[Path, Any] = {}
    events: dict[Path, Any] = {}
    return HealthTally(records, flags, events), records, flags, events


def expected(records: dict[Path, Any], flags: Any, events: Any, expectations: Any) -> Any:
    instances: dict[str, dict[str, Any]] = {}
    for (service, instance), found in records.items():
        instances.setdefault(service, {})[instance] = found
    snapshot = Snapshot(instances, flags, events, frozenset(), expectations)
    return snapshot


def test_counts_follow_changes_and_expiries() -> None:
    counts, records, flags, events = make()
    expectations = {("prod", "web"): 2, ("prod", "api"): 1}
    for number in range(4):
        records[("web", f"w{number}")] = {"env": "prod"}
        counts.update(("web", f"w{number}"), 0.0)
    events[("web", "w1")] = {"state": "ok", "time": 0.0, "ttl": 10.0}
    counts.update(("web", "w1"), 0.0)
    events[("web", "w2")] = {"state": "warning", "time": 0.0, "ttl": 5.0}
    counts.update(("web", "w2"), 0.0)
    flags[("web", "w3")] = {"enabled": True}
    counts.update(("web", "w3"), 0.0)
    events[("db", "x")] = {"state": "ok", "time": 0.0, "ttl": 1.0}  # not registered
    counts.update(("db", "x"), 0.0)
    snapshot = expected(records, flags, events, expectations)
    assert counts.summary(expectations) == health_view(snapshot, 0.0)
    assert counts.next_expiry() == 1.0
    for now in (1.0, 4.9, 5.0, 7.0, 10.0, 11.0):
        counts.advance(now)
        assert counts.summary(expectations) == health_view(snapshot, now), now
    del records[("web", "w0")]
    counts.update(("web", "w0"), 11.0)
    for number in (1, 2, 3):
        del records[("web", f"w{number}")]
        counts.update(("web", f"w{number}"), 11.0)
    assert counts.summary(expectations) == health_view(
        expected(records, flags, events, expectations), 11.0
    )
    assert "web" in counts.summary(expectations)["health"]["prod"]  # the expectation stays
    assert counts.summary({})["health"] == {}


def test_an_idle_advance_recounts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    counts, records, _, events = make()
    for number in range(1000):
        path = ("web", f"w{number}")
        records[path] = {"env": "prod"}
        events[path] = {"state": "ok", "time": 0.0, "ttl": 100.0 + number}
        counts.update(path, 0.0)
    recounted: list[Any] = []
    original = instance_health

    def spy(event: Any, now: float, *, agent_alive: bool = True) -> str:
        recounted.append(event)
        return original(event, now, agent_alive=agent_alive)

    monkeypatch.setattr(tally_module, "instance_health", spy)
    for now in range(1, 100):
        assert not counts.advance(float(now))
    assert recounted == []
    assert counts.advance(101.5)
    assert len(recounted) == 2  # the two events due by then, no others


def test_superseded_expiries_do_not_pile_up() -> None:
    counts, records, _, events = make()
    path = ("web", "w1")
    records[path] = {"env": "prod"}
    for moment in range(5000):
        events[path] = {"state": "ok", "time": float(moment), "ttl": 1e6}
        counts.update(path, float(moment))
    assert len(counts._heap) <= tally_module.HEAP_FLOOR + 1
    assert counts.next_expiry() is not None


def test_an_expiry_is_a_change_even_when_the_health_stays() -> None:
    """A critical event expiring keeps the instance critical, but its ``last_event``
    turns ``expired``: a blocked reader must wake, so :meth:`advance` says so."""
    counts, records, _, events = make()
    path = ("web", "w1")
    records[path] = {"env": "prod"}
    events[path] = {"state": "critical", "time": 0.0, "ttl": 10.0}
    counts.update(path, 0.0)
    before = counts.summary({})
    assert not counts.advance(9.0)
    assert counts.advance(10.0)
    assert counts.summary({}) == before  # the counts did not move
    assert not counts.advance(11.0)  # an expiry is a change once


def test_a_superseded_expiry_is_no_change() -> None:
    counts, records, _, events = make()
    path = ("web", "w1")
    records[path] = {"env": "prod"}
    events[path] = {"state": "critical", "time": 0.0, "ttl": 10.0}
    counts.update(path, 0.0)
    events[path] = {"state": "critical", "time": 5.0, "ttl": 10.0}
    counts.update(path, 5.0)
    assert not counts.advance(12.0)  # the first event's expiry no longer applies
    assert counts.advance(15.0)
