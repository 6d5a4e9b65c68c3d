"""A drain confirmed by the load balancers: two agents on loopback, two render loops with
the real nginx check, each reading its own agent, and a drain made through the other
agent; ``drain(confirm=True)`` returns only once both live files leave the instance out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from crdtgossip.apps.deploy import AgentClient, AgentError
from crdtgossip.apps.lb import AgentClient as LbClient
from crdtgossip.apps.lb import LiveFile, NginxRenderer, RenderLoop, RetryPolicy
from crdtgossip.apps.lb._quiescence import Wait
from crdtgossip.apps.lb._report import ApplyReporter
from crdtgossip.apps.registry import Registry, make_app
from crdtgossip.config import GossipConfig
from crdtgossip.node import Node
from tests.apps.lb.conftest import require_binary
from tests.polling import eventually

FAST = dataclasses.replace(
    GossipConfig.local(), probe_interval=0.2, probe_timeout=0.1, gossip_interval=0.05
)
QUICK = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.02)

#: A bound for a drain that must fail, so the test does not wait the default minute.
SHORT = 1.0


@pytest.fixture
async def agents() -> AsyncIterator[list[str]]:
    """Two joined agents' REST URLs, both ready."""
    first = Node("agent-1", "127.0.0.1:0", config=FAST, seed=11)
    await first.start()
    second = Node("agent-2", "127.0.0.1:0", seeds=[first.address], config=FAST, seed=12)
    await second.start()
    registries = [Registry(first), Registry(second, alone=False)]
    servers = []
    for registry in registries:
        await registry.start()
        server = TestServer(make_app(registry), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
    await eventually(lambda: registries[1].readiness.ready, "agent-2 synced with agent-1")
    try:
        yield [str(server.make_url("")).rstrip("/") for server in servers]
    finally:
        for server in servers:
            await server.close()
        for registry in registries:
            await registry.stop()
        await second.stop()
        await first.stop()


@contextlib.asynccontextmanager
async def render_loop(url: str, name: str, out: Path) -> AsyncIterator[RenderLoop]:
    """A running render loop with the real nginx check, reporting as ``name``."""
    renderer = NginxRenderer()
    async with LbClient(url, retry=QUICK) as client:
        loop = RenderLoop(
            client,
            renderer,
            LiveFile(out, renderer, reload="true"),
            wait=Wait.parse("0:0"),
            blocking_wait=5.0,
            reporter=ApplyReporter(client, name),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(loop.run(stop))
        try:
            yield loop
        finally:
            stop.set()
            await task


def routes(out: Path, address: str) -> bool:
    return out.exists() and f"{address}:8080" in out.read_text()


async def test_drain_returns_once_every_renderer_left_the_instance_out(
    agents: list[str], tmp_path: Path
) -> None:
    require_binary("nginx")  # the real nginx -t, or a skip
    outs = [tmp_path / "a.inc", tmp_path / "b.inc"]
    async with AgentClient(agents[0]) as deploy:
        for n in (1, 2):
            await deploy.register("web", f"web-{n}", address=f"10.0.0.{n}", port=8080)
        async with (
            render_loop(agents[0], "lb-a", outs[0]),
            render_loop(agents[1], "lb-b", outs[1]),
        ):
            for out in outs:
                await eventually(lambda out=out: routes(out, "10.0.0.1"), f"{out} has web-1")
            await eventually(
                lambda: _reported(agents[1], {"lb-a", "lb-b"}), "both renderers reported"
            )
            # Drained through the agent renderer lb-a does not read.
            async with AgentClient(agents[1]) as other:
                await other.drain("web", "web-1", timeout=30.0, confirm=True)
                confirmation = other.last_confirmation
            # No waiting here: the drain returned, so both files are without web-1.
            for out in outs:
                assert not routes(out, "10.0.0.1"), out.read_text()
                assert routes(out, "10.0.0.2")
            assert confirmation is not None
            assert confirmation.renderers == ("lb-a", "lb-b")
            # A named renderer that never reported: the error names it.
            with pytest.raises(AgentError, match="lb-c never reported"):
                await deploy.drain(
                    "web", "web-1", timeout=SHORT, confirm=True, renderers=["lb-a", "lb-c"]
                )
            # Only the named one is waited for.
            await deploy.drain("web", "web-1", timeout=30.0, confirm=True, renderers=["lb-b"])
            assert deploy.last_confirmation is not None
            assert deploy.last_confirmation.renderers == ("lb-b",)
        # Both loops stopped: their reports stay, and a new drain is not applied.
        with pytest.raises(AgentError, match=r"lb-a, lb-b did not apply it") as caught:
            await deploy.drain("web", "web-2", timeout=SHORT, confirm=True)
        assert "web/web-2" in str(caught.value)
        assert routes(outs[0], "10.0.0.2")


async def test_a_drain_without_renderers_confirms_at_once(agents: list[str]) -> None:
    async with AgentClient(agents[0]) as deploy:
        await deploy.register("web", "web-1", address="10.0.0.1", port=8080)
        await deploy.drain("web", "web-1", timeout=30.0, confirm=True)
        assert deploy.last_confirmation is not None
        assert deploy.last_confirmation.renderers == ()
        await deploy.undrain("web", "web-1")
        # The Python API does not wait for renderers unless asked.
        await deploy.drain("web", "web-1", timeout=30.0)
        assert deploy.last_confirmation is None


async def _reported(url: str, names: set[str]) -> bool:
    async with AgentClient(url) as client:
        found = await client.request("GET", "/v1/renderers")
    return set(found["renderers"]) >= names
