"""A node whose storage lost acknowledged commits loses no write (issue 18, item 1).

The reproducer: a durable node restored from an older copy of its file kept its replica
id, so its next increments reused counter values its peers already held, and they
vanished on merge (50 increments, restart shows 24, 5 more: 50, expected 55).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from crdtgossip import GCounter
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
