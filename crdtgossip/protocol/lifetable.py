"""Every key's life record, kept small: the engine's table of them.

Most keys are written by one replica and never deleted, so their record has one
entry. A dict of one entry costs some 240 bytes in CPython, a flat tuple
``(replica, newest, deleted)`` 64, so the table keeps a one-entry record as such a
tuple and only a record of several writers as a dict
(:data:`crdtgossip.keylife.Record`). :meth:`LifeTable.get` hands out a record to read
or change; a changed record goes back with :meth:`LifeTable.put`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final, TypeAlias

from crdtgossip.errors import OperationError
from crdtgossip.keylife import MAX_WRITES, Record
from crdtgossip.protocol.compaction import shrink

__all__ = ["LifeTable"]

_Single: TypeAlias = tuple[str, int, int]


class LifeTable:
    """key -> life record (see the module doc)."""

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: dict[str, Record | _Single] = {}

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def get(self, key: str) -> Record | None:
        """``key``'s record (``None``: it has none): the table's own for a record of
        several writers, a new dict for one of one; :meth:`put` it back once changed."""
        held = self._records.get(key)
        if held is None or isinstance(held, dict):
            return held
        replica, newest, dropped = held
        return {replica: (newest, dropped)}

    def put(self, key: str, record: Record) -> None:
        """Keep ``record`` as ``key``'s (the table keeps the dict of several writers)."""
        if len(record) == 1:
            ((replica, (newest, dropped)),) = record.items()
            self._records[key] = (replica, newest, dropped)
        else:
            self._records[key] = record

    def pop(self, key: str) -> None:
        """Forget ``key``'s record (nothing when it has none)."""
        self._records.pop(key, None)

    def wrote(self, key: str, replica: str) -> tuple[int, int] | None:
        """Count one more write of ``replica`` to ``key`` when its record names only
        that replica or nothing (the common case, without building a dict): the new
        ``(newest, deleted)``. ``None``: the record names other replicas, use
        :meth:`get` and :func:`crdtgossip.keylife.wrote`.

        Raises:
            OperationError: the replica has made :data:`~crdtgossip.keylife.MAX_WRITES`
                writes to the key.
        """
        held = self._records.get(key)
        if held is None:
            self._records[key] = (replica, 1, 0)
            return 1, 0
        if isinstance(held, dict) or held[0] != replica:
            return None
        _, newest, dropped = held
        if newest >= MAX_WRITES:
            raise OperationError(f"replica {replica!r} has no write left for this key")
        self._records[key] = (replica, newest + 1, dropped)
        return newest + 1, dropped

    def fingerprint(self, key: str) -> bytes | None:
        """Canonical bytes of ``key``'s record for the hash tree (``None``: it has
        none): per replica in id order, the id's UTF-8 length in 2 bytes, the id and
        both numbers in 8 bytes each, made from the table's own form without building
        a dict (a record's digest is taken for every key at every refresh)."""
        held = self._records.get(key)
        if held is None:
            return None
        if isinstance(held, dict):
            return b"".join(_entry(replica, *held[replica]) for replica in sorted(held))
        return _entry(*held)

    def copies(self) -> dict[str, Record]:
        """A copy of every record."""
        return {key: record for key in self._records if (record := self._copy(key))}

    def _copy(self, key: str) -> Record:
        record = self.get(key)
        assert record is not None
        return dict(record)

    def compact(self) -> None:
        """Give back the memory of forgotten records (see :mod:`~.compaction`)."""
        shrink(self._records)


def _entry(replica: str, newest: int, dropped: int) -> bytes:
    name = replica.encode("utf-8", "surrogatepass")
    return _HEAD.pack(len(name)) + name + _NUMBERS.pack(newest, dropped)


_HEAD: Final = struct.Struct(">H")
_NUMBERS: Final = struct.Struct(">QQ")
