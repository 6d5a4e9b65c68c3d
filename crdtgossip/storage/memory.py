"""MemoryStorage: the default storage, in this process's memory only.

Nothing survives the process, so a node with it takes a fresh replica id at each start
of a new process. Inside one process the object plays the disk: :meth:`close` keeps
what was stored and a later :meth:`open` returns it, so tests can restart a node "with
its state" by handing the same object to the new node.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from crdtgossip.errors import StorageError
from crdtgossip.storage._base import (
    StoredState,
    check_data,
    check_identity,
    check_items,
    check_key,
)

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """A :class:`~crdtgossip.storage.Storage` that keeps the bytes in dicts.

    Thread-safe; never blocks on I/O, so the node may call it inline.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._is_open = False
        self._replica_id: str | None = None
        self._incarnation = 0
        self._states: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"MemoryStorage(keys={len(self._states)}, open={self._is_open})"

    @property
    def durable(self) -> bool:
        """Always False: nothing here survives the process."""
        return False

    def open(self) -> StoredState:
        """Return what was stored before (nothing for a new object).

        Raises:
            StorageError: already open.
        """
        with self._lock:
            if self._is_open:
                raise StorageError("MemoryStorage is already open")
            self._is_open = True
            return StoredState(self._replica_id, self._incarnation, dict(self._states))

    def save_identity(self, replica_id: str, incarnation: int) -> None:
        """Store the replica id and incarnation (see :meth:`Storage.save_identity`)."""
        check_identity(replica_id, incarnation)
        with self._lock:
            self._require_open()
            self._replica_id = replica_id
            self._incarnation = incarnation

    def put(self, key: str, data: bytes) -> None:
        """Store the state of ``key`` (see :meth:`Storage.put`)."""
        data = check_data(check_key(key), data)
        with self._lock:
            self._require_open()
            self._states[key] = data

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store several states at once, all or none (see :meth:`Storage.put_many`)."""
        checked = check_items(items)
        with self._lock:
            self._require_open()
            self._states.update(checked)

    def delete(self, key: str) -> None:
        """Remove ``key`` if stored (see :meth:`Storage.delete`)."""
        check_key(key)
        with self._lock:
            self._require_open()
            self._states.pop(key, None)

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

    def _require_open(self) -> None:
        if not self._is_open:
            raise StorageError("MemoryStorage is not open: call open() first")
