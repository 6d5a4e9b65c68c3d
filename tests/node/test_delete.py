"""Node.delete: a key gone from memory, storage and anti-entropy, watchers told."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from crdtgossip import GCounter, GSet, Node, OperationError, StorageError
from crdtgossip.storage import MemoryStorage, SQLiteStorage
from tests.node.conftest import FAST
from tests.polling import eventually


async def _count(node: Node, key: str, n: int = 1) -> None:
    replica = node.replica_id
    await node.update(key, GCounter, lambda c: c.increment(replica, n))


async def test_a_deleted_key_reads_empty_and_leaves_keys_and_stats() -> None:
    async with Node("a", config=FAST, seed=1) as node:
        await _count(node, "hits", 3)
        await _count(node, "other")
        assert await node.delete("hits") is True
        assert node.keys() == ["other"]
        assert (await node.get("hits", GCounter)).value == 0
        assert node.stats()["keys"] == 1
        assert node.stats()["keys_deleted"] == 1
        assert await node.delete("hits") is False  # not held: nothing to do
        assert node.stats()["keys_deleted"] == 1


async def test_a_key_written_after_its_delete_starts_empty() -> None:
    async with Node("a", config=FAST, seed=1) as node:
        await node.update("s", GSet, lambda s: s.add("old"))
        await node.delete("s")
        await node.update("s", GSet, lambda s: s.add("new"))
        assert (await node.get("s", GSet)).value == frozenset({"new"})


async def test_the_hash_tree_forgets_a_deleted_key() -> None:
    async with Node("a", config=FAST, seed=1) as node:
        await _count(node, "k")
        tree = node._require_engine()._tree
        assert tree.digest("k") is not None
        before = len(tree)
        await node.delete("k")
        assert tree.digest("k") is None
        assert len(tree) == before - 1
        assert tree.node_hash(0, 0) == bytes(16)  # the only key: the root is empty again


async def test_watchers_and_listeners_hear_of_a_delete() -> None:
    async with Node("a", config=FAST, seed=1) as node:
        await _count(node, "app/x")
        deleted: list[str] = []
        changed: list[str] = []
        node.on_key_deleted(deleted.append)
        node.on_key_changed(lambda key, change: changed.append(key))
        values = node.watch("app/x")
        pairs = node.watch_prefix("app/")
        assert await anext(values) == 1
        assert await anext(pairs) == ("app/x", 1)
        await node.delete("app/x")
        assert await asyncio.wait_for(anext(values), 10) is None
        assert await asyncio.wait_for(anext(pairs), 10) == ("app/x", None)
        assert deleted == ["app/x"]
        assert changed == []  # a delete merges nothing
        await _count(node, "app/x", 5)
        assert await asyncio.wait_for(anext(values), 10) == 5
        assert await asyncio.wait_for(anext(pairs), 10) == ("app/x", 5)
        await values.aclose()
        await pairs.aclose()


async def test_a_delete_persists_across_a_restart_with_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    node = Node("a", config=FAST, storage=SQLiteStorage(path), seed=1)
    await node.start()
    await _count(node, "gone", 2)
    await _count(node, "kept", 7)
    await node.delete("gone")
    await node.stop()
    again = Node("a", config=FAST, storage=SQLiteStorage(path), seed=2)
    await again.start()
    try:
        assert again.keys() == ["kept"]
        assert (await again.get("gone", GCounter)).value == 0
        assert (await again.get("kept", GCounter)).value == 7
    finally:
        await again.stop()
    storage = SQLiteStorage(path)
    stored = storage.open()
    storage.close()
    assert sorted({*stored.states, *stored.deltas}) == ["kept"]  # no row of "gone" left


async def test_a_delete_drops_merges_waiting_for_the_next_batch() -> None:
    storage = MemoryStorage()
    async with Node("a", config=FAST, storage=storage, seed=1) as node:
        await _count(node, "k")
        persistence = node._persistence
        assert persistence is not None
        persistence.merged("k", b"not yet written")
        await node.delete("k")
        assert persistence.pending == 0
    stored = storage.open()
    storage.close()
    assert "k" not in stored.states
    assert "k" not in stored.deltas


async def test_a_delete_that_cannot_be_persisted_keeps_the_key() -> None:
    storage = MemoryStorage()
    async with Node("a", config=FAST, storage=storage, seed=1) as node:
        await _count(node, "k", 4)

        def broken(keys: object) -> None:
            raise StorageError("disk full")

        storage.delete = broken  # type: ignore[method-assign]
        storage.delete_many = broken  # type: ignore[method-assign]
        with pytest.raises(StorageError):
            await node.delete("k")
        assert (await node.get("k", GCounter)).value == 4


async def test_a_delete_is_refused_while_another_member_holds_the_key(
    cluster_factory: Callable[..., Awaitable[list[Node]]],
) -> None:
    a, b = await cluster_factory(2)
    await eventually(lambda: len(a.members()) == 2 and a.stats()["members_alive"] == 2, "joined")
    await _count(a, "k")
    with pytest.raises(OperationError, match="other member"):
        await a.delete("k")
    assert a.keys() == ["k"]
    await b.stop()
    await eventually(lambda: a.stats()["members_alive"] == 1, "b seen dead")

    async def gone() -> bool:
        try:
            await a.delete("k")
        except OperationError:
            return False  # still suspect
        return True

    await eventually(gone, "the delete allowed once alone")
    assert a.keys() == []
