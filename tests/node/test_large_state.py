"""A key of a million elements reaches a joining node over real loopback sockets."""

from __future__ import annotations

from crdtgossip import ORSet
from crdtgossip.crdts._causal import CausalCRDT
from crdtgossip.node import Node
from tests.node.conftest import FAST
from tests.polling import eventually

COUNT = 1_000_000


async def test_a_million_element_orset_reaches_a_joining_node() -> None:
    state: ORSet[int] = ORSet()
    for element in range(COUNT):
        state.add(element, "origin")
    expected = state.copy()
    seed = Node(node_id="seed", bind="127.0.0.1:0", config=FAST)
    await seed.start()
    try:
        engine = seed._engine
        assert engine is not None
        engine.restore("big", state, copy=False)
        joiner = Node(node_id="joiner", bind="127.0.0.1:0", seeds=[seed.address], config=FAST)
        await joiner.start()
        try:

            def arrived() -> bool:
                live = joiner._engine.get("big") if joiner._engine is not None else None
                return isinstance(live, CausalCRDT) and len(live._live_of("origin")) == COUNT

            await eventually(arrived, "the million elements reach the joiner", patience=120)
            assert (await joiner.get("big", ORSet)) == expected
            assert seed.stats()["transfer_parts"] > 1
        finally:
            await joiner.stop()
    finally:
        await seed.stop()
