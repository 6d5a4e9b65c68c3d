"""What every wire message shares: the limits, the message kinds and the field checks.

The messages themselves live by concern (:mod:`~crdtgossip.protocol.member_messages`,
:mod:`~crdtgossip.protocol.data_messages`, :mod:`~crdtgossip.protocol.sync_messages`);
:mod:`~crdtgossip.protocol.messages` frames them. Each field check below either returns
the value, of the exact type and within its limit, or raises
:class:`~crdtgossip.errors.DecodeError`: nothing else escapes a decoder built from them.
"""

from __future__ import annotations

import enum
from typing import Final

from crdtgossip.errors import DecodeError

__all__ = [
    "DIGEST_SIZE",
    "FRAME_VERSION",
    "MAX_ADDRESS_BYTES",
    "MAX_ARRAY_LEN",
    "MAX_KEY_BYTES",
    "MAX_NODE_ID_BYTES",
    "MAX_SEQ",
    "MAX_TREE_DEPTH",
    "RESERVED_KEY_PREFIX",
    "SEAL_OVERHEAD",
    "TREE_FANOUT",
    "Kind",
    "address",
    "array",
    "blob",
    "boolean",
    "digest",
    "fail",
    "key",
    "node_id",
    "text",
    "tree_position",
    "uint",
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

RESERVED_KEY_PREFIX: Final = "\x00"
"""Data keys never start with U+0000: keys that do are crdtgossip's own records in a
node's storage (a key's last-write stamp, for expiry), refused from users and peers."""

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

MAX_SEQ: Final = (1 << 64) - 1
"""Largest sequence or incarnation number: msgpack's unsigned 64-bit range."""


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
    DIFF = 17
    STATE_CHUNK = 18
    # Acknowledged delivery (delivery_messages).
    DELTA_INTERVAL = 19
    DELTA_ACK = 20
    # The identity checks of protocol.identity.
    ID_CLAIM = 21
    ID_IN_USE = 22
    # The rollback check of protocol.rollback (rollback_messages).
    MARKS_QUERY = 23
    MARKS_REPORT = 24
    # A State with its key's last-write stamp (protocol.expiry).
    STATE_AT = 25
    # A StateChunk with its key's last-write stamp.
    STATE_CHUNK_AT = 26
    # A ReadReply with its key's last-write stamp.
    READ_REPLY_AT = 27


_MAX_UTF8_BYTES: Final = 4
"""The most UTF-8 bytes one code point encodes to."""


def fail(what: str) -> DecodeError:
    """The error for a malformed field (to raise)."""
    return DecodeError(f"malformed frame: {what}")


def uint(value: object, what: str) -> int:
    """An unsigned 64-bit int (a bool is not one)."""
    if type(value) is not int or not 0 <= value <= MAX_SEQ:
        raise fail(f"{what} must be an unsigned 64-bit int")
    return value


def boolean(value: object, what: str) -> bool:
    """A bool."""
    if type(value) is not bool:
        raise fail(f"{what} must be a bool")
    return value


def text(value: object, max_bytes: int, what: str, *, empty: bool = False) -> str:
    """A str of 1 (0 with ``empty``) to ``max_bytes`` bytes of UTF-8."""
    if type(value) is not str:
        raise fail(f"{what} must be a str")
    # A code point takes at most 4 bytes of UTF-8 (3 for a lone surrogate): a str that
    # short needs no encoding to be known within the bound (node ids, addresses).
    if value and len(value) * _MAX_UTF8_BYTES <= max_bytes:
        return value
    size = len(value.encode("utf-8", "surrogatepass"))
    if not (0 if empty else 1) <= size <= max_bytes:
        raise fail(f"{what} must be 1 to {max_bytes} bytes")
    return value


def node_id(value: object, what: str = "node id") -> str:
    """A node id."""
    return text(value, MAX_NODE_ID_BYTES, what)


def address(value: object) -> str:
    """A ``host:port`` address."""
    return text(value, MAX_ADDRESS_BYTES, "address")


def key(value: object) -> str:
    """A data key (never one of the reserved keys, see :data:`RESERVED_KEY_PREFIX`)."""
    checked = text(value, MAX_KEY_BYTES, "key")
    if checked[0] == RESERVED_KEY_PREFIX:
        raise fail("key starts with U+0000 (reserved)")
    return checked


def blob(value: object, what: str) -> bytes:
    """A byte string (its length is bounded by the frame)."""
    if type(value) is not bytes:
        raise fail(f"{what} must be bytes")
    return value


def digest(value: object) -> bytes:
    """A :data:`DIGEST_SIZE`-byte digest."""
    found = blob(value, "digest")
    if len(found) != DIGEST_SIZE:
        raise fail(f"a digest must be {DIGEST_SIZE} bytes")
    return found


def array(value: object, length: int | None, what: str) -> list[object]:
    """A msgpack array, of exactly ``length`` items when given."""
    if type(value) is not list:
        raise fail(f"{what} must be an array")
    if length is not None and len(value) != length:
        raise fail(f"{what} must have {length} items, not {len(value)}")
    return value


def tree_position(depth_value: object, prefix_value: object) -> tuple[int, int]:
    """A ``(depth, prefix)`` of the key hash tree, within its bounds."""
    depth = uint(depth_value, "tree depth")
    if depth > MAX_TREE_DEPTH:
        raise fail(f"tree depth above {MAX_TREE_DEPTH}")
    prefix = uint(prefix_value, "tree prefix")
    if prefix >= TREE_FANOUT**depth:
        raise fail("tree prefix out of range for its depth")
    return depth, prefix
