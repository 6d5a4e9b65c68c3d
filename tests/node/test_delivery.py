"""Issue 13 on real sockets: concurrent writes reach every member by push alone."""

from __future__ import annotations

import asyncio
import dataclasses

from crdtgossip import GCounter
from crdtgossip.config import GossipConfig
from crdtgossip.node import Node
from crdtgossip.security import Keyring
from crdtgossip.testing.spread import no_repair
from tests.node.conftest import FAST
from tests.node.test_cluster import Factory, all_alive
from tests.polling import eventually

#: The local preset's timers made fast for a test, with anti-entropy out of reach, so
#: what converges was pushed (acknowledged delivery), not repaired.
PUSH_ONLY = dataclasses.replace(
    no_repair(GossipConfig.local()),
    probe_interval=FAST.probe_interval,
    probe_timeout=FAST.probe_timeout,
    gossip_interval=FAST.gossip_interval,
    join_retry_interval=FAST.join_retry_interval,
)


async def test_five_keyed_nodes_writing_one_key_at_once_converge_without_anti_entropy(
    cluster_factory: Factory, keyring: Keyring
) -> None:
    nodes: list[Node] = await cluster_factory(5, keyring=keyring, config=PUSH_ONLY)
    await all_alive(nodes)
    await asyncio.gather(
        *(
            node.update("hits", GCounter, lambda c, n=node: c.increment(n.replica_id))
            for node in nodes
        )
    )

    async def converged() -> bool:
        values = [(await node.get("hits", GCounter)).value for node in nodes]
        return values == [len(nodes)] * len(nodes)

    await eventually(converged, "every node holds all five increments")
    assert all(node.stats()["drop_unauthenticated"] == 0 for node in nodes)
    # Anti-entropy never ran: each node made its join exchange (and maybe one retry).
    assert all(node.stats()["push_pulls"] <= 2 for node in nodes)
