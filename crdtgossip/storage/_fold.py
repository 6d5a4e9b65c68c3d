"""Folding a key's delta log into its state: when, and how.

A storage keeps, per key, a state (the last one :meth:`~crdtgossip.storage.Storage.put`)
and a log of encoded deltas appended after it; the key's value is the join of both, in
log order. Appending costs the size of the delta; folding (decode the state and every
record, merge them, encode the result, store it as the new state and drop the records)
costs the size of the whole key. :func:`fold_due` says when a fold is worth it: once the
log weighs as much as the state, so each fold of a state of ``S`` bytes follows at least
``S`` bytes of appends, and the amortised cost of folding is O(1) per byte appended, the
same geometric argument as a growing array's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from crdtgossip.codec import decode, encode
from crdtgossip.errors import CRDTGossipError, StorageError
from crdtgossip.keylife import fold, wrap
from crdtgossip.storage._base import MAX_STATE_BYTES

__all__ = ["FOLD_MIN_BYTES", "RECORD_WEIGHT", "fold_due", "fold_states", "record_weight"]

FOLD_MIN_BYTES = 64 * 1024
"""A key's log is never folded before it weighs this much: below it, replaying the log
at start takes well under a millisecond, and folding a small state after every few
appends would cost more disk writes (a whole row each time) than it saves."""

RECORD_WEIGHT = 64
"""Bytes each log record counts for beyond its data, for :func:`fold_due`: a record's
row, index entry and checksum (about 40 bytes on disk), and the fixed cost of decoding
and merging it at start (about the cost of decoding 64 bytes of state). Counting it
bounds the number of records of a key with tiny deltas to its state's size / 64, so
replaying a log never costs much more than decoding the state it belongs to."""


def record_weight(data: bytes) -> int:
    """What one log record holding ``data`` counts for in :func:`fold_due`."""
    return len(data) + RECORD_WEIGHT


def fold_due(state_bytes: int, log_weight: int, minimum: int = FOLD_MIN_BYTES) -> bool:
    """Whether a key's log should be folded into its state.

    Args:
        state_bytes: the size of the key's stored state (0 when it has none).
        log_weight: the sum of :func:`record_weight` over the key's log records.
        minimum: the least weight worth a fold (:data:`FOLD_MIN_BYTES` by default).

    Returns:
        True once the log weighs at least as much as the state and ``minimum``.
    """
    return log_weight > 0 and log_weight >= max(minimum, state_bytes)


def fold_states(
    key: str,
    state: bytes | None,
    records: Iterable[bytes],
    cancelled: Callable[[], bool] = lambda: False,
) -> bytes | None:
    """Join a key's state and its log records, in order, and encode the result.

    Each is decoded (:func:`crdtgossip.codec.decode`) and merged into the first
    (``state.merge(delta)``); a key with no state starts from its first record. Rows
    with a life record are settled as the engine merged them
    (:func:`crdtgossip.keylife.fold`), and the join keeps the key's record in front.

    Args:
        key: the key, for error messages.
        state: the stored state, or None.
        records: the log records, oldest first.
        cancelled: asked between records; when it returns True the fold stops.

    Returns:
        The encoded join, or None when cancelled or when there is nothing to fold.

    Raises:
        StorageError: a state or record does not decode, they do not merge (different
            types), or the join encodes to more than :data:`MAX_STATE_BYTES`.
    """
    position = 0
    where = ""

    def join(joined: Any, data: bytes) -> Any:
        if cancelled():
            raise _Cancelled
        value = decode(data)
        if joined is None:
            return value
        joined.merge(value)
        return joined

    def rows() -> Iterable[bytes]:
        nonlocal position
        if state is not None:
            yield state
        for data in records:
            position += 1
            yield data

    try:
        joined, life = fold(rows(), join)
        if joined is None and life is None:
            return None
        where = "join"
        encoded = b"" if joined is None else encode(joined)
        if life is not None:
            encoded = wrap(life, encoded)
    except _Cancelled:
        return None
    except CRDTGossipError as exc:
        where = where or ("state" if position == 0 else f"log record {position}")
        raise StorageError(f"cannot fold the log of key {key!r}: its {where}: {exc}") from exc
    if len(encoded) > MAX_STATE_BYTES:
        raise StorageError(
            f"cannot fold the log of key {key!r}: the joined state is {len(encoded)} bytes, "
            f"more than the {MAX_STATE_BYTES} a state may hold"
        )
    return encoded


class _Cancelled(Exception):
    """The fold was cancelled between two records."""
