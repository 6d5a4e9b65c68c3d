"""What a :class:`~crdtgossip.Node` reads from its storage when it starts.

The replica id and incarnation to run under, and every stored key. A storage that lost
commits it had acknowledged (``rolled_back``) gives what it kept and no replica id, so
the node takes a fresh one; that is logged, since peers must bring back the rest.
"""

from __future__ import annotations

import logging
import secrets

from crdtgossip._persistence import Persistence, decode_all
from crdtgossip.crdts._base import CRDT
from crdtgossip.errors import StorageError
from crdtgossip.storage import MAX_INCARNATION, Storage

__all__ = ["close_storage", "new_replica_id", "open_storage"]

_log = logging.getLogger("crdtgossip.node")


def new_replica_id(node_id: str) -> str:
    """A replica id never used before: the node id plus 64 random bits.

    A node that lost its state must not reuse its old replica id, or its new counter
    slots and dots would collide with ones it already issued (riak_kv#679).
    """
    return f"{node_id}.{secrets.token_hex(8)}"


async def open_storage(
    node_id: str, storage: Storage, persistence: Persistence
) -> tuple[str, int, dict[str, CRDT]]:
    """Open ``storage``; the replica id and incarnation to run under, and the keys.

    The identity is saved before the node makes any write: a crash after a write must
    not lose the id it used. The storage is closed again when this fails.

    Raises:
        StorageError: the storage cannot be opened or read completely.
    """
    try:
        stored = await persistence.call(storage.open)
    except StorageError as exc:
        raise StorageError(f"node {node_id!r} cannot start: {exc}") from exc
    try:
        restored = decode_all(stored)
        if stored.rolled_back:
            _log.warning(
                "crdtgossip: the storage of %s lost commits it had acknowledged "
                "(a damaged write-ahead log, or an older copy); it keeps the %d "
                "keys found and takes a fresh replica id, and peers bring back "
                "the rest",
                node_id,
                len(restored),
            )
        if stored.replica_id is not None:
            replica_id = stored.replica_id
            incarnation = min(stored.incarnation + 1, MAX_INCARNATION)
        else:
            replica_id, incarnation = new_replica_id(node_id), 0
        await persistence.call(storage.save_identity, replica_id, incarnation)
    except StorageError as exc:
        await close_storage(node_id, storage, persistence)
        raise StorageError(f"node {node_id!r} cannot start: {exc}") from exc
    except BaseException:
        await close_storage(node_id, storage, persistence)
        raise
    _log.info(
        "crdtgossip: %s restored %d keys from its storage (replica id %s, incarnation %d)",
        node_id,
        len(restored),
        replica_id,
        incarnation,
    )
    return replica_id, incarnation, restored


async def close_storage(node_id: str, storage: Storage, persistence: Persistence) -> None:
    """Close ``storage``, logging (not raising) a failure."""
    try:
        await persistence.call(storage.close)
    except StorageError:
        _log.exception("crdtgossip: closing the storage of %s failed", node_id)
