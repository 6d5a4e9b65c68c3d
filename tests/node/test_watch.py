"""Watching a node's keys: one key, a key prefix, every key; and MajorityPlus on a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import pytest

from crdtgossip import GCounter, Majority, MajorityPlus, MemoryNetwork, Node, QuorumError
from tests.node.conftest import FAST, statuses
from tests.polling import eventually

#: Generous: a guard against a hung watcher, never reached when the change arrives.
PATIENCE = 10.0


def _bump(node: Node) -> Callable[[GCounter], object]:
    return lambda counter: counter.increment(node.replica_id)


async def _next(pairs: AsyncGenerator[tuple[str, object], None]) -> tuple[str, object]:
    return await asyncio.wait_for(anext(pairs), PATIENCE)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Node, Node]]:
    network = MemoryNetwork(seed=5, delay=(0.0, 0.002))
    first = Node("a", "a:7000", config=FAST, transport=network.transport)
    second = Node("b", "b:7000", ["a:7000"], config=FAST, transport=network.transport)
    async with first, second:
        await eventually(lambda: statuses(first).get("b") == "alive", "a sees b")
        yield first, second


async def test_a_prefix_watch_gets_present_keys_then_changes_from_anywhere(
    pair: tuple[Node, Node],
) -> None:
    first, second = pair
    await first.update("svc/b", GCounter, _bump(first))
    await first.update("svc/a", GCounter, _bump(first))
    await first.update("other", GCounter, _bump(first))
    pairs = first.watch_prefix("svc/")
    assert await _next(pairs) == ("svc/a", 1)  # present keys first, sorted
    assert await _next(pairs) == ("svc/b", 1)
    await second.update("other", GCounter, _bump(second))  # not under the prefix
    await second.update("svc/c", GCounter, _bump(second))  # written elsewhere, gossiped
    assert await _next(pairs) == ("svc/c", 1)
    await pairs.aclose()
    assert first._listeners._prefixes == []  # closing the iterator removes the watcher


async def test_watching_every_key_coalesces_a_burst_of_changes(pair: tuple[Node, Node]) -> None:
    first, _ = pair
    pairs = first.watch_prefix()
    waiting = asyncio.ensure_future(_next(pairs))
    await asyncio.sleep(0)  # the watcher is registered and waits
    for _ in range(50):  # faster than the watcher reads: one wake-up
        await first.update("x", GCounter, _bump(first))
    await first.update("y", GCounter, _bump(first))
    assert await waiting == ("x", 50)  # the latest value, once
    assert await _next(pairs) == ("y", 1)
    await pairs.aclose()


async def test_watches_end_when_the_node_stops() -> None:
    network = MemoryNetwork(seed=6)
    node = Node("a", "a:7000", config=FAST, transport=network.transport)
    await node.start()
    await node.update("k", GCounter, _bump(node))

    async def drain() -> list[tuple[str, object]]:
        return [item async for item in node.watch_prefix("k")]

    watching = asyncio.ensure_future(drain())
    await asyncio.sleep(0.05)
    await node.stop()
    assert await asyncio.wait_for(watching, PATIENCE) == [("k", 1)]


async def test_majority_plus_needs_more_than_a_majority() -> None:
    network = MemoryNetwork(seed=7)
    nodes = [
        Node(
            f"n{i}",
            f"n{i}:7000",
            [] if i == 0 else ["n0:7000"],
            config=FAST,
            seed=i,
            transport=network.transport,
        )
        for i in range(4)
    ]
    for node in nodes:
        await node.start()
    try:
        first = nodes[0]
        await eventually(
            lambda: all(sum(s == "alive" for s in statuses(node).values()) == 4 for node in nodes),
            "every node sees four alive",
        )
        await first.update("k", GCounter, _bump(first), consistency=MajorityPlus(1))  # 4 of 4
        network.partition([nodes[3].address], [node.address for node in nodes[:3]])
        # Four members still counted (the cut one is alive or suspect): a majority is 3,
        # which the three connected nodes give; a majority plus one is all four.
        await first.update("k", GCounter, _bump(first), consistency=Majority(timeout=1.0))
        with pytest.raises(QuorumError) as caught:
            await first.update("k", GCounter, _bump(first), consistency=MajorityPlus(1, 1.0))
        assert caught.value.needed == 4
    finally:
        for node in nodes:
            await node.stop()
