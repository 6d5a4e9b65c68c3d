"""SQLiteStorage: the node's state in one SQLite file (stdlib sqlite3, WAL mode).

Layout: table ``states`` holds one row per key (``key`` TEXT primary key, ``data`` the
encoded state, ``checksum`` a CRC-32 of key and data, ``updated`` the Unix time in
milliseconds of the last write); table ``meta`` holds one row (``schema_version``,
``replica_id``, ``incarnation``, ``created`` in Unix milliseconds, ``writes_at_risk``,
``checksum``). The file header carries
:data:`APPLICATION_ID` and :data:`SCHEMA_VERSION` (``PRAGMA application_id`` and
``user_version``), so a foreign SQLite file is recognised and refused.

What survives what:

* ``"durable"`` mode: each write is one committed transaction, the WAL fsynced
  (``synchronous=FULL``) before :meth:`SQLiteStorage.put` returns: it survives a kill
  of the process, a crash of the machine and a power loss (given a disk that honours
  fsync). Concurrent writers from several threads share commits (group commit).
* ``"batched"`` mode: writes wait in memory and are committed together every
  ``batch_interval`` seconds or every ``batch_size`` writes. A crash loses the writes
  made since the last commit, and nothing else: each commit is atomic.
* Either mode: an interrupted commit leaves the previous commit intact (the WAL
  ignores a torn last transaction); :meth:`SQLiteStorage.put_many` is all or nothing.

The replica id is returned by :meth:`SQLiteStorage.open` only when every write made
under it is on disk. After a ``"batched"`` session that did not end with a clean
:meth:`SQLiteStorage.close` (a crash, or a failed final commit), writes made under the
id may be lost while other replicas hold them; a node reusing the id would issue its
lost counter values and dots again, and its new writes would be silently discarded as
already seen (the failure Riak fixed with per-key actor epochs). So ``open`` then
returns the states that were committed but ``replica_id=None``, and the node takes a
fresh id. (The node must still write a state before sending any delta of it, in both
modes, for the same reason.)

What is refused at :meth:`SQLiteStorage.open`, with :class:`~crdtgossip.StorageError`,
rather than returning less than was stored: a file that is not SQLite (random bytes,
empty, cut short), a SQLite file of another program or of a newer schema, damage found
by ``PRAGMA quick_check``, a row whose checksum does not match (a flipped bit inside a
state, which SQLite itself, having no page checksums, would not see) or whose data does
not decode, a WAL file left without its database, and a file in use by another process
(two nodes sharing one file would share a replica id and reuse its dots). Not
detectable: a WAL file replaced by garbage, which SQLite, like a torn write, ignores.

The file is held with an exclusive lock while open (``locking_mode=EXCLUSIVE``), so no
other process can read or write it meanwhile, and no ``-shm`` file is used. A new store
is built under a temporary name and linked into place complete, so a crash during
creation never leaves a half-made file at ``path``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from crdtgossip.codec import decode
from crdtgossip.errors import ConfigError, DecodeError, StorageError
from crdtgossip.storage._base import (
    SYNC_MODES,
    StoredState,
    SyncMode,
    check_data,
    check_identity,
    check_items,
    check_key,
)

__all__ = [
    "APPLICATION_ID",
    "DEFAULT_BATCH_INTERVAL",
    "DEFAULT_BATCH_SIZE",
    "LOCK_TIMEOUT",
    "SCHEMA_VERSION",
    "SQLiteStorage",
]

_log = logging.getLogger(__name__)

APPLICATION_ID = 0x43524447
"""``PRAGMA application_id`` of a crdtgossip state file: ASCII "CRDG". SQLite reserves
these four header bytes for the application that owns the file (Fossil and GeoPackage
do the same), so another program's database is recognised before any table is read."""

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` and ``meta.schema_version``: the layout of the tables. A
file with a higher version was written by a newer crdtgossip and is refused."""

DEFAULT_BATCH_INTERVAL = 0.05
"""Seconds between commits in ``"batched"`` mode: at most 50 ms of writes are at risk,
a window like PostgreSQL's ``wal_writer_delay`` (200 ms) with ``synchronous_commit=off``
and shorter than MongoDB's journal commit interval (100 ms)."""

DEFAULT_BATCH_SIZE = 256
"""Writes held in ``"batched"`` mode before a commit is forced, whatever the time: it
bounds both the memory held and the number of writes a crash can lose."""

LOCK_TIMEOUT = 1.0
"""Seconds :meth:`SQLiteStorage.open` waits for a file held by another process before
refusing it: long enough for a previous instance that is still exiting to let go, short
enough that a node started twice on one file fails at once, visibly."""

_CREATE_SCHEMA = """
CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    replica_id TEXT,
    incarnation INTEGER NOT NULL,
    created INTEGER NOT NULL,
    writes_at_risk INTEGER NOT NULL,
    checksum INTEGER NOT NULL
);
CREATE TABLE states (
    key TEXT PRIMARY KEY NOT NULL,
    data BLOB NOT NULL,
    checksum INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
"""

_UPSERT = "INSERT OR REPLACE INTO states (key, data, checksum, updated) VALUES (?, ?, ?, ?)"
_DELETE = "DELETE FROM states WHERE key = ?"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _row_checksum(key: str, data: bytes) -> int:
    """CRC-32 of a row's key and data: catches accidental damage (bit rot, a torn or
    truncated page) that SQLite, which has no page checksums, would read back as a
    valid but different state. Not a defence against deliberate tampering."""
    return zlib.crc32(data, zlib.crc32(key.encode("utf-8") + b"\0"))


@dataclass(frozen=True, slots=True)
class _Meta:
    """The meta row. ``writes_at_risk``: a batched session is open (or died), so writes
    acknowledged under ``replica_id`` may not be on disk."""

    replica_id: str | None
    incarnation: int
    created: int
    writes_at_risk: bool

    @property
    def checksum(self) -> int:
        replica = "" if self.replica_id is None else "=" + self.replica_id
        fields = (SCHEMA_VERSION, replica, self.incarnation, self.created, self.writes_at_risk)
        return zlib.crc32("\0".join(map(str, fields)).encode("utf-8"))


@dataclass(slots=True, eq=False)
class _Batch:
    """Writes that will be committed together; ``None`` data means delete."""

    changes: dict[str, bytes | None] = field(default_factory=dict)
    done: bool = False
    error: StorageError | None = None


class SQLiteStorage:
    """A :class:`~crdtgossip.storage.Storage` in one SQLite file (see the module doc).

    Every method blocks and is thread-safe: one connection, serialized by a lock.

    Args:
        path: the database file. Created (with its schema) by :meth:`open` when it does
            not exist; its directory must exist.
        sync_mode: ``"durable"`` (default: each write on disk before it returns) or
            ``"batched"`` (writes committed in groups; a crash loses those since the
            last commit).
        batch_interval: ``"batched"`` mode: seconds between commits (> 0).
        batch_size: ``"batched"`` mode: pending writes that force a commit (>= 1).

    Raises:
        ConfigError: an unknown sync mode, or a batch interval or size out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sync_mode: SyncMode = "durable",
        batch_interval: float = DEFAULT_BATCH_INTERVAL,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if sync_mode not in SYNC_MODES:
            raise ConfigError(f"sync_mode must be one of {SYNC_MODES}, not {sync_mode!r}")
        if not (isinstance(batch_interval, int | float) and math.isfinite(batch_interval)):
            raise ConfigError(f"batch_interval must be a finite number, not {batch_interval!r}")
        if batch_interval <= 0:
            raise ConfigError(f"batch_interval must be positive, not {batch_interval!r}")
        if type(batch_size) is not int or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, not {batch_size!r}")
        self._path = Path(path)
        self._sync_mode: SyncMode = sync_mode
        self._batch_interval = float(batch_interval)
        self._batch_size = batch_size
        # Lock order: _db_lock before _pending_lock. _db_lock guards the connection and
        # is held for a whole commit; _pending_lock guards the batch being filled and is
        # only held briefly, so writers can queue while a commit runs.
        self._db_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._accepting = False
        self._current = _Batch()
        self._failure: StorageError | None = None  # batched: the last commit failed
        self._stop_flusher: threading.Event | None = None
        self._flusher: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SQLiteStorage({str(self._path)!r}, sync_mode={self._sync_mode!r})"

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def sync_mode(self) -> SyncMode:
        """``"durable"`` or ``"batched"``."""
        return self._sync_mode

    @property
    def durable(self) -> bool:
        """True in ``"durable"`` mode: a returned :meth:`put` is on disk."""
        return self._sync_mode == "durable"

    @property
    def pending_writes(self) -> int:
        """Keys written (or deleted) but not yet committed: what a crash now would lose.
        Always 0 in ``"durable"`` mode once every :meth:`put` has returned."""
        with self._pending_lock:
            return len(self._current.changes)

    # -------------------------------------------------------------------------------------
    # lifecycle
    # -------------------------------------------------------------------------------------

    def open(self) -> StoredState:
        """Open the file (creating it when absent), check it whole and load it.

        Returns:
            The stored replica id (None for a new file), incarnation and states.

        Raises:
            StorageError: already open, or the file cannot be used: see the module doc
                for every case refused. The message names the file and the cause.
        """
        with self._db_lock, self._pending_lock:
            if self._connection is not None:
                raise StorageError(f"{self._path} is already open")
            connection, stored = _open_database(self._path, self._sync_mode)
            self._connection = connection
            self._current = _Batch()
            self._failure = None
            self._accepting = True
        if self._sync_mode == "batched":
            stop = threading.Event()
            self._stop_flusher = stop
            self._flusher = threading.Thread(
                target=self._flush_periodically,
                args=(stop,),
                name=f"crdtgossip-sqlite-flush:{self._path.name}",
                daemon=True,  # pending writes are at risk anyway; do not hang exit
            )
            self._flusher.start()
        return stored

    def close(self) -> None:
        """Commit pending writes, then close the file and release its lock; idempotent.

        Raises:
            StorageError: the final commit failed; the file is closed all the same and
                the writes not committed are lost.
        """
        with self._pending_lock:
            was_accepting, self._accepting = self._accepting, False
        if not was_accepting:
            return
        stop, flusher = self._stop_flusher, self._flusher
        self._stop_flusher = self._flusher = None
        if stop is not None and flusher is not None:
            stop.set()
            flusher.join()
        with self._db_lock:
            try:
                batch = self._commit_locked()
                if self._sync_mode == "batched" and (batch is None or batch.error is None):
                    self._mark_writes_safe()
            finally:
                connection, self._connection = self._connection, None
                if connection is not None:
                    try:
                        connection.close()
                    except sqlite3.Error as exc:
                        _log.warning("closing %s: %s", self._path, exc)
        if batch is not None and batch.error is not None:
            raise StorageError(f"final commit to {self._path} failed: {batch.error}")

    # -------------------------------------------------------------------------------------
    # writes
    # -------------------------------------------------------------------------------------

    def save_identity(self, replica_id: str, incarnation: int) -> None:
        """Store the replica id and incarnation, committed before returning (both modes).

        Raises:
            StorageError: an invalid argument, not open, or the write failed.
        """
        check_identity(replica_id, incarnation)
        with self._db_lock:
            connection = self._require_connection()
            try:
                with _transaction(connection):
                    meta = _read_meta(connection, self._path)
                    _write_meta(
                        connection, replace(meta, replica_id=replica_id, incarnation=incarnation)
                    )
            except sqlite3.Error as exc:
                raise StorageError(f"cannot save the identity to {self._path}: {exc}") from exc

    def put(self, key: str, data: bytes) -> None:
        """Store the state of ``key``; in ``"durable"`` mode, on disk when this returns.

        Raises:
            StorageError: an invalid argument, not open, or the commit failed.
        """
        key = check_key(key)
        self._write({key: check_data(key, data)})

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store several states in one transaction (in both modes): all or none.

        Raises:
            StorageError: an invalid item (nothing is written), not open, or the commit
                failed (none of the items is stored).
        """
        self._write(check_items(items))

    def delete(self, key: str) -> None:
        """Remove ``key``; in ``"durable"`` mode, on disk when this returns.

        Raises:
            StorageError: an invalid key, not open, or the commit failed.
        """
        self._write({check_key(key): None})

    def flush(self) -> None:
        """Commit every pending write (``"batched"`` mode); durable on return.

        Raises:
            StorageError: not open, or the commit failed (the writes stay pending and
                are retried by the next commit).
        """
        with self._db_lock:
            self._require_connection()
            batch = self._commit_locked()
        if batch is not None and batch.error is not None:
            raise StorageError(f"commit to {self._path} failed: {batch.error}")

    def _write(self, changes: Mapping[str, bytes | None]) -> None:
        """Add validated changes to the batch being filled, then, in durable mode, wait
        until that batch is committed, committing it ourselves if nobody else is."""
        with self._pending_lock:
            if not self._accepting:
                raise StorageError(f"{self._path} is not open: call open() first")
            if not changes:
                return
            batch = self._current
            batch.changes.update(changes)
            full = len(batch.changes) >= self._batch_size
            failing = self._failure is not None
        if self._sync_mode == "batched":
            if full or failing:  # failing: report a broken disk to writers, not just logs
                self.flush()
            return
        with self._db_lock:
            if not batch.done:
                # Batches are swapped and committed only under _db_lock, each before the
                # lock is released, so an unfinished batch is still the current one.
                self._commit_locked()
        if batch.error is not None:
            raise StorageError(f"commit to {self._path} failed: {batch.error}")

    def _commit_locked(self) -> _Batch | None:
        """Commit the current batch, with ``_db_lock`` held; return it (None if empty).

        Never raises: the outcome is in the batch's ``error``. In batched mode a failed
        batch's writes go back to pending (newer writes to the same keys win) to be
        retried, since no caller has been told they failed.
        """
        with self._pending_lock:
            batch = self._current
            if not batch.changes:
                return None
            self._current = _Batch()
        try:
            self._commit(batch.changes)
        except StorageError as exc:
            batch.error = exc
            if self._sync_mode == "batched":
                with self._pending_lock:
                    for key, data in batch.changes.items():
                        self._current.changes.setdefault(key, data)
                    if self._failure is None:
                        _log.error("batched commit to %s failed; will retry: %s", self._path, exc)
                    self._failure = exc
        else:
            if self._failure is not None:
                _log.warning("commits to %s succeed again", self._path)
                self._failure = None
        finally:
            batch.done = True
        return batch

    def _commit(self, changes: Mapping[str, bytes | None]) -> None:
        connection = self._require_connection()
        now = _now_ms()
        upserts = [
            (key, data, _row_checksum(key, data), now)
            for key, data in changes.items()
            if data is not None
        ]
        deletes = [(key,) for key, data in changes.items() if data is None]
        try:
            with _transaction(connection):
                if upserts:
                    connection.executemany(_UPSERT, upserts)
                if deletes:
                    connection.executemany(_DELETE, deletes)
        except sqlite3.Error as exc:
            raise StorageError(
                f"cannot write {len(changes)} key(s) to {self._path}: {exc}"
            ) from exc

    def _flush_periodically(self, stop: threading.Event) -> None:
        while not stop.wait(self._batch_interval):
            with self._db_lock:
                if self._connection is None:
                    return
                self._commit_locked()  # a failure is logged and retried next time

    def _mark_writes_safe(self) -> None:
        """Clear ``writes_at_risk`` after the last batched commit, with ``_db_lock``."""
        connection = self._require_connection()
        try:
            with _transaction(connection):
                _write_meta(
                    connection, replace(_read_meta(connection, self._path), writes_at_risk=False)
                )
        except sqlite3.Error as exc:
            # Harmless to leave set: the next open merely takes a fresh replica id.
            _log.warning("cannot mark %s closed cleanly: %s", self._path, exc)

    def _require_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StorageError(f"{self._path} is not open: call open() first")
        return self._connection


# =========================================================================================
# opening, checking and creating the file
# =========================================================================================


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the connection is in
    autocommit mode, so transactions are explicit)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise


def _configure(connection: sqlite3.Connection) -> None:
    """Per-connection settings, applied before the first read of the file."""
    # Exclusive: one process owns the file while open; and, set before WAL is first
    # used, no shared-memory (-shm) index is needed.
    connection.execute("PRAGMA locking_mode = EXCLUSIVE")
    # FULL: in WAL mode the WAL is fsynced at every commit, so a commit survives power
    # loss; NORMAL would only survive a crash of the process.
    connection.execute("PRAGMA synchronous = FULL")
    # macOS: fsync does not flush the drive's cache; F_FULLFSYNC does. No-op elsewhere.
    connection.execute("PRAGMA fullfsync = ON")
    connection.execute("PRAGMA checkpoint_fullfsync = ON")


def _connect(target: str, *, uri: bool) -> sqlite3.Connection:
    return sqlite3.connect(
        target,
        timeout=LOCK_TIMEOUT,
        isolation_level=None,  # autocommit: we write BEGIN/COMMIT ourselves
        check_same_thread=False,  # shared by threads, serialized by SQLiteStorage's lock
        uri=uri,
    )


def _open_database(path: Path, sync_mode: SyncMode) -> tuple[sqlite3.Connection, StoredState]:
    """Create the file if absent, open it, check it and load it."""
    try:
        _prepare(path)
    except OSError as exc:
        raise StorageError(f"cannot open {path}: {exc}") from exc
    try:
        # mode=rw: never create an empty database in place of a file that vanished.
        connection = _connect(path.absolute().as_uri() + "?mode=rw", uri=True)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {path}: {exc}") from exc
    try:
        return connection, _load(connection, path, sync_mode)
    except BaseException:
        connection.close()  # releases the lock, or a retry in this process would block
        raise


def _prepare(path: Path) -> None:
    """Refuse what is not a file; create the store when there is none."""
    wal = path.with_name(path.name + "-wal")
    if not path.exists():
        if wal.exists():
            raise StorageError(
                f"{wal} exists but {path} does not: the state file was moved or deleted "
                "without its write-ahead log; restore both, or remove the -wal file to "
                "start with an empty state (the node then takes a new replica id)"
            )
        _create(path)
    elif not path.is_file():
        raise StorageError(f"{path} is not a regular file")


def _load(connection: sqlite3.Connection, path: Path, sync_mode: SyncMode) -> StoredState:
    try:
        if path.stat().st_size == 0:
            raise StorageError(f"{path} is empty: it is not a crdtgossip state file")
        _configure(connection)
        _check_header(connection, path)
        if connection.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise StorageError(f"{path}: SQLite could not use WAL mode on this file system")
        # Take the exclusive lock now: another process holding the file fails here.
        connection.execute("BEGIN EXCLUSIVE")
        connection.execute("COMMIT")
        _check_integrity(connection, path)
        meta = _read_meta(connection, path)
        states = _load_states(connection, path)
        replica_id = meta.replica_id
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
            with _transaction(connection):
                _write_meta(connection, updated)
    except sqlite3.Error as exc:
        raise _open_error(path, exc) from exc
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    return StoredState(replica_id, meta.incarnation, states)


def _open_error(path: Path, exc: sqlite3.Error) -> StorageError:
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
        return StorageError(
            f"{path} is in use by another process (or another SQLiteStorage here): two "
            "nodes must never share a state file, they would share a replica id"
        )
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return StorageError(f"{path} is not a SQLite database: {exc}; {_SET_ASIDE}")
    return StorageError(f"{path} is damaged or unreadable: {exc}; {_SET_ASIDE}")


_SET_ASIDE: Final = (
    "restore it from a backup, or move it aside to start this node empty (it then takes "
    "a fresh replica id and gets the cluster's state back by gossip)"
)
"""What to do about a state file that cannot be read: said with the error, since the
node refuses to start rather than silently start empty."""


def _check_header(connection: sqlite3.Connection, path: Path) -> None:
    (application_id,) = connection.execute("PRAGMA application_id").fetchone()
    if application_id != APPLICATION_ID:
        raise StorageError(
            f"{path} is a SQLite database of another program (application_id "
            f"{application_id:#x}, expected {APPLICATION_ID:#x}), not a crdtgossip state file"
        )
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version != SCHEMA_VERSION:
        newer = "a newer" if version > SCHEMA_VERSION else "an unknown"
        raise StorageError(
            f"{path} has schema version {version}, written by {newer} crdtgossip; this "
            f"one reads version {SCHEMA_VERSION}"
        )


def _check_integrity(connection: sqlite3.Connection, path: Path) -> None:
    # SQLite reads a last page cut short as if zero-filled; catch that before trusting it.
    (page_size,) = connection.execute("PRAGMA page_size").fetchone()
    size = path.stat().st_size
    if size % page_size:
        raise StorageError(
            f"{path} is {size} bytes, not a whole number of {page_size}-byte pages: truncated"
        )
    problems = [row[0] for row in connection.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        shown = "; ".join(str(problem) for problem in problems[:5])
        raise StorageError(f"{path} is damaged (PRAGMA quick_check): {shown}")


def _read_meta(connection: sqlite3.Connection, path: Path) -> _Meta:
    rows = connection.execute(
        "SELECT schema_version, replica_id, incarnation, created, writes_at_risk, checksum "
        "FROM meta"
    ).fetchall()
    if len(rows) != 1:
        raise StorageError(f"{path} is damaged: {len(rows)} meta rows instead of 1")
    version, replica_id, incarnation, created, at_risk, checksum = rows[0]
    if (
        version != SCHEMA_VERSION
        or not (replica_id is None or (type(replica_id) is str and replica_id))
        or type(incarnation) is not int
        or incarnation < 0
        or type(created) is not int
        or at_risk not in (0, 1)
    ):
        raise StorageError(f"{path} is damaged: its meta row (replica id) fails its checks")
    meta = _Meta(replica_id, incarnation, created, bool(at_risk))
    if checksum != meta.checksum:
        raise StorageError(f"{path} is damaged: its meta row (replica id) fails its checksum")
    return meta


def _write_meta(connection: sqlite3.Connection, meta: _Meta) -> None:
    """Rewrite the meta row (inside the caller's transaction)."""
    connection.execute(
        "UPDATE meta SET replica_id = ?, incarnation = ?, writes_at_risk = ?, checksum = ?",
        (meta.replica_id, meta.incarnation, int(meta.writes_at_risk), meta.checksum),
    )


def _load_states(connection: sqlite3.Connection, path: Path) -> dict[str, bytes]:
    states: dict[str, bytes] = {}
    for key, data, checksum in connection.execute("SELECT key, data, checksum FROM states"):
        if type(key) is not str:
            raise StorageError(f"{path} is damaged: a key is not text ({key!r:.60})")
        if type(data) is not bytes:
            raise StorageError(f"{path} is damaged: the state of key {key!r} is not a blob")
        if checksum != _row_checksum(key, data):
            raise StorageError(
                f"{path} is damaged: the state of key {key!r} does not match its checksum"
            )
        try:
            decode(data)
        except DecodeError as exc:
            raise StorageError(
                f"{path} is damaged: the state of key {key!r} does not decode: {exc}"
            ) from exc
        states[key] = data
    return states


def _create(path: Path) -> None:
    """Build an empty store under a temporary name, then link it into place whole."""
    directory = path.parent
    if not directory.is_dir():
        raise StorageError(f"cannot create {path}: directory {directory} does not exist")
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".creating", dir=directory
        )
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc}") from exc
    os.close(descriptor)
    try:
        _initialize(temporary)
        try:
            # link, not rename: it fails rather than replace a file another process
            # created meanwhile (and may already be using).
            os.link(temporary, path)
        except FileExistsError:
            pass  # created concurrently; open that one (its lock arbitrates)
        except OSError:
            os.replace(temporary, path)  # a file system without hard links
        _fsync_directory(directory)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot create {path}: {exc}") from exc
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc}") from exc
    finally:
        for leftover in (temporary, temporary + "-wal", temporary + "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _initialize(temporary: str) -> None:
    connection = _connect(temporary, uri=False)
    try:
        _configure(connection)
        connection.execute("PRAGMA journal_mode = WAL")  # persistent, in the header
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        meta = _Meta(replica_id=None, incarnation=0, created=_now_ms(), writes_at_risk=False)
        with _transaction(connection):
            for statement in _CREATE_SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(
                "INSERT INTO meta (id, schema_version, replica_id, incarnation, created, "
                "writes_at_risk, checksum) VALUES (1, ?, NULL, 0, ?, 0, ?)",
                (SCHEMA_VERSION, meta.created, meta.checksum),
            )
    finally:
        # The last close checkpoints the WAL into the file (fsynced) and deletes it,
        # so the file is complete on its own before it is linked into place.
        connection.close()


def _fsync_directory(directory: Path) -> None:
    """Make a new directory entry durable (POSIX); Windows cannot open a directory and
    NTFS journals the entry itself."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on a directory
    finally:
        os.close(descriptor)
