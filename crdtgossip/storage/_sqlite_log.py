"""The rows of the SQLite state file: states, the delta log, their checks, and folding.

What is written is gathered as :class:`KeyChange` s in a :class:`Batch` (one per key:
replace the state, or not, then append deltas) and written by :func:`write_changes`
inside the caller's transaction. :class:`KeyIndex` keeps, in memory, what the folding
rule needs per key (state size, log weight) so that no write reads the file. Every row
is read back through :func:`load_all` (at open) or :func:`load_key`, which check every
checksum and refuse, naming the key, what does not match.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from crdtgossip.codec import decode
from crdtgossip.errors import DecodeError, StorageError
from crdtgossip.keylife import unwrap
from crdtgossip.storage._fold import record_weight
from crdtgossip.storage._sqlite_schema import now_ms

__all__ = [
    "DEFAULT_BATCH_INTERVAL",
    "DEFAULT_BATCH_SIZE",
    "Batch",
    "FoldInput",
    "KeyChange",
    "KeyIndex",
    "KeyLog",
    "index_committed",
    "load_all",
    "load_key",
    "read_fold_input",
    "record_checksum",
    "row_checksum",
    "write_changes",
    "write_fold",
]

DEFAULT_BATCH_INTERVAL = 0.05
"""Seconds between commits in ``"batched"`` mode: at most 50 ms of writes are at risk,
a window like PostgreSQL's ``wal_writer_delay`` (200 ms) with ``synchronous_commit=off``
and shorter than MongoDB's journal commit interval (100 ms)."""

DEFAULT_BATCH_SIZE = 256
"""Writes held in ``"batched"`` mode before a commit is forced, whatever the time: it
bounds both the memory held and the number of writes a crash can lose."""

_UPSERT = "INSERT OR REPLACE INTO states (key, data, checksum, updated) VALUES (?, ?, ?, ?)"
_DELETE_STATE = "DELETE FROM states WHERE key = ?"
_DELETE_LOG = "DELETE FROM log WHERE key = ?"
_INSERT_RECORD = "INSERT INTO log (seq, key, data, checksum) VALUES (?, ?, ?, ?)"


def row_checksum(key: str, data: bytes) -> int:
    """CRC-32 of a state row's key and data: catches accidental damage (bit rot, a torn
    or truncated page) that SQLite, which has no page checksums, would read back as a
    valid but different state. Not a defence against deliberate tampering."""
    return zlib.crc32(data, zlib.crc32(key.encode("utf-8") + b"\0"))


def record_checksum(seq: int, key: str, data: bytes) -> int:
    """CRC-32 of a log record's seq, key and data: as :func:`row_checksum`, and a record
    moved to another place in the log or to another key fails it too."""
    return zlib.crc32(data, zlib.crc32(f"{seq}\0".encode() + key.encode("utf-8") + b"\0"))


# =========================================================================================
# what a commit writes
# =========================================================================================


@dataclass(slots=True)
class KeyChange:
    """What one commit does to one key: with ``replace``, first set its state to
    ``state`` (None: remove the key) and drop its log; then append ``deltas``."""

    replace: bool
    state: bytes | None = None
    deltas: list[bytes] = field(default_factory=list)

    @property
    def writes(self) -> int:
        """How many writes this change holds, for the batch size: a replaced state
        counts once however often it was rewritten, each delta once."""
        return int(self.replace) + len(self.deltas)


@dataclass(slots=True, eq=False)
class Batch:
    """Writes that will be committed together, in one transaction.

    ``behind``: the batch whose commit was starting when this one began to fill (its
    writes are still at risk until that commit is done; see :meth:`at_risk`).
    """

    changes: dict[str, KeyChange] = field(default_factory=dict)
    writes: int = 0
    done: bool = False
    error: StorageError | None = None
    behind: Batch | None = None

    def __post_init__(self) -> None:
        if self.behind is not None:  # commits run one at a time: the one before is done
            self.behind.behind = None

    def at_risk(self) -> int:
        """Writes a crash now would lose: this batch's, and those of the commit still
        under way behind it."""
        behind = self.behind
        if behind is not None and behind.done:
            self.behind = behind = None
        return self.writes + (0 if behind is None else behind.writes)

    def replace(self, key: str, state: bytes | None) -> None:
        """Record a put (``state``) or a delete (None) of ``key``."""
        previous = self.changes.get(key)
        if previous is not None:
            self.writes -= previous.writes
        self.changes[key] = KeyChange(replace=True, state=state)
        self.writes += 1

    def append(self, key: str, data: bytes) -> None:
        """Record a delta appended to ``key``, after what the batch holds for it."""
        change = self.changes.get(key)
        if change is None:
            change = self.changes[key] = KeyChange(replace=False)
        change.deltas.append(data)
        self.writes += 1

    def replace_all(self, items: Iterable[tuple[str, bytes | None]]) -> None:
        """:meth:`replace` each ``(key, state)`` in turn."""
        for key, state in items:
            self.replace(key, state)

    def append_all(self, items: Iterable[tuple[str, bytes]]) -> None:
        """:meth:`append` each ``(key, data)`` in turn."""
        for key, data in items:
            self.append(key, data)

    def take_back(self, older: Batch) -> None:
        """Put the changes of a failed ``older`` batch before this one's, so a retry
        commits both in order (a newer replace of a key makes its older change moot)."""
        for key, old in older.changes.items():
            new = self.changes.get(key)
            if new is None:
                merged = KeyChange(old.replace, old.state, list(old.deltas))
            elif new.replace:
                continue
            else:
                merged = KeyChange(old.replace, old.state, old.deltas + new.deltas)
                self.writes -= new.writes
            self.changes[key] = merged
            self.writes += merged.writes


@dataclass(slots=True)
class KeyLog:
    """What is committed for one key, as the folding rule sees it. ``generation``: the
    commit that last replaced the key's state (a fold read before it is stale)."""

    state_bytes: int = 0
    log_weight: int = 0
    generation: int = 0


@dataclass(slots=True)
class KeyIndex:
    """Per-key sizes of what is committed, and the next log record number."""

    keys: dict[str, KeyLog] = field(default_factory=dict)
    next_seq: int = 1


def write_changes(
    connection: sqlite3.Connection, changes: dict[str, KeyChange], index: KeyIndex
) -> int:
    """Write ``changes`` inside the caller's transaction.

    Returns:
        The log record number the index must take as ``next_seq`` once this commits
        (it is left unchanged here, so a rolled back commit leaves it as it was).
    """
    now = now_ms()
    seq = index.next_seq
    upserts: list[tuple[str, bytes, int, int]] = []
    removed: list[tuple[str]] = []
    cleared: list[tuple[str]] = []
    records: list[tuple[int, str, bytes, int]] = []
    for key, change in changes.items():
        if change.replace:
            if change.state is None:
                removed.append((key,))
            else:
                upserts.append((key, change.state, row_checksum(key, change.state), now))
            cleared.append((key,))
        for data in change.deltas:
            records.append((seq, key, data, record_checksum(seq, key, data)))
            seq += 1
    if upserts:
        connection.executemany(_UPSERT, upserts)
    if removed:
        connection.executemany(_DELETE_STATE, removed)
    if cleared:
        connection.executemany(_DELETE_LOG, cleared)
    if records:
        connection.executemany(_INSERT_RECORD, records)
    return seq


def index_committed(
    index: KeyIndex, changes: dict[str, KeyChange], next_seq: int, generation: int
) -> list[str]:
    """Update ``index`` after ``changes`` committed as commit number ``generation``.

    Returns:
        The keys that were appended to (candidates for a fold).
    """
    index.next_seq = next_seq
    appended: list[str] = []
    for key, change in changes.items():
        entry = index.keys.get(key)
        if change.replace:
            if change.state is None and not change.deltas:
                index.keys.pop(key, None)
                continue
            entry = index.keys[key] = KeyLog(
                0 if change.state is None else len(change.state), 0, generation
            )
        elif entry is None:
            entry = index.keys[key] = KeyLog(0, 0, generation)
        if change.deltas:
            entry.log_weight += sum(record_weight(data) for data in change.deltas)
            appended.append(key)
    return appended


# =========================================================================================
# reading it back
# =========================================================================================


def _checked_state(path: Path, key: object, data: object, checksum: object) -> bytes:
    if type(key) is not str:
        raise StorageError(f"{path} is damaged: a key is not text ({key!r:.60})")
    if type(data) is not bytes:
        raise StorageError(f"{path} is damaged: the state of key {key!r} is not a blob")
    if checksum != row_checksum(key, data):
        raise StorageError(
            f"{path} is damaged: the state of key {key!r} does not match its checksum"
        )
    return data


def _checked_record(path: Path, seq: object, key: object, data: object, checksum: object) -> bytes:
    if type(key) is not str:
        raise StorageError(f"{path} is damaged: the key of log record {seq} is not text")
    if type(seq) is not int or type(data) is not bytes:
        raise StorageError(f"{path} is damaged: log record {seq!r} of key {key!r} is not a blob")
    if checksum != record_checksum(seq, key, data):
        raise StorageError(
            f"{path} is damaged: log record {seq} of key {key!r} does not match its checksum"
        )
    return data


def _decoded(path: Path, key: str, data: bytes, what: str) -> type | None:
    """The type ``data`` holds; None for a life record alone (a deleted key's)."""
    try:
        _, content = unwrap(data)
        return type(decode(content)) if content else None
    except DecodeError as exc:
        raise StorageError(
            f"{path} is damaged: the {what} of key {key!r} does not decode: {exc}"
        ) from exc


def load_all(
    connection: sqlite3.Connection, path: Path
) -> tuple[dict[str, bytes], dict[str, list[bytes]], KeyIndex]:
    """Read every state and log record, check each one (checksum, decoding, one type per
    key), and build the index of what is committed.

    Raises:
        StorageError: a row or record is damaged; the message names its key.
        sqlite3.Error: the read failed.
    """
    states: dict[str, bytes] = {}
    kinds: dict[str, type] = {}
    index = KeyIndex()
    for key, data, checksum in connection.execute("SELECT key, data, checksum FROM states"):
        states[key] = _checked_state(path, key, data, checksum)
        kind = _decoded(path, key, data, "state")
        if kind is not None:
            kinds[key] = kind
        index.keys[key] = KeyLog(state_bytes=len(data))
    deltas: dict[str, list[bytes]] = {}
    rows = connection.execute("SELECT seq, key, data, checksum FROM log ORDER BY seq")
    for seq, key, data, checksum in rows:
        record = _checked_record(path, seq, key, data, checksum)
        kind = _decoded(path, key, record, f"log record {seq}")
        if kind is not None and kinds.setdefault(key, kind) is not kind:
            raise StorageError(
                f"{path} is damaged: log record {seq} of key {key!r} holds a "
                f"{kind.__name__}, its state a {kinds[key].__name__}"
            )
        deltas.setdefault(key, []).append(record)
        index.keys.setdefault(key, KeyLog()).log_weight += record_weight(record)
    # AUTOINCREMENT keeps the highest seq ever used in sqlite_sequence, even once
    # folded away; max(seq) covers a damaged or missing sqlite_sequence row.
    (used,) = connection.execute(
        "SELECT max(coalesce((SELECT max(seq) FROM sqlite_sequence WHERE name = 'log'), 0), "
        "coalesce((SELECT max(seq) FROM log), 0))"
    ).fetchone()
    index.next_seq = int(used) + 1
    return states, deltas, index


def load_key(
    connection: sqlite3.Connection, path: Path, key: str
) -> tuple[bytes | None, list[tuple[int, bytes]]]:
    """Read and check the state and log records (with their seq) of one key.

    Raises:
        StorageError: the row or a record is damaged (the message names the key).
        sqlite3.Error: the read failed.
    """
    row = connection.execute(
        "SELECT key, data, checksum FROM states WHERE key = ?", (key,)
    ).fetchone()
    state = None if row is None else _checked_state(path, *row)
    records = [
        (seq, _checked_record(path, seq, found, data, checksum))
        for seq, found, data, checksum in connection.execute(
            "SELECT seq, key, data, checksum FROM log WHERE key = ? ORDER BY seq", (key,)
        )
    ]
    return state, records


# =========================================================================================
# folding
# =========================================================================================


@dataclass(frozen=True, slots=True)
class FoldInput:
    """A key's committed state and log as read for a fold, with the highest record
    number read (the fold replaces exactly those) and the key's generation then."""

    key: str
    state: bytes | None
    records: list[bytes]
    last_seq: int
    weight: int
    generation: int


def read_fold_input(
    connection: sqlite3.Connection, path: Path, key: str, entry: KeyLog
) -> FoldInput | None:
    """Read what a fold of ``key`` joins (None when its log is empty).

    Raises:
        StorageError: a row or record is damaged.
        sqlite3.Error: the read failed.
    """
    state, records = load_key(connection, path, key)
    if not records:
        return None
    data = [record for _, record in records]
    return FoldInput(
        key,
        state,
        data,
        records[-1][0],
        sum(record_weight(record) for record in data),
        entry.generation,
    )


def write_fold(connection: sqlite3.Connection, fold: FoldInput, folded: bytes) -> None:
    """Store ``folded`` as the state of the fold's key and drop the records it joined
    (those numbered up to ``fold.last_seq``), inside the caller's transaction; records
    appended since are kept, after the new state."""
    connection.execute(_UPSERT, (fold.key, folded, row_checksum(fold.key, folded), now_ms()))
    connection.execute("DELETE FROM log WHERE key = ? AND seq <= ?", (fold.key, fold.last_seq))
