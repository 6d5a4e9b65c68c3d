"""Renderer reports and maintenance stamps over REST, in process (:mod:`.renderers_api`)."""

from __future__ import annotations

from typing import Any

import pytest

from crdtgossip.apps.registry.renderers import confirms
from tests.apps.registry.conftest import Client, FakeClock
from tests.apps.registry.test_api import call, ok, register

REPORT = {
    "applied": {"web": {"web-1": 1_704_067_200.0}},
    "services": {"web": 2},
    "reloaded_at": 1_704_067_201.5,
}


async def test_a_report_is_stored_listed_read_and_forgotten(
    client: Client, clock: FakeClock
) -> None:
    stored = (await ok(client, "PUT", "/v1/renderers/lb-1", REPORT))["renderer"]
    assert stored == {**REPORT, "name": "lb-1", "agent": "agent-1", "reported_at": clock.now}
    assert (await ok(client, "GET", "/v1/renderers"))["renderers"] == {"lb-1": stored}
    assert (await ok(client, "GET", "/v1/renderers/lb-1"))["renderer"] == stored
    later = {"applied": {}, "services": {"web": 3}}
    again = (await ok(client, "PUT", "/v1/renderers/lb-1", later))["renderer"]
    assert (again["applied"], again["services"], again["reloaded_at"]) == ({}, {"web": 3}, None)
    await ok(client, "DELETE", "/v1/renderers/lb-1")
    assert (await ok(client, "GET", "/v1/renderers"))["renderers"] == {}
    status, reply, _ = await call(client, "GET", "/v1/renderers/lb-1")
    assert status == 404
    assert "lb-1" in reply["error"]
    status, _, _ = await call(client, "DELETE", "/v1/renderers/lb-1")
    assert status == 404


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"index": 3}, "unknown field 'index'"),
        ({"applied": []}, "applied must be an object"),
        ({"applied": {"web": {"bad id!": 1.0}}}, "not a valid name"),
        ({"applied": {"web": {"web-1": -1}}}, "at or after 0"),
        ({"applied": {"web": {"web-1": True}}}, "must be a number"),
        ({"services": {"web": 1.5}}, "count of instances"),
        ({"reloaded_at": "now"}, "must be a number"),
    ],
)
async def test_a_bad_report_is_a_400_naming_the_field(
    client: Client, body: dict[str, Any], words: str
) -> None:
    status, reply, _ = await call(client, "PUT", "/v1/renderers/lb-1", body)
    assert status == 400, reply
    assert words in reply["error"]
    assert (await ok(client, "GET", "/v1/renderers"))["renderers"] == {}


async def test_a_bad_renderer_name_is_a_400(client: Client) -> None:
    status, reply, _ = await call(client, "PUT", "/v1/renderers/-x", REPORT)
    assert status == 400
    assert "renderer" in reply["error"]


async def test_maintenance_lists_each_flag_with_its_stamp(client: Client, clock: FakeClock) -> None:
    await register(client, "web-1")
    await register(client, "web-2")
    assert (await ok(client, "GET", "/v1/maintenance"))["maintenance"] == []
    body = {"enable": True, "reason": "deploy"}
    await ok(client, "PUT", "/v1/services/web/instances/web-2/maintenance", body)
    flags = (await ok(client, "GET", "/v1/maintenance"))["maintenance"]
    assert flags == [
        {
            "service": "web",
            "instance": "web-2",
            "enabled": True,
            "reason": "deploy",
            "time": clock.now,
        }
    ]
    await ok(client, "DELETE", "/v1/services/web/instances/web-2")
    assert (await ok(client, "GET", "/v1/maintenance"))["maintenance"] == []


def test_confirms_needs_the_stamp_or_a_later_one() -> None:
    report = {"applied": {"web": {"web-1": 10.0}}}
    assert confirms(report, "web", "web-1", 10.0)
    assert confirms(report, "web", "web-1", 9.5)
    assert not confirms(report, "web", "web-1", 10.5)
    assert not confirms(report, "web", "web-2", 1.0)
    assert not confirms(report, "db", "web-1", 1.0)
    assert not confirms({}, "web", "web-1", 1.0)
    assert not confirms({"applied": {"web": {"web-1": True}}}, "web", "web-1", 0.0)
