"""The SQLite state file: its schema, creation, migration and the checks of its header.

Layout (:data:`SCHEMA_VERSION` 2): table ``meta`` holds one row (``schema_version``,
``replica_id``, ``incarnation``, ``created`` in Unix milliseconds, ``writes_at_risk``,
``commit_seq``, ``store_id``, ``checksum``); table ``states`` one row per key (``key`` TEXT primary
key, ``data`` the encoded state, ``checksum`` a CRC-32 of key and data, ``updated`` the
Unix time in milliseconds of the last write); table ``log`` one row per appended delta
(``seq`` a global, strictly increasing record number, ``key``, ``data``, ``checksum`` a
CRC-32 of seq, key and data), indexed by ``(key, seq)``. The file header carries
:data:`APPLICATION_ID` and :data:`SCHEMA_VERSION` (``PRAGMA application_id`` and
``user_version``). A version-1 file (no log, no commit counter) is migrated in place, in
one transaction, when opened.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from crdtgossip.errors import StorageError

__all__ = [
    "APPLICATION_ID",
    "LOCK_TIMEOUT",
    "SCHEMA_VERSION",
    "Meta",
    "check_header",
    "check_integrity",
    "configure",
    "connect",
    "fsync_directory",
    "migrate",
    "no_rows",
    "now_ms",
    "open_error",
    "prepare",
    "read_meta",
    "transaction",
    "write_meta",
]

APPLICATION_ID = 0x43524447
"""``PRAGMA application_id`` of a crdtgossip state file: ASCII "CRDG". SQLite reserves
these four header bytes for the application that owns the file (Fossil and GeoPackage
do the same), so another program's database is recognised before any table is read."""

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` and ``meta.schema_version``: the layout of the tables. A
file with a higher version was written by a newer crdtgossip and is refused; version 1
(before the delta log) is migrated."""

_MIGRATABLE: Final = (1,)
"""Older schema versions this one migrates on open."""

LOCK_TIMEOUT = 1.0
"""Seconds :meth:`SQLiteStorage.open` waits for a file held by another process before
refusing it: long enough for a previous instance that is still exiting to let go, short
enough that a node started twice on one file fails at once, visibly."""

_CREATE_SCHEMA: Final = """
CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    replica_id TEXT,
    incarnation INTEGER NOT NULL,
    created INTEGER NOT NULL,
    writes_at_risk INTEGER NOT NULL,
    checksum INTEGER NOT NULL,
    commit_seq INTEGER NOT NULL DEFAULT 0,
    store_id TEXT NOT NULL DEFAULT ''
);
CREATE TABLE states (
    key TEXT PRIMARY KEY NOT NULL,
    data BLOB NOT NULL,
    checksum INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
"""

# AUTOINCREMENT: a seq is never reused, even after the newest records were folded away,
# so record numbers only grow over the life of the file.
_CREATE_LOG: Final = """
CREATE TABLE log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    data BLOB NOT NULL,
    checksum INTEGER NOT NULL
);
CREATE INDEX log_by_key ON log (key, seq);
"""


def new_store_id() -> str:
    """A random store id: 128 bits, so two stores never share one."""
    return secrets.token_hex(16)


def now_ms() -> int:
    """Unix time in milliseconds, as stored in ``created`` and ``updated``."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Meta:
    """The meta row. ``writes_at_risk``: a batched session is open (or died), so writes
    acknowledged under ``replica_id`` may not be on disk. ``commit_seq``: transactions
    committed to the file since it was created, each one raising it in its own body.
    ``store_id``: random, made with the file; copies of it (backups) share it, another
    store does not. It keys the high-water mark kept beside the file."""

    replica_id: str | None
    incarnation: int
    created: int
    writes_at_risk: bool
    commit_seq: int = 0
    store_id: str = ""

    def checksum(self, version: int = SCHEMA_VERSION) -> int:
        """CRC-32 of the row as written by schema ``version`` (1 had no commit_seq and
        no store_id)."""
        replica = "" if self.replica_id is None else "=" + self.replica_id
        fields: tuple[object, ...] = (
            version,
            replica,
            self.incarnation,
            self.created,
            self.writes_at_risk,
        )
        if version >= 2:
            fields += (self.commit_seq, self.store_id)
        return zlib.crc32("\0".join(map(str, fields)).encode("utf-8"))


@contextlib.contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[None]:
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


def configure(connection: sqlite3.Connection) -> None:
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


def connect(target: str, *, uri: bool) -> sqlite3.Connection:
    """A connection as the storage uses it: explicit transactions, shared by threads."""
    return sqlite3.connect(
        target,
        timeout=LOCK_TIMEOUT,
        isolation_level=None,  # autocommit: we write BEGIN/COMMIT ourselves
        check_same_thread=False,  # shared by threads, serialized by SQLiteStorage's lock
        uri=uri,
    )


_SET_ASIDE: Final = (
    "restore it from a backup, or move it aside to start this node empty (it then takes "
    "a fresh replica id and gets the cluster's state back by gossip)"
)
"""What to do about a state file that cannot be read: said with the error, since the
node refuses to start rather than silently start empty."""


def open_error(path: Path, exc: sqlite3.Error) -> StorageError:
    """The StorageError for a SQLite error met while opening ``path``."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
        return StorageError(
            f"{path} is in use by another process (or another SQLiteStorage here): two "
            "nodes must never share a state file, they would share a replica id"
        )
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return StorageError(f"{path} is not a SQLite database: {exc}; {_SET_ASIDE}")
    return StorageError(f"{path} is damaged or unreadable: {exc}; {_SET_ASIDE}")


def check_header(connection: sqlite3.Connection, path: Path) -> int:
    """Refuse a file that is not ours or of a schema this code cannot read.

    Returns:
        The file's schema version: :data:`SCHEMA_VERSION` or one :func:`migrate` takes.
    """
    (application_id,) = connection.execute("PRAGMA application_id").fetchone()
    if application_id != APPLICATION_ID:
        raise StorageError(
            f"{path} is a SQLite database of another program (application_id "
            f"{application_id:#x}, expected {APPLICATION_ID:#x}), not a crdtgossip state file"
        )
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version != SCHEMA_VERSION and version not in _MIGRATABLE:
        newer = "a newer" if version > SCHEMA_VERSION else "an unknown"
        raise StorageError(
            f"{path} has schema version {version}, written by {newer} crdtgossip; this "
            f"one reads version {SCHEMA_VERSION}"
        )
    return int(version)


def check_integrity(connection: sqlite3.Connection, path: Path) -> None:
    """Refuse a file cut short or with damage SQLite's own check finds."""
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


def read_meta(connection: sqlite3.Connection, path: Path, version: int = SCHEMA_VERSION) -> Meta:
    """Read and check the meta row of a file of schema ``version``."""
    added = "commit_seq, store_id" if version >= 2 else "0, ''"
    rows = connection.execute(
        "SELECT schema_version, replica_id, incarnation, created, writes_at_risk, checksum, "
        f"{added} FROM meta"
    ).fetchall()
    if len(rows) != 1:
        raise StorageError(f"{path} is damaged: {len(rows)} meta rows instead of 1")
    stored_version, replica_id, incarnation, created, at_risk, checksum, commit_seq, store = rows[0]
    if (
        stored_version != version
        or not (replica_id is None or (type(replica_id) is str and replica_id))
        or type(incarnation) is not int
        or incarnation < 0
        or type(created) is not int
        or at_risk not in (0, 1)
        or type(commit_seq) is not int
        or commit_seq < 0
        or type(store) is not str
        or (version >= 2 and not store)
    ):
        raise StorageError(f"{path} is damaged: its meta row (replica id) fails its checks")
    meta = Meta(replica_id, incarnation, created, bool(at_risk), commit_seq, store)
    if checksum != meta.checksum(version):
        raise StorageError(f"{path} is damaged: its meta row (replica id) fails its checksum")
    return meta


def no_rows(connection: sqlite3.Connection) -> None:
    """A transaction body that writes no row (only the meta row, written after it)."""


def write_meta(connection: sqlite3.Connection, meta: Meta) -> None:
    """Rewrite the meta row (inside the caller's transaction)."""
    connection.execute(
        "UPDATE meta SET replica_id = ?, incarnation = ?, writes_at_risk = ?, commit_seq = ?, "
        "checksum = ?",
        (
            meta.replica_id,
            meta.incarnation,
            int(meta.writes_at_risk),
            meta.commit_seq,
            meta.checksum(),
        ),
    )


def _execute_script(connection: sqlite3.Connection, script: str) -> None:
    """Run each statement of ``script`` inside the caller's transaction (executescript
    would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            connection.execute(statement)


def migrate(connection: sqlite3.Connection, path: Path, version: int) -> Meta:
    """Bring a checked file of an older schema ``version`` to :data:`SCHEMA_VERSION`,
    in one transaction: a crash leaves either the old file or the migrated one.

    Returns:
        The migrated meta row (its commit counter counts the migration).
    """
    with transaction(connection):
        old = read_meta(connection, path, version)
        connection.execute("ALTER TABLE meta ADD COLUMN commit_seq INTEGER NOT NULL DEFAULT 0")
        connection.execute("ALTER TABLE meta ADD COLUMN store_id TEXT NOT NULL DEFAULT ''")
        _execute_script(connection, _CREATE_LOG)
        connection.execute("UPDATE meta SET schema_version = ?", (SCHEMA_VERSION,))
        meta = Meta(
            old.replica_id, old.incarnation, old.created, old.writes_at_risk, 1, new_store_id()
        )
        connection.execute("UPDATE meta SET store_id = ?", (meta.store_id,))
        write_meta(connection, meta)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return meta


def prepare(path: Path) -> None:
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
        fsync_directory(directory)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot create {path}: {exc}") from exc
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc}") from exc
    finally:
        for leftover in (temporary, temporary + "-wal", temporary + "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _initialize(temporary: str) -> None:
    connection = connect(temporary, uri=False)
    try:
        configure(connection)
        connection.execute("PRAGMA journal_mode = WAL")  # persistent, in the header
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        meta = Meta(None, 0, now_ms(), writes_at_risk=False, store_id=new_store_id())
        with transaction(connection):
            _execute_script(connection, _CREATE_SCHEMA + _CREATE_LOG)
            connection.execute(
                "INSERT INTO meta (id, schema_version, replica_id, incarnation, created, "
                "writes_at_risk, commit_seq, store_id, checksum) "
                "VALUES (1, ?, NULL, 0, ?, 0, 0, ?, ?)",
                (SCHEMA_VERSION, meta.created, meta.store_id, meta.checksum()),
            )
    finally:
        # The last close checkpoints the WAL into the file (fsynced) and deletes it,
        # so the file is complete on its own before it is linked into place.
        connection.close()


def fsync_directory(directory: Path) -> None:
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
