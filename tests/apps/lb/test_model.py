"""Instances from the agent's JSON, and what is safe to write into a config."""

from __future__ import annotations

from typing import Any

import pytest

from crdtgossip.apps.lb import Instance, endpoint, parse_instances, safe_name
from crdtgossip.errors import DecodeError
from tests.apps.lb.fake_agent import instance


def test_parse_reads_the_contract_fields_and_ignores_extra_ones() -> None:
    (parsed,) = parse_instances({"instances": [instance("web-1", "10.0.0.1", 80)]})
    assert parsed == Instance(
        id="web-1",
        address="10.0.0.1",
        port=80,
        env="prod",
        tags=("http",),
        meta={"zone": "a"},
        health="passing",
        maintenance=False,
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", "80"),
        ("port", True),
        ("id", 7),
        ("address", None),
        ("tags", "http"),
        ("tags", [1]),
        ("meta", {"zone": 1}),
        ("maintenance", "no"),
        ("health", None),
        ("env", 3),
    ],
)
def test_parse_refuses_a_field_of_the_wrong_type(field: str, value: object) -> None:
    item: dict[str, Any] = instance("web-1", "10.0.0.1", 80)
    item[field] = value
    with pytest.raises(DecodeError, match=field if field != "id" else "'id'"):
        parse_instances({"instances": [item]})


@pytest.mark.parametrize("reply", [[], {"instances": {}}, {"services": []}, None])
def test_parse_refuses_a_reply_of_another_shape(reply: object) -> None:
    with pytest.raises(DecodeError, match="instances"):
        parse_instances(reply)


@pytest.mark.parametrize("name", ["web", "web-1", "api_v2", "a.b.c", "9lives", "x" * 253])
def test_safe_names(name: str) -> None:
    assert safe_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-web",
        ".hidden",
        "web api",
        "web;",
        "web{",
        "web}",
        "web#x",
        'we"b',
        "web'",
        "web\n",
        "web/x",
        "web:80",
        "wéb",
        "x" * 254,
    ],
)
def test_unsafe_names(name: str) -> None:
    assert not safe_name(name)


@pytest.mark.parametrize(
    ("address", "port", "written"),
    [
        ("10.0.0.1", 80, "10.0.0.1:80"),
        ("2001:DB8:0:0::1", 443, "[2001:db8::1]:443"),
        ("::1", 1, "[::1]:1"),
        ("Web-1.Internal", 65535, "web-1.internal:65535"),
        ("svc-a.local", 8080, "svc-a.local:8080"),
    ],
)
def test_endpoint_formats_what_proxies_accept(address: str, port: int, written: str) -> None:
    assert endpoint(address, port) == written
    assert Instance("i", address, port).endpoint == written


@pytest.mark.parametrize(
    ("address", "port"),
    [
        ("10.0.0.1", 0),
        ("10.0.0.1", 65536),
        ("10.0.0.1", -1),
        ("10.0.0.1; include /etc/passwd", 80),
        ("10.0.0.1:80", 80),
        ("[::1]", 80),
        ("fe80::1%eth0;x", 80),
        ("fe80::1%lo", 80),
        ("999.999.999.999", 80),
        ("010.0.0.1", 80),
        ("svc_a.local", 80),
        ("-x", 80),
        ("a-.b", 80),
        ("host name", 80),
        ("host\nname", 80),
        ("-host", 80),
        ("a..b", 80),
        ("", 80),
        ("a" * 64, 80),
    ],
)
def test_endpoint_refuses_what_could_inject_or_break(address: str, port: int) -> None:
    assert endpoint(address, port) is None


def test_endpoint_refuses_a_boolean_port() -> None:
    assert endpoint("10.0.0.1", True) is None
