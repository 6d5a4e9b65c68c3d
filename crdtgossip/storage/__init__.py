"""Durable state: where a node keeps its states, replica id and incarnation.

:class:`Storage` is the protocol the node needs; :class:`MemoryStorage` (the default)
keeps nothing beyond the process; :class:`SQLiteStorage` keeps everything in one SQLite
file, each write on disk before it returns (or, opt-in, committed in batches). A key is
kept as a state plus a log of appended deltas, folded into the state once the log weighs
as much as it (and at least :data:`FOLD_MIN_BYTES`), so a write costs its own size.
"""

from crdtgossip.storage._base import (
    MAX_INCARNATION,
    MAX_STATE_BYTES,
    SYNC_MODES,
    Storage,
    StoredState,
    SyncMode,
)
from crdtgossip.storage._fold import FOLD_MIN_BYTES
from crdtgossip.storage.memory import MemoryStorage
from crdtgossip.storage.sqlite import (
    APPLICATION_ID,
    DEFAULT_BATCH_INTERVAL,
    DEFAULT_BATCH_SIZE,
    LOCK_TIMEOUT,
    SCHEMA_VERSION,
    SQLiteStorage,
)

__all__ = [
    "APPLICATION_ID",
    "DEFAULT_BATCH_INTERVAL",
    "DEFAULT_BATCH_SIZE",
    "FOLD_MIN_BYTES",
    "LOCK_TIMEOUT",
    "MAX_INCARNATION",
    "MAX_STATE_BYTES",
    "SCHEMA_VERSION",
    "SYNC_MODES",
    "MemoryStorage",
    "SQLiteStorage",
    "Storage",
    "StoredState",
    "SyncMode",
]
