"""A node whose storage lost acknowledged commits loses no write (issue 18, item 1).

The reproducer: a durable node restored from an older copy of its file kept its replica
id, so its next increments reused counter values its peers already held, and they
vanished on merge (50 increments, restart shows 24, 5 more: 50, expected 55).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crdtgossip import GCounter, ORSet
from crdtgossip.node import Node
from crdtgossip.storage import SQLiteStorage
from tests.node.conftest import FAST
from tests.polling import eventually


async def _increment(node: Node, times: int) -> None:
    for _ in range(times):
        await node.update("hits", GCounter, lambda c: c.increment(node.replica_id))


async def test_a_node_restored_from_an_older_copy_takes_a_fresh_id_and_loses_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.db"
    backup = tmp_path / "backup.db"
    peer = Node("b", config=FAST, seed=2)
    await peer.start()
    try:
        durable = Node("a", seeds=[peer.address], config=FAST, storage=SQLiteStorage(path))
        await durable.start()
        first_id = durable.replica_id
        await _increment(durable, 24)
        await durable.stop()
        shutil.copyfile(path, backup)  # a backup taken here, without its .hwm

        durable = Node("a", seeds=[peer.address], config=FAST, storage=SQLiteStorage(path))
        await durable.start()
        assert durable.replica_id == first_id
        await _increment(durable, 26)

        async def peer_has(value: int) -> bool:
            return (await peer.get("hits", GCounter)).value == value

        await eventually(lambda: peer_has(50), "the peer holds all 50")
        await durable.stop()

        shutil.copyfile(backup, path)  # restored, as the StorageError message advises
        durable = Node("a", seeds=[peer.address], config=FAST, storage=SQLiteStorage(path))
        await durable.start()
        try:
            assert durable.replica_id != first_id  # a fresh id: old counter values unused
            await _increment(durable, 5)
            await eventually(lambda: peer_has(55), "the peer holds all 55")

            async def durable_has_55() -> bool:
                return (await durable.get("hits", GCounter)).value == 55

            await eventually(durable_has_55, "the restored node converges to 55")
        finally:
            await durable.stop()
    finally:
        await peer.stop()


async def _restart(path: Path, peer: Node) -> Node:
    node = Node("a", seeds=[peer.address], config=FAST, storage=SQLiteStorage(path))
    await node.start()
    return node


@pytest.mark.parametrize("mark", ["restored-with-its-mark", "mark-deleted"])
async def test_a_backup_the_file_cannot_tell_is_found_out_by_the_peers(
    tmp_path: Path, mark: str
) -> None:
    # A backup taken with its .hwm is self-consistent, only older: the store's own
    # check passes, and only the peers can tell (protocol/rollback.py).
    path = tmp_path / "a.db"
    hwm = tmp_path / "a.db.hwm"
    peer = Node("b", config=FAST, seed=2)
    await peer.start()
    try:
        durable = await _restart(path, peer)
        first_id = durable.replica_id
        await _increment(durable, 24)
        await durable.update("tags", ORSet, lambda s: s.add("old", durable.replica_id))
        await durable.stop()
        shutil.copyfile(path, tmp_path / "backup.db")
        shutil.copyfile(hwm, tmp_path / "backup.db.hwm")

        durable = await _restart(path, peer)
        assert durable.replica_id == first_id  # a whole store keeps its id...
        assert durable.stats()["marks_reports_in"] >= 1  # ...once the peer answered
        await _increment(durable, 26)
        await durable.update("tags", ORSet, lambda s: s.add("lost?", durable.replica_id))

        async def peer_has(value: int, tags: set[str]) -> bool:
            hits = (await peer.get("hits", GCounter)).value
            return hits == value and (await peer.get("tags", ORSet)).value == tags

        await eventually(lambda: peer_has(50, {"old", "lost?"}), "the peer holds all 50")
        await durable.stop()

        shutil.copyfile(tmp_path / "backup.db", path)
        if mark == "mark-deleted":
            hwm.unlink()
        else:
            shutil.copyfile(tmp_path / "backup.db.hwm", hwm)
        for leftover in (tmp_path / "a.db-wal", tmp_path / "a.db-shm"):
            leftover.unlink(missing_ok=True)
        durable = await _restart(path, peer)
        try:
            assert durable.replica_id != first_id  # the peer held more of the old id
            assert durable.stats()["rollbacks_detected"] == 1
            await _increment(durable, 5)
            await durable.update("tags", ORSet, lambda s: s.add("new", durable.replica_id))
            everything = {"old", "lost?", "new"}
            await eventually(lambda: peer_has(55, everything), "the peer holds all 55")

            async def durable_has_all() -> bool:
                hits = (await durable.get("hits", GCounter)).value
                return hits == 55 and (await durable.get("tags", ORSet)).value == everything

            await eventually(durable_has_all, "the restored node converges")
        finally:
            await durable.stop()
        # The fresh id was saved before the first write under it.
        durable = await _restart(path, peer)
        try:
            assert durable.stats()["rollbacks_detected"] == 0
            assert (await durable.get("hits", GCounter)).value == 55
        finally:
            await durable.stop()
    finally:
        await peer.stop()
