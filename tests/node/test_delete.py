"""Node.delete: a key gone from memory, storage and anti-entropy, watchers told."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from crdtgossip import GCounter, GSet, Node, StorageError
from crdtgossip.keylife import unwrap
from crdtgossip.storage import MemoryStorage, SQLiteStorage
from tests.node.conftest import FAST
from tests.polling import eventually


def _counter(counts: dict[str, int]) -> GCounter:
    counter = GCounter()
    for replica, n in counts.items():
        counter.increment(replica, n)
    return counter


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


async def test_the_hash_tree_forgets_a_deleted_key_once_its_tombstone_goes() -> None:
    config = dataclasses.replace(FAST, deleted_keys_kept=0.3)
    async with Node("a", config=config, seed=1) as node:
        await _count(node, "k")
        tree = node._require_engine()._tree
        written = tree.digest("k")
        assert written is not None
        await node.delete("k")
        tombstone = tree.digest("k")
        assert tombstone is not None
        assert tombstone != written  # the record's, for a while
        await eventually(lambda: tree.digest("k") is None, "the tombstone gone")
        assert len(tree) == 0
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
    assert not stored.deltas.get("gone")  # the delete's tombstone replaced its rows
    assert unwrap(stored.states["gone"]) == ({again.replica_id: (1, 1)}, b"")


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
    assert unwrap(stored.states["k"])[1] == b""  # the tombstone alone
    assert "k" not in stored.deltas


async def test_a_delete_that_cannot_be_persisted_keeps_the_key() -> None:
    storage = MemoryStorage()
    async with Node("a", config=FAST, storage=storage, seed=1) as node:
        await _count(node, "k", 4)

        def broken(*args: object) -> None:
            raise StorageError("disk full")

        storage.put = broken  # type: ignore[assignment,method-assign]
        with pytest.raises(StorageError):
            await node.delete("k")
        assert (await node.get("k", GCounter)).value == 4


async def test_a_delete_reaches_every_member_and_a_later_write_starts_empty(
    cluster_factory: Callable[..., Awaitable[list[Node]]],
) -> None:
    a, b, c = await cluster_factory(3)
    await eventually(lambda: all(n.stats()["members_alive"] == 3 for n in (a, b, c)), "joined")
    await _count(a, "k", 5)
    await _count(b, "k", 2)
    await eventually(lambda: all("k" in n.keys() for n in (b, c)), "k everywhere")  # noqa: SIM118
    await eventually(
        lambda: all(n._require_engine().get("k") == _counter({a.replica_id: 5, b.replica_id: 2})
                    for n in (a, b, c)), "both writes everywhere")  # fmt: skip
    heard: list[str] = []
    c.on_key_deleted(heard.append)
    assert await a.delete("k") is True
    await eventually(
        lambda: all("k" not in n.keys() for n in (a, b, c)),  # noqa: SIM118
        "k gone everywhere",
    )
    assert heard == ["k"]
    await _count(c, "k", 1)  # written anew: only the new write, on every member
    await eventually(
        lambda: all(n._require_engine().get("k") == _counter({c.replica_id: 1})
                    for n in (a, b, c)), "the new write alone everywhere")  # fmt: skip
