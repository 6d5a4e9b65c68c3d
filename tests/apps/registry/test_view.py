"""The API's answers computed from hand-built snapshots."""

from __future__ import annotations

from typing import Any

import pytest

from crdtgossip.apps.registry.model import InstanceRecord, RegistryError
from crdtgossip.apps.registry.view import (
    ReleaseElement,
    Snapshot,
    health_view,
    releases_view,
    service_view,
    services_view,
)


def rec(env: str = "prod") -> dict[str, Any]:
    return InstanceRecord(address="10.0.0.1", port=80, env=env).stored()


def snapshot(**parts: Any) -> Snapshot:
    fields: dict[str, Any] = {
        "instances": {},
        "maintenance": {},
        "events": {},
        "releases": frozenset(),
        "expectations": {},
    }
    fields.update(parts)
    return Snapshot(**fields)


def test_known_services_come_from_instances_and_expectations() -> None:
    state = snapshot(
        instances={"web": {"w1": rec()}, "gone": {}},
        expectations={("prod", "db"): 1},
    )
    assert state.known_services() == {"web", "db"}
    assert services_view(state) == {"services": {"db": [], "web": ["w1"]}}
    assert service_view(state, "db", 0.0) == {"instances": []}
    with pytest.raises(RegistryError) as caught:
        service_view(state, "gone", 0.0)
    assert caught.value.status == 404


def test_flags_and_events_of_unregistered_instances_are_not_shown() -> None:
    state = snapshot(
        instances={"web": {"w1": rec()}},
        maintenance={("web", "w9"): {"enabled": True}},
        events={("web", "w9"): {"state": "critical", "time": 0.0, "ttl": 1e9}},
    )
    assert health_view(state, 1.0)["health"]["prod"]["web"]["passing"] == 1
    assert [view["id"] for view in service_view(state, "web", 1.0)["instances"]] == ["w1"]


def release(env: str, time: float, version: str) -> ReleaseElement:
    return (env, "web", time, version, None, None)


def test_releases_at_a_time_and_ties() -> None:
    state = snapshot(
        releases=frozenset(
            {
                release("prod", 10.0, "1"),
                release("prod", 20.0, "2"),
                release("prod", 20.0, "3"),  # same instant: the order breaks the tie
                release("dev", 5.0, "0"),
            }
        )
    )
    now = releases_view(state)
    assert now["at"] is None
    assert now["releases"]["prod"]["web"]["current"]["version"] == "3"
    assert [r["version"] for r in now["releases"]["prod"]["web"]["history"]] == ["3", "2", "1"]
    assert list(now["releases"]) == ["dev", "prod"]
    then = releases_view(state, at=15.0)
    assert then["releases"]["prod"]["web"]["current"]["version"] == "1"
    assert then["releases"]["dev"]["web"]["current"]["version"] == "0"
    assert releases_view(state, at=4.0)["releases"] == {}


def test_health_counts_per_env_and_service_against_expectations() -> None:
    state = snapshot(
        instances={
            "web": {"a": rec(), "b": rec(), "c": rec(), "d": rec("dev")},
            "db": {"x": rec()},
        },
        maintenance={("web", "a"): {"enabled": True}, ("web", "b"): {"enabled": False}},
        events={
            ("web", "c"): {"state": "ok", "time": 0.0, "ttl": 5.0},  # expired at t=10
            ("db", "x"): {"state": "warning", "time": 9.0, "ttl": 5.0},
        },
        expectations={("prod", "web"): 2, ("prod", "api"): 1},
    )
    summary = health_view(state, 10.0)
    web = summary["health"]["prod"]["web"]
    assert web == {
        "passing": 2,
        "warning": 0,
        "critical": 1,
        "maintenance": 1,
        "available": 1,
        "min_passing": 2,
        "shortfall": 1,
        "ok": False,
    }
    assert summary["health"]["prod"]["api"]["shortfall"] == 1
    assert summary["health"]["prod"]["db"]["warning"] == 1
    assert summary["health"]["prod"]["db"]["min_passing"] is None
    assert summary["health"]["prod"]["db"]["ok"] is True
    assert summary["health"]["dev"]["web"]["available"] == 1
    assert summary["ok"] is False


def test_an_instance_through_a_dead_agent_shows_critical_with_its_agent() -> None:
    through_a = {**rec(), "agent": "a"}
    state = snapshot(
        instances={"web": {"w1": through_a, "w2": rec()}}, dead_agents=frozenset({"a"})
    )
    shown = {view["id"]: view for view in service_view(state, "web", 0.0)["instances"]}
    assert (shown["w1"]["health"], shown["w1"]["agent"]) == ("critical", "a")
    assert (shown["w2"]["health"], shown["w2"]["agent"]) == ("passing", None)
    assert [
        view["id"] for view in service_view(state, "web", 0.0, passing_only=True)["instances"]
    ] == ["w2"]
    assert health_view(state, 0.0)["health"]["prod"]["web"]["critical"] == 1
