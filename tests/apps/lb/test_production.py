"""The three ways to break production (issue 16), each against a real registry on a real
node and the real nginx / haproxy binary as the check.

a. one bad registration must not freeze the load balancers: drains still reach them;
b. an agent that has not synced must not empty a populated config, nor may a render
   that drops most of a service at once;
c. a meta value must not inject a server through a template.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from crdtgossip.apps.lb import (
    AgentClient,
    HAProxyRenderer,
    Instance,
    LiveFile,
    NginxRenderer,
    RenderLoop,
    RenderOptions,
    RetryPolicy,
    TemplateRenderer,
)
from crdtgossip.apps.lb import _loop as loop_module
from crdtgossip.apps.lb._guard import DropGuard
from crdtgossip.apps.lb._protocol import Renderer
from crdtgossip.apps.lb._template import TEMPLATES_DIR
from crdtgossip.apps.registry import Registry, make_app
from crdtgossip.config import GossipConfig
from crdtgossip.errors import ConfigError
from crdtgossip.node import Node

QUICK = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.02)
FAST = dataclasses.replace(
    GossipConfig.local(), probe_interval=0.2, probe_timeout=0.1, gossip_interval=0.05
)
#: Passes the registry's address policy, fails nginx -t and haproxy -c: it never resolves.
UNRESOLVABLE = "doesnotexist.invalid"


@pytest.fixture
async def agent_url() -> AsyncIterator[str]:
    """A registry agent (alone, so ready) serving its REST API on loopback."""
    node = Node("agent-1", "127.0.0.1:0", config=FAST, seed=1)
    await node.start()
    registry = Registry(node)
    await registry.start()
    server = TestServer(make_app(registry), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        await registry.stop()
        await node.stop()


async def call(client: AgentClient, method: str, path: str, body: dict[str, Any]) -> int:
    """Send one write; its status (4xx included)."""
    from crdtgossip.apps._client import AgentError

    try:
        return (await client.call(method, path, body)).status
    except AgentError as exc:
        return exc.status if exc.status is not None else 0


async def register(client: AgentClient, instance: str, address: str, **extra: Any) -> int:
    body = {"address": address, "port": 8080, **extra}
    return await call(client, "PUT", f"/v1/services/web/instances/{instance}", body)


async def drain(client: AgentClient, instance: str, enable: bool) -> None:
    path = f"/v1/services/web/instances/{instance}/maintenance"
    assert await call(client, "PUT", path, {"enable": enable}) == 200


@pytest.mark.parametrize("binary", ["nginx", "haproxy"])
async def test_a_bad_registration_never_freezes_the_load_balancer(
    agent_url: str, tmp_path: Path, binary: str, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue(binary)  # skip without the real binary
    renderer: Renderer = NginxRenderer() if binary == "nginx" else HAProxyRenderer()
    out = tmp_path / "upstreams.inc"
    async with AgentClient(agent_url, retry=QUICK) as client:
        # What the proxies refuse is refused at registration.
        for bad in ("fe80::1%lo", "999.999.999.999", "-x", "a_b.internal"):
            assert await register(client, "web-bad", bad) == 400, bad
        assert await register(client, "web-1", "10.0.0.1") == 200
        assert await register(client, "web-2", "10.0.0.2") == 200
        # A name that passes the policy but does not resolve: the check refuses it.
        assert await register(client, "web-3", UNRESOLVABLE) == 200
        loop = RenderLoop(client, renderer, LiveFile(out, renderer))
        result = await loop.render_once()
        assert result.changed
        assert result.error is None
        text = out.read_text()
        assert "10.0.0.1:8080" in text
        assert "10.0.0.2:8080" in text
        assert UNRESOLVABLE not in text
        assert [key[1] for key in loop.left_out] == ["web-3"]
        assert loop.left_out_total == 1

        # The drain of another instance reaches the file, and so does its undrain.
        await drain(client, "web-1", True)
        await loop.render_once()
        assert "10.0.0.1:8080" not in out.read_text()
        assert "10.0.0.2:8080" in out.read_text()
        await drain(client, "web-1", False)
        await loop.render_once()
        assert "10.0.0.1:8080" in out.read_text()
        assert UNRESOLVABLE not in out.read_text()


async def test_an_agent_that_has_not_synced_is_not_rendered_from(
    tmp_path: Path, nginx: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_module, "ONCE_READY_WAIT", 0.5)
    out = tmp_path / "upstreams.inc"
    populated = "upstream web {\n    server 10.0.0.1:8080;\n}\n"
    out.write_text(populated)
    # Given a peer to join that never answers: not ready, with nothing in its state.
    node = Node("agent-2", "127.0.0.1:0", seeds=["127.0.0.1:9"], config=FAST, seed=2)
    await node.start()
    registry = Registry(node, alone=False)
    await registry.start()
    server = TestServer(make_app(registry), host="127.0.0.1")
    await server.start_server()
    try:
        async with AgentClient(str(server.make_url("")), retry=QUICK) as client:
            ready, reason = await client.readiness()
            assert not ready
            assert "synced" in reason
            renderer = NginxRenderer()
            loop = RenderLoop(client, renderer, LiveFile(out, renderer))
            with pytest.raises(ConfigError, match="not ready"):
                await loop.render_once()
        assert out.read_text() == populated
    finally:
        await server.close()
        await registry.stop()
        await node.stop()


async def test_an_agent_becomes_ready_once_synced_with_a_peer() -> None:
    first = Node("a", "127.0.0.1:0", config=FAST, seed=3)
    await first.start()
    second = Node("b", "127.0.0.1:0", seeds=[first.address], config=FAST, seed=4)
    await second.start()
    registries = [Registry(first), Registry(second, alone=False)]
    for registry in registries:
        await registry.start()
    try:
        assert registries[0].readiness.ready
        import asyncio

        async with asyncio.timeout(30):
            while not registries[1].readiness.ready:
                await asyncio.sleep(0.05)
        assert registries[1].readiness.report() == {"ready": True, "reason": ""}
    finally:
        for registry in registries:
            await registry.stop()
        await second.stop()
        await first.stop()


async def test_the_drop_guard_refuses_to_empty_a_service(
    agent_url: str, tmp_path: Path, nginx: str
) -> None:
    out = tmp_path / "upstreams.inc"
    renderer = NginxRenderer()
    async with AgentClient(agent_url, retry=QUICK) as client:
        loop = RenderLoop(client, renderer, LiveFile(out, renderer))
        web = [Instance(f"web-{n}", f"10.0.0.{n}", 8080) for n in range(1, 5)]
        assert (await loop.install({"web": web})).changed
        populated = out.read_text()
        result = await loop.install({})
        assert not result.changed
        assert result.error is not None
        assert "4 of the 4 instances of web" in result.error
        assert out.read_text() == populated
        # Two of four (a rolling deploy) is allowed; one more than half is not.
        assert (await loop.install({"web": web[:2]})).changed
        loop.guard = DropGuard(1.0)  # --allow-drop
        assert (await loop.install({})).changed


async def test_a_meta_value_cannot_inject_a_server_through_a_template(
    agent_url: str, tmp_path: Path, nginx: str
) -> None:
    source = (TEMPLATES_DIR / "nginx-upstreams.conf.j2").read_text()
    renderer = TemplateRenderer(RenderOptions(template=source, template_name="nginx.j2"))
    out = tmp_path / "upstreams.inc"
    # Templates have no check of their own: the real nginx -t, as --check would give.
    check = NginxRenderer().check_command
    live = LiveFile(out, renderer)
    live.renderer = _Checked(renderer, check)
    async with AgentClient(agent_url, retry=QUICK) as client:
        assert await register(client, "web-1", "10.0.0.1", meta={"weight": "2"}) == 200
        injected = {"weight": "1; server 10.66.66.66:80"}
        assert await register(client, "web-2", "10.0.0.2", meta=injected) == 200
        newline = {"weight": "1\nserver 10.66.66.66:80"}
        assert await register(client, "web-9", "10.0.0.9", meta=newline) == 400
        loop = RenderLoop(client, renderer, live)
        result = await loop.render_once()
        assert result.error is None
    text = out.read_text()
    assert "10.66.66.66" not in text
    assert "server 10.0.0.1:8080 weight=2;" in text
    assert [key[1] for key in loop.left_out] == ["web-2"]


class _Checked:
    """A renderer with another's check (the template renderer has none)."""

    def __init__(self, inner: Renderer, check: Any) -> None:
        self.name = inner.name
        self._inner = inner
        self.check_command = check

    def render(self, services: Any) -> str:
        return self._inner.render(services)
