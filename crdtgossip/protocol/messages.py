"""The wire messages of the gossip protocol, their frames and their defensive decoder.

A *frame* is what one datagram or one stream frame carries::

    +---------+--------------------------------------------------+
    | version | msgpack array: [sender node id, message, ...]    |
    | 1 byte  |                                                  |
    +---------+--------------------------------------------------+

Each message is a msgpack array whose first item is its :class:`Kind`; several
messages share a frame, which is how deltas and membership news ride on pings and
acks (SWIM's piggybacking). Messages are packed once, when they are queued, so a frame
is assembled by concatenation and its size is known exactly before it is built.

Everything that arrives from the network goes through :func:`decode_frame`, which
either returns well-formed messages or raises :class:`DecodeError`: hard limits on the
frame size and on every string, byte string and array (msgpack refuses to allocate
past them), no maps, no extension types, and an exact schema per message kind, so no
other exception can escape and no malformed message reaches the protocol.

The messages live by concern: :mod:`~crdtgossip.protocol.member_messages` (SWIM and
push-pull member tables), :mod:`~crdtgossip.protocol.data_messages` (deltas, states,
quorum requests), :mod:`~crdtgossip.protocol.sync_messages` (anti-entropy),
:mod:`~crdtgossip.protocol.delivery_messages` (acknowledged delivery) and
:mod:`~crdtgossip.protocol.rollback_messages` (the rollback check), on the limits and
field checks of :mod:`~crdtgossip.protocol.wire`. This module frames them and
re-exports every name, so ``from crdtgossip.protocol.messages import Ping`` works.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

import msgpack

from crdtgossip._codec.limits import Limits
from crdtgossip._codec.reader import UNCHECKED_INPUT, check_complete
from crdtgossip.errors import DecodeError
from crdtgossip.protocol import (
    data_messages,
    delivery_messages,
    member_messages,
    rollback_messages,
    sync_messages,
)
from crdtgossip.protocol.data_messages import (
    DataMessage,
    Delta,
    ReadReply,
    ReadRequest,
    State,
    WriteAck,
    WriteRequest,
)
from crdtgossip.protocol.delivery_messages import DeliveryMessage, DeltaAck, DeltaInterval
from crdtgossip.protocol.member_messages import (
    ALIVE_CACHE_SIZE,
    Ack,
    Alive,
    AliveIndex,
    Dead,
    IdClaim,
    IdInUse,
    Left,
    MemberMessage,
    MemberRecord,
    Members,
    Nack,
    Ping,
    PingReq,
    Suspect,
    decode_alive,
    lookup_alive,
    member_slot,
    record_row,
)
from crdtgossip.protocol.rollback_messages import MarksQuery, MarksReport, RollbackMessage
from crdtgossip.protocol.sync_messages import (
    MAX_BITS_SHIFT,
    MAX_RANGE_SHIFT,
    RANGE_CHILDREN,
    SUM_SIZE,
    Diff,
    RangeNode,
    StateChunk,
    Sync,
    SyncMessage,
    TreeNode,
)
from crdtgossip.protocol.wire import (
    DIGEST_SIZE,
    FRAME_VERSION,
    MAX_ADDRESS_BYTES,
    MAX_ARRAY_LEN,
    MAX_KEY_BYTES,
    MAX_NODE_ID_BYTES,
    MAX_TREE_DEPTH,
    SEAL_OVERHEAD,
    TREE_FANOUT,
    Kind,
    array,
    fail,
    node_id,
)

__all__ = [
    "DIGEST_SIZE",
    "FRAME_VERSION",
    "MAX_ADDRESS_BYTES",
    "MAX_ARRAY_LEN",
    "MAX_BITS_SHIFT",
    "MAX_KEY_BYTES",
    "MAX_NODE_ID_BYTES",
    "MAX_RANGE_SHIFT",
    "MAX_TREE_DEPTH",
    "RANGE_CHILDREN",
    "SEAL_OVERHEAD",
    "SMALL_FRAME",
    "SMALL_FRAME_ITEMS",
    "SUM_SIZE",
    "TREE_FANOUT",
    "Ack",
    "Alive",
    "Dead",
    "Delta",
    "DeltaAck",
    "DeltaInterval",
    "Diff",
    "Frame",
    "IdClaim",
    "IdInUse",
    "Kind",
    "Left",
    "MarksQuery",
    "MarksReport",
    "MemberRecord",
    "Members",
    "Message",
    "Nack",
    "Ping",
    "PingReq",
    "RangeNode",
    "ReadReply",
    "ReadRequest",
    "State",
    "StateChunk",
    "Suspect",
    "Sync",
    "TreeNode",
    "WriteAck",
    "WriteRequest",
    "decode_frame",
    "encode_frame",
    "encode_message",
    "frame_header",
    "frame_overhead",
]

_PACKER = msgpack.Packer(use_bin_type=True)

Message: TypeAlias = MemberMessage | DataMessage | SyncMessage | DeliveryMessage | RollbackMessage


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame: who sent it and its messages, in order.

    Attributes:
        sender: the sending node's id.
        messages: the messages, in order (less those left out as ``known``).
        known: alive rumors that passed every check but were left out of ``messages``
            because the receiver already knew them (see :func:`decode_frame`).
    """

    sender: str
    messages: tuple[Message, ...]
    known: int = 0


# --- encoding ---------------------------------------------------------------------

_MEMBER_TYPES = (Ping, PingReq, Ack, Nack, Alive, Suspect, Dead, Left, Members, IdClaim, IdInUse)
_SYNC_TYPES = (Sync, Diff, StateChunk)
_DELIVERY_TYPES = (DeltaInterval, DeltaAck)
_ROLLBACK_TYPES = (MarksQuery, MarksReport)


def _wire(message: Message) -> list[object]:
    """The msgpack-ready array of one message."""
    if isinstance(message, _MEMBER_TYPES):
        return member_messages.to_wire(message)
    if isinstance(message, _SYNC_TYPES):
        return sync_messages.to_wire(message)
    if isinstance(message, _DELIVERY_TYPES):
        return delivery_messages.to_wire(message)
    if isinstance(message, _ROLLBACK_TYPES):
        return rollback_messages.to_wire(message)
    return data_messages.to_wire(message)


# Packed alive rumors by their fields: each member that learns of a member packs the
# rumor to pass it on, so a simulator's N engines would hold N equal copies of each
# of N rumors in their queues (N² in all) where one of each serves.
_alive_packed: dict[tuple[str, str, int], bytes] = {}


def encode_message(message: Message) -> bytes:
    """Pack one message.

    Args:
        message: any protocol message.

    Returns:
        Its msgpack bytes, ready to be concatenated into a frame (an alive rumor's
        may be the very bytes object of an earlier equal one).
    """
    if type(message) is Alive:
        fields = (message.node_id, message.address, message.incarnation)
        known = _alive_packed.get(fields)
        if known is None:
            known = msgpack.packb([Kind.ALIVE, *fields], use_bin_type=True)
            if len(_alive_packed) >= ALIVE_CACHE_SIZE:
                _alive_packed.clear()
            _alive_packed[fields] = known
        return known
    if type(message) is Members:
        return _encode_members(message)
    packed: bytes = msgpack.packb(_wire(message), use_bin_type=True)
    return packed


PACKED_ROWS_SIZE: Final = 1 << 16
"""Most packed member-table rows kept for reuse (see :func:`_encode_members`)."""

# Packed rows by the id of their record, with the record (so the id cannot be reused
# while its entry is kept): records are shared per distinct row (member_record), and
# every push-pull packs N of them, most packed before.
_packed_rows: dict[int, tuple[MemberRecord, bytes]] = {}
_FOUR_ITEMS: Final[bytes] = _PACKER.pack_array_header(4)


def _encode_members(message: Members) -> bytes:
    """Pack a member table: the bytes ``msgpack.packb(_wire(message))`` gives, from the
    rows packed before."""
    rows: list[bytes] = []
    append = rows.append
    for record in message.records:
        known = _packed_rows.get(id(record))
        if known is not None and known[0] is record:
            append(known[1])
            continue
        row: bytes = msgpack.packb(record_row(record), use_bin_type=True)
        if len(_packed_rows) >= PACKED_ROWS_SIZE:
            _packed_rows.clear()
        _packed_rows[id(record)] = (record, row)
        append(row)
    # [kind, reply, join] packs as a 3-item array; the message is those three items and
    # the rows under a 4-item header (both headers one byte).
    head: bytes = msgpack.packb([Kind.MEMBERS, message.reply, message.join], use_bin_type=True)
    rows_header: bytes = _PACKER.pack_array_header(len(rows))
    return _FOUR_ITEMS + head[1:] + rows_header + b"".join(rows)


def frame_header(sender: str, count: int) -> bytes:
    """The bytes that precede ``count`` packed messages in a frame.

    Args:
        sender: the sending node's id.
        count: how many messages follow.

    Returns:
        The version byte, the array header and the packed sender id.
    """
    array_header: bytes = _PACKER.pack_array_header(count + 1)
    # The shared packer, not packb (which makes a packer and its buffer each time):
    # a node id is small, so the buffer it keeps stays small.
    sender_packed: bytes = _PACKER.pack(sender)
    return bytes((FRAME_VERSION,)) + array_header + sender_packed


def frame_overhead(sender: str) -> int:
    """An upper bound of the bytes a frame adds around its messages.

    Args:
        sender: the sending node's id.

    Returns:
        The header size with the largest possible array header.
    """
    return len(frame_header(sender, MAX_ARRAY_LEN))


def encode_frame(sender: str, packed_messages: list[bytes]) -> bytes:
    """Assemble a frame from messages packed by :func:`encode_message`.

    Args:
        sender: the sending node's id.
        packed_messages: the messages, in order.

    Returns:
        The frame.
    """
    return frame_header(sender, len(packed_messages)) + b"".join(packed_messages)


# --- decoding ---------------------------------------------------------------------

_Decoder: TypeAlias = Callable[[list[object]], Message]

#: Per kind: the number of fields after the kind (the shape check before the field
#: checks), and how to build the message from them.
_DECODERS: dict[Kind, tuple[int, _Decoder]] = {
    **member_messages.DECODERS,
    **data_messages.DECODERS,
    **sync_messages.DECODERS,
    **delivery_messages.DECODERS,
    **rollback_messages.DECODERS,
}

#: The same by the kind's number (the first item of a message): the kind, the number
#: of items the message has (its kind included) and the decoder.
_BY_CODE: dict[int, tuple[Kind, int, _Decoder]] = {
    kind.value: (kind, 1 + count, decoder) for kind, (count, decoder) in _DECODERS.items()
}


_ALIVE_CODE = Kind.ALIVE.value


def _decode_message(value: object) -> Message:
    if type(value) is not list:
        raise fail("message must be an array")
    if not value or type(value[0]) is not int:
        raise fail("a message starts with its kind")
    if value[0] == _ALIVE_CODE and len(value) == 4:
        return decode_alive(value[1], value[2], value[3])  # no slice
    entry = _BY_CODE.get(value[0])
    if entry is None:
        raise fail(f"unknown message kind {value[0]}")
    kind, length, decoder = entry
    if len(value) != length:
        raise fail(f"{kind.name} needs {length - 1} fields")
    return decoder(value[1:])


#: The longest address :func:`~crdtgossip.protocol.wire.address` passes without encoding
#: it (a code point is at most 4 bytes of UTF-8), for the decoder's loop to check inline.
_SHORT_ADDRESS: Final = MAX_ADDRESS_BYTES // 4


def _decode_messages(
    values: list[object], known_alive: AliveIndex | None
) -> tuple[tuple[Message, ...], int]:
    """Decode the messages of a frame (:func:`_decode_message` of each), less the alive
    rumors ``known_alive`` holds; returns the messages and how many were left out (see
    :func:`decode_frame`)."""
    # Run for every message received (tens of millions in a simulated join of 1,000
    # nodes), most of them alive rumors the receiver knows: checked field by field and
    # dropped, with no call and no message object. Other alive rumors decoded before
    # are found by their array, equal to one that passed the checks.
    messages: list[Message] = []
    append, lookup, alive_code, slot_of = messages.append, lookup_alive, _ALIVE_CODE, member_slot
    levels = bytearray() if known_alive is None else known_alive.levels
    slots = len(levels)
    try:
        for value in values:
            if type(value) is list and len(value) == 4:
                kind, member, member_address, incarnation = value
                # The int 5 itself (msgpack yields the interpreter's small int; were
                # it another object the full check would take it), not 5.0.
                if kind is alive_code:
                    # A slot's id passed node_id before; then decode_alive's checks (an
                    # int from 0, not a bool; an address of 1 to _SHORT_ADDRESS code
                    # points, a longer one taking the full check).
                    slot = slot_of(member, slots)  # past the levels if it has none
                    if (
                        slot < slots
                        and type(incarnation) is int
                        and -1 < incarnation < levels[slot]
                        and type(member_address) is str
                        and 0 < len(member_address) <= _SHORT_ADDRESS
                    ):
                        continue  # left out
                    alive = lookup(tuple(value))
                    if alive is not None and type(incarnation) is int:
                        append(alive)
                        continue
            append(_decode_message(value))
    except TypeError:
        # An unhashable field (a malformed rumor): the careful path says what is wrong.
        return tuple(map(_decode_message, values)), 0
    return tuple(messages), len(values) - len(messages)


SMALL_FRAME: Final = 1400
"""Frame bodies up to this many bytes (a datagram's at the default ``max_datagram``)
are first unpacked with no array longer than :data:`SMALL_FRAME_ITEMS` and without the
walk of ``check_complete``, whose 41 KB ``msgpack.Unpacker``, zeroed on every frame,
evicted as much of the cache. Their headers can make room for at most 1400 / 3 x 128
slots x 8 bytes, 478 KB, until the try fails and the checked path decides. A frame the
try takes, the checked path takes the same (its bounds are only tighter)."""

SMALL_FRAME_ITEMS: Final = 128
"""The most items of any array in the first try of a small frame (see
:data:`SMALL_FRAME`): a datagram carries some 70 alive rumors, or fewer larger
messages, each an array of a few fields."""


def _unpack(body: bytes, most_items: int) -> object:
    """The msgpack object of a frame's body, no array longer than ``most_items``."""
    # unpackb rather than an Unpacker: an Unpacker is a 41 KB object, zeroed when
    # made, which on every frame evicted as much of the cache.
    return msgpack.unpackb(
        body,
        raw=False,
        use_list=True,
        strict_map_key=True,
        max_str_len=max(MAX_KEY_BYTES, MAX_ADDRESS_BYTES),
        max_bin_len=len(body),
        max_array_len=most_items,
        max_map_len=0,
        max_ext_len=0,
    )


def _unpack_checked(body: bytes, most_items: int) -> object:
    """:func:`_unpack` of a body walked by ``check_complete`` first if it is past
    ``UNCHECKED_INPUT``; every failure a :class:`DecodeError`."""
    try:
        if len(body) > UNCHECKED_INPUT:
            check_complete(body, Limits(max_str_len=len(body)), most_items)
        return _unpack(body, most_items)
    except DecodeError:
        raise
    except msgpack.ExtraData:
        raise DecodeError("malformed frame: bytes after the message array") from None
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as error:
        raise DecodeError(f"malformed frame: {type(error).__name__}") from None


def decode_frame(data: bytes, max_frame: int, *, known_alive: AliveIndex | None = None) -> Frame:
    """Decode and validate a frame received from the network.

    Args:
        data: the frame, after the keyring (if any) opened it.
        max_frame: the largest frame accepted, in bytes.
        known_alive: the receiver's members known alive, and at which incarnation
            (:attr:`Membership.alive_index
            <crdtgossip.protocol.membership.Membership.alive_index>`). An alive rumor
            about one of them at that incarnation or an older one, which
            :meth:`~crdtgossip.protocol.membership.Membership.apply` ignores, is
            checked like any other but only counted (``Frame.known``), not returned.
            The receiver would still ignore it after the frame's earlier messages:
            they can only raise a row's incarnation, and an alive rumor no newer
            than a row is ignored whatever the row's status (alive wins only with a
            higher incarnation, see :mod:`~crdtgossip.protocol.states`).

    Returns:
        The sender's node id and the messages.

    Raises:
        DecodeError: the frame is oversized, truncated, of another version, not
            msgpack, or any message in it breaks its schema. Nothing else is raised.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"a frame must be bytes, not {type(data).__name__}")
    if len(data) > max_frame:
        raise DecodeError(f"frame of {len(data)} bytes is larger than {max_frame}")
    if len(data) < 2 or data[0] != FRAME_VERSION:
        raise DecodeError("not a frame of a known version")
    body = bytes(data[1:])
    # No array may announce more items than the body has bytes, and a body past a few
    # hundred bytes is first walked without building anything (check_complete), so a
    # frame of nested maximum-length array headers allocates what its bytes hold, not
    # what its headers claim (a 1.4 KB frame cost 36 MiB before); except that a
    # datagram's body is first tried under tighter bounds (see SMALL_FRAME).
    most_items = min(MAX_ARRAY_LEN, len(body))
    if UNCHECKED_INPUT < len(body) <= SMALL_FRAME:
        try:
            decoded = _unpack(body, min(most_items, SMALL_FRAME_ITEMS))
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException):
            decoded = _unpack_checked(body, most_items)  # decides, and says why
    else:
        decoded = _unpack_checked(body, most_items)
    items = array(decoded, None, "frame")
    if not items:
        raise fail("no sender")
    sender = node_id(items[0], "sender")
    messages, known = _decode_messages(items[1:], known_alive)
    return Frame(sender, messages, known)
