"""A real cluster on UDP/TCP loopback: membership, convergence, failure, leave, rejoin."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from crdtgossip import GCounter, ORSet
from crdtgossip.node import Node
from crdtgossip.security import Keyring
from tests.node.conftest import FAST, statuses
from tests.polling import eventually

Factory = Callable[..., Awaitable[list[Node]]]


async def all_alive(nodes: list[Node]) -> None:
    ids = {node.node_id for node in nodes}
    await eventually(
        lambda: all(
            {k for k, v in statuses(node).items() if v == "alive"} == ids for node in nodes
        ),
        f"every node sees {sorted(ids)} alive",
    )


async def test_five_nodes_with_keyring_converge_and_detect_failure(
    cluster_factory: Factory, keyring: Keyring
) -> None:
    nodes = await cluster_factory(5, keyring=keyring)
    await all_alive(nodes)

    for node in nodes:
        await node.update("hits", GCounter, lambda c, n=node: c.increment(n.replica_id))
        await node.update("names", ORSet, lambda s, n=node: s.add(n.node_id, n.replica_id))

    async def converged() -> bool:
        for node in nodes:
            if (await node.get("hits", GCounter)).value != 5:
                return False
            if (await node.get("names", ORSet)).value != {n.node_id for n in nodes}:
                return False
        return True

    await eventually(converged, "every update reaches every node")

    victim = nodes[2]
    await victim.stop()
    survivors = [node for node in nodes if node is not victim]
    await eventually(
        lambda: all(statuses(node)[victim.node_id] == "dead" for node in survivors),
        "the stopped node is marked dead by all others",
    )
    assert all(node.stats()["drop_unauthenticated"] == 0 for node in survivors)


async def test_node_with_another_key_never_joins_nor_merges(
    cluster_factory: Factory, keyring: Keyring
) -> None:
    nodes = await cluster_factory(3, keyring=keyring)
    await all_alive(nodes)
    intruder = Node(
        "intruder",
        "127.0.0.1:0",
        seeds=[nodes[0].address],
        keyring=Keyring.generate(),
        config=FAST,
        seed=99,
    )
    await intruder.start()
    try:
        await intruder.update("hits", GCounter, lambda c: c.increment(intruder.replica_id, 100))
        await nodes[0].update("hits", GCounter, lambda c: c.increment(nodes[0].replica_id))
        await eventually(
            # By UDP the frames open under no key; by TCP the hello already fails.
            lambda: (
                nodes[0].stats()["drop_unauthenticated"]
                + nodes[0].stats()["tcp_hello_auth_failures"]
                >= 3
            ),
            "the intruder's frames are dropped and counted",
        )
        # Give gossip time to (wrongly) spread: several push-pull rounds.
        await asyncio.sleep(FAST.push_pull_interval * 3)
        for node in nodes:
            assert "intruder" not in statuses(node)
            assert (await node.get("hits", GCounter)).value == 1
        assert set(statuses(intruder)) <= {"intruder", *(n.node_id for n in nodes)}
        assert (await intruder.get("hits", GCounter)).value == 100
    finally:
        await intruder.stop()


async def test_graceful_leave_shows_as_left(cluster_factory: Factory) -> None:
    nodes = await cluster_factory(4)
    await all_alive(nodes)
    leaver = nodes[3]
    await leaver.leave()
    assert not leaver.running
    await eventually(
        lambda: all(statuses(node)["n3"] == "left" for node in nodes[:3]),
        "a graceful leave shows as left everywhere",
    )


async def test_restarted_node_on_same_address_rejoins(cluster_factory: Factory) -> None:
    nodes = await cluster_factory(3)
    await all_alive(nodes)
    old = nodes[2]
    address = old.address
    await old.stop()
    await eventually(lambda: statuses(nodes[0])["n2"] == "dead", "the crashed node is marked dead")
    reborn = Node("n2", address, seeds=[nodes[0].address], config=FAST, seed=7)
    await reborn.start()
    try:
        await eventually(
            lambda: all(statuses(node)["n2"] == "alive" for node in nodes[:2]),
            "the restarted node is accepted as alive again",
        )
        await nodes[0].update("k", GCounter, lambda c: c.increment(nodes[0].replica_id))

        async def has_update() -> bool:
            return (await reborn.get("k", GCounter)).value == 1

        await eventually(has_update, "the restarted node receives new updates")
        assert reborn.replica_id != old.replica_id
    finally:
        await reborn.stop()


async def test_key_rotation_on_a_live_cluster_loses_no_update(
    cluster_factory: Factory, keyring: Keyring
) -> None:
    nodes = await cluster_factory(5, keyring=keyring)
    await all_alive(nodes)
    # Every node has its own Keyring object holding the same keys, as in production.
    keyrings = [Keyring(keyring.keys) for _ in nodes]
    for node, ring in zip(nodes, keyrings, strict=True):
        node._keyring = ring
    new_key = Keyring.generate().primary
    old_key = keyring.primary
    writes = 0

    async def write_round() -> None:
        nonlocal writes
        for node in nodes:
            await node.update("w", GCounter, lambda c, n=node: c.increment(n.replica_id))
            writes += 1
        await asyncio.sleep(0.02)

    for step in (
        lambda r: r.install(new_key),
        lambda r: r.use(new_key),
        lambda r: r.remove(old_key),
    ):
        # Each step is applied node by node with writes flowing in between.
        for ring in keyrings:
            step(ring)
            await write_round()

    async def converged() -> bool:
        values = [(await node.get("w", GCounter)).value for node in nodes]
        return values == [writes] * len(nodes)

    await eventually(converged, f"all {writes} writes present on every node")
    assert all(ring.keys == (new_key,) for ring in keyrings)
