"""Whether a top-level key lives: the causal record behind a cluster-wide delete.

A delete must remove exactly the writes its deleter saw, and let a write it did not see
(a concurrent one) win, as :class:`~crdtgossip.ORMap`'s update-wins rule does for a
map's keys. So each key carries a *life record*: one slot per replica that wrote it,

* ``2 * n`` while the replica's ``n``-th write to the key (its newest) is live;
* ``2 * n + 1`` once a delete has seen that write (and so every earlier write of the
  same replica: a replica's own writes to a key follow each other, each in the state
  of the next).

Records join by the maximum of each slot: a later write beats a delete of an earlier
one, and a delete beats the write it saw. That is a join-semilattice (commutative,
associative, idempotent), so records may arrive in any order, twice, or by any path.
A key is *present* while some slot is even; a delete makes every slot it holds odd.

A state or delta travels with the record of what it contains (:func:`wrap`); the
receiver joins the records and asks :func:`settle` what to keep:

* the incoming content is merged only if it carries a write still live in the joined
  record (:func:`live_in`): a lagging member's old state cannot bring a deleted key
  back, however late it comes;
* the local content is dropped when none of its writes is live any more: a key written
  anew after a delete starts empty everywhere, old content gone;
* when a write concurrent with the delete survives, the key keeps its merged state,
  the old content included (a state cannot subtract what it joined; only the causal
  types could, tag by tag). Members agree on the record, and anti-entropy then on the
  content.

Content without a record (a state restored by :meth:`~crdtgossip.protocol.Engine.restore`
without one, or a payload from a peer that sends none) is *unknown*: it is kept and
taken unless the key's record says the key is deleted.

This module is pure bookkeeping: plain ``dict[str, int]`` records, and their canonical
bytes in front of a payload (:func:`wrap`, :func:`unwrap`), whose decoding raises only
:class:`~crdtgossip.DecodeError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeAlias

import msgpack

from crdtgossip.errors import DecodeError, OperationError

__all__ = [
    "LIFE_MARK",
    "MAX_LIFE_SLOTS",
    "MAX_SLOT",
    "Record",
    "deleted",
    "is_wrapped",
    "join_into",
    "live_in",
    "present",
    "settle",
    "unwrap",
    "wrap",
    "wrote",
]

Record: TypeAlias = dict[str, int]
"""A life record: replica id -> slot (``2 * writes``, plus one once deleted)."""

LIFE_MARK: Final = b"\xc1"
"""First byte of a payload that carries a life record. msgpack never uses 0xc1, so no
encoding of a data type starts with it: a payload with a record and one without are
told apart by their first byte, and a payload without one decodes as before."""

MAX_LIFE_SLOTS: Final = 4096
"""Most slots one record may hold on the wire: one per replica that wrote the key. A
record names the writers its key's state names anyway; the bound keeps a hostile
payload from making a receiver build a table of millions."""

MAX_SLOT: Final = (1 << 64) - 1
"""Largest slot (an unsigned 64-bit int on the wire): 2**63 - 1 writes of one replica."""

_MAX_REPLICA_BYTES: Final = 1024


def wrote(record: Record, replica: str) -> int:
    """Record a new write of ``replica`` in ``record`` (in place); its new slot.

    Raises:
        OperationError: the replica has made 2**63 - 1 writes to the key.
    """
    slot = ((record.get(replica, 0) >> 1) + 1) << 1
    if slot > MAX_SLOT:
        raise OperationError(f"replica {replica!r} has no write left for this key")
    record[replica] = slot
    return slot


def deleted(record: Mapping[str, int]) -> Record:
    """The record of a delete that saw ``record``: every slot made odd."""
    return {replica: slot | 1 for replica, slot in record.items()}


def present(record: Mapping[str, int]) -> bool:
    """Whether a write named in ``record`` is live (some slot even)."""
    return any(not slot & 1 for slot in record.values())


def join_into(record: Record, other: Mapping[str, int]) -> bool:
    """Join ``other`` into ``record`` (in place); whether ``record`` changed."""
    changed = False
    for replica, slot in other.items():
        if slot > record.get(replica, -1):
            record[replica] = slot
            changed = True
    return changed


def live_in(part: Mapping[str, int], joined: Mapping[str, int]) -> bool:
    """Whether ``part`` (the record of some content) names a write still live in
    ``joined`` (a record at least as large as ``part``)."""
    return any(not slot & 1 and joined.get(replica) == slot for replica, slot in part.items())


def settle(local: Record | None, incoming: Mapping[str, int] | None) -> tuple[bool, bool]:
    """What to keep of a key when content arrives; joins ``incoming`` into ``local``.

    Args:
        local: the key's record here (joined with ``incoming`` in place), or ``None``:
            the local content, if any, is unknown (kept), and the key has no record.
        incoming: the arriving content's record, or ``None``: unknown content.

    Returns:
        ``(keep_local, take)``: whether the local content stays, and whether the
        arriving content is merged (see the module doc).
    """
    if local is None:
        return True, incoming is None or present(incoming)
    before = dict(local) if incoming is not None else local
    if incoming is not None:
        join_into(local, incoming)
    keep_local = not before or live_in(before, local)
    take = present(local) if incoming is None else live_in(incoming, local)
    return keep_local, take


def is_wrapped(payload: bytes) -> bool:
    """Whether ``payload`` carries a life record (see :data:`LIFE_MARK`)."""
    return payload[:1] == LIFE_MARK


def wrap(record: Mapping[str, int], payload: bytes) -> bytes:
    """``payload`` (an encoded state or delta) with ``record`` in front, canonical:
    the mark, the msgpack array of ``[replica, slot]`` pairs in replica order, then the
    payload's own bytes."""
    pairs = [[replica, record[replica]] for replica in sorted(record)]
    packed: bytes = msgpack.packb(pairs, use_bin_type=True)
    return LIFE_MARK + packed + payload


def unwrap(data: bytes) -> tuple[Record | None, bytes]:
    """The record and the payload of ``data``; ``(None, data)`` when it carries none.

    Only the canonical form is taken (replicas sorted and unique, slots from 2 to
    :data:`MAX_SLOT`, at most :data:`MAX_LIFE_SLOTS` of them).

    Raises:
        DecodeError: a malformed record; nothing else, whatever the bytes.
    """
    if data[:1] != LIFE_MARK:
        return None, data
    # Walk the record first without building anything (as the codec does), so headers
    # announcing more items than follow cost nothing; then build just its bytes.
    walker = msgpack.Unpacker(
        max_buffer_size=len(data),
        max_array_len=MAX_LIFE_SLOTS,
        max_map_len=0,
        max_bin_len=0,
        max_ext_len=0,
        max_str_len=_MAX_REPLICA_BYTES,
    )
    walker.feed(data[1:])
    try:
        walker.skip()
        end = 1 + walker.tell()
        pairs = msgpack.unpackb(
            data[1:end],
            raw=False,
            strict_map_key=True,
            max_array_len=MAX_LIFE_SLOTS,
            max_map_len=0,
            max_bin_len=0,
            max_ext_len=0,
            max_str_len=_MAX_REPLICA_BYTES,
        )
    except Exception as exc:  # msgpack raises many kinds; each is a bad record
        raise DecodeError(f"malformed life record: {type(exc).__name__}") from None
    return _checked(pairs), data[end:]


def _checked(pairs: object) -> Record:
    if type(pairs) is not list:
        raise DecodeError("malformed life record: not an array")
    record: Record = {}
    previous = ""
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2:
            raise DecodeError("malformed life record: a slot is not a [replica, slot] pair")
        replica, slot = pair
        if type(replica) is not str or not replica or replica <= previous:
            raise DecodeError("malformed life record: replicas must be non-empty, sorted, unique")
        if type(slot) is not int or not 2 <= slot <= MAX_SLOT:
            raise DecodeError(f"malformed life record: slot of {replica!r} out of range")
        record[replica] = slot
        previous = replica
    return record
