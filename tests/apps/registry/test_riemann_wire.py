"""Riemann's protobuf messages: our schema against riemann-client's, decoding, acks."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from riemann_client import riemann_pb2
from riemann_client.client import Client

from crdtgossip.apps.registry import riemann_wire as wire
from crdtgossip.apps.registry.model import parse_event
from crdtgossip.errors import DecodeError
from tests.apps.registry.conftest import START_TIME


def client_message(*events: dict[str, Any]) -> bytes:
    """A Msg as riemann-client builds it from event dictionaries."""
    message = riemann_pb2.Msg()
    for event in events:
        message.events.add().MergeFrom(Client.create_event(dict(event)))
    return message.SerializeToString()


def our_message(*events: dict[str, Any]) -> bytes:
    """A Msg built with our own classes (they have time_micros; riemann-client's not)."""
    message = wire.Msg()
    for fields in events:
        event = message.events.add()
        for name, value in fields.items():
            if name == "tags":
                event.tags.extend(value)
            else:
                setattr(event, name, value)
    return message.SerializeToString()


def only_event(data: bytes) -> dict[str, Any]:
    decoded = wire.decode_message(data)
    assert len(decoded.events) == 1
    return decoded.events[0]


def test_the_schema_numbers_and_types_are_riemann_clients() -> None:
    # riemann_pb2 exports no State: it is reached through Msg.states.
    their_state = riemann_pb2.Msg.DESCRIPTOR.fields_by_name["states"].message_type
    for name in ("Msg", "Event", "Attribute", "Query", "State"):
        theirs = their_state if name == "State" else getattr(riemann_pb2, name).DESCRIPTOR
        ours = getattr(wire, name).DESCRIPTOR
        their_fields = {f.name: (f.number, f.type, f.label) for f in theirs.fields}
        our_fields = {f.name: (f.number, f.type, f.label) for f in ours.fields}
        if name == "Event":  # riemann-client 7.0.0 predates time_micros
            assert our_fields.pop("time_micros")[:2] == (10, 3)  # int64
        if name == "Attribute":  # required there; optional here (see riemann_wire)
            assert their_fields["key"][2] == 2
            assert our_fields["key"][2] == 1
            their_fields["key"] = our_fields["key"]
        assert our_fields == their_fields, name


def test_an_event_from_riemann_client_becomes_a_post_body() -> None:
    data = client_message(
        {
            "host": "web-1",
            "service": "web",
            "state": "warning",
            "time": 1_704_067_200,
            "ttl": 30,
            "metric_f": 0.1,
            "tags": ["a", "b"],
            "description": "load\nhigh",
            "attributes": {"region": "eu"},
        }
    )
    decoded = wire.decode_message(data)
    assert decoded.events == (
        {
            "host": "web-1",
            "service": "web",
            "state": "warning",
            "description": "load\nhigh",
            "time": 1_704_067_200.0,
            "metric": 0.1,  # the float32 read back as the decimal that was sent
            "ttl": 30.0,
            "tags": ["a", "b"],
        },
    )
    assert decoded.ignored_attributes == 1
    event = parse_event(decoded.events[0], START_TIME)
    assert (event.host, event.state, event.metric, event.ttl) == ("web-1", "warning", 0.1, 30.0)


def test_absent_and_empty_fields_stay_absent() -> None:
    # riemann-client sets host to the machine's name when none is given.
    assert only_event(client_message({"service": "web", "host": ""})) == {"service": "web"}
    empty = our_message({"host": "", "service": "", "state": "", "description": ""})
    assert only_event(empty) == {}


@pytest.mark.parametrize(
    ("fields", "metric"),
    [
        ({"metric_d": 2.5}, 2.5),
        ({"metric_d": 1e300}, 1e300),
        ({"metric_sint64": -(2**40)}, -(2**40)),
        ({"metric_sint64": 7}, 7),
        ({"metric_f": 0.1}, 0.1),
        ({"metric_f": 1e-7}, 1e-7),
        ({"metric_f": 3.4028234663852886e38}, 3.4028235e38),  # the largest float32
        ({"metric_f": 16777217.0}, 16777216.0),  # 2**24 + 1 has no float32
        ({"metric_f": 0.0}, 0.0),
        ({"metric_d": 1.0, "metric_sint64": 2, "metric_f": 3.0}, 1.0),
        ({"metric_sint64": 2, "metric_f": 3.0}, 2),
    ],
)
def test_every_metric_field_in_order_d_sint64_f(fields: dict[str, Any], metric: float) -> None:
    body = only_event(client_message({"service": "web", **fields}))
    assert body["metric"] == metric
    assert type(body["metric"]) is type(metric)


def test_a_float32_infinity_is_kept_for_the_check_to_refuse() -> None:
    body = only_event(client_message({"service": "web", "metric_f": math.inf}))
    assert body["metric"] == math.inf


def test_time_micros_wins_over_time() -> None:
    both = our_message({"service": "web", "time": 1, "time_micros": 1_704_067_200_250_000})
    assert only_event(both)["time"] == 1_704_067_200.25
    seconds = our_message({"service": "web", "time": 1_704_067_200})
    assert only_event(seconds)["time"] == 1_704_067_200.0
    assert "time" not in only_event(our_message({"service": "web"}))


def test_a_query_states_and_too_many_events_are_refused_whole() -> None:
    query = riemann_pb2.Msg()
    query.query.string = "true"
    query.events.add(service="web")
    with pytest.raises(wire.MessageRefused, match="queries are not supported") as refused:
        wire.decode_message(query.SerializeToString())
    assert (refused.value.reason, refused.value.events, refused.value.status) == ("query", 1, 400)
    states = riemann_pb2.Msg()
    states.states.add(service="web", state="ok")
    with pytest.raises(wire.MessageRefused, match="states are not supported") as refused:
        wire.decode_message(states.SerializeToString())
    assert refused.value.reason == "states"
    many = client_message(*({"service": "web"} for _ in range(wire.MAX_EVENTS_PER_MESSAGE + 1)))
    with pytest.raises(wire.MessageRefused, match="1001 events") as refused:
        wire.decode_message(many)
    assert (refused.value.reason, refused.value.events) == ("too_many_events", 1001)
    exactly = client_message(*({"service": "web"} for _ in range(wire.MAX_EVENTS_PER_MESSAGE)))
    assert len(wire.decode_message(exactly).events) == wire.MAX_EVENTS_PER_MESSAGE
    with pytest.raises(wire.MessageRefused):
        wire.decode_message(client_message({"service": "a"}, {"service": "b"}), max_events=1)


def test_an_empty_message_holds_no_event() -> None:
    assert wire.decode_message(b"") == wire.RiemannMessage(())


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",  # a field tag cut short
        b"\x32\x05ab",  # events: 5 bytes announced, 2 given
        b"\x32\x02\xff\xff",  # an event that is no Event
        b"\x32\x03\x22\x01\xff",  # an event whose host is not UTF-8
        b"\x32\x03\x2a\x01\xff",  # ... its description
        b"\x32\x03\x3a\x01\xff",  # ... a tag
        b"\x32\x02\x08",  # an event's time with no varint
        b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # a varint of 11 bytes
        b"\x07",  # wire type 7 does not exist
        b"GET / HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_bytes_raise_our_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError, match=r"is not a Riemann (Msg|Event)"):
        wire.decode_message(data)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_our_errors_only(data: bytes) -> None:
    try:
        decoded = wire.decode_message(data)
    except (DecodeError, wire.MessageRefused):
        return
    assert all(isinstance(body, dict) for body in decoded.events)


def test_acks_read_back_by_riemann_client() -> None:
    ok = riemann_pb2.Msg()
    ok.ParseFromString(wire.encode_ack())
    assert (ok.ok, ok.HasField("error")) == (True, False)
    failed = riemann_pb2.Msg()
    failed.ParseFromString(wire.encode_ack("event 0: no instance 'x' of service 'web'"))
    assert (failed.ok, failed.error) == (False, "event 0: no instance 'x' of service 'web'")
    assert failed.HasField("ok")  # explicitly false, as Riemann answers


def test_a_frame_of_empty_events_is_counted_before_it_is_decoded() -> None:
    # Half a million empty events in a megabyte: refused from the outline alone.
    data = b"\x32\x00" * (512 * 1024)
    with pytest.raises(wire.MessageRefused) as refused:
        wire.decode_message(data)
    assert refused.value.events == 512 * 1024
