"""What a :class:`~crdtgossip.Node` reads from its storage when it starts.

The replica id and incarnation to run under, every stored key, and the last-write
stamps of those that expire. A storage that lost
commits it had acknowledged (``rolled_back``) gives what it kept and no replica id, so
the node takes a fresh one; that is logged, since peers must bring back the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from crdtgossip._persistence import Persistence, read_stored
from crdtgossip.config import GossipConfig
from crdtgossip.crdts._base import CRDT
from crdtgossip.errors import StorageError
from crdtgossip.keylife import Record
from crdtgossip.protocol import Engine
from crdtgossip.protocol.antientropy import key_digest
from crdtgossip.protocol.rollback import fresh_replica_id
from crdtgossip.storage import MAX_INCARNATION, Storage, StoredState

__all__ = [
    "Opened",
    "close_storage",
    "new_replica_id",
    "open_storage",
    "settle_replica_id",
    "start_engine",
]

_log = logging.getLogger("crdtgossip.node")


new_replica_id = fresh_replica_id


class Opened(NamedTuple):
    """What a node starts from: the replica id and incarnation to run under, the
    stored keys, and whether the id is the stored one (so the peers are asked, by the
    rollback check, whether the storage lost commits) rather than a fresh one."""

    replica_id: str
    incarnation: int
    restored: dict[str, CRDT]
    kept_id: bool
    #: Each expiring key's stored last-write stamp (see :mod:`crdtgossip._written`);
    #: empty without a storage.
    written: Mapping[str, int] = MappingProxyType({})
    #: Each stored key's life record, deleted keys' included (see
    #: :mod:`crdtgossip.keylife`); empty without a storage.
    lives: Mapping[str, Record] = MappingProxyType({})


def _read_and_digest(
    stored: StoredState,
) -> tuple[dict[str, CRDT], dict[str, int], dict[str, Record]]:
    """Decode every stored key and stamp (:func:`read_stored`), and compute each
    state's anti-entropy digest once.

    A decoded state holds no running sums of its hashes yet; the first exchange would
    build them in one call, on the event loop (10 s for a 10^7-element ORSet). Here
    they are built where the storage is read: in its thread for a file.
    """
    restored, written, lives = read_stored(stored)
    for state in restored.values():
        if hasattr(state, "_digest"):  # a type of the user's is hashed by its encoding
            key_digest(state)
    return restored, written, lives


async def open_storage(node_id: str, storage: Storage, persistence: Persistence) -> Opened:
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
        restored, written, lives = await persistence.call(_read_and_digest, stored)
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
    return Opened(replica_id, incarnation, restored, stored.replica_id is not None, written, lives)


def start_engine(
    node_id: str,
    address: str,
    config: GossipConfig,
    rng: random.Random,
    opened: Opened,
    durable: bool,
    check: bool,
) -> Engine:
    """The engine a node starts: under the replica id and incarnation ``opened`` gives,
    holding its stored keys (restored, not gossiped as news), holding back the acks of
    quorum writes until they are persisted when ``durable``, and running the rollback
    check when the id is the stored one and ``check`` (the node has seeds to ask)."""
    engine = Engine(node_id, address, config, rng, opened.replica_id,
                    incarnation=opened.incarnation, hold_write_acks=durable)  # fmt: skip
    lives = opened.lives
    for key, state in opened.restored.items():
        written = opened.written.get(key, 0)
        engine.restore(key, state, copy=False, written=written, life=lives.get(key))
    for key, record in lives.items():
        if key not in opened.restored:  # a tombstone: its record alone
            engine.restore_life(key, record)
    if opened.kept_id and check:
        engine.check_rollback(config.rollback_check_timeout)
    return engine


async def settle_replica_id(
    engine: Engine, checked: asyncio.Event, storage: Storage, persistence: Persistence
) -> str:
    """Wait for the end of the engine's rollback check (see
    :mod:`crdtgossip.protocol.rollback`); save the fresh replica id it took, if any,
    before the node's first write; the replica id to write under.

    ``checked`` is set by the node once ``engine.rollback_pending`` is False. The wait
    is bounded by the engine's own deadline (``GossipConfig.rollback_check_timeout``),
    and here once more by one second past it, should the event loop be starved.

    Raises:
        StorageError: the fresh replica id could not be saved.
    """
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(checked.wait(), engine.config.rollback_check_timeout + 1.0)
    if engine.rollback_pending:
        _log.warning("crdtgossip: %s: the rollback check did not end in time", engine.node_id)
    if engine.rollback_found:
        await persistence.call(storage.save_identity, engine.replica_id, engine.incarnation)
    return engine.replica_id


async def close_storage(node_id: str, storage: Storage, persistence: Persistence) -> None:
    """Close ``storage``, logging (not raising) a failure."""
    try:
        await persistence.call(storage.close)
    except StorageError:
        _log.exception("crdtgossip: closing the storage of %s failed", node_id)
