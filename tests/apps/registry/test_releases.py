"""Release records as plain values: the two element shapes, what is current, filters."""

from __future__ import annotations

from typing import Any

from crdtgossip.apps.registry.releases import Release, release_element, service_releases
from crdtgossip.apps.registry.view import Snapshot, releases_view


def snapshot(*releases: Release, instances: dict[str, Any] | None = None) -> Snapshot:
    return Snapshot(
        instances=instances or {},
        maintenance={},
        events={},
        releases=frozenset(release_element(release) for release in releases),
        expectations={},
    )


def test_a_release_with_only_the_old_fields_keeps_the_old_shape() -> None:
    legacy = Release("prod", "web", 10.0, "1.0", "41", None)
    assert release_element(legacy) == ("prod", "web", 10.0, "1.0", "41", None)
    full = Release("prod", "web", 10.0, "1.0", instance="web-1", initiator="ci")
    element = release_element(full)
    assert len(element) == 11
    assert element[:6] == ("prod", "web", 10.0, "1.0", None, None)
    assert Release.of(element) == full
    assert Release.of(release_element(legacy)) == legacy


def test_elements_of_an_unknown_shape_are_left_out() -> None:
    good = release_element(Release("prod", "web", 1.0, "1"))
    for strange in [("prod",), ("prod", "web", "soon", "1", None, None), "x", (1,) * 11]:
        assert Release.of(strange) is None
    found = service_releases({good, ("prod", "web", None, "2", None, None), ("a", "b")})
    assert [release.version for release in found["prod"]["web"].history] == ["1"]


def test_a_canary_is_the_instances_until_the_service_is_released_again() -> None:
    state = snapshot(
        Release("prod", "web", 10.0, "1.0"),
        Release("prod", "web", 20.0, "1.1", instance="web-2"),
        Release("prod", "web", 30.0, "1.1"),
        Release("prod", "web", 40.0, "1.2", instance="web-3"),
    )
    entry = releases_view(state, at=25.0)["releases"]["prod"]["web"]
    assert entry["current"]["version"] == "1.0"  # the canary is not the service's
    assert {name: found["version"] for name, found in entry["instances"].items()} == {
        "web-2": "1.1"
    }
    entry = releases_view(state)["releases"]["prod"]["web"]
    assert entry["current"]["version"] == "1.1"
    assert {name: found["version"] for name, found in entry["instances"].items()} == {
        "web-2": "1.1",
        "web-3": "1.2",
    }
    assert [found["version"] for found in entry["history"]] == ["1.2", "1.1", "1.1", "1.0"]


def test_a_service_with_only_instance_releases_shows_the_latest_as_current() -> None:
    state = snapshot(
        Release("prod", "db", 1.0, "5", instance="db-1"),
        Release("prod", "db", 2.0, "6", instance="db-2"),
    )
    assert releases_view(state)["releases"]["prod"]["db"]["current"]["version"] == "6"


def test_filters_by_env_service_instance_and_limit() -> None:
    state = snapshot(
        Release("prod", "web", 1.0, "1"),
        Release("prod", "web", 2.0, "2", instance="web-1"),
        Release("prod", "db", 3.0, "9"),
        Release("staging", "web", 4.0, "3"),
        instances={"db": {"db-1": {"env": "prod"}}},
    )
    assert list(releases_view(state, env="staging")["releases"]) == ["staging"]
    by_service = releases_view(state, service="web")["releases"]
    assert {env: list(found) for env, found in by_service.items()} == {
        "prod": ["web"],
        "staging": ["web"],
    }
    one = releases_view(state, instance="web-1")["releases"]
    assert list(one) == ["prod"]
    assert list(one["prod"]) == ["web"]
    assert one["prod"]["web"]["current"]["version"] == "2"
    # A registered instance that was never released on its own gets its service's.
    registered = releases_view(state, instance="db-1")["releases"]
    assert registered["prod"]["db"]["current"]["version"] == "9"
    limited = releases_view(state, env="prod", service="web", limit=1)["releases"]
    assert [found["version"] for found in limited["prod"]["web"]["history"]] == ["2"]
    assert releases_view(state, env="nowhere")["releases"] == {}
