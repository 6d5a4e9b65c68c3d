"""The data messages: deltas spread by gossip, states, and quorum requests and replies.

Each message class here has its wire form in :func:`to_wire` and its checked decoder in
:data:`DECODERS`; :mod:`~crdtgossip.protocol.messages` frames them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from crdtgossip.protocol.wire import Kind, blob, key, uint

__all__ = [
    "DECODERS",
    "DataMessage",
    "Delta",
    "ReadReply",
    "ReadRequest",
    "State",
    "WriteAck",
    "WriteRequest",
    "to_wire",
]


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
        written: the key's last-write stamp at the sender (ns) when the key expires
            (see :mod:`~crdtgossip.protocol.expiry`), else 0; sent as kind ``STATE_AT``
            when set, so a state of a key that does not expire costs nothing more.
    """

    key: str
    payload: bytes
    written: int = 0


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
        written: the key's last-write stamp at the sender, as :attr:`State.written`
            (kind ``READ_REPLY_AT`` when set): a read must not make a key look written.
    """

    request_id: int
    key: str
    payload: bytes
    written: int = 0


DataMessage: TypeAlias = Delta | State | WriteRequest | WriteAck | ReadRequest | ReadReply


def to_wire(message: DataMessage) -> list[object]:
    """The msgpack-ready array of one data message."""
    match message:
        case Delta(data_key, payload):
            return [Kind.DELTA, data_key, payload]
        case State(data_key, payload, 0):
            return [Kind.STATE, data_key, payload]
        case State(data_key, payload, written):
            return [Kind.STATE_AT, data_key, payload, written]
        case WriteRequest(request_id, data_key, payload):
            return [Kind.WRITE_REQUEST, request_id, data_key, payload]
        case WriteAck(request_id):
            return [Kind.WRITE_ACK, request_id]
        case ReadRequest(request_id, data_key):
            return [Kind.READ_REQUEST, request_id, data_key]
        case ReadReply(request_id, data_key, payload, 0):
            return [Kind.READ_REPLY, request_id, data_key, payload]
        case ReadReply(request_id, data_key, payload, written):
            return [Kind.READ_REPLY_AT, request_id, data_key, payload, written]
    raise TypeError(f"not a data message: {message!r}")  # pragma: no cover


#: Per kind: the number of fields after the kind, and how to build the message from
#: them (already of that count).
DECODERS: dict[Kind, tuple[int, Callable[[list[object]], DataMessage]]] = {
    Kind.DELTA: (2, lambda f: Delta(key(f[0]), blob(f[1], "payload"))),
    Kind.STATE: (2, lambda f: State(key(f[0]), blob(f[1], "payload"))),
    Kind.STATE_AT: (
        3,
        lambda f: State(key(f[0]), blob(f[1], "payload"), uint(f[2], "last-write stamp")),
    ),
    Kind.WRITE_REQUEST: (
        3,
        lambda f: WriteRequest(uint(f[0], "request id"), key(f[1]), blob(f[2], "payload")),
    ),
    Kind.WRITE_ACK: (1, lambda f: WriteAck(uint(f[0], "request id"))),
    Kind.READ_REQUEST: (2, lambda f: ReadRequest(uint(f[0], "request id"), key(f[1]))),
    Kind.READ_REPLY: (
        3,
        lambda f: ReadReply(uint(f[0], "request id"), key(f[1]), blob(f[2], "payload")),
    ),
    Kind.READ_REPLY_AT: (
        4,
        lambda f: ReadReply(
            uint(f[0], "request id"), key(f[1]), blob(f[2], "payload"), uint(f[3], "stamp")
        ),
    ),
}
