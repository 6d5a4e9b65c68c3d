"""The messages of acknowledged delivery: a delta interval pushed to a member, and its ack.

A writer numbers its local deltas ``1, 2, 3, ...`` in a *stream* (a random id drawn
when its engine starts, so a restarted writer is never confused with its past life),
and pushes to every live member the deltas it has not acknowledged, as a
:class:`DeltaInterval` (sequence numbers ``first..last``, the deltas of one key joined
into one payload). The member merges them and answers with a :class:`DeltaAck` of the
same range; the writer retransmits with backoff what stays unacknowledged (see
:mod:`~crdtgossip.protocol.delivery`).

Each message class here has its wire form in :func:`to_wire` and its checked decoder in
:data:`DECODERS`; :mod:`~crdtgossip.protocol.messages` frames them. Both are decoded with
the same limits as every other message: sequence numbers are unsigned 64-bit ints with
``first <= last``, keys are bounded, the entry array is bounded by the frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from crdtgossip.protocol.wire import Kind, array, blob, fail, key, uint

__all__ = ["DECODERS", "DeliveryMessage", "DeltaAck", "DeltaInterval", "to_wire"]


@dataclass(frozen=True, slots=True)
class DeltaInterval:
    """The local deltas ``first..last`` of the sender's stream, for the receiver to merge.

    Attributes:
        stream: the sender's stream id (echoed in the ack).
        first: the first sequence number covered.
        last: the last sequence number covered (``first <= last``).
        entries: ``(key, payload)`` pairs, each payload ``crdtgossip.codec.encode`` of
            the join of the interval's deltas of that key.
    """

    stream: int
    first: int
    last: int
    entries: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class DeltaAck:
    """The deltas ``first..last`` of ``stream`` are merged here."""

    stream: int
    first: int
    last: int


DeliveryMessage: TypeAlias = DeltaInterval | DeltaAck


def to_wire(message: DeliveryMessage) -> list[object]:
    """The msgpack-ready array of one delivery message."""
    match message:
        case DeltaInterval(stream, first, last, entries):
            return [Kind.DELTA_INTERVAL, stream, first, last, [list(e) for e in entries]]
        case DeltaAck(stream, first, last):
            return [Kind.DELTA_ACK, stream, first, last]
    raise TypeError(f"not a delivery message: {message!r}")  # pragma: no cover


def _range(first_value: object, last_value: object) -> tuple[int, int]:
    first = uint(first_value, "first sequence")
    last = uint(last_value, "last sequence")
    if not 1 <= first <= last:
        raise fail("a sequence range must have 1 <= first <= last")
    return first, last


def _interval(fields: list[object]) -> DeltaInterval:
    stream = uint(fields[0], "stream")
    first, last = _range(fields[1], fields[2])
    entries = []
    for item in array(fields[3], None, "interval entries"):
        pair = array(item, 2, "interval entry")
        entries.append((key(pair[0]), blob(pair[1], "payload")))
    if not entries:
        raise fail("an interval carries at least one delta")
    return DeltaInterval(stream, first, last, tuple(entries))


def _ack(fields: list[object]) -> DeltaAck:
    first, last = _range(fields[1], fields[2])
    return DeltaAck(uint(fields[0], "stream"), first, last)


#: Per kind: the number of fields after the kind, and how to build the message from
#: them (already of that count).
DECODERS: dict[Kind, tuple[int, Callable[[list[object]], DeliveryMessage]]] = {
    Kind.DELTA_INTERVAL: (4, _interval),
    Kind.DELTA_ACK: (3, _ack),
}
