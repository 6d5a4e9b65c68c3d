"""Riemann's protobuf messages, decoded into the registry's events and acks encoded.

Riemann's clients (``riemann-client`` on PyPI, riemann-tools, collectd's and
Telegraf's outputs) send ``Msg`` messages of Riemann's ``proto.proto``: ``events``,
each an ``Event`` ``{time, state, service, host, description, tags, ttl, attributes,
time_micros, metric_sint64, metric_d, metric_f}``. The server answers a message sent
over TCP with a ``Msg`` of ``ok`` and, on failure, ``error``.

The schema is built here, in code, from a ``FileDescriptorProto`` in a pool of its
own (so it never clashes with another copy of Riemann's schema in the process, such
as riemann-client's), and the message classes come from the ``protobuf`` library's
message factory: no protobuf is parsed or written by hand, and no generated file is
kept. It works on protobuf 3.20 and on 4.x and later. The classes are ``Msg``,
``Event``, ``Attribute``, ``Query`` and ``State`` of this module (protobuf ``Message``
subclasses): build a message with them as a client would, ``Msg(events=[Event(host=
"web-1", service="web", state="ok")])``.

How an ``Event`` becomes the body :func:`~crdtgossip.apps.registry.model.parse_event`
checks (so an event over Riemann's protocol is checked exactly as a ``POST
/v1/events`` is):

* ``host``, ``service``, ``state``, ``description``: as they are; a string field set
  to the empty string counts as absent (Riemann's clients send ``""`` for "not set");
* ``time``: ``time_micros`` / 10^6 when set, else ``time`` (whole seconds); absent:
  the agent's now;
* ``metric``: ``metric_d``, else ``metric_sint64``, else ``metric_f`` (the first one
  set); a 32-bit float (``metric_f``, ``ttl``) is read as the shortest decimal that
  gives the same 32-bit float, so ``0.1`` arrives as ``0.1``, not
  ``0.10000000149011612``;
* ``ttl``, ``tags``: as they are; absent ``ttl``: the instance's registered ``ttl``,
  else 60 s;
* ``attributes``: ignored (the registry's events have no field for them) and counted
  (:attr:`RiemannMessage.ignored_attributes`).

A message is refused whole (:class:`MessageRefused`) when it holds a query (the
registry is not Riemann's index), ``states`` (the pre-events form of Riemann's
protocol), or more than :data:`MAX_EVENTS_PER_MESSAGE` events. Bytes that are no
``Msg`` raise :class:`~crdtgossip.errors.DecodeError`, never an exception of the
protobuf library.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from crdtgossip.apps.registry.fields import RegistryError
from crdtgossip.errors import DecodeError

__all__ = [
    "MAX_EVENTS_PER_MESSAGE",
    "Attribute",
    "Event",
    "MessageRefused",
    "Msg",
    "Query",
    "RiemannMessage",
    "State",
    "decode_message",
    "encode_ack",
]

#: Most events one message may carry. Clients batch far fewer (riemann-client's
#: auto-flushing client sends 100 at most); each event is one write of the registry,
#: so this bounds what one message costs. More: the message is refused, nothing
#: recorded.
MAX_EVENTS_PER_MESSAGE = 1000

_FIELD = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _FIELD.LABEL_OPTIONAL, _FIELD.LABEL_REPEATED

# (name, number, type, label, message type) per field, as in Riemann's proto.proto
# (riemann/src/riemann/proto.proto; riemann-client 7.0.0's riemann_pb2 has the same
# numbers, without time_micros). Attribute.key is ``required`` there; it is declared
# optional here: attributes are ignored, and whether a missing required field fails
# to parse differs between protobuf's implementations.
_Fields = tuple[tuple[str, int, int, int, str], ...]
# The fields State and Event share (State is the form of Riemann's protocol before
# events, read only to refuse it).
_COMMON: _Fields = (
    ("time", 1, _FIELD.TYPE_INT64, _OPTIONAL, ""),
    ("state", 2, _FIELD.TYPE_STRING, _OPTIONAL, ""),
    ("service", 3, _FIELD.TYPE_STRING, _OPTIONAL, ""),
    ("host", 4, _FIELD.TYPE_STRING, _OPTIONAL, ""),
    ("description", 5, _FIELD.TYPE_STRING, _OPTIONAL, ""),
    ("tags", 7, _FIELD.TYPE_STRING, _REPEATED, ""),
    ("ttl", 8, _FIELD.TYPE_FLOAT, _OPTIONAL, ""),
)
_SCHEMA: dict[str, _Fields] = {
    "Attribute": (
        ("key", 1, _FIELD.TYPE_STRING, _OPTIONAL, ""),
        ("value", 2, _FIELD.TYPE_STRING, _OPTIONAL, ""),
    ),
    "State": (*_COMMON, ("once", 6, _FIELD.TYPE_BOOL, _OPTIONAL, "")),
    "Event": (
        *_COMMON,
        ("attributes", 9, _FIELD.TYPE_MESSAGE, _REPEATED, "Attribute"),
        ("time_micros", 10, _FIELD.TYPE_INT64, _OPTIONAL, ""),
        ("metric_sint64", 13, _FIELD.TYPE_SINT64, _OPTIONAL, ""),
        ("metric_d", 14, _FIELD.TYPE_DOUBLE, _OPTIONAL, ""),
        ("metric_f", 15, _FIELD.TYPE_FLOAT, _OPTIONAL, ""),
    ),
    "Query": (("string", 1, _FIELD.TYPE_STRING, _OPTIONAL, ""),),
    "Msg": (
        ("ok", 2, _FIELD.TYPE_BOOL, _OPTIONAL, ""),
        ("error", 3, _FIELD.TYPE_STRING, _OPTIONAL, ""),
        ("states", 4, _FIELD.TYPE_MESSAGE, _REPEATED, "State"),
        ("query", 5, _FIELD.TYPE_MESSAGE, _OPTIONAL, "Query"),
        ("events", 6, _FIELD.TYPE_MESSAGE, _REPEATED, "Event"),
    ),
}
# Msg with its nested messages left as bytes (the same wire format: a nested message is
# a length-delimited field). Read first, it counts the events before any is decoded,
# so a frame of half a million empty events costs a list of byte strings, not half a
# million message objects.
_SCHEMA["MsgOutline"] = tuple(
    (name, number, _FIELD.TYPE_BYTES if kind == _FIELD.TYPE_MESSAGE else kind, label, "")
    for name, number, kind, label, _ in _SCHEMA["Msg"]
)

#: The schema's file name inside its own descriptor pool.
_FILE_NAME = "crdtgossip/apps/registry/riemann.proto"


def _file_proto() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name=_FILE_NAME, syntax="proto2")
    for message_name, fields in _SCHEMA.items():
        message = proto.message_type.add(name=message_name)
        for name, number, kind, label, type_name in fields:
            field = message.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".{type_name}"  # no package: names as Riemann's
    return proto


def _message_classes() -> dict[str, type[Message]]:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(_file_proto().SerializeToString())
    # protobuf 4.x and later: message_factory.GetMessageClass; 3.20 (which
    # riemann-client needs) has only MessageFactory.GetPrototype.
    get_class: Callable[[Descriptor], type[Message]] | None = getattr(
        message_factory, "GetMessageClass", None
    )
    if get_class is None:
        get_class = getattr(message_factory.MessageFactory(pool), "GetPrototype", None)
    if get_class is None:
        raise ImportError("Riemann's protocol needs protobuf 3.20 or later")
    return {name: get_class(pool.FindMessageTypeByName(name)) for name in _SCHEMA}


_CLASSES = _message_classes()

# Riemann's message classes (see the module's docstring).
Attribute: type[Message] = _CLASSES["Attribute"]
State: type[Message] = _CLASSES["State"]
Event: type[Message] = _CLASSES["Event"]
Query: type[Message] = _CLASSES["Query"]
Msg: type[Message] = _CLASSES["Msg"]
_MsgOutline: type[Message] = _CLASSES["MsgOutline"]


# The fields read, for the type checker (the classes are built at run time).
class _AttributeFields(Protocol):
    key: str
    value: str


class _EventFields(Protocol):
    time: int
    state: str
    service: str
    host: str
    description: str
    tags: Sequence[str]
    ttl: float
    attributes: Sequence[_AttributeFields]
    time_micros: int
    metric_sint64: int
    metric_d: float
    metric_f: float

    def HasField(self, field_name: str) -> bool: ...


class _AckFields(Protocol):
    ok: bool
    error: str


class _OutlineFields(Protocol):
    states: Sequence[bytes]
    events: Sequence[bytes]

    def HasField(self, field_name: str) -> bool: ...


class MessageRefused(RegistryError):
    """A well-formed ``Msg`` the registry does not take as a whole.

    Attributes:
        reason: ``query``, ``states`` or ``too_many_events`` (a label of the
            ``/metrics`` counters).
        events: how many events the message held (none of them is recorded).
    """

    def __init__(self, message: str, *, reason: str, events: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.events = events


@dataclass(frozen=True, slots=True)
class RiemannMessage:
    """A decoded ``Msg`` the registry takes.

    Attributes:
        events: one body per event, in the message's order, in the shape of a ``POST
            /v1/events`` body (fields absent from the event are absent here).
        ignored_attributes: how many attributes the events carried (not recorded).
    """

    events: tuple[dict[str, Any], ...]
    ignored_attributes: int = 0


def _parse(kind: type[Message], data: bytes, what: str, name: str) -> Message:
    message = kind()
    try:
        message.ParseFromString(data)
    except Exception as exc:
        # protobuf raises its DecodeError, but also UnicodeDecodeError (a string field
        # that is not UTF-8) or RuntimeError, depending on the implementation.
        raise DecodeError(f"{what} is not a Riemann {name}: {exc}") from None
    return message


def _single(value: float) -> float:
    """The shortest decimal that reads back as the same 32-bit float as ``value``."""
    if not math.isfinite(value):
        return value
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        candidate = float(f"{value:.{digits}g}")
        try:
            if struct.unpack("<f", struct.pack("<f", candidate))[0] == value:
                return candidate
        except OverflowError:  # rounded up past the largest float32
            continue
    return value


def _text(value: object, name: str, what: str) -> str:
    # protobuf's upb implementation hands a proto2 string that is not UTF-8 over as
    # bytes (the pure-Python one raises while parsing): the same error either way.
    if not isinstance(value, str):
        raise DecodeError(f"{what} is not a Riemann Event: {name} is not UTF-8")
    return value


def _event_body(event: _EventFields, what: str) -> tuple[dict[str, Any], int]:
    """The ``POST /v1/events`` body of one event, and its count of attributes."""
    body: dict[str, Any] = {}
    for name in ("host", "service", "state", "description"):
        text = _text(getattr(event, name), f"its {name}", what)
        if text:
            body[name] = text
    if event.HasField("time_micros"):
        body["time"] = event.time_micros / 1_000_000
    elif event.HasField("time"):
        body["time"] = float(event.time)
    if event.HasField("metric_d"):
        body["metric"] = event.metric_d
    elif event.HasField("metric_sint64"):
        body["metric"] = event.metric_sint64
    elif event.HasField("metric_f"):
        body["metric"] = _single(event.metric_f)
    if event.HasField("ttl"):
        body["ttl"] = _single(event.ttl)
    if event.tags:
        body["tags"] = [_text(tag, "a tag", what) for tag in event.tags]
    return body, len(event.attributes)


def decode_message(data: bytes, *, max_events: int = MAX_EVENTS_PER_MESSAGE) -> RiemannMessage:
    """Decode one ``Msg`` (a TCP frame's payload or a UDP datagram).

    Args:
        data: the serialized ``Msg``.
        max_events: most events taken in one message.

    Returns:
        The message's events as ``POST /v1/events`` bodies, unchecked (the registry
        checks them as it checks any event).

    Raises:
        DecodeError: ``data`` is not a ``Msg``, or one of its events is not an
            ``Event``.
        MessageRefused: the message holds a query, states, or more than
            ``max_events`` events.
    """
    outline = cast(_OutlineFields, _parse(_MsgOutline, data, "the message", "Msg"))
    count = len(outline.events)
    if outline.HasField("query"):
        raise MessageRefused("queries are not supported", reason="query", events=count)
    if outline.states:
        raise MessageRefused("states are not supported; send events", reason="states", events=count)
    if count > max_events:
        raise MessageRefused(
            f"the message holds {count} events; at most {max_events} are taken in one message",
            reason="too_many_events",
            events=count,
        )
    bodies: list[dict[str, Any]] = []
    ignored = 0
    for index, raw in enumerate(outline.events):
        what = f"event {index}"
        body, attributes = _event_body(cast(_EventFields, _parse(Event, raw, what, "Event")), what)
        bodies.append(body)
        ignored += attributes
    return RiemannMessage(tuple(bodies), ignored)


def encode_ack(error: str | None = None) -> bytes:
    """The answer to a message: ``Msg(ok=True)``, or ``Msg(ok=False, error=error)``.

    Args:
        error: why the message failed, or None when it was taken.

    Returns:
        The serialized ``Msg`` (without the TCP length prefix).
    """
    ack = Msg()
    fields = cast(_AckFields, ack)
    fields.ok = error is None
    if error is not None:
        fields.error = error
    return ack.SerializeToString()
