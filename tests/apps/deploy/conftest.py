"""Agents for the deploy hooks to talk to: in this loop, or in a thread for the CLI."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from crdtgossip.apps.registry import AgentOptions, Registry, make_app, run_agent
from crdtgossip.config import GossipConfig
from crdtgossip.node import Node

#: A failure guard for an agent to start or stop, not a timing expectation.
PATIENCE = 30.0

#: The token of the guarded agents.
TOKEN = "deploy-t0ken"


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    node = Node("deploy-test", "127.0.0.1:0", config=GossipConfig.local(), seed=3)
    await node.start()
    made = Registry(node)
    await made.start()
    yield made
    await made.stop()
    await node.stop()


async def _serve(registry: Registry, token: str | None) -> TestServer:
    server = TestServer(make_app(registry, token=token), host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def agent(registry: Registry) -> AsyncIterator[str]:
    """The URL of an agent API on a real loopback port, in this event loop."""
    server = await _serve(registry, None)
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def guarded_agent(registry: Registry) -> AsyncIterator[str]:
    """As ``agent``, with writes behind the bearer token :data:`TOKEN`."""
    server = await _serve(registry, TOKEN)
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
def threaded_agent(tmp_path: Path) -> Iterator[str]:
    """A whole agent (run_agent) in its own thread and loop, for the blocking CLI.

    The command's ``run`` calls ``asyncio.run``, which needs the test's thread free of
    a running loop; the agent runs beside it. Its token file holds :data:`TOKEN`.
    """
    token = tmp_path / "agent-token"
    token.write_text(TOKEN + "\n")
    options = AgentOptions(
        node_id="threaded", bind="127.0.0.1:0", http="127.0.0.1:0", config="local", token=token
    )
    lines: queue.Queue[str] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        await run_agent(options, stop, announce=lines.put)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        line = lines.get(timeout=PATIENCE)
        yield "http://" + line.rsplit("http=", 1)[1].strip()
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=PATIENCE)
        assert not thread.is_alive(), "the agent did not stop"
        loop.close()
