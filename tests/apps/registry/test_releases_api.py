"""The release routes in process: full records, reads per env, service and instance,
filters that work, and a 400 for a filter that does not exist."""

from __future__ import annotations

import pytest

from tests.apps.registry.conftest import Client, FakeClock
from tests.apps.registry.test_api import call, ok

FULL = {
    "version": "1.2.4",
    "build": "77",
    "commit": "abc123",
    "url": "https://ci.example/job/77",
    "initiator": "alice",
    "started": 1000.0,
    "finished": 1060.0,
}


async def test_a_full_record_is_kept_and_shown_everywhere(client: Client, clock: FakeClock) -> None:
    reply = await ok(client, "PUT", "/v1/releases/prod/web", {**FULL, "instance": "web-1"})
    record = {**FULL, "instance": "web-1", "time": clock.now}
    assert reply["release"] == {"env": "prod", "service": "web", **record}
    every = await ok(client, "GET", "/v1/releases")
    assert every["releases"]["prod"]["web"]["instances"] == {"web-1": record}
    one = await ok(client, "GET", "/v1/releases/prod/web/web-1")
    assert (one["env"], one["service"], one["instance"]) == ("prod", "web", "web-1")
    assert one["current"] == record
    assert one["history"] == [record]
    assert await ok(client, "GET", "/v1/releases/prod/web?instance=web-1") == one


async def test_reads_per_env_and_service_at_a_time(client: Client, clock: FakeClock) -> None:
    await ok(client, "PUT", "/v1/releases/prod/web", {"version": "1"})
    first = clock.now
    clock.advance(10)
    await ok(client, "PUT", "/v1/releases/prod/web", {"version": "2"})
    await ok(client, "PUT", "/v1/releases/prod/db", {"version": "7"})
    await ok(client, "PUT", "/v1/releases/staging/web", {"version": "3"})
    env = await ok(client, "GET", "/v1/releases/prod")
    assert env["env"] == "prod"
    assert list(env["services"]) == ["db", "web"]
    assert env["services"]["web"]["current"]["version"] == "2"
    then = await ok(client, "GET", f"/v1/releases/prod?at={first}")
    assert list(then["services"]) == ["web"]
    assert then["services"]["web"]["current"]["version"] == "1"
    service = await ok(client, "GET", "/v1/releases/prod/web?limit=1")
    assert [found["version"] for found in service["history"]] == ["2"]
    assert (await ok(client, "GET", f"/v1/releases/prod/web?at={first - 1}"))["current"] is None
    filtered = await ok(client, "GET", "/v1/releases?env=staging&service=web")
    single = await ok(client, "GET", "/v1/releases/staging/web")
    entry = {name: single[name] for name in ("current", "history", "instances")}
    assert filtered["releases"] == {"staging": {"web": entry}}


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/v1/releases?envv=prod", 400, "unknown query parameter 'envv'"),
        ("/v1/releases/prod?service=web", 400, "unknown query parameter 'service'"),
        ("/v1/releases/prod/web/web-1?instance=web-2", 400, "unknown query parameter"),
        ("/v1/releases?limit=0", 400, "limit must be"),
        ("/v1/releases?env=pr%20od", 400, "not a valid name"),
        ("/v1/releases/nowhere", 404, "no release was ever recorded in env 'nowhere'"),
        ("/v1/releases/prod/nothing", 404, "no release of service 'nothing'"),
        ("/v1/releases/prod/web/ghost", 404, "instance 'ghost'"),
    ],
)
async def test_refusals_are_json_errors(client: Client, path: str, status: int, words: str) -> None:
    await ok(client, "PUT", "/v1/releases/prod/web", {"version": "1"})
    got, reply, _ = await call(client, "GET", path)
    assert got == status, reply
    assert words in reply["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"version": "1", "instance": "a b"},
        {"version": "1", "started": "noon"},
        {"version": "1", "started": 0},
        {"version": "1", "started": 20, "finished": 10},
        {"version": "1", "initiator": ""},
        {"version": "1", "who": "me"},
    ],
)
async def test_a_bad_release_body_is_refused(client: Client, body: dict[str, object]) -> None:
    status, reply, _ = await call(client, "PUT", "/v1/releases/prod/web", body)
    assert status == 400
    assert reply["error"]
    assert (await ok(client, "GET", "/v1/releases"))["releases"] == {}


# ---- performance history -----------------------------------------------------------------
async def test_event_metrics_are_kept_per_version_and_metric(client: Client) -> None:
    await ok(
        client,
        "PUT",
        "/v1/services/web/instances/web-1",
        {"address": "h", "port": 1, "env": "prod"},
    )
    event = {"host": "web-1", "service": "web", "state": "ok", "tags": ["metric:latency"]}
    await ok(client, "POST", "/v1/events", {**event, "metric": 5.0})  # no release yet
    await ok(client, "PUT", "/v1/releases/prod/web", {"version": "1.0"})
    for value in (1.0, 2.0, 3.0, 4.0, 100.0):
        await ok(client, "POST", "/v1/events", {**event, "metric": value})
    await ok(client, "PUT", "/v1/releases/prod/web", {"version": "1.1"})
    await ok(client, "POST", "/v1/events", {**event, "metric": 9.0})
    await ok(client, "POST", "/v1/events", {**event, "metric": 7.0, "tags": []})
    old = await ok(client, "GET", "/v1/perf/prod/web?version=1.0&metric=latency")
    assert (old["count"], old["min"], old["max"]) == (5, 1.0, 100.0)
    assert old["p50"] == pytest.approx(3.0, rel=0.01)
    assert old["p99"] == pytest.approx(4.0, rel=0.01)  # rank floor(0.99 * 4)
    new = await ok(client, "GET", "/v1/perf/prod/web?version=1.1&metric=latency")
    assert new["count"] == 1
    assert (await ok(client, "GET", "/v1/perf/prod/web?version=1.1"))["count"] == 1  # untagged
    none = await ok(client, "GET", "/v1/perf/prod/web?version=0.9&metric=latency")
    assert (none["count"], none["p50"]) == (0, None)
    status, reply, _ = await call(client, "GET", "/v1/perf/prod/web?metric=latency")
    assert status == 400
    assert "version" in reply["error"]
    status, reply, _ = await call(
        client, "POST", "/v1/events", {**event, "metric": 1.0, "tags": ["metric:a b"]}
    )
    assert status == 400
    assert "metric" in reply["error"]
    assert (await ok(client, "GET", "/v1/perf/prod/web?version=1.1&metric=latency"))["count"] == 1
