"""Node with GossipConfig.expire_keys_after: an idle key leaves memory, watchers and
the SQLite file; its last-write stamp survives a restart; peers' merges are stamped."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from crdtgossip import GCounter, Node, OperationError, StorageError, encode
from crdtgossip._persistence import _delete_rows, read_stored
from crdtgossip._written import stamp_key
from crdtgossip.storage import MemoryStorage, SQLiteStorage
from tests.node.conftest import FAST
from tests.polling import eventually

EXPIRING = dataclasses.replace(FAST, expire_keys_after={"tmp/*": 1.0, "long/*": 3600.0})


async def _count(node: Node, key: str, n: int = 1) -> None:
    replica = node.replica_id
    await node.update(key, GCounter, lambda c: c.increment(replica, n))


def _rows(path: Path) -> list[str]:
    storage = SQLiteStorage(path)
    stored = storage.open()
    storage.close()
    return sorted({*stored.states, *stored.deltas})


def _stamps(path: Path) -> dict[str, int]:
    storage = SQLiteStorage(path)
    stored = storage.open()
    storage.close()
    return read_stored(stored)[1]


async def test_an_idle_key_leaves_memory_watchers_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    async with Node("a", config=EXPIRING, storage=SQLiteStorage(path), seed=1) as node:
        deleted: list[str] = []
        node.on_key_deleted(deleted.append)
        await _count(node, "tmp/x", 3)
        await _count(node, "kept", 1)
        seen: list[object] = []

        async def watch() -> None:
            async for value in node.watch("tmp/x"):
                seen.append(value)
                if value is None:
                    return

        watcher = asyncio.create_task(watch())
        await eventually(lambda: node.keys() == ["kept"], "tmp/x expired")
        await asyncio.wait_for(watcher, 5.0)
        assert seen == [3, None]
        assert deleted == ["tmp/x"]
        assert node.stats()["keys_expired"] == 1
        await eventually(lambda: node.stats()["keys_dirty"] == 0, "rows deleted")
    assert _rows(path) == ["kept"]  # neither the key's rows nor its stamp's are left


async def test_the_stamp_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    async with Node("a", config=EXPIRING, storage=SQLiteStorage(path), seed=1) as node:
        await _count(node, "long/x")
        await _count(node, "long/x")
        written = node._require_engine().written("long/x")
        assert written > 0
    stamps = _stamps(path)
    assert set(stamps) == {"long/x"}
    assert stamps["long/x"] == written  # stored as the engine holds it
    assert stamp_key("long/x") in _rows(path)
    async with Node("a", config=EXPIRING, storage=SQLiteStorage(path), seed=2) as again:
        assert again._require_engine().written("long/x") == stamps["long/x"]


async def test_a_key_past_its_time_when_restarted_goes_at_once(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    async with Node("a", config=EXPIRING, storage=SQLiteStorage(path), seed=1) as node:
        await _count(node, "tmp/x")
        await _count(node, "kept")
    # Restarted without expiry rules, it keeps the key (and its stamp record) ...
    async with Node("a", config=FAST, storage=SQLiteStorage(path), seed=2) as plain:
        assert plain.keys() == ["kept", "tmp/x"]
        await asyncio.sleep(1.2)
    assert "tmp/x" in _stamps(path)
    # ... and with them again, past the stored stamp's time, it drops the key at once.
    async with Node("a", config=EXPIRING, storage=SQLiteStorage(path), seed=3) as again:
        await eventually(lambda: again.keys() == ["kept"], "tmp/x expired on start")
        await eventually(lambda: again.stats()["keys_dirty"] == 0, "rows deleted")
    assert _rows(path) == ["kept"]


async def test_merges_from_a_peer_are_stamped_in_its_storage(tmp_path: Path) -> None:
    a = Node("a", "127.0.0.1:0", config=EXPIRING, storage=SQLiteStorage(tmp_path / "a.db"))
    await a.start()
    b = Node(
        "b", "127.0.0.1:0", seeds=[a.address], config=EXPIRING,
        storage=SQLiteStorage(tmp_path / "b.db"),
    )  # fmt: skip
    await b.start()
    try:
        await _count(a, "long/x", 5)
        await eventually(lambda: b._require_engine().get("long/x") is not None, "b merged")
        await eventually(lambda: b.stats()["keys_dirty"] == 0, "b persisted its merge")
        assert b._require_engine().written("long/x") > 0
    finally:
        await b.stop()
        await a.stop()
    assert "long/x" in _stamps(tmp_path / "b.db")


async def test_a_write_after_an_expiry_starts_from_empty(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    async with Node("a", config=EXPIRING, storage=SQLiteStorage(path), seed=1) as node:
        await _count(node, "tmp/x", 7)
        await eventually(lambda: node.keys() == [], "tmp/x expired")
        await _count(node, "tmp/x", 2)
        assert (await node.get("tmp/x", GCounter)).value == 2
    async with Node("a", config=FAST, storage=SQLiteStorage(path), seed=2) as again:
        assert (await again.get("tmp/x", GCounter)).value == 2  # the old rows are gone


async def test_reserved_keys_are_refused() -> None:
    async with Node("a", config=EXPIRING, seed=1) as node:
        with pytest.raises(OperationError, match="reserved"):
            await _count(node, stamp_key("x"))


def test_rows_of_a_storage_without_delete_many_go_one_by_one() -> None:
    deleted: list[str] = []

    class OnlyDelete:
        def delete(self, key: str) -> None:
            deleted.append(key)

    _delete_rows(OnlyDelete(), ["a", "b"])  # type: ignore[arg-type]
    assert deleted == ["a", stamp_key("a"), "b", stamp_key("b")]


async def test_a_stamp_record_of_another_type_stops_the_start() -> None:
    storage = MemoryStorage()
    storage.open()
    storage.put(stamp_key("tmp/x"), encode(GCounter().increment("r")))
    storage.close()
    node = Node("a", config=EXPIRING, storage=storage, seed=1)
    with pytest.raises(StorageError, match="stamp record"):
        await node.start()
