"""Whether a top-level key lives: the causal record behind a cluster-wide delete.

A delete must remove exactly the writes its deleter saw, and let a write it did not see
(a concurrent one) win, as :class:`~crdtgossip.ORMap`'s update-wins rule does for a
map's keys. So each key carries a *life record*: per replica that wrote it, a pair
``(newest, deleted)``:

* ``newest``: the number of that replica's newest write to the key seen (its writes to
  a key are numbered 1, 2, ...; each is in the replica's state when it makes the next);
* ``deleted``: the newest of its writes a delete has seen: writes ``1 .. deleted`` are
  removed, ``deleted + 1 .. newest`` live.

Records join by the maximum of each number: a lattice (commutative, associative,
idempotent), so records may arrive in any order, twice, or by any path. A key is
*present* while some replica has a live write (``newest > deleted``); a delete sets
``deleted = newest`` for every replica it knows. A payload's record says what its
content holds: a delta holds its writer's write ``newest``, a state its holder's writes
up to ``newest`` of each replica.

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

This module is pure bookkeeping: plain ``dict[str, tuple[int, int]]`` records, and their canonical
bytes in front of a payload (:func:`wrap`, :func:`unwrap`), whose decoding raises only
:class:`~crdtgossip.DecodeError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final, TypeAlias, TypeVar

import msgpack

from crdtgossip._codec.limits import Limits
from crdtgossip._codec.reader import UNCHECKED_INPUT, check_complete
from crdtgossip.errors import DecodeError, OperationError

__all__ = [
    "LIFE_MARK",
    "MAX_LIFE_SLOTS",
    "MAX_WRITES",
    "Record",
    "deleted",
    "fold",
    "is_wrapped",
    "join_into",
    "join_life",
    "live_in",
    "of_write",
    "packed_replica",
    "present",
    "settle",
    "unwrap",
    "wrap",
    "wrap_write",
    "wrote",
]

Record: TypeAlias = dict[str, tuple[int, int]]
"""A life record: replica id -> ``(newest write, newest write deleted)``."""

LIFE_MARK: Final = b"\xc1"
"""First byte of a payload that carries a life record. msgpack never uses 0xc1, so no
encoding of a data type starts with it: a payload with a record and one without are
told apart by their first byte, and a payload without one decodes as before."""

MAX_LIFE_SLOTS: Final = 4096
"""Most replicas one record may name on the wire: one per replica that wrote the key. A
record names the writers its key's state names anyway; the bound keeps a hostile
payload from making a receiver build a table of millions."""

MAX_WRITES: Final = (1 << 64) - 1
"""Most writes of one replica to one key (an unsigned 64-bit int on the wire)."""

_MAX_REPLICA_BYTES: Final = 1024

# One packer for every record: making one costs more than packing a small record. Its
# pack() runs in C without releasing the GIL, so threads (a storage fold) may share it.
_PACKER: Final = msgpack.Packer(use_bin_type=True)


def wrote(record: Record, replica: str) -> tuple[int, int]:
    """Record a new write of ``replica`` in ``record`` (in place); its new pair.

    Raises:
        OperationError: the replica has made :data:`MAX_WRITES` writes to the key.
    """
    newest, dropped = record.get(replica, (0, 0))
    if newest >= MAX_WRITES:
        raise OperationError(f"replica {replica!r} has no write left for this key")
    pair = record[replica] = (newest + 1, dropped)
    return pair


def of_write(record: Mapping[str, tuple[int, int]], replica: str) -> Record:
    """The record a delta of ``replica``'s newest write carries: that write, and every
    delete ``record`` knows of (as writes deleted, claiming no content). A write made
    after its writer saw a delete so tells every receiver of the delete with it: a
    member that had not heard of it drops the old content before merging the write."""
    part: Record = {replica: record[replica]}
    for other, (_, dropped) in record.items():
        if dropped and other != replica:
            part[other] = (dropped, dropped)
    return part


def deleted(record: Mapping[str, tuple[int, int]]) -> Record:
    """The record of a delete that saw ``record``: every write it names deleted."""
    return {replica: (newest, newest) for replica, (newest, _) in record.items()}


def present(record: Mapping[str, tuple[int, int]]) -> bool:
    """Whether a write named in ``record`` is live."""
    return any(newest > dropped for newest, dropped in record.values())


def join_into(record: Record, other: Mapping[str, tuple[int, int]]) -> bool:
    """Join ``other`` into ``record`` (in place); whether ``record`` changed."""
    changed = False
    for replica, pair in other.items():
        mine = record.get(replica)
        if mine is None:
            record[replica] = pair
            changed = True
        elif mine != pair:
            joined = (max(mine[0], pair[0]), max(mine[1], pair[1]))
            if joined != mine:
                record[replica] = joined
                changed = True
    return changed


def live_in(part: Mapping[str, tuple[int, int]], joined: Mapping[str, tuple[int, int]]) -> bool:
    """Whether content whose record is ``part`` holds a write not deleted in ``joined``
    (a record at least as large as ``part``)."""
    return any(newest > joined[replica][1] for replica, (newest, _) in part.items())


def settle(
    local: Record | None, incoming: Mapping[str, tuple[int, int]] | None
) -> tuple[bool, bool]:
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
    keep, take, _ = join_life(local, incoming)
    return keep, take


def join_life(
    local: Record, incoming: Mapping[str, tuple[int, int]] | None
) -> tuple[bool, bool, bool]:
    """:func:`settle` for a key with a record: ``(keep_local, take, grew)``, ``grew``
    telling whether ``local`` changed."""
    if incoming is None:
        return True, present(local), False
    # The local content stays if it holds a write no delete has seen, judged by the
    # local record as it was (it names what the local content holds): decided before
    # the join, so no copy of the record is needed.
    keep = not local or any(
        newest > max(dropped, incoming.get(replica, (0, 0))[1])
        for replica, (newest, dropped) in local.items()
    )
    grew = join_into(local, incoming)
    return keep, live_in(incoming, local), grew


_S = TypeVar("_S")


def fold(
    rows: Iterable[bytes], join: Callable[[_S | None, bytes], _S]
) -> tuple[_S | None, Record | None]:
    """Join a key's stored rows in order, as the engine merged them: each row's record
    settled against the key's (:func:`join_life`), its content joined by ``join(state,
    content)`` only when live, and the content so far dropped when its writes all are
    deleted. Returns the state (None: nothing live) and the key's record (None: no row
    had one).

    Raises:
        DecodeError: a row's record is malformed (``join`` raises what it raises).
    """
    state: _S | None = None
    life: Record | None = None
    for row in rows:
        record, content = unwrap(row)
        if life is None:
            keep, take = True, record is None or present(record)
            if record is not None:
                life = dict(record)
        else:
            keep, take, _ = join_life(life, record)
        if not keep:
            state = None
        if take and content:
            state = join(state, content)
    return state, life


def is_wrapped(payload: bytes) -> bool:
    """Whether ``payload`` carries a life record (see :data:`LIFE_MARK`)."""
    return payload[:1] == LIFE_MARK


def wrap(record: Mapping[str, tuple[int, int]], payload: bytes) -> bytes:
    """``payload`` (an encoded state or delta) with ``record`` in front, canonical:
    the mark, the record's length in 4 bytes (big-endian), the msgpack array of
    ``[replica, newest, deleted]`` in replica order, then the payload's own bytes."""
    if len(record) == 1:  # a write's own entry, the common case: no sort
        ((replica, (newest, dropped)),) = record.items()
        entries: list[list[object]] = [[replica, newest, dropped]]
    else:
        entries = [[replica, *record[replica]] for replica in sorted(record)]
    packed: bytes = _PACKER.pack(entries)
    return b"".join((LIFE_MARK, len(packed).to_bytes(4, "big"), packed, payload))


def packed_replica(replica: str) -> bytes:
    """The msgpack form of a replica id, for :func:`wrap_write` (made once)."""
    packed: bytes = _PACKER.pack(replica)
    return packed


def wrap_write(replica: bytes, newest: int, dropped: int, payload: bytes) -> bytes:
    """:func:`wrap` of the one-entry record ``{replica: (newest, dropped)}``, the
    record of most writes, built without a packer call: ``replica`` is
    :func:`packed_replica` of the id; the bytes are the same as :func:`wrap`'s."""
    body = b"\x91\x93" + replica + _uint(newest) + _uint(dropped)
    return b"".join((LIFE_MARK, len(body).to_bytes(4, "big"), body, payload))


def _uint(value: int) -> bytes:
    """The shortest msgpack form of a non-negative int below 2**64."""
    if value < 0x80:
        return _FIXINTS[value]
    if value < 0x100:
        return b"\xcc" + value.to_bytes(1, "big")
    if value < 0x10000:
        return b"\xcd" + value.to_bytes(2, "big")
    if value < 0x100000000:
        return b"\xce" + value.to_bytes(4, "big")
    return b"\xcf" + value.to_bytes(8, "big")


_FIXINTS: Final = tuple(bytes((value,)) for value in range(0x80))


def unwrap(data: bytes) -> tuple[Record | None, bytes]:
    """The record and the payload of ``data``; ``(None, data)`` when it carries none.

    Only the canonical form is taken (replicas sorted and unique, ``1 <= newest <=``
    :data:`MAX_WRITES`, ``0 <= deleted <= newest``, at most :data:`MAX_LIFE_SLOTS`
    replicas, shortest msgpack forms).

    Raises:
        DecodeError: a malformed record; nothing else, whatever the bytes.
    """
    if data[:1] != LIFE_MARK:
        return None, data
    end = 5 + int.from_bytes(data[1:5], "big")
    if len(data) < 5 or end > len(data):
        raise DecodeError("malformed life record: truncated")
    body = data[5:end]
    single = _single_entry(body)
    if single is not None:
        return single, data[end:]
    return _read_entries(body), data[end:]


def _single_entry(body: bytes) -> Record | None:
    """The record of ``body`` when it is one entry with a replica id of at most 31
    bytes, read without msgpack (most payloads carry such a record); ``None``: any
    other body, for :func:`_read_entries` to read or refuse (so nothing is taken
    here that it would refuse).
    """
    if len(body) < 6 or body[0] != 0x91 or body[1] != 0x93 or not 0xA1 <= body[2] <= 0xBF:
        return None
    stop = 3 + (body[2] & 0x1F)
    newest, at = _read_uint(body, stop)
    dropped, at = _read_uint(body, at)
    if at != len(body) or not newest >= 1 or not 0 <= dropped <= newest:
        return None
    try:
        replica = body[3:stop].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return {replica: (newest, dropped)}


def _read_uint(body: bytes, at: int) -> tuple[int, int]:
    """The unsigned int in its shortest msgpack form at ``at``, and where it ends;
    ``(-1, -1)`` when there is none there."""
    if at >= len(body):
        return -1, -1
    head = body[at]
    if head < 0x80:
        return head, at + 1
    size = _UINT_SIZES.get(head)
    if size is None or at + 1 + size > len(body):
        return -1, -1
    value = int.from_bytes(body[at + 1 : at + 1 + size], "big")
    if value < (0x80 if size == 1 else 1 << (4 * size)):
        return -1, -1  # not the shortest form
    return value, at + 1 + size


_UINT_SIZES: Final = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}


def _read_entries(body: bytes) -> Record:
    """The record of any body, checked (see :func:`unwrap`)."""
    try:
        if len(body) > UNCHECKED_INPUT:
            # Headers announcing more items than follow cost nothing: walked first,
            # as the codec walks its own input.
            check_complete(body, Limits(max_str_len=_MAX_REPLICA_BYTES), MAX_LIFE_SLOTS)
        entries = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            max_array_len=MAX_LIFE_SLOTS,
            max_map_len=0,
            max_bin_len=0,
            max_ext_len=0,
            max_str_len=_MAX_REPLICA_BYTES,
        )
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises many kinds; each is a bad record
        raise DecodeError(f"malformed life record: {type(exc).__name__}") from None
    record = _checked(entries)
    if _PACKER.pack(entries) != body:
        raise DecodeError("malformed life record: not in its canonical (shortest) form")
    return record


def _checked(pairs: object) -> Record:
    if type(pairs) is not list:
        raise DecodeError("malformed life record: not an array")
    record: Record = {}
    previous = ""
    for entry in pairs:
        if type(entry) is not list or len(entry) != 3:
            raise DecodeError("malformed life record: not a [replica, newest, deleted] entry")
        replica, newest, dropped = entry
        if type(replica) is not str or not replica or replica <= previous:
            raise DecodeError("malformed life record: replicas must be non-empty, sorted, unique")
        if type(newest) is not int or not 1 <= newest <= MAX_WRITES:
            raise DecodeError(f"malformed life record: newest write of {replica!r} out of range")
        if type(dropped) is not int or not 0 <= dropped <= newest:
            raise DecodeError(f"malformed life record: deleted write of {replica!r} out of range")
        record[replica] = (newest, dropped)
        previous = replica
    return record
