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
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

import msgpack

from crdtgossip.errors import DecodeError
from crdtgossip.protocol.states import STATUS_CODES, Status

__all__ = [
    "DIGEST_SIZE",
    "FRAME_VERSION",
    "MAX_ADDRESS_BYTES",
    "MAX_ARRAY_LEN",
    "MAX_KEY_BYTES",
    "MAX_NODE_ID_BYTES",
    "MAX_TREE_DEPTH",
    "SEAL_OVERHEAD",
    "TREE_FANOUT",
    "Ack",
    "Alive",
    "Dead",
    "Delta",
    "Frame",
    "Kind",
    "Left",
    "MemberRecord",
    "Members",
    "Message",
    "Nack",
    "Ping",
    "PingReq",
    "ReadReply",
    "ReadRequest",
    "State",
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

FRAME_VERSION: Final = 1
"""First byte of every frame. A frame of another version is refused (a DecodeError),
so a future format can be rolled out with nodes telling old frames from new."""

SEAL_OVERHEAD: Final = 33
"""Bytes the runtime's keyring adds to a frame (1 version + 4 key id + 12 nonce + 16
GCM tag; equal to ``crdtgossip.security.FRAME_OVERHEAD``). The engine keeps datagrams
this much under ``max_datagram`` so a sealed frame still fits, as memberlist subtracts
its encryption overhead from ``UDPBufferSize``."""

MAX_NODE_ID_BYTES: Final = 128
"""Longest node id in UTF-8 bytes. Node ids ride on every frame, so they stay short;
Consul node names are DNS labels of at most 63 characters."""

MAX_ADDRESS_BYTES: Final = 300
"""Longest address in UTF-8 bytes: a 253-character DNS name, brackets and a port;
the same bound as ``crdtgossip.transport._address.MAX_ADDRESS_LENGTH``."""

MAX_KEY_BYTES: Final = 1024
"""Longest data key in UTF-8 bytes: room for hierarchical names while several deltas
still share one datagram (Consul caps KV keys at 512 bytes of path in its UI; etcd
accepts longer keys but recommends short ones)."""

MAX_ARRAY_LEN: Final = 1 << 17
"""Most items in any one msgpack array: messages in a frame, members in a table,
entries of an anti-entropy exchange. A frame is split before it reaches this."""

DIGEST_SIZE: Final = 16
"""Bytes of a key digest and of a hash-tree node hash (BLAKE2b-128): collisions are
out of reach for anti-entropy between trusted members (Dynamo used 160-bit SHA-1)."""

TREE_FANOUT: Final = 16
"""Children of each hash-tree node: one hexadecimal digit of the key hash per level."""

MAX_TREE_DEPTH: Final = 16
"""Deepest hash-tree level: 16 hex digits, the 64-bit key position."""

_MAX_SEQ: Final = (1 << 64) - 1
"""Largest sequence or incarnation number: msgpack's unsigned 64-bit range."""

_PACKER = msgpack.Packer(use_bin_type=True)


class Kind(enum.IntEnum):
    """The first item of every message: what it is."""

    PING = 1
    PING_REQ = 2
    ACK = 3
    NACK = 4
    ALIVE = 5
    SUSPECT = 6
    DEAD = 7
    LEFT = 8
    DELTA = 9
    STATE = 10
    MEMBERS = 11
    SYNC = 12
    WRITE_REQUEST = 13
    WRITE_ACK = 14
    READ_REQUEST = 15
    READ_REPLY = 16


@dataclass(frozen=True, slots=True)
class Ping:
    """Are you alive? Answered by an :class:`Ack` with the same ``seq``.

    Attributes:
        seq: chosen by the prober, matched against the ack.
        target: the node id the prober means, so a node that took over the address of
            another does not answer for it.
    """

    seq: int
    target: str


@dataclass(frozen=True, slots=True)
class PingReq:
    """Please ping ``target`` for me and forward its ack (SWIM's indirect probe).

    Attributes:
        seq: the requester's sequence number, echoed in the forwarded ack or nack.
        target: the node id to ping.
        target_address: where to ping it.
    """

    seq: int
    target: str
    target_address: str


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to a ping (direct, or forwarded by an indirect prober)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Nack:
    """An indirect prober could not reach the target in time (Lifeguard).

    It tells the requester that the prober itself is reachable, so a missing nack
    points at the requester's own health rather than at the target.
    """

    seq: int


@dataclass(frozen=True, slots=True)
class Alive:
    """Member ``node_id`` is alive at ``address`` with ``incarnation``."""

    node_id: str
    address: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class Suspect:
    """``accuser`` suspects member ``node_id`` at ``incarnation``."""

    node_id: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class Dead:
    """``accuser`` declares member ``node_id`` dead at ``incarnation``."""

    node_id: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class Left:
    """Member ``node_id`` leaves the cluster gracefully at ``incarnation``."""

    node_id: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class Delta:
    """A delta of ``key``, spread by gossip and relayed by its receivers.

    Attributes:
        key: the data key.
        payload: ``crdtgossip.codec.encode`` of the delta.
    """

    key: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class State:
    """The state of ``key``, sent by anti-entropy; merged by the receiver, not relayed.

    Attributes:
        key: the data key.
        payload: ``crdtgossip.codec.encode`` of the state.
    """

    key: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One row of a member table exchanged by push-pull."""

    node_id: str
    address: str
    incarnation: int
    status: Status


@dataclass(frozen=True, slots=True)
class Members:
    """The sender's whole member table (the membership half of a push-pull).

    Attributes:
        records: every member the sender knows, itself included.
        reply: the receiver should answer with its own table.
        join: the sender is joining: the receiver also sends its full data state and
            asks for the sender's.
    """

    records: tuple[MemberRecord, ...]
    reply: bool
    join: bool


@dataclass(frozen=True, slots=True)
class TreeNode:
    """The sender's view of one node of the anti-entropy hash tree.

    The node at ``depth`` d and ``prefix`` p covers the keys whose 64-bit position
    starts with the d hexadecimal digits of p. Exactly one of ``children`` and
    ``entries`` is set.

    Attributes:
        depth: 0 (the root) to :data:`MAX_TREE_DEPTH`.
        prefix: below ``TREE_FANOUT ** depth``.
        children: the :data:`TREE_FANOUT` child hashes, :data:`DIGEST_SIZE` bytes each,
            all zero for an empty child.
        entries: ``(key, digest)`` of every key under the node, when there are few.
    """

    depth: int
    prefix: int
    children: bytes | None
    entries: tuple[tuple[str, bytes], ...] | None


@dataclass(frozen=True, slots=True)
class Sync:
    """One step of an anti-entropy exchange (the data half of a push-pull).

    Attributes:
        nodes: tree nodes whose hashes differ, for the receiver to compare.
        want_keys: keys whose state the sender asks for.
        want_prefixes: ``(depth, prefix)`` subtrees the sender has nothing of; the
            receiver sends the state of every key under them.
    """

    nodes: tuple[TreeNode, ...]
    want_keys: tuple[str, ...]
    want_prefixes: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """Please merge this delta of ``key`` and answer with a :class:`WriteAck`.

    Sent by the coordinator of a write with a quorum consistency level; the receiver
    merges it (and, with durable storage, persists it) before acknowledging.

    Attributes:
        request_id: chosen by the coordinator, echoed in the ack.
        key: the data key.
        payload: ``crdtgossip.codec.encode`` of the delta.
    """

    request_id: int
    key: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class WriteAck:
    """The delta of write ``request_id`` is merged here."""

    request_id: int


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Please send me your state of ``key`` in a :class:`ReadReply`."""

    request_id: int
    key: str


@dataclass(frozen=True, slots=True)
class ReadReply:
    """The answer to a :class:`ReadRequest`.

    Attributes:
        request_id: the request's id.
        key: the data key.
        payload: ``crdtgossip.codec.encode`` of the sender's state, or empty bytes when
            the sender has no state for the key.
    """

    request_id: int
    key: str
    payload: bytes


Message: TypeAlias = (
    Ping
    | PingReq
    | Ack
    | Nack
    | Alive
    | Suspect
    | Dead
    | Left
    | Delta
    | State
    | Members
    | Sync
    | WriteRequest
    | WriteAck
    | ReadRequest
    | ReadReply
)


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame: who sent it and its messages, in order."""

    sender: str
    messages: tuple[Message, ...]


# --- encoding ---------------------------------------------------------------------

_WireItem: TypeAlias = object


def _wire(message: Message) -> list[_WireItem]:
    """The msgpack-ready array of one message."""
    match message:
        case Ping(seq, target):
            return [Kind.PING, seq, target]
        case PingReq(seq, target, address):
            return [Kind.PING_REQ, seq, target, address]
        case Ack(seq):
            return [Kind.ACK, seq]
        case Nack(seq):
            return [Kind.NACK, seq]
        case Alive(node_id, address, incarnation):
            return [Kind.ALIVE, node_id, address, incarnation]
        case Suspect(node_id, incarnation, accuser):
            return [Kind.SUSPECT, node_id, incarnation, accuser]
        case Dead(node_id, incarnation, accuser):
            return [Kind.DEAD, node_id, incarnation, accuser]
        case Left(node_id, incarnation):
            return [Kind.LEFT, node_id, incarnation]
        case Delta(key, payload):
            return [Kind.DELTA, key, payload]
        case State(key, payload):
            return [Kind.STATE, key, payload]
        case Members(records, reply, join):
            rows = [[r.node_id, r.address, r.incarnation, STATUS_CODES[r.status]] for r in records]
            return [Kind.MEMBERS, reply, join, rows]
        case Sync(nodes, want_keys, want_prefixes):
            wire_nodes = [
                [
                    n.depth,
                    n.prefix,
                    n.children,
                    None if n.entries is None else [[k, d] for k, d in n.entries],
                ]
                for n in nodes
            ]
            return [
                Kind.SYNC,
                wire_nodes,
                list(want_keys),
                [[d, p] for d, p in want_prefixes],
            ]
        case WriteRequest(request_id, key, payload):
            return [Kind.WRITE_REQUEST, request_id, key, payload]
        case WriteAck(request_id):
            return [Kind.WRITE_ACK, request_id]
        case ReadRequest(request_id, key):
            return [Kind.READ_REQUEST, request_id, key]
        case ReadReply(request_id, key, payload):
            return [Kind.READ_REPLY, request_id, key, payload]
    raise TypeError(f"not a protocol message: {message!r}")  # pragma: no cover


def encode_message(message: Message) -> bytes:
    """Pack one message.

    Args:
        message: any protocol message.

    Returns:
        Its msgpack bytes, ready to be concatenated into a frame.
    """
    packed: bytes = msgpack.packb(_wire(message), use_bin_type=True)
    return packed


def frame_header(sender: str, count: int) -> bytes:
    """The bytes that precede ``count`` packed messages in a frame.

    Args:
        sender: the sending node's id.
        count: how many messages follow.

    Returns:
        The version byte, the array header and the packed sender id.
    """
    array_header: bytes = _PACKER.pack_array_header(count + 1)
    sender_packed: bytes = msgpack.packb(sender, use_bin_type=True)
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


def _fail(what: str) -> DecodeError:
    return DecodeError(f"malformed frame: {what}")


def _int(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_SEQ:
        raise _fail(f"{what} must be an unsigned 64-bit int")
    return value


def _bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise _fail(f"{what} must be a bool")
    return value


def _text(value: object, max_bytes: int, what: str) -> str:
    if type(value) is not str:
        raise _fail(f"{what} must be a str")
    size = len(value.encode("utf-8", "surrogatepass"))
    if not 0 < size <= max_bytes:
        raise _fail(f"{what} must be 1 to {max_bytes} bytes")
    return value


def _node_id(value: object, what: str = "node id") -> str:
    return _text(value, MAX_NODE_ID_BYTES, what)


def _address(value: object) -> str:
    return _text(value, MAX_ADDRESS_BYTES, "address")


def _key(value: object) -> str:
    return _text(value, MAX_KEY_BYTES, "key")


def _blob(value: object, what: str) -> bytes:
    if type(value) is not bytes:
        raise _fail(f"{what} must be bytes")
    return value


def _digest(value: object) -> bytes:
    digest = _blob(value, "digest")
    if len(digest) != DIGEST_SIZE:
        raise _fail(f"a digest must be {DIGEST_SIZE} bytes")
    return digest


def _list(value: object, length: int | None, what: str) -> list[object]:
    if type(value) is not list:
        raise _fail(f"{what} must be an array")
    if length is not None and len(value) != length:
        raise _fail(f"{what} must have {length} items, not {len(value)}")
    return value


def _tree_position(depth_value: object, prefix_value: object) -> tuple[int, int]:
    depth = _int(depth_value, "tree depth")
    if depth > MAX_TREE_DEPTH:
        raise _fail(f"tree depth above {MAX_TREE_DEPTH}")
    prefix = _int(prefix_value, "tree prefix")
    if prefix >= TREE_FANOUT**depth:
        raise _fail("tree prefix out of range for its depth")
    return depth, prefix


_STATUS_BY_CODE = {code: status for status, code in STATUS_CODES.items()}


def _member_record(value: object) -> MemberRecord:
    node_id, address, incarnation, code = _list(value, 4, "member record")
    status = _STATUS_BY_CODE.get(_int(code, "status"))
    if status is None:
        raise _fail("unknown member status")
    return MemberRecord(_node_id(node_id), _address(address), _int(incarnation, "inc"), status)


def _tree_node(value: object) -> TreeNode:
    depth_value, prefix_value, children_value, entries_value = _list(value, 4, "tree node")
    depth, prefix = _tree_position(depth_value, prefix_value)
    if (children_value is None) == (entries_value is None):
        raise _fail("a tree node has either children or entries")
    if children_value is not None:
        children = _blob(children_value, "children")
        if len(children) != TREE_FANOUT * DIGEST_SIZE or depth >= MAX_TREE_DEPTH:
            raise _fail("bad tree children")
        return TreeNode(depth, prefix, children, None)
    entries = []
    for item in _list(entries_value, None, "entries"):
        key, digest = _list(item, 2, "entry")
        entries.append((_key(key), _digest(digest)))
    return TreeNode(depth, prefix, None, tuple(entries))


def _decode_members(fields: list[object]) -> Members:
    reply, join, rows = fields
    records = tuple(_member_record(row) for row in _list(rows, None, "member table"))
    return Members(records, _bool(reply, "reply"), _bool(join, "join"))


def _decode_sync(fields: list[object]) -> Sync:
    nodes, want_keys, want_prefixes = fields
    return Sync(
        tuple(_tree_node(node) for node in _list(nodes, None, "tree nodes")),
        tuple(_key(key) for key in _list(want_keys, None, "wanted keys")),
        tuple(
            _tree_position(*_list(item, 2, "wanted prefix"))
            for item in _list(want_prefixes, None, "wanted prefixes")
        ),
    )


_Decoder: TypeAlias = Callable[[list[object]], Message]

#: How to build each kind of message from its fields, already of the right count.
_DECODERS: dict[Kind, _Decoder] = {
    Kind.PING: lambda f: Ping(_int(f[0], "seq"), _node_id(f[1])),
    Kind.PING_REQ: lambda f: PingReq(_int(f[0], "seq"), _node_id(f[1]), _address(f[2])),
    Kind.ACK: lambda f: Ack(_int(f[0], "seq")),
    Kind.NACK: lambda f: Nack(_int(f[0], "seq")),
    Kind.ALIVE: lambda f: Alive(_node_id(f[0]), _address(f[1]), _int(f[2], "incarnation")),
    Kind.SUSPECT: lambda f: Suspect(_node_id(f[0]), _int(f[1], "incarnation"), _node_id(f[2])),
    Kind.DEAD: lambda f: Dead(_node_id(f[0]), _int(f[1], "incarnation"), _node_id(f[2])),
    Kind.LEFT: lambda f: Left(_node_id(f[0]), _int(f[1], "incarnation")),
    Kind.DELTA: lambda f: Delta(_key(f[0]), _blob(f[1], "payload")),
    Kind.STATE: lambda f: State(_key(f[0]), _blob(f[1], "payload")),
    Kind.MEMBERS: _decode_members,
    Kind.SYNC: _decode_sync,
    Kind.WRITE_REQUEST: lambda f: WriteRequest(
        _int(f[0], "request id"), _key(f[1]), _blob(f[2], "payload")
    ),
    Kind.WRITE_ACK: lambda f: WriteAck(_int(f[0], "request id")),
    Kind.READ_REQUEST: lambda f: ReadRequest(_int(f[0], "request id"), _key(f[1])),
    Kind.READ_REPLY: lambda f: ReadReply(
        _int(f[0], "request id"), _key(f[1]), _blob(f[2], "payload")
    ),
}


#: Number of fields after the kind, per kind: the shape check before field checks.
_FIELD_COUNTS: dict[Kind, int] = {
    Kind.PING: 2,
    Kind.PING_REQ: 3,
    Kind.ACK: 1,
    Kind.NACK: 1,
    Kind.ALIVE: 3,
    Kind.SUSPECT: 3,
    Kind.DEAD: 3,
    Kind.LEFT: 2,
    Kind.DELTA: 2,
    Kind.STATE: 2,
    Kind.MEMBERS: 3,
    Kind.SYNC: 3,
    Kind.WRITE_REQUEST: 3,
    Kind.WRITE_ACK: 1,
    Kind.READ_REQUEST: 2,
    Kind.READ_REPLY: 3,
}


_KINDS: dict[int, Kind] = {kind.value: kind for kind in Kind}


def _decode_message(value: object) -> Message:
    items = _list(value, None, "message")
    if not items or type(items[0]) is not int:
        raise _fail("a message starts with its kind")
    kind = _KINDS.get(items[0])
    if kind is None:
        raise _fail(f"unknown message kind {items[0]}")
    if len(items) != 1 + _FIELD_COUNTS[kind]:
        raise _fail(f"{kind.name} needs {_FIELD_COUNTS[kind]} fields")
    return _DECODERS[kind](items[1:])


def decode_frame(data: bytes, max_frame: int) -> Frame:
    """Decode and validate a frame received from the network.

    Args:
        data: the frame, after the keyring (if any) opened it.
        max_frame: the largest frame accepted, in bytes.

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
    unpacker = msgpack.Unpacker(
        raw=False,
        use_list=True,
        strict_map_key=True,
        max_buffer_size=max(len(body), 1),
        max_str_len=max(MAX_KEY_BYTES, MAX_ADDRESS_BYTES),
        max_bin_len=len(body),
        max_array_len=MAX_ARRAY_LEN,
        max_map_len=0,
        max_ext_len=0,
    )
    try:
        unpacker.feed(body)
        decoded = unpacker.unpack()
        consumed = unpacker.tell()
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as error:
        raise DecodeError(f"malformed frame: {type(error).__name__}") from None
    if consumed != len(body):
        raise DecodeError("malformed frame: bytes after the message array")
    items = _list(decoded, None, "frame")
    if not items:
        raise _fail("no sender")
    sender = _node_id(items[0], "sender")
    return Frame(sender, tuple(_decode_message(item) for item in items[1:]))
