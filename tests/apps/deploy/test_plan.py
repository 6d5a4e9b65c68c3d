"""Plans as plain values: rollbacks, promotions, canaries, services that come and go."""

from __future__ import annotations

from typing import Any

from crdtgossip.apps.deploy.plan import Change, changes_between, render_changes


def entry(version: str | None, **instances: str) -> dict[str, Any]:
    def record(found: str) -> dict[str, Any]:
        return {"version": found, "build": f"b-{found}", "commit": None}

    return {
        "current": None if version is None else record(version),
        "instances": {name: record(found) for name, found in instances.items()},
    }


def test_same_versions_need_no_change() -> None:
    both = {"web": entry("1"), "db": entry("2")}
    assert changes_between(both, both) == []
    assert render_changes([], "nothing to do") == "nothing to do"


def test_a_rollback_lists_each_service_that_moved() -> None:
    now = {"web": entry("1.2.4"), "db": entry("7")}
    then = {"web": entry("1.2.3"), "db": entry("7")}
    assert changes_between(now, then) == [Change("web", None, "1.2.4", "1.2.3", "b-1.2.3")]


def test_a_service_the_target_lacks_or_has_alone() -> None:
    changes = changes_between({"web": entry("1"), "new": entry("1")}, {"web": entry("1")})
    assert changes == [Change("new", None, "1", None)]
    assert "no release in the target" in changes[0].line()
    changes = changes_between({}, {"web": entry("3")})
    assert changes == [Change("web", None, None, "3", "b-3")]
    assert changes[0].as_json() == {
        "service": "web",
        "instance": None,
        "from": None,
        "to": "3",
        "build": "b-3",
        "commit": None,
    }


def test_a_canary_is_rolled_back_only_where_the_service_change_does_not_cover_it() -> None:
    # The service moves: deploying its old version also brings the canary back.
    assert changes_between({"web": entry("2", **{"web-3": "3"})}, {"web": entry("1")}) == [
        Change("web", None, "2", "1", "b-1")
    ]
    # The service stays: the canary alone goes back to the service's version.
    assert changes_between({"web": entry("2", **{"web-3": "3"})}, {"web": entry("2")}) == [
        Change("web", "web-3", "3", "2", "b-2")
    ]
    # The target had a canary of its own: it is a change after the service's.
    assert changes_between({"web": entry("2")}, {"web": entry("1", **{"web-1": "0"})}) == [
        Change("web", None, "2", "1", "b-1"),
        Change("web", "web-1", "2", "0", "b-0"),
    ]
    assert Change("web", "web-1", "2", "0", "b-0").line() == "web/web-1: 2 -> 0 (build b-0)"
