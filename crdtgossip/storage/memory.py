"""MemoryStorage: the default storage, in this process's memory only.

Nothing survives the process, so a node with it takes a fresh replica id at each start
of a new process. Inside one process the object plays the disk: :meth:`close` keeps
what was stored and a later :meth:`open` returns it, so tests can restart a node "with
its state" by handing the same object to the new node.

Appended deltas are kept as a log per key, like :class:`SQLiteStorage` keeps them, and
folded into the key's state inline, by the same geometric rule (once the log weighs as
much as the state and :data:`~crdtgossip.storage.FOLD_MIN_BYTES`): the write that makes
the log that heavy pays for the fold, so appends cost O(delta) amortised.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from crdtgossip.errors import StorageError
from crdtgossip.storage._base import (
    StoredState,
    check_appends,
    check_data,
    check_fold_min_bytes,
    check_identity,
    check_items,
    check_key,
)
from crdtgossip.storage._fold import FOLD_MIN_BYTES, fold_due, fold_states, record_weight

__all__ = ["MemoryStorage"]

_log = logging.getLogger(__name__)


class MemoryStorage:
    """A :class:`~crdtgossip.storage.Storage` that keeps the bytes in dicts.

    Thread-safe; never blocks on I/O, so the node may call it inline.

    Args:
        fold_min_bytes: the least log weight folded into a state
            (:data:`~crdtgossip.storage.FOLD_MIN_BYTES`; tests lower it).

    Raises:
        ConfigError: ``fold_min_bytes`` is not an int >= 0.
    """

    def __init__(self, *, fold_min_bytes: int = FOLD_MIN_BYTES) -> None:
        check_fold_min_bytes(fold_min_bytes)
        self._lock = threading.Lock()
        self._is_open = False
        self._replica_id: str | None = None
        self._incarnation = 0
        self._states: dict[str, bytes] = {}
        self._deltas: dict[str, list[bytes]] = {}
        self._log_weight: dict[str, int] = {}
        self._unfoldable: dict[str, StorageError] = {}  # a fold failed; cleared by put
        self._fold_min_bytes = fold_min_bytes
        self._commit_seq = 0
        self._folds = 0
        self._fold_errors = 0

    def __repr__(self) -> str:
        return f"MemoryStorage(keys={len(self._states)}, open={self._is_open})"

    @property
    def durable(self) -> bool:
        """Always False: nothing here survives the process."""
        return False

    @property
    def folds(self) -> int:
        """Logs folded into their state so far."""
        return self._folds

    @property
    def fold_errors(self) -> int:
        """Folds that failed (a delta that does not decode or merge); each is logged."""
        return self._fold_errors

    def open(self) -> StoredState:
        """Return what was stored before (nothing for a new object).

        Raises:
            StorageError: already open, or a key's log failed to fold (it holds a delta
                that does not decode or merge; the message names the key).
        """
        with self._lock:
            if self._is_open:
                raise StorageError("MemoryStorage is already open")
            for key, error in self._unfoldable.items():
                raise StorageError(f"MemoryStorage holds a damaged log for key {key!r}: {error}")
            self._is_open = True
            return StoredState(
                self._replica_id,
                self._incarnation,
                dict(self._states),
                {key: list(log) for key, log in self._deltas.items()},
                self._commit_seq,
            )

    def save_identity(self, replica_id: str, incarnation: int) -> None:
        """Store the replica id and incarnation (see :meth:`Storage.save_identity`)."""
        check_identity(replica_id, incarnation)
        with self._lock:
            self._require_open()
            self._replica_id = replica_id
            self._incarnation = incarnation
            self._commit_seq += 1

    def put(self, key: str, data: bytes) -> None:
        """Store the state of ``key`` (see :meth:`Storage.put`)."""
        data = check_data(check_key(key), data)
        with self._lock:
            self._require_open()
            self._replace(key, data)
            self._commit_seq += 1

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store several states at once, all or none (see :meth:`Storage.put_many`)."""
        checked = check_items(items)
        with self._lock:
            self._require_open()
            for key, data in checked.items():
                self._replace(key, data)
            self._commit_seq += 1

    def append(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Add deltas to their keys' logs, all or none (see :meth:`Storage.append`);
        a log that grows as heavy as its state is folded into it before returning."""
        checked = check_appends(items)
        with self._lock:
            self._require_open()
            for key, data in checked:
                self._deltas.setdefault(key, []).append(data)
                self._log_weight[key] = self._log_weight.get(key, 0) + record_weight(data)
            self._commit_seq += 1
            for key in dict.fromkeys(key for key, _ in checked):
                self._fold_if_due(key)

    def load(self, key: str) -> tuple[bytes | None, list[bytes]]:
        """The state and log of ``key`` (see :meth:`Storage.load`)."""
        check_key(key)
        with self._lock:
            self._require_open()
            return self._states.get(key), list(self._deltas.get(key, ()))

    def delete(self, key: str) -> None:
        """Remove ``key`` and its log if stored (see :meth:`Storage.delete`)."""
        self.delete_many((key,))

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove several keys at once, all or none (as ``SQLiteStorage.delete_many``)."""
        checked = [check_key(key) for key in keys]
        with self._lock:
            self._require_open()
            for key in checked:
                self._replace(key, None)
            self._commit_seq += 1

    def flush(self) -> None:
        """Nothing to commit.

        Raises:
            StorageError: not open.
        """
        with self._lock:
            self._require_open()

    def close(self) -> None:
        """Mark closed, keeping the data for a later :meth:`open`; idempotent."""
        with self._lock:
            self._is_open = False

    def _replace(self, key: str, data: bytes | None) -> None:
        """Set (or, with None, remove) the state of ``key`` and drop its log."""
        if data is None:
            self._states.pop(key, None)
        else:
            self._states[key] = data
        self._deltas.pop(key, None)
        self._log_weight.pop(key, None)
        self._unfoldable.pop(key, None)

    def _fold_if_due(self, key: str) -> None:
        """Fold the log of ``key`` into its state when :func:`fold_due` says so."""
        state = self._states.get(key)
        weight = self._log_weight.get(key, 0)
        if key in self._unfoldable or not fold_due(
            0 if state is None else len(state), weight, self._fold_min_bytes
        ):
            return
        try:
            folded = fold_states(key, state, self._deltas[key])
        except StorageError as exc:
            self._fold_errors += 1
            self._unfoldable[key] = exc
            _log.error("MemoryStorage: %s; its log is kept as it is", exc)
            return
        if folded is not None:
            self._replace(key, folded)
            self._folds += 1

    def _require_open(self) -> None:
        if not self._is_open:
            raise StorageError("MemoryStorage is not open: call open() first")
