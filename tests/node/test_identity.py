"""Two real Nodes on loopback with one node id: the second is refused."""

from __future__ import annotations

import pytest

from crdtgossip import ConfigError, GCounter, GossipConfig, Node

from ..polling import eventually


async def test_a_second_process_with_a_live_node_id_is_refused() -> None:
    config = GossipConfig.local()
    async with Node(node_id="a", bind="127.0.0.1:0", config=config) as first:
        async with Node(
            node_id="a", bind="127.0.0.1:0", seeds=[first.address], config=config
        ) as second:

            async def refused() -> bool:
                try:
                    await second.get("k", GCounter)
                except ConfigError as error:
                    return "already used by a live member" in str(error)
                return False

            await eventually(refused, "the second node refused")
            with pytest.raises(ConfigError, match=first.address):
                await second.update("k", GCounter, lambda c: c.increment(second.replica_id))
        # The holder goes on as before.
        await first.update("k", GCounter, lambda c: c.increment(first.replica_id))
        assert (await first.get("k", GCounter)).value == 1
