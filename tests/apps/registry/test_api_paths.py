"""The API's paths beyond the design's table: one instance, deleting an expectation, and
the friction fixes (a brace in a name, a bad wait without index, refusals logged)."""

from __future__ import annotations

import logging

import pytest

from tests.apps.registry.conftest import Client
from tests.apps.registry.test_api import WEB_1, call, ok, register


async def test_get_one_instance(client: Client) -> None:
    shown = await register(client, "web-1", env="prod")
    assert await ok(client, "GET", WEB_1) == {"instance": shown}
    status, reply, _ = await call(client, "GET", "/v1/services/web/instances/web-9")
    assert status == 404
    assert "web-9" in reply["error"]
    status, _, _ = await call(client, "GET", "/v1/services/nope/instances/web-1")
    assert status == 404


async def test_delete_an_expectation(client: Client) -> None:
    await ok(client, "PUT", "/v1/expectations/prod/web", {"min_passing": 2})
    assert "web" in (await ok(client, "GET", "/v1/health"))["health"]["prod"]
    deleted = await ok(client, "DELETE", "/v1/expectations/prod/web")
    assert deleted == {"deleted": {"env": "prod", "service": "web"}}
    assert (await ok(client, "GET", "/v1/health"))["health"] == {}
    status, reply, _ = await call(client, "DELETE", "/v1/expectations/prod/web")
    assert status == 404
    assert "no expectation" in reply["error"]


@pytest.mark.parametrize(
    "path",
    ["/v1/services/we%7Bb", "/v1/services/web/instances/a%7Db", "/v1/services/%7B%7D"],
)
async def test_a_brace_in_a_name_is_a_400(client: Client, path: str) -> None:
    status, reply, _ = await call(client, "GET", path)
    assert status == 400
    assert "not a valid name" in reply["error"] or "'{' or '}'" in reply["error"]


async def test_a_bad_wait_without_index_is_a_400(client: Client) -> None:
    status, reply, _ = await call(client, "GET", "/v1/services?wait=soon")
    assert status == 400
    assert "wait must be a duration" in reply["error"]
    assert (await call(client, "GET", "/v1/services?wait=5s"))[0] == 200


async def test_refusals_are_logged_one_line_each(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="crdtgossip.apps.registry.api")
    await call(client, "PUT", WEB_1, {"address": "10.0.0.1"})
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    assert lines == [f"refused PUT {WEB_1}: 400 a registration needs the field 'port'"]
