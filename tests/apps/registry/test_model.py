"""Request bodies: what is accepted, what is refused, and what the defaults are."""

from __future__ import annotations

from typing import Any

import pytest

from crdtgossip.apps.registry.model import (
    DEFAULT_ENV,
    DEFAULT_EVENT_TTL,
    DEFAULT_QUORUM_TIMEOUT,
    MAX_EVENT_FUTURE,
    MAX_META_PAIRS,
    MAX_NAME_LENGTH,
    RegistryError,
    check_name,
    parse_event,
    parse_expectation,
    parse_instance,
    parse_json,
    parse_maintenance,
    parse_release,
)

NOW = 1_700_000_000.0


def test_parse_json_takes_one_object() -> None:
    assert parse_json(b'{"a": [1, 2.5, null, true]}') == {"a": [1, 2.5, None, True]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"\xff", "UTF-8"),
        (b"{", "not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
        (b'{"a": -Infinity}', "not valid JSON"),
        (b"[1]", "an array"),
        (b'"x"', "a string"),
        (b"null", "null"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    ],
)
def test_parse_json_refuses(raw: bytes, message: str) -> None:
    with pytest.raises(RegistryError, match=message) as caught:
        parse_json(raw)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "name", ["web", "web-1", "a", "10.0.0.1-8080", "A_b.c", "x" * MAX_NAME_LENGTH]
)
def test_check_name_accepts(name: str) -> None:
    assert check_name("service", name) == name


@pytest.mark.parametrize(
    "name",
    ["", "-web", ".web", "web 1", "web;", "we{b}", "wéb", "x" * (MAX_NAME_LENGTH + 1), 5, None],
)
def test_check_name_refuses(name: object) -> None:
    with pytest.raises(RegistryError, match="service"):
        check_name("service", name)


def test_parse_instance_defaults_and_full() -> None:
    bare = parse_instance({"address": "10.0.0.1", "port": 80})
    assert bare.stored() == {
        "address": "10.0.0.1",
        "port": 80,
        "env": DEFAULT_ENV,
        "tags": [],
        "meta": {},
        "ttl": None,
    }
    full = parse_instance(
        {
            "address": "fe80::1",
            "port": 65535,
            "env": "prod",
            "tags": ["a", "b"],
            "meta": {"zone-1": "x" * 512},
            "ttl": 2.5,
        }
    )
    assert (full.address, full.port, full.env, full.tags, full.ttl) == (
        "fe80::1",
        65535,
        "prod",
        ("a", "b"),
        2.5,
    )


def test_parse_instance_null_optional_fields_mean_absent() -> None:
    record = parse_instance({"address": "h", "port": 1, "env": None, "tags": None, "meta": None})
    assert (record.env, record.tags, record.meta) == (DEFAULT_ENV, (), {})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"port": 1}, "address"),
        ({"address": "h"}, "port"),
        ({"address": "h", "port": None}, "port"),
        ({"address": ["h"], "port": 1}, "address"),
        ({"address": "[::1]", "port": 1}, "address"),
        ({"address": "h" * 254, "port": 1}, "address"),
        ({"address": "h", "port": -1}, "port"),
        (
            {"address": "h", "port": 1, "meta": {str(i): "v" for i in range(MAX_META_PAIRS + 1)}},
            "meta",
        ),
        ({"address": "h", "port": 1, "meta": {"k": "v" * 513}}, "meta"),
        ({"address": "h", "port": 1, "tags": ["x" * 257]}, "tags"),
        ({"address": "h", "port": 1, "tags": [""]}, "tags"),
        ({"address": "h", "port": 1, "tags": ["a\tb"]}, "tags"),
        ({"address": "fe80::1%lo", "port": 1}, "zone id"),
        ({"address": "999.999.999.999", "port": 1}, "IPv4"),
        ({"address": "-x", "port": 1}, "RFC 1123"),
        ({"address": "a_b.internal", "port": 1}, "RFC 1123"),
        ({"address": "h", "port": 1, "meta": {"w": "1\nserver 10.6.6.6:80"}}, "line breaks"),
        ({"address": "h", "port": 1, "ttl": "5"}, "ttl"),
        ({"address": "h", "port": 1, "ttl": 1e9}, "ttl"),
        ({"address": "h", "port": 1, "extra": 1}, "extra"),
    ],
)
def test_parse_instance_refuses(body: dict[str, Any], field: str) -> None:
    with pytest.raises(RegistryError, match=field):
        parse_instance(body)


def test_parse_event_defaults() -> None:
    event = parse_event({"host": "web-1", "service": "web", "state": "ok"}, NOW)
    assert event.stored() == {
        "host": "web-1",
        "service": "web",
        "state": "ok",
        "metric": None,
        "time": NOW,
        "ttl": DEFAULT_EVENT_TTL,
        "tags": [],
        "description": None,
    }
    assert parse_event({"host": "h", "service": "s", "state": "ok"}, NOW, 7.0).ttl == 7.0


def test_parse_event_keeps_given_fields() -> None:
    event = parse_event(
        {
            "host": "h",
            "service": "s",
            "state": "warning",
            "metric": 3,
            "time": NOW - 5,
            "ttl": 30,
            "tags": ["disk"],
            "description": "disk 91%\nnext line",
        },
        NOW,
    )
    assert (event.metric, event.time, event.ttl, event.tags) == (3.0, NOW - 5, 30.0, ("disk",))
    assert event.description == "disk 91%\nnext line"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"state": "expired"}, "state"),
        ({"state": None}, "state"),
        ({"service": "bad name"}, "service"),
        ({"metric": True}, "metric"),
        ({"metric": "1"}, "metric"),
        ({"time": -1}, "time"),
        ({"time": 0}, "more than 0"),
        ({"time": NOW + MAX_EVENT_FUTURE + 1}, "time"),
        ({"ttl": 0}, "ttl"),
        ({"description": "x" * 4097}, "description"),
        ({"description": "bell\a"}, "description"),
        ({"tags": {"a": 1}}, "tags"),
        ({"attributes": {}}, "attributes"),
    ],
)
def test_parse_event_refuses(change: dict[str, Any], field: str) -> None:
    body = {"host": "h", "service": "s", "state": "ok", **change}
    with pytest.raises(RegistryError, match=field):
        parse_event(body, NOW)


def test_parse_maintenance() -> None:
    assert parse_maintenance({"enable": False}).consistency == "local"
    wanted = parse_maintenance({"enable": True, "reason": "r", "consistency": "majority"})
    assert (wanted.enable, wanted.reason, wanted.consistency, wanted.timeout) == (
        True,
        "r",
        "majority",
        DEFAULT_QUORUM_TIMEOUT,
    )
    assert parse_maintenance({"enable": True, "timeout": 2}).timeout == 2.0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "enable"),
        ({"enable": 1}, "enable"),
        ({"enable": True, "consistency": "all"}, "consistency"),
        ({"enable": True, "timeout": 601}, "timeout"),
        ({"enable": True, "reason": ""}, "reason"),
        ({"enable": True, "why": "x"}, "why"),
    ],
)
def test_parse_maintenance_refuses(body: dict[str, Any], field: str) -> None:
    with pytest.raises(RegistryError, match=field):
        parse_maintenance(body)


def test_parse_release_and_expectation() -> None:
    release = parse_release({"version": "1.2.3", "build": "77", "commit": "abc"})
    assert (release.version, release.build, release.commit) == ("1.2.3", "77", "abc")
    assert parse_release({"version": "1"}).build is None
    assert parse_expectation({"min_passing": 0}) == 0
    assert parse_expectation({"min_passing": 3}) == 3


@pytest.mark.parametrize(
    "body", [{}, {"version": None}, {"version": "1", "commit": ""}, {"version": "x" * 513}]
)
def test_parse_release_refuses(body: dict[str, Any]) -> None:
    with pytest.raises(RegistryError):
        parse_release(body)


@pytest.mark.parametrize(
    "body", [{}, {"min_passing": True}, {"min_passing": "2"}, {"min_passing": 10**6}]
)
def test_parse_expectation_refuses(body: dict[str, Any]) -> None:
    with pytest.raises(RegistryError, match="min_passing"):
        parse_expectation(body)
