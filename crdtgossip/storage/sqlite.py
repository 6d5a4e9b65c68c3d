"""SQLiteStorage: the node's state in one SQLite file (stdlib sqlite3, WAL mode).

A key is a state row plus a log of appended deltas (the layout is in
``_sqlite_schema``): :meth:`SQLiteStorage.put` writes a whole state and drops the log,
:meth:`SQLiteStorage.append` writes deltas, at the cost of their size. A thread of the
storage's own folds a log into its state once it weighs as much as the state (and
:data:`~crdtgossip.storage.FOLD_MIN_BYTES`), off the writers' path (see
``_sqlite_fold``). Every row and record carries a CRC-32; the header carries
:data:`APPLICATION_ID` and :data:`SCHEMA_VERSION`. A version-1 file is migrated.

What survives what:

* ``"durable"`` mode: each write is one committed transaction, the WAL fsynced
  (``synchronous=FULL``) before :meth:`SQLiteStorage.put` (or ``append``) returns: it
  survives a kill of the process, a crash of the machine and a power loss (given a disk
  that honours fsync). Concurrent writers from several threads share commits (group
  commit).
* ``"batched"`` mode: writes wait in memory and are committed together every
  ``batch_interval`` seconds or every ``batch_size`` writes. A crash loses the writes
  made since the last commit, and nothing else: each commit is atomic.
* Either mode: an interrupted commit leaves the previous commit intact (the WAL
  ignores a torn last transaction); ``put_many``, ``append`` and ``delete_many`` are
  all or nothing. A fold changes how a key is stored, never its value: a crash during
  one leaves the key as before it or as after it.

The replica id is returned by :meth:`SQLiteStorage.open` only when every write made
under it is on disk. After a ``"batched"`` session that did not end with a clean
:meth:`SQLiteStorage.close` (a crash, or a failed final commit), writes made under the
id may be lost while other replicas hold them; a node reusing the id would issue its
lost counter values and dots again, and its new writes would be silently discarded as
already seen (the failure Riak fixed with per-key actor epochs). So ``open`` then
returns the states that were committed but ``replica_id=None``, and the node takes a
fresh id. (The node must still write a state before sending any delta of it, in both
modes, for the same reason.) Every commit raises the file's commit counter
(:attr:`StoredState.commit_seq`), in the same transaction.

What is refused at :meth:`SQLiteStorage.open`, with :class:`~crdtgossip.StorageError`,
rather than returning less than was stored: a file that is not SQLite (random bytes,
empty, cut short), a SQLite file of another program or of a newer schema, damage found
by ``PRAGMA quick_check``, a state row or log record whose checksum does not match (a
flipped bit, which SQLite itself, having no page checksums, would not see), that does
not decode, or whose type differs from its key's state (the message names the key), a
WAL file left without its database, and a file in use by another process (two nodes
sharing one file would share a replica id and reuse its dots). Found but not refused:
a file that lost commits (a WAL damaged, cut or deleted, which SQLite ignores like a torn
write; a file replaced by an older copy), by the high-water mark ``<path>.hwm`` written
after each commit (``_sqlite_hwm``): ``open`` keeps the states, retires the replica id
and sets :attr:`StoredState.rolled_back`.

The file is held with an exclusive lock while open (``locking_mode=EXCLUSIVE``), so no
other process can read or write it meanwhile, and no ``-shm`` file is used. A new store
is built under a temporary name and linked into place complete, so a crash during
creation never leaves a half-made file at ``path``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from crdtgossip.errors import StorageError
from crdtgossip.storage._base import (
    StoredState,
    SyncMode,
    check_appends,
    check_data,
    check_identity,
    check_items,
    check_key,
    check_options,
)
from crdtgossip.storage._fold import FOLD_MIN_BYTES
from crdtgossip.storage._sqlite_fold import Folder
from crdtgossip.storage._sqlite_hwm import Sidecar
from crdtgossip.storage._sqlite_log import (
    DEFAULT_BATCH_INTERVAL,
    DEFAULT_BATCH_SIZE,
    Batch,
    KeyChange,
    KeyIndex,
    index_committed,
    load_key,
    write_changes,
)
from crdtgossip.storage._sqlite_open import open_database
from crdtgossip.storage._sqlite_schema import (
    APPLICATION_ID,
    LOCK_TIMEOUT,
    SCHEMA_VERSION,
    Meta,
    no_rows,
    transaction,
    write_meta,
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

T = TypeVar("T")


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
        fold_min_bytes: the least log weight folded into its state
            (:data:`~crdtgossip.storage.FOLD_MIN_BYTES`; tests lower it).

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
        fold_min_bytes: int = FOLD_MIN_BYTES,
    ) -> None:
        check_options(sync_mode, batch_interval, batch_size, fold_min_bytes)
        self._path = Path(path)
        self._sync_mode: SyncMode = sync_mode
        self._batch_interval = float(batch_interval)
        self._batch_size = batch_size
        self._fold_min_bytes = fold_min_bytes
        # Lock order: _db_lock before _pending_lock. _db_lock guards the connection and
        # everything about what is committed (meta, index, folds), and is held for a
        # whole commit; _pending_lock guards the batch being filled and is only held
        # briefly, so writers can queue while a commit runs.
        self._db_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._meta = Meta(None, 0, 0, False)
        self._index = KeyIndex()
        self._accepting = False
        self._current = Batch()
        self._failure: StorageError | None = None  # batched: the last commit failed
        self._stop_flusher: threading.Event | None = None
        self._flusher: threading.Thread | None = None
        # One per session (open to close): a fold thread of an earlier session, still
        # merging when it closed, is stopped and never writes to a later one.
        self._folder: Folder | None = None
        self._sidecar = Sidecar(self._path, "")  # the high-water mark, made at open

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
        """Writes not yet committed, the commit under way included (a key's state once,
        each delta once): what a crash now would lose. 0 in ``"durable"`` mode once
        every write has returned."""
        with self._pending_lock:
            return self._current.at_risk()

    @property
    def pending_folds(self) -> int:
        """Keys whose log is due to be folded, or being folded now."""
        with self._db_lock:
            return 0 if self._folder is None else self._folder.pending

    @property
    def folds(self) -> int:
        """Logs folded into their state since the last :meth:`open`."""
        with self._db_lock:
            return 0 if self._folder is None else self._folder.folds

    @property
    def fold_errors(self) -> int:
        """Folds that failed on what is stored (a record that does not decode or
        merge) since the last :meth:`open`; each is logged, the key's records kept."""
        with self._db_lock:
            return 0 if self._folder is None else self._folder.errors

    # -------------------------------------------------------------------------------------
    # lifecycle
    # -------------------------------------------------------------------------------------

    def open(self) -> StoredState:
        """Open the file (creating it when absent), check it whole and load it.

        Returns:
            The stored replica id (None for a new file), incarnation, states and logs.

        Raises:
            StorageError: already open, or the file cannot be used: see the module doc
                for every case refused. The message names the file and the cause.
        """
        with self._db_lock, self._pending_lock:
            if self._connection is not None:
                raise StorageError(f"{self._path} is already open")
            connection, stored, meta, index = open_database(self._path, self._sync_mode)
            self._connection, self._meta, self._index = connection, meta, index
            self._sidecar = Sidecar(self._path, meta.store_id)
            self._sidecar.write(meta.commit_seq)
            self._current = Batch()
            self._failure = None
            self._accepting = True
            folder = self._folder = Folder(
                self._path, self._db_lock, connection, index, self._committed, self._fold_min_bytes
            )
            for key in index.keys:
                folder.consider(key)  # a log left due by a crash or by a close mid-fold
        folder.start()
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

        A fold in progress is abandoned (its key stays as it was).

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
                if self._folder is not None:
                    self._folder.stop()  # its counts stay readable until the next open
                self._sidecar.close()
                connection, self._connection = self._connection, None
                if connection is not None:
                    try:
                        connection.close()
                    except sqlite3.Error as exc:
                        _log.warning("closing %s: %s", self._path, exc)
        if batch is not None and batch.error is not None:
            raise StorageError(f"final commit to {self._path} failed: {batch.error}")

    # -------------------------------------------------------------------------------------
    # writes and reads
    # -------------------------------------------------------------------------------------

    def save_identity(self, replica_id: str, incarnation: int) -> None:
        """Store the replica id and incarnation, committed before returning (both modes).

        Raises:
            StorageError: an invalid argument, not open, or the write failed.
        """
        check_identity(replica_id, incarnation)
        with self._db_lock:
            self._require_connection()
            try:
                self._committed(no_rows, replica_id=replica_id, incarnation=incarnation)
            except sqlite3.Error as exc:
                raise StorageError(f"cannot save the identity to {self._path}: {exc}") from exc

    def put(self, key: str, data: bytes) -> None:
        """Store the state of ``key`` (dropping its log); in ``"durable"`` mode, on disk
        when this returns.

        Raises:
            StorageError: an invalid argument, not open, or the commit failed.
        """
        key = check_key(key)
        data = check_data(key, data)
        self._write(lambda batch: batch.replace(key, data), 1)

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store several states in one transaction (in both modes): all or none.

        Raises:
            StorageError: an invalid item (nothing is written), not open, or the commit
                failed (none of the items is stored).
        """
        checked = check_items(items)
        self._write(lambda batch: batch.replace_all(checked.items()), len(checked))

    def append(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Add deltas to their keys' logs in one transaction (in both modes): all or
        none; in ``"durable"`` mode on disk when this returns. Costs the size of the
        items: nothing stored is read or rewritten.

        Raises:
            StorageError: an invalid item (nothing is written), not open, or the commit
                failed (none of the items is stored).
        """
        checked = check_appends(items)
        self._write(lambda batch: batch.append_all(checked), len(checked))

    def delete(self, key: str) -> None:
        """Remove ``key``, its state and its log; in ``"durable"`` mode, on disk when
        this returns.

        Raises:
            StorageError: an invalid key, not open, or the commit failed.
        """
        self.delete_many((key,))

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove several keys as :meth:`delete` does, in one transaction (in both
        modes): all or none, one commit (a mass expiry costs one fsync, not one a key).

        Raises:
            StorageError: an invalid key (nothing is deleted), not open, or the commit
                failed (none of the keys is deleted).
        """
        gone = [(check_key(key), None) for key in keys]
        self._write(lambda batch: batch.replace_all(gone), len(gone))

    def load(self, key: str) -> tuple[bytes | None, list[bytes]]:
        """What is committed for ``key``: its state row (or None) and its log records,
        oldest first; pending ``"batched"`` writes are not included.

        Raises:
            StorageError: an invalid key, not open, the read failed, or the key's row or
                a record of it is damaged (the message names the key).
        """
        key = check_key(key)
        with self._db_lock:
            connection = self._require_connection()
            try:
                state, records = load_key(connection, self._path, key)
            except sqlite3.Error as exc:
                raise StorageError(f"cannot read key {key!r} from {self._path}: {exc}") from exc
        return state, [data for _, data in records]

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

    def _write(self, fill: Callable[[Batch], None], count: int) -> None:
        """Add validated writes (``fill``) to the batch being filled, then, in durable
        mode, wait until that batch is committed, committing it ourselves if nobody
        else is."""
        with self._pending_lock:
            if not self._accepting:
                raise StorageError(f"{self._path} is not open: call open() first")
            if not count:
                return
            batch = self._current
            fill(batch)
            full = batch.writes >= self._batch_size
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

    def _commit_locked(self) -> Batch | None:
        """Commit the current batch, with ``_db_lock`` held; return it (None if empty).

        Never raises: the outcome is in the batch's ``error``. In batched mode a failed
        batch's writes go back to pending (before newer writes to the same keys) to be
        retried, since no caller has been told they failed.
        """
        with self._pending_lock:
            batch = self._current
            if not batch.changes:
                return None
            self._current = Batch(behind=batch)
        try:
            self._commit(batch.changes)
        except StorageError as exc:
            batch.error = exc
            if self._sync_mode == "batched":
                with self._pending_lock:
                    self._current.take_back(batch)
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

    def _commit(self, changes: dict[str, KeyChange]) -> None:
        self._require_connection()
        index = self._index
        try:
            next_seq = self._committed(lambda db: write_changes(db, changes, index))
        except sqlite3.Error as exc:
            raise StorageError(
                f"cannot write {len(changes)} key(s) to {self._path}: {exc}"
            ) from exc
        folder = self._folder
        assert folder is not None  # open while connected
        for key, change in changes.items():
            if change.replace:
                folder.replaced(key)
        for key in index_committed(index, changes, next_seq, self._meta.commit_seq):
            folder.consider(key)

    def _committed(self, work: Callable[[sqlite3.Connection], T], **meta: Any) -> T:
        """Run ``work`` in one transaction that also raises the commit counter (and
        applies ``meta`` changes to the meta row), with ``_db_lock`` held.

        Raises:
            sqlite3.Error: the transaction failed and was rolled back.
        """
        connection = self._require_connection()
        updated = replace(self._meta, commit_seq=self._meta.commit_seq + 1, **meta)
        with transaction(connection):
            result = work(connection)
            write_meta(connection, updated)
        self._meta = updated
        self._sidecar.write(updated.commit_seq)  # after the commit: never ahead of it
        return result

    def _flush_periodically(self, stop: threading.Event) -> None:
        while not stop.wait(self._batch_interval):
            with self._db_lock:
                if self._connection is None:
                    return
                self._commit_locked()  # a failure is logged and retried next time

    def _mark_writes_safe(self) -> None:
        """Clear ``writes_at_risk`` after the last batched commit, with ``_db_lock``."""
        try:
            self._committed(no_rows, writes_at_risk=False)
        except sqlite3.Error as exc:
            # Harmless to leave set: the next open merely takes a fresh replica id.
            _log.warning("cannot mark %s closed cleanly: %s", self._path, exc)

    def _require_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StorageError(f"{self._path} is not open: call open() first")
        return self._connection
