"""Shared helpers for the tests of the asyncio Node on real loopback sockets."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from crdtgossip.config import GossipConfig
from crdtgossip.node import Node
from crdtgossip.security import Keyring

#: Timers for tests on one machine: fast, but the same protocol as production.
FAST = dataclasses.replace(
    GossipConfig.local(),
    probe_interval=0.2,
    probe_timeout=0.1,
    gossip_interval=0.05,
    push_pull_interval=1.0,
    join_retry_interval=0.3,
    reconnect_interval=1.0,
)


def statuses(node: Node) -> dict[str, str]:
    """node_id -> status as ``node`` sees the cluster."""
    return {member.node_id: str(member.status) for member in node.members()}


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture
async def cluster_factory() -> AsyncIterator[Callable[..., Awaitable[list[Node]]]]:
    """Start clusters of N nodes joined through the first; stop them all afterwards."""
    started: list[Node] = []

    async def make(
        count: int, *, keyring: Keyring | None = None, config: GossipConfig = FAST
    ) -> list[Node]:
        first = Node("n0", "127.0.0.1:0", keyring=keyring, config=config, seed=0)
        await first.start()
        started.append(first)
        nodes = [first]
        for index in range(1, count):
            node = Node(
                f"n{index}",
                "127.0.0.1:0",
                seeds=[first.address],
                keyring=keyring,
                config=config,
                seed=index,
            )
            await node.start()
            started.append(node)
            nodes.append(node)
        return nodes

    yield make
    for node in started:
        await node.stop()
