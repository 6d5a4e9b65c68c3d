"""Node's write and read path: live states, listeners, roll back of failed writes."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from crdtgossip import CRDT, GCounter, ORSet
from crdtgossip.errors import MergeError, StorageError
from crdtgossip.node import Node
from crdtgossip.storage import MemoryStorage
from tests.node.conftest import FAST
from tests.polling import eventually


async def test_get_and_update_return_the_live_state_without_copying() -> None:
    async with Node("a", config=FAST) as node:
        replica = node.replica_id
        after = await node.update("s", ORSet, lambda s: s.add("x", replica))
        assert await node.get("s", ORSet) is after
        await node.update("s", ORSet, lambda s: s.add("y", replica))
        assert after.value == frozenset({"x", "y"})  # live: it shows later writes
        snapshot = after.copy()
        await node.update("s", ORSet, lambda s: s.remove("x"))
        assert snapshot.value == frozenset({"x", "y"})
        fresh = await node.get("absent", GCounter)
        assert fresh.value == 0
        stored_keys = node.keys()
        assert "absent" not in stored_keys  # an empty state of an absent key is not stored


async def test_key_listeners_hear_local_deltas_and_network_merges() -> None:
    async with Node("a", config=FAST) as a, Node("b", seeds=[a.address], config=FAST) as b:
        heard: list[tuple[str, dict[str, int]]] = []

        def listener(key: str, change: CRDT) -> None:
            assert isinstance(change, GCounter)
            heard.append((key, change.counts))

        remove = a.on_key_changed(listener)
        await a.update("k", GCounter, lambda c: c.increment(a.replica_id, 2))
        assert heard == [("k", {a.replica_id: 2})]  # the delta, at once
        await b.update("k", GCounter, lambda c: c.increment(b.replica_id, 5))
        await eventually(
            lambda: (a.stats()["deltas_merged"] + a.stats()["states_merged"]) > 0,
            "a merges b's write",
        )
        # b's write, as received: its delta, or a state holding it.
        assert any(counts.get(b.replica_id) == 5 for key, counts in heard if key == "k")
        remove()
        remove()  # harmless twice
        count = len(heard)
        await a.update("k", GCounter, lambda c: c.increment(a.replica_id))
        assert len(heard) == count


async def test_a_failing_listener_does_not_stop_the_write() -> None:
    async with Node("a", config=FAST) as node:

        def broken(key: str, change: CRDT) -> None:
            raise RuntimeError("listener bug")

        node.on_key_changed(broken)
        counter = await node.update("k", GCounter, lambda c: c.increment(node.replica_id))
        assert counter.value == 1


class _FailingAppends(MemoryStorage):
    """A memory storage whose appends fail while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    def append(self, items: Iterable[tuple[str, bytes]]) -> None:
        if self.failing:
            raise StorageError("disk full (simulated)")
        super().append(items)


async def test_a_write_that_cannot_be_persisted_is_rolled_back() -> None:
    storage = _FailingAppends()
    async with Node("a", config=FAST, storage=storage) as node:
        replica = node.replica_id
        live = await node.update("s", ORSet, lambda s: s.add("kept", replica))
        storage.failing = True
        with pytest.raises(StorageError, match="disk full"):
            await node.update("s", ORSet, lambda s: s.add("lost", replica))
        after = await node.get("s", ORSet)
        assert after.value == frozenset({"kept"})
        assert after is not live  # the state holding the failed write was replaced
        assert node.stats()["local_updates"] == 1
        storage.failing = False
        again = await node.update("s", ORSet, lambda s: s.add("later", replica))
        assert again.value == frozenset({"kept", "later"})
        # The dot of the failed add was never issued: the storage and memory agree.
        state, deltas = storage.load("s")
        assert state is not None or deltas


async def test_an_update_function_that_misbehaves_after_mutating_is_rolled_back() -> None:
    storage = MemoryStorage()
    async with Node("a", config=FAST, storage=storage) as node:
        replica = node.replica_id
        await node.update("c", GCounter, lambda c: c.increment(replica))

        def drops_the_delta(counter: GCounter) -> None:
            counter.increment(replica, 10)  # mutates, but returns None

        with pytest.raises(MergeError):
            await node.update("c", GCounter, drops_the_delta)
        assert (await node.get("c", GCounter)).value == 1
