"""Opening a SQLite state file: create it if absent, check it whole, migrate it, load it.

Everything refused here is refused before anything is returned: the caller gets every
state and log record of the file, each checked, or a StorageError that says why not.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace
from pathlib import Path

from crdtgossip.errors import StorageError
from crdtgossip.storage._base import StoredState, SyncMode
from crdtgossip.storage._sqlite_hwm import Mark, check_mark
from crdtgossip.storage._sqlite_log import KeyIndex, load_all
from crdtgossip.storage._sqlite_schema import (
    SCHEMA_VERSION,
    Meta,
    check_header,
    check_integrity,
    configure,
    connect,
    migrate,
    open_error,
    prepare,
    read_meta,
    transaction,
    write_meta,
)

__all__ = ["open_database"]

_log = logging.getLogger(__name__)


def open_database(
    path: Path, sync_mode: SyncMode
) -> tuple[sqlite3.Connection, StoredState, Meta, KeyIndex]:
    """Create the file if absent, open it, check it and load it.

    Returns:
        The connection (holding the file's exclusive lock), what was stored, the meta
        row as it now is on disk, and the index of what is committed per key.

    Raises:
        StorageError: the file cannot be used (the connection is then closed).
    """
    try:
        prepare(path)
    except OSError as exc:
        raise StorageError(f"cannot open {path}: {exc}") from exc
    try:
        # mode=rw: never create an empty database in place of a file that vanished.
        connection = connect(path.absolute().as_uri() + "?mode=rw", uri=True)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {path}: {exc}") from exc
    try:
        return (connection, *_load(connection, path, sync_mode))
    except BaseException:
        connection.close()  # releases the lock, or a retry in this process would block
        raise


def _load(
    connection: sqlite3.Connection, path: Path, sync_mode: SyncMode
) -> tuple[StoredState, Meta, KeyIndex]:
    try:
        if path.stat().st_size == 0:
            raise StorageError(f"{path} is empty: it is not a crdtgossip state file")
        configure(connection)
        version = check_header(connection, path)
        if connection.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise StorageError(f"{path}: SQLite could not use WAL mode on this file system")
        # Take the exclusive lock now: another process holding the file fails here.
        connection.execute("BEGIN EXCLUSIVE")
        connection.execute("COMMIT")
        check_integrity(connection, path)
        if version != SCHEMA_VERSION:
            migrate(connection, path, version)
            _log.info("%s: migrated from schema version %d to %d", path, version, SCHEMA_VERSION)
        meta = read_meta(connection, path)
        states, deltas, index = load_all(connection, path)
        replica_id = meta.replica_id
        mark, marked = check_mark(path, meta.store_id, meta.commit_seq)
        rolled_back = mark in (Mark.BEHIND, Mark.DAMAGED)
        if rolled_back:
            _log.warning(
                "%s: %s (commit %d, the mark beside it says %s); the states it holds are "
                "kept, and replica id %r is retired",
                path,
                mark.value,
                meta.commit_seq,
                "nothing readable" if marked is None else marked,
                replica_id,
            )
            replica_id = None
        if meta.writes_at_risk and replica_id is not None:
            _log.warning(
                "%s: the last batched session under replica id %r did not close cleanly; "
                "its latest writes may be lost, so that id is retired",
                path,
                replica_id,
            )
            replica_id = None
        updated = replace(meta, replica_id=replica_id, writes_at_risk=sync_mode == "batched")
        if updated != meta:
            updated = replace(updated, commit_seq=meta.commit_seq + 1)
            with transaction(connection):
                write_meta(connection, updated)
    except sqlite3.Error as exc:
        raise open_error(path, exc) from exc
    except UnicodeDecodeError as exc:
        # A damaged byte in text SQLite hands back (its schema, a text column): the
        # sqlite3 module decodes it as UTF-8, and fails outside sqlite3.Error.
        raise StorageError(
            f"{path} is damaged: it holds text that is not UTF-8 ({exc.reason} at byte "
            f"{exc.start}); restore it from a backup, or move it aside to start with a "
            "fresh replica id"
        ) from exc
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    stored = StoredState(replica_id, meta.incarnation, states, deltas, meta.commit_seq, rolled_back)
    return stored, updated, index
