"""Folding delta logs in the background: the fold thread of one open SQLite store.

A :class:`Folder` lives as long as one session of :class:`SQLiteStorage` (open to
close). Commits tell it which keys were appended to (:meth:`Folder.consider`); a key
whose log is due (as heavy as its state) is queued, and the thread
folds queued keys one at a time: it reads the key's state and records under the
storage's lock, decodes and merges them *without* the lock (writers go on meanwhile),
then, under the lock again, replaces the row and deletes exactly the records it read
(up to the highest ``seq`` read), in one transaction. Records appended meanwhile have
higher numbers and stay, after the new state; a put or delete of the key meanwhile makes
the fold moot, and it is dropped. No writer ever waits for a merge.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from crdtgossip.errors import StorageError
from crdtgossip.storage import _fold
from crdtgossip.storage._sqlite_log import FoldInput, KeyIndex, read_fold_input, write_fold

__all__ = ["Commit", "Folder"]

_log = logging.getLogger(__name__)

Commit = Callable[[Callable[[sqlite3.Connection], None]], None]
"""Runs a transaction body in one committed transaction (raising the commit counter);
raises :class:`sqlite3.Error` when it fails. Called with the storage's lock held."""


class Folder:
    """The queue of keys due for folding and the thread that folds them.

    Every method but :meth:`start` is called with ``lock`` held (the storage's
    connection lock); the thread takes it itself.

    Args:
        path: the database file, for messages.
        lock: the storage's lock over ``connection`` and ``index``.
        connection: the session's connection.
        index: what is committed per key (updated by the storage at each commit).
        commit: how to commit a transaction body.
        minimum: the least log weight folded.
    """

    def __init__(
        self,
        path: Path,
        lock: threading.Lock,
        connection: sqlite3.Connection,
        index: KeyIndex,
        commit: Commit,
        minimum: int,
    ) -> None:
        self._path = path
        self._lock = lock
        self._connection = connection
        self._index = index
        self._commit = commit
        self._minimum = minimum
        self._queue: dict[str, None] = {}  # keys due, oldest first
        self._unfoldable: set[str] = set()  # a fold met damage: not retried until replaced
        self._wake = threading.Event()
        self._stopped = False
        self._busy = False  # a fold read is being merged
        self.folds = 0
        self.errors = 0

    @property
    def pending(self) -> int:
        """Keys queued, plus the one being folded."""
        return len(self._queue) + self._busy

    def start(self) -> None:
        """Start the fold thread (a daemon: a fold changes nothing a crash would lose)."""
        threading.Thread(
            target=self._run, name=f"crdtgossip-sqlite-fold:{self._path.name}", daemon=True
        ).start()

    def stop(self) -> None:
        """End the thread; a fold being merged is abandoned when it comes back."""
        self._stopped = True
        self._queue.clear()
        self._wake.set()

    def consider(self, key: str) -> None:
        """Queue ``key`` if its log is due for folding."""
        entry = self._index.keys.get(key)
        if (
            entry is not None
            and key not in self._unfoldable
            and _fold.fold_due(entry.state_bytes, entry.log_weight, self._minimum)
        ):
            self._queue[key] = None
            self._wake.set()

    def replaced(self, key: str) -> None:
        """``key`` was put or deleted: a fold that failed on it may be tried again."""
        self._unfoldable.discard(key)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                if self._stopped:
                    return
                fold = self._next()
            if fold is None:
                continue
            try:
                folded = _fold.fold_states(
                    fold.key, fold.state, fold.records, lambda: self._stopped
                )
            except StorageError as exc:
                with self._lock:
                    self._failed(fold.key, exc)
                continue
            with self._lock:
                if self._stopped:
                    return
                self._store(fold, folded)

    def _next(self) -> FoldInput | None:
        """Take the next due key off the queue and read it; None (the thread then
        sleeps) when nothing is left."""
        while self._queue:
            key = next(iter(self._queue))
            del self._queue[key]
            entry = self._index.keys.get(key)
            if entry is None or not _fold.fold_due(
                entry.state_bytes, entry.log_weight, self._minimum
            ):
                continue
            try:
                fold = read_fold_input(self._connection, self._path, key, entry)
            except StorageError as exc:
                self._failed(key, exc)
                continue
            except sqlite3.Error as exc:
                _log.warning("cannot read key %r of %s to fold it: %s", key, self._path, exc)
                continue
            if fold is not None:
                self._busy = True
                return fold
        self._wake.clear()
        return None

    def _failed(self, key: str, error: StorageError) -> None:
        """A fold met damage: log it, count it, and leave the key's records as they are
        (the next open refuses them, naming the key) until the key is replaced."""
        self._busy = False
        if self._stopped:
            return
        self.errors += 1
        self._unfoldable.add(key)
        _log.error("%s: %s; its records are kept as they are", self._path, error)

    def _store(self, fold: FoldInput, folded: bytes | None) -> None:
        """Replace the key's row by the fold and drop the records it joined, in one
        transaction, unless a put or delete replaced the key meanwhile."""
        self._busy = False
        entry = self._index.keys.get(fold.key)
        if folded is None or entry is None or entry.generation != fold.generation:
            return  # replaced since it was read: the fold is moot
        try:
            self._commit(lambda connection: write_fold(connection, fold, folded))
        except sqlite3.Error as exc:
            # Not damage (a full disk, say): the next append to the key queues it again.
            _log.warning("cannot fold key %r of %s: %s", fold.key, self._path, exc)
            return
        entry.state_bytes = len(folded)
        entry.log_weight -= fold.weight
        self.folds += 1
        self.consider(fold.key)
