"""LWW-Map: a map whose every key is a last-writer-wins register.

``set`` and ``remove`` are both timestamped writes to a key; per key, the write with the
highest ``(timestamp, replica)`` wins, as in :class:`~crdtgossip.LWWRegister`. A remove
is a write of "absent", so it is kept as a small timestamped marker: without it a
replica that missed the remove would bring the key back. (For a map whose removals
leave nothing behind, use :class:`~crdtgossip.ORMap`, which is causal.)

A write without a timestamp made through a node takes the node's hybrid logical clock
(:mod:`crdtgossip.protocol.clock`) raised past that key's timestamp; outside a node,
``max(now_ns, that key's timestamp + 1)``: either way it wins over every write of that
key this replica has seen. It looks at that key only, so one key holding the largest
timestamp possible (2**64 - 1, written with an explicit timestamp: a node refuses such
stamps from peers) makes only that key refuse default-stamped writes, with an
OperationError.

Cost: per key ever written, one value (or removal marker), timestamp and replica id;
a delta is one key's write.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Hashable, Iterable, Iterator
from typing import Any, Generic, NamedTuple, Self, TypeVar

from crdtgossip.crdts._base import (
    check_replica,
    check_timestamp,
    current_stamps,
    next_timestamp,
    now_ns,
    order_key,
)
from crdtgossip.crdts._digest import digest_of, element_hash, entry_hash
from crdtgossip.crdts._values import check_key, check_value
from crdtgossip.errors import MergeError

__all__ = ["LWWMap"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LWWEntry(NamedTuple):
    """One key's winning write: ``present`` is False for a removal."""

    timestamp: int
    replica: str
    present: bool
    value: Any

    def order(self) -> tuple[Any, ...]:
        """The order in which writes win (a total order, so ties agree everywhere)."""
        return (self.timestamp, self.replica, self.present, order_key(self.value))


class LWWMap(Generic[K, V]):
    """A map of last-writer-wins registers.

    Example:
        >>> from crdtgossip import LWWMap
        >>> a = LWWMap()
        >>> d1 = a.set("colour", "red", "a", timestamp=1)
        >>> b = a.copy()
        >>> d2 = b.remove("colour", "b", timestamp=2)
        >>> d3 = a.set("size", 3, "a", timestamp=3)
        >>> a.merge(d2); b.merge(d3)
        >>> a.value, a == b
        ({'size': 3}, True)
    """

    __slots__ = ("_entries", "_hashes", "_present")

    def __init__(self) -> None:
        self._entries: dict[K, LWWEntry] = {}
        # How many keys are present (not removed): derived, kept so len() is O(1).
        self._present = 0
        # The sum of the entries' hashes, kept up to date once anti-entropy first asks.
        self._hashes: int | None = None

    @classmethod
    def _from_entries(cls, entries: dict[K, LWWEntry]) -> Self:
        lww_map = cls()
        lww_map._entries = entries
        lww_map._present = sum(1 for entry in entries.values() if entry.present)
        return lww_map

    @property
    def value(self) -> dict[K, V]:
        """The present keys and their values."""
        return {
            key: _copy.deepcopy(entry.value)
            for key, entry in self._entries.items()
            if entry.present
        }

    def entries(self) -> dict[K, LWWEntry]:
        """Every key's winning write, removals included (a copy)."""
        return dict(self._entries)

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key``, or ``default`` when absent or removed."""
        entry = self._entries.get(key)
        if entry is None or not entry.present:
            return default
        return _copy.deepcopy(entry.value)  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        entry = self._entries.get(key)  # type: ignore[arg-type]
        return entry is not None and entry.present

    def __len__(self) -> int:
        return self._present

    def __iter__(self) -> Iterator[K]:
        return iter([key for key, entry in self._entries.items() if entry.present])

    def _stamp(self, key: K, timestamp: int | None) -> int:
        if timestamp is None:
            # Past this key's own write, not the whole map's highest stamp: a stamp near
            # 2**64 - 1 from a peer then exhausts that one key, never the others.
            entry = self._entries.get(key)
            seen = 0 if entry is None else entry.timestamp
            stamps = current_stamps()
            return next_timestamp(seen, now_ns()) if stamps is None else stamps(seen)
        return check_timestamp(timestamp)

    def _max_stamp(self) -> tuple[int, str]:
        """The highest timestamp of any key and its writer (the engine checks it
        against its clock)."""
        return max(((e.timestamp, e.replica) for e in self._entries.values()), default=(0, ""))

    def _write(self, key: K, entry: LWWEntry) -> Self:
        delta = type(self)._from_entries({key: entry})
        self.merge(delta)
        return delta

    def set(self, key: K, value: V, replica: str, timestamp: int | None = None) -> Self:
        """Write ``value`` at ``key``. Returns the delta (this one write).

        Raises:
            OperationError: a bad replica id or timestamp, a key or value the codec
                cannot encode (see :mod:`crdtgossip.crdts._values`), or no default
                timestamp left for this key (it holds 2**64 - 1). Nothing has changed
                then.
        """
        check_key(key, "an LWWMap key")
        check_value(value)
        check_replica(replica)
        return self._write(
            key, LWWEntry(self._stamp(key, timestamp), replica, True, _copy.deepcopy(value))
        )

    def remove(self, key: K, replica: str, timestamp: int | None = None) -> Self:
        """Remove ``key`` (a timestamped write of "absent"). Returns the delta.

        Raises:
            OperationError: a bad replica id or timestamp, a key the codec cannot
                encode, or no default timestamp left for this key. Nothing has changed
                then.
        """
        check_key(key, "an LWWMap key")
        check_replica(replica)
        return self._write(key, LWWEntry(self._stamp(key, timestamp), replica, False, None))

    def merge(self, other: Self) -> None:
        """Join ``other`` in place: per key, the winning write."""
        if type(other) is not type(self):
            raise MergeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        entries = self._entries
        present = self._present
        for key, theirs in other._entries.items():
            mine = entries.get(key)
            if mine is None or (mine != theirs and theirs.order() > mine.order()):
                entries[key] = LWWEntry(
                    theirs.timestamp, theirs.replica, theirs.present, _copy.deepcopy(theirs.value)
                )
                if self._hashes is not None:
                    self._hashes += _entry_hash(key, theirs) - (
                        0 if mine is None else _entry_hash(key, mine)
                    )
                present += theirs.present - (mine is not None and mine.present)
        self._present = present

    def copy(self) -> Self:
        """An independent copy."""
        fresh = type(self)._from_entries(_copy.deepcopy(self._entries))
        fresh._hashes = self._hashes
        return fresh

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, LWWMap)
        if self._entries.keys() != other._entries.keys():
            return False
        theirs = other._entries
        return all(entry.order() == theirs[key].order() for key, entry in self._entries.items())

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"LWWMap({self._entries!r})"

    # ---- digests and repair by difference (used by anti-entropy) ----------------------
    def _live_sum(self) -> int:
        if self._hashes is None:
            self._hashes = sum(_entry_hash(key, entry) for key, entry in self._entries.items())
        return self._hashes

    def _digest(self) -> bytes:
        """A canonical digest of the state, kept up to date as writes arrive."""
        return digest_of(b"LWWMap", self._live_sum())

    def _positions(self) -> list[tuple[int, int, K]]:
        """Each key as (64-bit position of the key, 128-bit hash of its entry, key)."""
        return [
            (element_hash(key) >> 64, _entry_hash(key, entry), key)
            for key, entry in self._entries.items()
        ]

    def _subset_items(self, keys: Iterable[K]) -> Self:
        """An LWW-Map of the entries of those of ``keys`` held here."""
        entries = self._entries
        return type(self)._from_entries(
            {key: _copy.deepcopy(entries[key]) for key in keys if key in entries}
        )


def _entry_hash(key: object, entry: LWWEntry) -> int:
    return entry_hash(key, (entry.timestamp, entry.replica, entry.present, entry.value))
