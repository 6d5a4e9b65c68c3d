"""The REST API in process, on a real Node: every endpoint and every refusal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crdtgossip.apps.registry import MAX_BODY_BYTES, Registry, make_app
from crdtgossip.apps.registry.model import MaintenanceRequest
from crdtgossip.errors import ConfigError, QuorumError
from crdtgossip.node import Node
from tests.apps.registry.conftest import FAST, Client, FakeClock
from tests.polling import PATIENCE, eventually

WEB_1 = "/v1/services/web/instances/web-1"

#: Most blocking queries one test makes while waiting for one change.
BLOCKING_ROUNDS = 20


async def call(
    client: Client, method: str, path: str, body: Any = None, *, raw: bytes | None = None
) -> tuple[int, dict[str, Any], int]:
    """One request: (status, JSON reply, X-Index). Every reply must be JSON with X-Index."""
    data = raw if raw is not None else (None if body is None else json.dumps(body))
    response = await client.request(method, path, data=data)
    reply = await response.json()
    assert isinstance(reply, dict)
    return response.status, reply, int(response.headers["X-Index"])


async def ok(client: Client, method: str, path: str, body: Any = None) -> dict[str, Any]:
    status, reply, _ = await call(client, method, path, body)
    assert status == 200, reply
    return reply


async def register(client: Client, instance: str = "web-1", **fields: Any) -> dict[str, Any]:
    body = {"address": "10.0.0.1", "port": 8080, **fields}
    reply = await ok(client, "PUT", f"/v1/services/web/instances/{instance}", body)
    return dict(reply["instance"])


# ---- services and instances ------------------------------------------------------------
async def test_register_then_list_and_read_every_field(client: Client) -> None:
    shown = await register(
        client, env="prod", tags=["blue", "v2"], meta={"zone": "a"}, address="web-1.internal"
    )
    assert shown == {
        "id": "web-1",
        "address": "web-1.internal",
        "port": 8080,
        "env": "prod",
        "tags": ["blue", "v2"],
        "meta": {"zone": "a"},
        "ttl": None,
        "agent": "agent-1",
        "health": "passing",
        "maintenance": False,
        "maintenance_reason": None,
        "last_event": None,
    }
    await register(client, "web-2")
    assert await ok(client, "GET", "/v1/services") == {"services": {"web": ["web-1", "web-2"]}}
    instances = (await ok(client, "GET", "/v1/services/web"))["instances"]
    assert [view["id"] for view in instances] == ["web-1", "web-2"]
    assert instances[0] == shown
    assert instances[1]["env"] == "default"
    assert instances[1]["tags"] == []
    assert instances[1]["meta"] == {}


async def test_register_again_replaces_the_record(client: Client) -> None:
    await register(client, port=1, tags=["old"])
    shown = await register(client, port=2)
    assert (shown["port"], shown["tags"]) == (2, [])
    assert (await ok(client, "GET", "/v1/services/web"))["instances"][0]["port"] == 2


async def test_deregister_removes_instance_and_then_the_service(client: Client) -> None:
    await register(client, "web-1")
    await register(client, "web-2")
    reply = await ok(client, "DELETE", WEB_1)
    assert reply == {"deregistered": {"service": "web", "instance": "web-1"}}
    assert await ok(client, "GET", "/v1/services") == {"services": {"web": ["web-2"]}}
    await ok(client, "DELETE", "/v1/services/web/instances/web-2")
    assert await ok(client, "GET", "/v1/services") == {"services": {}}
    status, reply, _ = await call(client, "GET", "/v1/services/web")
    assert status == 404
    assert "web" in reply["error"]
    status, _, _ = await call(client, "DELETE", WEB_1)
    assert status == 404


async def test_deregister_unknown_instance_of_known_service_is_404(client: Client) -> None:
    await register(client)
    status, reply, _ = await call(client, "DELETE", "/v1/services/web/instances/web-9")
    assert status == 404
    assert "web-9" in reply["error"]


async def test_deregister_clears_maintenance_and_health(client: Client) -> None:
    await register(client)
    await ok(client, "PUT", WEB_1 + "/maintenance", {"enable": True})
    await ok(client, "POST", "/v1/events", {"host": "web-1", "service": "web", "state": "critical"})
    await ok(client, "DELETE", WEB_1)
    shown = await register(client)
    assert (shown["health"], shown["maintenance"], shown["last_event"]) == ("passing", False, None)


async def test_passing_keeps_healthy_instances_not_in_maintenance(client: Client) -> None:
    for name, env in (("a", "prod"), ("b", "prod"), ("c", "prod"), ("d", "staging")):
        await register(client, name, env=env)
    await ok(client, "POST", "/v1/events", {"host": "b", "service": "web", "state": "warning"})
    await ok(client, "PUT", "/v1/services/web/instances/c/maintenance", {"enable": True})

    def ids(reply: dict[str, Any]) -> list[str]:
        return [view["id"] for view in reply["instances"]]

    assert ids(await ok(client, "GET", "/v1/services/web")) == ["a", "b", "c", "d"]
    assert ids(await ok(client, "GET", "/v1/services/web?passing=true")) == ["a", "d"]
    assert ids(await ok(client, "GET", "/v1/services/web?passing")) == ["a", "d"]
    assert ids(await ok(client, "GET", "/v1/services/web?passing=false")) == ["a", "b", "c", "d"]
    assert ids(await ok(client, "GET", "/v1/services/web?passing=1&env=prod")) == ["a"]
    assert ids(await ok(client, "GET", "/v1/services/web?env=staging")) == ["d"]


# ---- maintenance -----------------------------------------------------------------------
async def test_maintenance_on_and_off(client: Client) -> None:
    await register(client)
    on = (await ok(client, "PUT", WEB_1 + "/maintenance", {"enable": True, "reason": "upgrade"}))[
        "instance"
    ]
    assert (on["maintenance"], on["maintenance_reason"]) == (True, "upgrade")
    off = (await ok(client, "PUT", WEB_1 + "/maintenance", {"enable": False}))["instance"]
    assert (off["maintenance"], off["maintenance_reason"]) == (False, None)


async def test_maintenance_of_unknown_service_or_instance_is_404(client: Client) -> None:
    status, _, _ = await call(client, "PUT", WEB_1 + "/maintenance", {"enable": True})
    assert status == 404
    await register(client)
    status, _, _ = await call(
        client, "PUT", "/v1/services/web/instances/web-2/maintenance", {"enable": True}
    )
    assert status == 404


class _RefusingRegistry(Registry):
    """A registry whose quorum writes fail as the node would report it."""

    def __init__(self, node: Node, error: Exception) -> None:
        super().__init__(node)
        self._error = error

    async def set_maintenance(
        self, service: str, instance: str, request: MaintenanceRequest
    ) -> dict[str, Any]:
        raise self._error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (QuorumError("1 of 2 members answered in 1 s", answered=1, needed=2), 504),
        (ConfigError("Majority needs quorum coordination"), 501),
    ],
)
async def test_majority_failures_answer_5xx_json(node: Node, error: Exception, status: int) -> None:
    registry = _RefusingRegistry(node, error)
    await registry.start()
    try:
        async with TestClient(TestServer(make_app(registry))) as client:
            got, reply, _ = await call(
                client, "PUT", WEB_1 + "/maintenance", {"enable": True, "consistency": "majority"}
            )
        assert got == status
        assert str(error) in reply["error"]
    finally:
        await registry.stop()


async def test_drain_waits_for_a_majority() -> None:
    first = Node("n0", "127.0.0.1:0", config=FAST, seed=0)
    await first.start()
    nodes = [first]
    try:
        for number in (1, 2):
            node = Node(f"n{number}", "127.0.0.1:0", [first.address], config=FAST, seed=number)
            await node.start()
            nodes.append(node)
        await eventually(
            lambda: all(sum(m.status == "alive" for m in n.members()) == 3 for n in nodes),
            "three members alive everywhere",
        )
        registries = [Registry(node) for node in nodes]
        async with TestClient(TestServer(make_app(registries[0]))) as client:
            await register(client)
            reply = await ok(
                client,
                "PUT",
                WEB_1 + "/maintenance",
                {"enable": True, "consistency": "majority", "timeout": 10},
            )
            assert reply["instance"]["maintenance"]
            # At once, with no waiting: the reply promised a majority has the flag.
            having = [
                registry
                for registry in registries
                if (await registry.snapshot()).in_maintenance("web", "web-1")
            ]
            assert len(having) >= 2
    finally:
        for node in nodes:
            await node.stop()


# ---- health events ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "health"), [("ok", "passing"), ("warning", "warning"), ("critical", "critical")]
)
async def test_event_state_gives_health(client: Client, state: str, health: str) -> None:
    await register(client)
    event = {
        "host": "web-1",
        "service": "web",
        "state": state,
        "metric": 0.5,
        "tags": ["disk"],
        "description": "disk use",
    }
    reply = await ok(client, "POST", "/v1/events", event)
    assert reply["health"] == health
    shown = (await ok(client, "GET", "/v1/services/web"))["instances"][0]
    assert shown["health"] == health
    assert shown["last_event"]["description"] == "disk use"
    assert shown["last_event"]["metric"] == 0.5


async def test_event_expires_after_ttl(client: Client, clock: FakeClock) -> None:
    await register(client)
    event = {"host": "web-1", "service": "web", "state": "ok", "ttl": 10, "time": clock.now}
    await ok(client, "POST", "/v1/events", event)

    async def health() -> str:
        return str((await ok(client, "GET", "/v1/services/web"))["instances"][0]["health"])

    async def last_event() -> dict[str, Any]:
        reply = await ok(client, "GET", "/v1/services/web/instances/web-1")
        return dict(reply["instance"]["last_event"])

    sent = clock.now
    clock.advance(9.5)
    assert await health() == "passing"
    assert (await last_event())["state"] == "ok"
    clock.advance(0.5)
    assert await health() == "critical"
    # Re-emitted as Riemann does: the same event, state "expired", at its expiry.
    expired = await last_event()
    assert expired["state"] == "expired"
    assert expired["expired_state"] == "ok"
    assert expired["time"] == sent + 10
    assert expired["host"] == "web-1"
    assert "ttl of 10 s" in expired["description"]
    event["time"] = clock.now
    await ok(client, "POST", "/v1/events", event)
    assert await health() == "passing"
    assert (await last_event())["state"] == "ok"


async def test_event_ttl_comes_from_event_then_instance_then_default(
    client: Client, clock: FakeClock
) -> None:
    await register(client, "web-1", ttl=5)
    await register(client, "web-2")
    base = {"service": "web", "state": "ok"}
    first = await ok(client, "POST", "/v1/events", {**base, "host": "web-1"})
    assert first["event"]["ttl"] == 5.0
    assert first["event"]["time"] == clock.now
    second = await ok(client, "POST", "/v1/events", {**base, "host": "web-2"})
    assert second["event"]["ttl"] == 60.0
    third = await ok(client, "POST", "/v1/events", {**base, "host": "web-1", "ttl": 2.5})
    assert third["event"]["ttl"] == 2.5


async def test_event_for_an_unregistered_instance_is_404(client: Client) -> None:
    event = {"host": "web-1", "service": "web", "state": "ok"}
    status, _, _ = await call(client, "POST", "/v1/events", event)
    assert status == 404
    await register(client, "web-2")
    status, reply, _ = await call(client, "POST", "/v1/events", event)
    assert status == 404
    assert "web-1" in reply["error"]


# ---- releases and expectations ---------------------------------------------------------
async def test_releases_keep_history_and_answer_for_a_past_time(
    client: Client, clock: FakeClock
) -> None:
    first = await ok(client, "PUT", "/v1/releases/prod/web", {"version": "1.0", "build": "41"})
    assert first["release"] == {
        "env": "prod",
        "service": "web",
        "version": "1.0",
        "build": "41",
        "commit": None,
        "time": clock.now,
        # Added by the release records of issue 17 (tests/apps/registry/test_releases*).
        **dict.fromkeys(("instance", "url", "initiator", "started", "finished")),
    }
    t1 = clock.now
    clock.advance(100)
    await ok(client, "PUT", "/v1/releases/prod/web", {"version": "1.1", "commit": "abc123"})
    await ok(client, "PUT", "/v1/releases/staging/web", {"version": "1.2"})
    t2 = clock.now

    now = await ok(client, "GET", "/v1/releases")
    prod = now["releases"]["prod"]["web"]
    assert prod["current"]["version"] == "1.1"
    assert [r["version"] for r in prod["history"]] == ["1.1", "1.0"]
    assert now["releases"]["staging"]["web"]["current"]["version"] == "1.2"

    then = await ok(client, "GET", f"/v1/releases?at={t1 + 50}")
    assert then["at"] == t1 + 50
    assert then["releases"] == {
        "prod": {
            "web": {
                "current": first_record(first),
                "history": [first_record(first)],
                "instances": {},
            }
        }
    }
    assert (await ok(client, "GET", f"/v1/releases?at={t1 - 1}"))["releases"] == {}
    assert (await ok(client, "GET", f"/v1/releases?at={t2}"))["releases"]["prod"]["web"]["current"][
        "version"
    ] == "1.1"


def first_record(reply: dict[str, Any]) -> dict[str, Any]:
    release = dict(reply["release"])
    del release["env"], release["service"]
    return release


async def test_expectations_drive_the_health_summary(client: Client) -> None:
    await ok(client, "PUT", "/v1/expectations/prod/web", {"min_passing": 2})
    await ok(client, "PUT", "/v1/expectations/prod/db", {"min_passing": 1})
    # A service known only by its expectation is listed, with no instance.
    assert await ok(client, "GET", "/v1/services") == {"services": {"db": [], "web": []}}
    assert await ok(client, "GET", "/v1/services/db") == {"instances": []}

    await register(client, "web-1", env="prod")
    await register(client, "web-2", env="prod")
    await ok(client, "POST", "/v1/events", {"host": "web-2", "service": "web", "state": "warning"})
    summary = await ok(client, "GET", "/v1/health")
    assert summary["ok"] is False
    assert summary["health"]["prod"]["web"] == {
        "passing": 1,
        "warning": 1,
        "critical": 0,
        "maintenance": 0,
        "available": 1,
        "min_passing": 2,
        "shortfall": 1,
        "ok": False,
    }
    assert summary["health"]["prod"]["db"]["shortfall"] == 1

    await ok(client, "PUT", "/v1/expectations/prod/web", {"min_passing": 1})
    await ok(client, "PUT", "/v1/expectations/prod/db", {"min_passing": 0})
    reply = await ok(client, "PUT", "/v1/expectations/prod/db", {"min_passing": 0})
    assert reply == {"expectation": {"env": "prod", "service": "db", "min_passing": 0}}
    assert (await ok(client, "GET", "/v1/health"))["ok"] is True


# ---- cluster and metrics ---------------------------------------------------------------
async def test_members_lists_this_agent(client: Client, node: Node) -> None:
    reply = await ok(client, "GET", "/v1/members")
    assert reply == {
        "members": [
            {"node_id": "agent-1", "address": node.address, "status": "alive", "incarnation": 0}
        ]
    }


async def test_metrics_are_prometheus_text(client: Client) -> None:
    await register(client, env="prod")
    await ok(client, "PUT", "/v1/expectations/prod/web", {"min_passing": 3})
    await call(client, "GET", "/v1/services/nope")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "X-Index" in response.headers
    lines = (await response.text()).splitlines()
    assert "# TYPE crdtgossip_node_local_updates_total counter" in lines
    assert "# TYPE crdtgossip_node_members_alive gauge" in lines
    assert "crdtgossip_node_members_alive 1" in lines
    assert 'crdtgossip_members{status="alive"} 1' in lines
    assert 'crdtgossip_registry_instances{service="web",env="prod",health="passing"} 1' in lines
    assert 'crdtgossip_registry_shortfall{env="prod",service="web"} 2' in lines
    assert 'crdtgossip_http_requests_total{method="GET",code="404"} 1' in lines
    samples = [line for line in lines if not line.startswith("#")]
    assert all(len(line.rsplit(" ", 1)) == 2 for line in samples)


# ---- blocking queries ------------------------------------------------------------------
async def block_until(
    client: Client, path: str, index: int, done: Callable[[dict[str, Any]], bool]
) -> tuple[dict[str, Any], int]:
    """Blocking queries from ``index`` on (10 min each) until ``done(reply)``.

    Each query blocks until the agent's index moves; one that wakes for a change other
    than the awaited one (say the echo of an earlier write) is simply repeated. A query
    that is never woken hangs until the test's guard fails it.
    """
    for _ in range(BLOCKING_ROUNDS):
        separator = "&" if "?" in path else "?"
        status, reply, new_index = await call(
            client, "GET", f"{path}{separator}index={index}&wait=10m"
        )
        assert status == 200, reply
        assert new_index > index
        if done(reply):
            return reply, new_index
        index = new_index
    pytest.fail(f"{path} never showed the awaited change")


async def test_blocking_query_wakes_on_a_change(client: Client) -> None:
    await register(client, "web-1")
    _, _, index = await call(client, "GET", "/v1/services")
    waiting = asyncio.create_task(
        block_until(client, "/v1/services", index, lambda r: "web-2" in r["services"]["web"])
    )
    await asyncio.sleep(0.05)  # let the query start blocking before the change
    await register(client, "web-2")
    reply, _ = await asyncio.wait_for(waiting, PATIENCE)
    assert reply == {"services": {"web": ["web-1", "web-2"]}}


async def test_blocking_query_wakes_when_an_event_expires(client: Client, clock: FakeClock) -> None:
    await register(client)
    await ok(client, "POST", "/v1/events", {"host": "web-1", "service": "web", "state": "ok"})
    _, _, index = await call(client, "GET", "/v1/health")
    waiting = asyncio.create_task(
        block_until(
            client, "/v1/health", index, lambda r: r["health"]["default"]["web"]["critical"] == 1
        )
    )
    await asyncio.sleep(0.05)
    clock.advance(61)  # past the default ttl: no write at all, only time passing
    reply, _ = await asyncio.wait_for(waiting, PATIENCE)
    assert reply["health"]["default"]["web"]["passing"] == 0


async def test_blocking_query_wakes_when_a_critical_event_expires(
    client: Client, clock: FakeClock
) -> None:
    """The health stays critical, but ``last_event`` turns ``expired``: still a change."""
    await register(client)
    critical = {"host": "web-1", "service": "web", "state": "critical", "ttl": 10}
    await ok(client, "POST", "/v1/events", critical)
    path = "/v1/services/web/instances/web-1"
    _, _, index = await call(client, "GET", path)
    waiting = asyncio.create_task(
        block_until(
            client, path, index, lambda r: r["instance"]["last_event"]["state"] == "expired"
        )
    )
    await asyncio.sleep(0.05)
    clock.advance(11)
    reply, _ = await asyncio.wait_for(waiting, PATIENCE)
    assert reply["instance"]["health"] == "critical"
    assert reply["instance"]["last_event"]["expired_state"] == "critical"


async def test_blocking_query_returns_when_the_wait_ends(client: Client) -> None:
    await register(client)
    _, before, index = await call(client, "GET", "/v1/services")
    status, after, _ = await asyncio.wait_for(
        call(client, "GET", f"/v1/services?index={index}&wait=50ms"), PATIENCE
    )
    assert status == 200
    assert after == before


@pytest.mark.parametrize("index", ["0", "999999"])
async def test_index_behind_or_ahead_of_the_agent_returns_at_once(
    client: Client, index: str
) -> None:
    # 0: a watcher's first query; 999999: an index from another agent (see index.py).
    status, _, current = await asyncio.wait_for(
        call(client, "GET", f"/v1/members?index={index}&wait=10m"), PATIENCE
    )
    assert status == 200
    assert current >= 1


@pytest.mark.parametrize(
    "query",
    [
        "index=-1",
        "index=abc",
        "index=1.5",
        f"index={2**64}",
        "index=1&wait=10x",
        "index=1&wait=-5s",
        "index=1&wait=s",
    ],
)
@pytest.mark.parametrize(
    "path", ["/v1/services", "/v1/services/web", "/v1/releases", "/v1/health", "/v1/members"]
)
async def test_bad_blocking_parameters_are_400(client: Client, path: str, query: str) -> None:
    await register(client)
    status, reply, _ = await call(client, "GET", f"{path}?{query}")
    assert status == 400
    assert ("index" in reply["error"]) or ("wait" in reply["error"])


@pytest.mark.parametrize(
    "path",
    [
        "/v1/services/web?passing=maybe",
        "/v1/services/web?env=no%20spaces",
        "/v1/releases?at=yesterday",
        "/v1/releases?at=-5",
        "/v1/releases?at=nan",
    ],
)
async def test_bad_query_parameters_are_400(client: Client, path: str) -> None:
    await register(client)
    status, reply, _ = await call(client, "GET", path)
    assert status == 400
    assert reply["error"]


# ---- refusals: nothing is half-applied -------------------------------------------------
EVENT = {"host": "web-1", "service": "web", "state": "ok"}
MALFORMED: list[tuple[str, str, Any]] = [
    ("PUT", WEB_1, b"{not json"),
    ("PUT", WEB_1, b""),
    ("PUT", WEB_1, b"\xff\xfe"),
    ("PUT", WEB_1, b"[" * 60_000),
    ("PUT", WEB_1, b'{"address": "10.0.0.1", "port": NaN}'),
    ("PUT", WEB_1, ["address", "port"]),
    ("PUT", WEB_1, {"port": 80}),
    ("PUT", WEB_1, {"address": "10.0.0.1"}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": "80"}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": 80.0}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": True}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": 0}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": 65536}),
    ("PUT", WEB_1, {"address": "10.0.0.1; include x", "port": 80}),
    ("PUT", WEB_1, {"address": "", "port": 80}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": 80, "adress": "typo"}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": 80, "tags": "blue"}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": 80, "tags": [1]}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": 80, "tags": ["x"] * 65}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": 80, "meta": {"k": 1}}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": 80, "meta": {"bad key": "v"}}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": 80, "meta": ["k"]}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": 80, "env": "pr od"}),
    ("PUT", WEB_1, {"address": "10.0.0.1", "port": 80, "ttl": 0}),
    ("PUT", "/v1/services/we%24b/instances/web-1", {"address": "10.0.0.1", "port": 80}),
    ("PUT", "/v1/services/web/instances/-x", {"address": "10.0.0.1", "port": 80}),
    ("PUT", "/v1/services/" + "w" * 129 + "/instances/i", {"address": "10.0.0.1", "port": 80}),
    ("POST", "/v1/events", {**EVENT, "state": "fine"}),
    ("POST", "/v1/events", {**EVENT, "host": None}),
    ("POST", "/v1/events", {**EVENT, "metric": "high"}),
    ("POST", "/v1/events", {**EVENT, "ttl": -1}),
    ("POST", "/v1/events", {**EVENT, "ttl": 10**9}),
    ("POST", "/v1/events", {**EVENT, "time": "now"}),
    ("POST", "/v1/events", {**EVENT, "time": 4_000_000_000}),
    ("POST", "/v1/events", {**EVENT, "description": 5}),
    ("POST", "/v1/events", {**EVENT, "color": "red"}),
    ("PUT", WEB_1 + "/maintenance", {}),
    ("PUT", WEB_1 + "/maintenance", {"enable": "yes"}),
    ("PUT", WEB_1 + "/maintenance", {"enable": True, "consistency": "quorum"}),
    ("PUT", WEB_1 + "/maintenance", {"enable": True, "timeout": 0}),
    ("PUT", WEB_1 + "/maintenance", {"enable": True, "reason": "a\nb"}),
    ("PUT", "/v1/releases/prod/web", {}),
    ("PUT", "/v1/releases/prod/web", {"version": ""}),
    ("PUT", "/v1/releases/prod/web", {"version": 2}),
    ("PUT", "/v1/releases/prod/web", {"version": "1", "build": 7}),
    ("PUT", "/v1/releases/pr%20od/web", {"version": "1"}),
    ("PUT", "/v1/expectations/prod/web", {"min_passing": -1}),
    ("PUT", "/v1/expectations/prod/web", {"min_passing": 1.5}),
    ("PUT", "/v1/expectations/prod/web", {"min": 1}),
]


@pytest.mark.parametrize(("method", "path", "body"), MALFORMED)
async def test_malformed_requests_are_400_and_change_nothing(
    client: Client, registry: Registry, method: str, path: str, body: Any
) -> None:
    await register(client)
    before = await registry.snapshot()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, reply, _ = await call(client, method, path, raw=raw)
    assert status == 400, reply
    assert isinstance(reply["error"], str)
    assert reply["error"]
    assert await registry.snapshot() == before


async def test_oversized_body_is_413_and_changes_nothing(
    client: Client, registry: Registry
) -> None:
    before = await registry.snapshot()
    body = json.dumps({"address": "10.0.0.1", "port": 80, "meta": {"k": "v" * MAX_BODY_BYTES}})
    status, reply, _ = await call(client, "PUT", WEB_1, raw=body.encode())
    assert status == 413
    assert str(MAX_BODY_BYTES) in reply["error"]
    assert await registry.snapshot() == before


async def test_unknown_endpoint_and_wrong_method_answer_json(client: Client) -> None:
    status, reply, _ = await call(client, "GET", "/v1/nothing")
    assert status == 404
    assert "/v1/nothing" in reply["error"]
    response = await client.post("/v1/services")
    assert response.status == 405
    assert "GET" in response.headers["Allow"]
    assert "POST" in (await response.json())["error"]


# ---- the bearer token ------------------------------------------------------------------
@pytest.fixture
async def guarded(registry: Registry) -> AsyncIterator[Client]:
    async with TestClient(TestServer(make_app(registry, token="s3cret"))) as test_client:
        yield test_client


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic s3cret", "s3cret", "Bearer"])
async def test_token_protects_writes(
    guarded: Client, registry: Registry, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    body = json.dumps({"address": "10.0.0.1", "port": 80})
    response = await guarded.put(WEB_1, data=body, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization" in (await response.json())["error"]
    assert (await registry.snapshot()).instances == {}


async def test_token_lets_writes_through_and_reads_stay_open(guarded: Client) -> None:
    body = json.dumps({"address": "10.0.0.1", "port": 80})
    response = await guarded.put(WEB_1, data=body, headers={"Authorization": "Bearer s3cret"})
    assert response.status == 200
    response = await guarded.get("/v1/services/web")
    assert response.status == 200
    assert len((await response.json())["instances"]) == 1
