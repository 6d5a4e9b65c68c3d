"""The Storage protocol: what the node needs to keep its state across restarts.

A node keeps a map ``key -> state`` (each state encoded by :func:`crdtgossip.encode`),
its replica id and its SWIM incarnation. A storage holds exactly that, and gives it all
back at :meth:`Storage.open`.

A key's state is stored in two parts: a *state* (written whole by :meth:`Storage.put`)
and a *log* of encoded deltas (each joined into it by :meth:`Storage.append`, which
costs the size of the delta, not of the state). The key's value is the state merged
with every log record, oldest first. The storage folds a log into its state now and
then (past :data:`~crdtgossip.storage.FOLD_MIN_BYTES`), which changes how the key is stored, never
what it holds.

Every method is *blocking* and *thread-safe*: it may be called from any thread,
concurrently with the others; calls are serialized inside. A durable write waits for the
disk (an fsync, typically 0.1 to 10 ms), so the asyncio node calls them through
:func:`asyncio.to_thread`; :class:`~crdtgossip.storage.MemoryStorage` never blocks and
may be called inline.

Sync modes (:data:`SyncMode`) say what a returned write (:meth:`Storage.put`,
:meth:`Storage.put_many`, :meth:`Storage.append`, :meth:`Storage.delete`) means:

* ``"durable"`` (the default): the write is committed to disk (fsync) before ``put``
  returns, so it survives a crash of the process, of the machine, or a power loss.
  Writes made concurrently from several threads share one commit (group commit), and
  each caller still returns only once its own write is committed.
* ``"batched"`` (opt-in): ``put`` returns at once and commits are grouped: every
  ``batch_interval`` seconds, and as soon as ``batch_size`` writes are pending (a key's
  state counts once however often it is rewritten, each appended delta once; the write
  that fills the batch commits it, so that one waits for the disk). The
  exact risk: a crash (process kill, machine crash, power loss) loses every write made
  since the last commit. Those writes were never acknowledged as durable; the node must
  not count a write as acknowledged by this replica for its durability.
  :meth:`Storage.flush` and :meth:`Storage.close` commit what is pending. After such a
  crash the storage no longer returns the replica id (see :class:`StoredState`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeAlias

from crdtgossip.codec import DEFAULT_LIMITS
from crdtgossip.errors import ConfigError, StorageError

__all__ = [
    "MAX_INCARNATION",
    "MAX_STATE_BYTES",
    "SYNC_MODES",
    "Storage",
    "StoredState",
    "SyncMode",
]

SyncMode: TypeAlias = Literal["durable", "batched"]
"""``"durable"``: every write is on disk before it returns; ``"batched"``: writes are
committed in groups and a crash loses those since the last commit (see module doc)."""

SYNC_MODES: tuple[SyncMode, ...] = ("durable", "batched")
"""Every accepted :data:`SyncMode`."""

MAX_STATE_BYTES = DEFAULT_LIMITS.max_bytes
"""The largest encoded state a storage accepts, in bytes: what :func:`crdtgossip.decode`
accepts (16 MiB). A larger state could be written but never read back, so a node would
refuse to restart; it is refused at write time instead."""

MAX_INCARNATION = 2**63 - 1
"""The largest incarnation stored: SQLite integers are signed 64-bit. SWIM raises the
incarnation by one per refutation, so this is never reached in practice."""


@dataclass(frozen=True, slots=True)
class StoredState:
    """Everything a storage holds, as returned by :meth:`Storage.open`.

    Attributes:
        replica_id: the replica id saved by :meth:`Storage.save_identity`, or None when
            the storage is new, or when writes made under the saved id may have been
            lost (a ``"batched"`` session that ended in a crash): reusing that id would
            reissue its lost counter values and dots. The node then takes a fresh id and
            saves it.
        incarnation: the SWIM incarnation saved with it; 0 when new.
        states: key -> encoded state, as given to :meth:`Storage.put` (or as folded
            from appended deltas). The dict is the caller's to keep and change.
        deltas: key -> the encoded deltas appended (:meth:`Storage.append`) after that
            state, oldest first; a key may have deltas and no state. The key's value is
            the state (or the first delta) merged with each delta in turn, each settled
            by the life record in front of it (:func:`crdtgossip.keylife.fold`). The
            dict and its lists are the caller's.
        commit_seq: the store's commit counter as read from it: how many transactions
            were committed to it since it was created (0 for a new store, and for
            :class:`~crdtgossip.storage.MemoryStorage` the number of writes). Every
            commit raises it by one, in the same transaction, so a store that lost
            commits shows a smaller counter than the one last written.
        rolled_back: the store is found to have lost commits it once held (a damaged
            or deleted write-ahead log, a file replaced by an older copy): what it
            returns is older than what it acknowledged. ``replica_id`` is then None, so
            the node takes a fresh id, and keeps the states it got.
    """

    replica_id: str | None = None
    incarnation: int = 0
    states: dict[str, bytes] = field(default_factory=dict)
    deltas: dict[str, list[bytes]] = field(default_factory=dict)
    commit_seq: int = 0
    rolled_back: bool = False


class Storage(Protocol):
    """Durable state of one node: encoded states by key, the replica id and incarnation.

    Lifecycle: :meth:`open` once, then writes, then :meth:`close`; a closed storage
    may be opened again (a restart). Every method blocks and is thread-safe (see the
    module doc). Writes before :meth:`open` or after :meth:`close` raise
    :class:`~crdtgossip.StorageError`.
    """

    @property
    def durable(self) -> bool:
        """True when a returned :meth:`put` survives a crash of the process and of the
        machine: SQLite in ``"durable"`` mode. False for memory, and for ``"batched"``
        mode, where only :meth:`flush` makes writes durable."""
        ...

    def open(self) -> StoredState:
        """Load everything stored, creating an empty store when there is none.

        Returns:
            The replica id (None when new), the incarnation, every key's state and log.

        Raises:
            StorageError: the store exists but cannot be read completely: unreadable,
                corrupt (a state or a log record, named by its key), truncated, written
                by another program or by a newer version, or in use by another process.
                Never returns an empty or partial state for a store that exists but is
                damaged. Also raised when already open.
        """
        ...

    def save_identity(self, replica_id: str, incarnation: int) -> None:
        """Store the replica id and incarnation; durable on return in every mode.

        Args:
            replica_id: the node's replica id, a non-empty str.
            incarnation: the node's SWIM incarnation, 0 to :data:`MAX_INCARNATION`.

        Raises:
            StorageError: an invalid argument, not open, or the write failed.
        """
        ...

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` as the state of ``key``, replacing what was there (its log too).

        In ``"durable"`` mode the write is committed to disk when this returns.

        Args:
            key: the key, any str (encodable as UTF-8).
            data: the encoded state, non-empty, at most :data:`MAX_STATE_BYTES`.

        Raises:
            StorageError: an invalid argument, not open, or the write failed (in
                durable mode the write is then not stored).
        """
        ...

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store several states in one transaction: all of them or none survive.

        Every item is validated before anything is written. A key given twice keeps its
        last data.

        Args:
            items: ``(key, data)`` pairs, as for :meth:`put` (``mapping.items()`` works).

        Raises:
            StorageError: as for :meth:`put`; on a failed write none of the items is
                stored.
        """
        ...

    def append(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Join encoded deltas (or states) into the stored state of their keys.

        Each ``data`` is added to its key's log, in order, in one transaction for all
        items: all of them or none survive. It costs the size of the items, never that
        of the states they join. Durable on return in ``"durable"`` mode; committed with
        the next batch in ``"batched"`` mode, like :meth:`put`.

        Args:
            items: ``(key, data)`` pairs; ``data`` is an encoding (of a delta or a
                state) of the key's type, non-empty, at most :data:`MAX_STATE_BYTES`. A
                key may appear several times: its deltas are kept in the order given.

        Raises:
            StorageError: an invalid item (nothing is written), not open, or the write
                failed (none of the items is stored).
        """
        ...

    def load(self, key: str) -> tuple[bytes | None, list[bytes]]:
        """What is committed for one key: its state and log, as :meth:`open` would give.

        Pending ``"batched"`` writes are not included: this is what a crash now would
        leave. The node uses it to bring a key back in line with the store after a
        failed write.

        Returns:
            The key's state (None when it has no state row) and its log records, oldest
            first; ``(None, [])`` for a key not stored.

        Raises:
            StorageError: not open, the read failed, or what is stored for the key is
                corrupt (the message names the key).
        """
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``, its state and its log; a key that is not stored is not an error.

        Durable on return in ``"durable"`` mode, like :meth:`put`.

        Raises:
            StorageError: an invalid key, not open, or the write failed.
        """
        ...

    def flush(self) -> None:
        """Commit every write made so far; they are durable on return (when the
        storage is durable at all). Nothing to do in ``"durable"`` mode.

        Raises:
            StorageError: not open, or the commit failed.
        """
        ...

    def close(self) -> None:
        """Commit what is pending and release the store; idempotent.

        Raises:
            StorageError: the final commit failed (the store is closed all the same).
        """
        ...


# =========================================================================================
# argument checks shared by the implementations
# =========================================================================================


def check_options(
    sync_mode: object, batch_interval: object, batch_size: object, fold_min_bytes: object
) -> None:
    """Raise ConfigError unless the options of a storage are in range."""
    if sync_mode not in SYNC_MODES:
        raise ConfigError(f"sync_mode must be one of {SYNC_MODES}, not {sync_mode!r}")
    if not (isinstance(batch_interval, int | float) and math.isfinite(batch_interval)):
        raise ConfigError(f"batch_interval must be a finite number, not {batch_interval!r}")
    if batch_interval <= 0:
        raise ConfigError(f"batch_interval must be positive, not {batch_interval!r}")
    if type(batch_size) is not int or batch_size < 1:
        raise ConfigError(f"batch_size must be an int >= 1, not {batch_size!r}")
    check_fold_min_bytes(fold_min_bytes)


def check_fold_min_bytes(fold_min_bytes: object) -> None:
    """Raise ConfigError unless ``fold_min_bytes`` is an int >= 0."""
    if type(fold_min_bytes) is not int or fold_min_bytes < 0:
        raise ConfigError(f"fold_min_bytes must be an int >= 0, not {fold_min_bytes!r}")


def check_key(key: object) -> str:
    """Return ``key`` if it is a str that can be stored, else raise StorageError."""
    return _check_text(key, "a storage key")


def _check_text(value: object, what: str) -> str:
    if type(value) is not str:
        raise StorageError(f"{what} must be a str, not {type(value).__name__}")
    try:
        value.encode("utf-8")  # SQLite stores UTF-8: a lone surrogate cannot be stored
    except UnicodeEncodeError as exc:
        raise StorageError(f"{what} {value!r:.60} is not valid text: {exc}") from None
    return value


def check_data(key: str, data: object) -> bytes:
    """Return ``data`` if it is a non-empty bytes of at most :data:`MAX_STATE_BYTES`."""
    if type(data) is not bytes:
        raise StorageError(
            f"the state of key {key!r:.60} must be bytes (from crdtgossip.encode), "
            f"not {type(data).__name__}"
        )
    if not data:
        raise StorageError(f"the state of key {key!r:.60} is empty: not an encoded state")
    if len(data) > MAX_STATE_BYTES:
        raise StorageError(
            f"the state of key {key!r:.60} is {len(data)} bytes, more than the "
            f"{MAX_STATE_BYTES} that crdtgossip.decode reads back"
        )
    return data


def check_items(items: Iterable[tuple[str, bytes]]) -> dict[str, bytes]:
    """Validate every ``(key, data)`` pair; return them as a dict (last data wins)."""
    checked: dict[str, bytes] = {}
    for item in items:
        if type(item) is not tuple or len(item) != 2:
            raise StorageError(f"put_many takes (key, data) pairs, not {item!r:.60}")
        key = check_key(item[0])
        checked[key] = check_data(key, item[1])
    return checked


def check_appends(items: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Validate every ``(key, data)`` pair to append; return them in order, repeats kept."""
    checked: list[tuple[str, bytes]] = []
    for item in items:
        if type(item) is not tuple or len(item) != 2:
            raise StorageError(f"append takes (key, data) pairs, not {item!r:.60}")
        key = check_key(item[0])
        checked.append((key, check_data(key, item[1])))
    return checked


def check_identity(replica_id: object, incarnation: object) -> None:
    """Raise StorageError unless the replica id and incarnation can be stored."""
    if not _check_text(replica_id, "a replica id"):
        raise StorageError("a replica id must not be empty")
    if type(incarnation) is not int or not 0 <= incarnation <= MAX_INCARNATION:
        raise StorageError(
            f"an incarnation must be an int from 0 to {MAX_INCARNATION}, not {incarnation!r}"
        )
