"""Shared fixtures: a real Node on loopback, a registry on it, the REST API in process."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crdtgossip.apps.registry import Registry, make_app
from crdtgossip.config import GossipConfig
from crdtgossip.node import Node

#: The in-process HTTP client of the tests.
Client = TestClient[web.Request, web.Application]

#: Timers for nodes on one machine: fast, but the same protocol as production.
FAST = dataclasses.replace(
    GossipConfig.local(),
    probe_interval=0.2,
    probe_timeout=0.1,
    gossip_interval=0.05,
    push_pull_interval=1.0,
    join_retry_interval=0.3,
)

#: Start of the injected clock: 2024-01-01T00:00:00Z, any fixed Unix time would do.
START_TIME = 1_704_067_200.0

#: A short pause between two looks for expired events, so a test that moves the clock
#: sees the expiry without waiting the default second.
QUICK_EXPIRY_CHECK = 0.02


class FakeClock:
    """A Unix clock the test moves by hand."""

    def __init__(self, now: float = START_TIME) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    started = Node("agent-1", "127.0.0.1:0", config=FAST, seed=1)
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
async def registry(node: Node, clock: FakeClock) -> AsyncIterator[Registry]:
    made = Registry(node, clock=clock, expiry_check_interval=QUICK_EXPIRY_CHECK)
    await made.start()
    yield made
    await made.stop()


@pytest.fixture
async def client(registry: Registry) -> AsyncIterator[Client]:
    async with TestClient(TestServer(make_app(registry))) as test_client:
        yield test_client
