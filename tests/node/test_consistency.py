"""Consistency levels on a real loopback cluster: quorum writes, reads, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from crdtgossip import GCounter, ORSet
from crdtgossip._persistence import decode_stored
from crdtgossip.consistency import All, AtLeast, Local, Majority
from crdtgossip.crdts import CRDT
from crdtgossip.errors import ConfigError, CRDTGossipError, MergeError, QuorumError
from crdtgossip.node import Node
from crdtgossip.storage import MemoryStorage
from tests.node.conftest import FAST, statuses
from tests.polling import eventually

Factory = Callable[..., Awaitable[list[Node]]]

#: Generous: a guard against a hung request, never reached on a healthy loopback.
TIMEOUT = 5.0

#: How many write-then-read rounds the read-your-writes test makes (the issue asks 100).
ROUNDS = 100


async def all_alive(nodes: list[Node]) -> None:
    ids = {node.node_id for node in nodes}
    await eventually(
        lambda: all(
            {k for k, v in statuses(node).items() if v == "alive"} == ids for node in nodes
        ),
        f"every node sees {sorted(ids)} alive",
    )


async def test_majority_write_then_majority_read_elsewhere_reads_it(
    cluster_factory: Factory,
) -> None:
    nodes = await cluster_factory(3)
    await all_alive(nodes)
    for round_ in range(ROUNDS):
        writer = nodes[round_ % 3]
        reader = nodes[(round_ + 1) % 3]
        replica, element = writer.replica_id, round_

        def add(s: ORSet[int], replica: str = replica, element: int = element) -> ORSet[int]:
            return s.add(element, replica)

        await writer.update("ryw", ORSet, add, consistency=Majority(timeout=TIMEOUT))
        # At once, no sleep: the read's majority overlaps the write's.
        seen = await reader.get("ryw", ORSet, consistency=Majority(timeout=TIMEOUT))
        assert round_ in seen.value, f"round {round_}: the read missed the write"


async def test_all_write_has_reached_every_member_when_it_returns(
    cluster_factory: Factory,
) -> None:
    nodes = await cluster_factory(4)
    await all_alive(nodes)
    for round_ in range(1, 11):
        await nodes[0].update(
            "k", GCounter, lambda c: c.increment(nodes[0].replica_id), consistency=All(TIMEOUT)
        )
        for node in nodes:  # Local reads: no waiting, no help from the read path
            assert (await node.get("k", GCounter)).value == round_


async def test_majority_write_with_two_of_three_stopped_raises_and_keeps_local_state(
    cluster_factory: Factory,
) -> None:
    nodes = await cluster_factory(3)
    await all_alive(nodes)
    await nodes[1].stop()
    await nodes[2].stop()
    with pytest.raises(QuorumError) as caught:
        await nodes[0].update(
            "k",
            GCounter,
            lambda c: c.increment(nodes[0].replica_id),
            consistency=Majority(timeout=0.5),
        )
    assert caught.value.answered == 1
    assert caught.value.needed == 2
    assert (await nodes[0].get("k", GCounter)).value == 1
    with pytest.raises(QuorumError) as read_error:
        await nodes[0].get("k", GCounter, consistency=Majority(timeout=0.5))
    assert read_error.value.answered == 1


async def test_at_least_more_than_exist_fails_and_local_or_one_never_waits(
    cluster_factory: Factory,
) -> None:
    nodes = await cluster_factory(2)
    await all_alive(nodes)
    inc = lambda c: c.increment(nodes[0].replica_id)  # noqa: E731
    with pytest.raises(QuorumError) as caught:
        await nodes[0].update("k", GCounter, inc, consistency=AtLeast(3, timeout=0.3))
    assert (caught.value.answered, caught.value.needed) == (2, 3)
    state = await nodes[0].update("k", GCounter, inc, consistency=AtLeast(1, timeout=0.3))
    assert state.value == 2
    assert (await nodes[0].update("k", GCounter, inc, consistency=Local())).value == 3
    assert (await nodes[1].get("k", GCounter, consistency=AtLeast(2, TIMEOUT))).value >= 1


async def test_quorum_read_merges_and_repairs(cluster_factory: Factory) -> None:
    nodes = await cluster_factory(3)
    await all_alive(nodes)
    # A state only nodes[2] holds: put straight into its engine, as a restore does.
    counter = GCounter()
    counter.increment("elsewhere", 5)
    engine = nodes[2]._engine
    assert engine is not None
    engine.restore("k", counter)
    value = (await nodes[0].get("k", GCounter, consistency=All(TIMEOUT))).value
    assert value == 5

    async def repaired() -> bool:
        return (await nodes[1].get("k", GCounter)).value == 5

    await eventually(repaired, "the member whose reply was behind is repaired")


async def test_quorum_read_of_a_key_of_another_type_raises_before_asking(
    cluster_factory: Factory,
) -> None:
    nodes = await cluster_factory(2)
    await all_alive(nodes)
    await nodes[0].update("k", GCounter, lambda c: c.increment(nodes[0].replica_id))
    with pytest.raises(MergeError):
        await nodes[0].get("k", ORSet, consistency=Majority(TIMEOUT))


async def test_stopping_fails_a_pending_quorum_write(cluster_factory: Factory) -> None:
    nodes = await cluster_factory(2)
    await all_alive(nodes)
    await nodes[1].stop()
    pending = asyncio.create_task(
        nodes[0].update(
            "k", GCounter, lambda c: c.increment(nodes[0].replica_id), consistency=All(30.0)
        )
    )
    await eventually(lambda: nodes[0].stats()["quorum_writes"] == 1, "the write is pending")
    await nodes[0].stop()
    with pytest.raises(CRDTGossipError, match="stopped"):
        await asyncio.wait_for(pending, TIMEOUT)


class _DurableMemory(MemoryStorage):
    """A memory storage that claims durability, so members hold acks until persisted."""

    @property
    def durable(self) -> bool:
        return True

    def stored(self, key: str) -> CRDT | None:
        """What the storage holds of ``key``: its state joined with its delta log."""
        state, deltas = self.load(key)
        return decode_stored(key, state, deltas)


async def test_a_member_acknowledges_a_write_only_once_persisted() -> None:
    storages = [_DurableMemory() for _ in range(3)]
    nodes = [Node("n0", config=FAST, storage=storages[0], seed=0)]
    await nodes[0].start()
    try:
        for index in (1, 2):
            node = Node(
                f"n{index}",
                seeds=[nodes[0].address],
                config=FAST,
                storage=storages[index],
                seed=index,
            )
            await node.start()
            nodes.append(node)
        await all_alive(nodes)
        for round_ in range(1, 6):
            await nodes[0].update(
                "k", GCounter, lambda c: c.increment(nodes[0].replica_id), consistency=All(TIMEOUT)
            )
            for storage in storages:
                stored = storage.stored("k")
                assert stored is not None
                assert stored.value == round_
    finally:
        for node in nodes:
            await node.stop()


@pytest.mark.parametrize(
    ("level", "members", "needed"),
    [
        (Local(), 5, 1),
        (AtLeast(2), 5, 2),
        (AtLeast(7), 5, 7),
        (Majority(), 1, 1),
        (Majority(), 2, 2),
        (Majority(), 3, 2),
        (Majority(), 4, 3),
        (Majority(), 5, 3),
        (All(), 4, 4),
    ],
)
def test_members_needed_per_level(
    level: Local | AtLeast | Majority | All, members: int, needed: int
) -> None:
    assert level.required(members) == needed


@pytest.mark.parametrize(
    "make",
    [
        lambda: AtLeast(0),
        lambda: AtLeast(True),
        lambda: Majority(timeout=0),
        lambda: All(timeout=float("nan")),
        lambda: Majority(timeout="1"),  # type: ignore[arg-type]
    ],
)
def test_invalid_levels_raise_config_error(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigError):
        make()
