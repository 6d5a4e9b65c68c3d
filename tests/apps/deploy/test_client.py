"""AgentClient against a real agent API on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from crdtgossip.apps.deploy import client as client_module
from crdtgossip.apps.deploy.client import (
    DEFAULT_DRAIN_TIMEOUT,
    AgentClient,
    AgentError,
    normalize_url,
)
from crdtgossip.apps.registry import Registry
from tests.apps.deploy.conftest import TOKEN


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("http://127.0.0.1:7700", "http://127.0.0.1:7700"),
        ("http://127.0.0.1:7700/", "http://127.0.0.1:7700"),
        ("127.0.0.1:7700", "http://127.0.0.1:7700"),
        (" https://agent.internal:443/ ", "https://agent.internal:443"),
    ],
)
def test_normalize_url(url: str, normal: str) -> None:
    assert normalize_url(url) == normal


@pytest.mark.parametrize("url", ["", "  ", "ftp://x:1"])
def test_normalize_url_refuses(url: str) -> None:
    with pytest.raises(AgentError):
        normalize_url(url)


async def test_register_deregister_undrain_release(agent: str, registry: Registry) -> None:
    async with AgentClient(agent) as client:
        shown = await client.register(
            "web",
            "web-1",
            address="10.0.0.1",
            port=8080,
            env="prod",
            tags=["blue"],
            meta={"zone": "a"},
            ttl=15.0,
        )
        assert (shown["id"], shown["env"], shown["tags"], shown["meta"], shown["ttl"]) == (
            "web-1",
            "prod",
            ["blue"],
            {"zone": "a"},
            15.0,
        )
        assert (await registry.snapshot()).record("web", "web-1") is not None
        undrained = await client.undrain("web", "web-1")
        assert undrained["maintenance"] is False
        release = await client.release("prod", "web", "2.0", build="88", commit="cafe")
        assert (release["version"], release["build"], release["commit"]) == ("2.0", "88", "cafe")
        assert len((await registry.snapshot()).releases) == 1
        await client.deregister("web", "web-1")
        assert (await registry.snapshot()).instances == {}


async def test_agent_refusals_become_agent_errors_with_the_message(agent: str) -> None:
    async with AgentClient(agent) as client:
        with pytest.raises(AgentError, match="unknown service 'web'") as caught:
            await client.deregister("web", "web-1")
        assert caught.value.status == 404
        with pytest.raises(AgentError, match="port") as caught:
            await client.register("web", "web-1", address="10.0.0.1", port=0)
        assert caught.value.status == 400
        with pytest.raises(AgentError, match="service") as caught:
            await client.release("prod", "bad/name", "1")
        assert caught.value.status in (400, 404)


async def test_token(guarded_agent: str) -> None:
    async with AgentClient(guarded_agent) as anonymous:
        with pytest.raises(AgentError, match="Bearer") as caught:
            await anonymous.release("prod", "web", "1")
        assert caught.value.status == 401
    async with AgentClient(guarded_agent, token=TOKEN) as client:
        assert (await client.release("prod", "web", "1"))["version"] == "1"


async def test_an_unreachable_agent_is_an_agent_error() -> None:
    async with AgentClient("http://127.0.0.1:1", timeout=5.0) as client:
        with pytest.raises(AgentError, match="cannot reach") as caught:
            await client.undrain("web", "web-1")
    assert caught.value.status is None


# ---- drain -----------------------------------------------------------------------------
@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A fake agent that records request bodies and answers like the real one."""
    bodies: list[dict[str, Any]] = []

    async def maintenance(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.json_response({"instance": {"id": request.match_info["instance"]}})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="not json", status=502)

    app = web.Application()
    app.router.add_put("/v1/services/{service}/instances/{instance}/maintenance", maintenance)
    app.router.add_put("/v1/releases/{env}/{service}", text)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), bodies
    await server.close()


async def test_drain_asks_for_a_majority_then_waits_the_grace(
    recorder: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, bodies = recorder
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(client_module, "sleep", sleep)
    async with AgentClient(url) as client:
        await client.drain("web", "web-1", reason="upgrade", grace=7.5)
        await client.drain("web", "web-1", timeout=3.0)
    assert bodies == [
        {
            "enable": True,
            "consistency": "majority",
            "timeout": DEFAULT_DRAIN_TIMEOUT,
            "reason": "upgrade",
        },
        {"enable": True, "consistency": "majority", "timeout": 3.0},
    ]
    assert slept == [7.5]


@pytest.mark.parametrize("grace", [-1.0, float("nan"), 1e9])
async def test_drain_refuses_a_bad_grace_before_asking(
    recorder: tuple[str, list[dict[str, Any]]], grace: float
) -> None:
    url, bodies = recorder
    async with AgentClient(url) as client:
        with pytest.raises(AgentError, match="grace"):
            await client.drain("web", "web-1", grace=grace)
    assert bodies == []


async def test_a_reply_that_is_not_json_is_an_agent_error(
    recorder: tuple[str, list[dict[str, Any]]],
) -> None:
    url, _ = recorder
    async with AgentClient(url) as client:
        with pytest.raises(AgentError, match="502 without a JSON object") as caught:
            await client.release("prod", "web", "1")
    assert caught.value.status == 502


async def test_drain_on_a_single_agent_succeeds(agent: str, registry: Registry) -> None:
    async with AgentClient(agent) as client:
        await client.register("web", "web-1", address="10.0.0.1", port=80)
        shown = await client.drain("web", "web-1", reason="upgrade", timeout=5.0)
    assert shown["maintenance"] is True
    assert (await registry.snapshot()).in_maintenance("web", "web-1")
