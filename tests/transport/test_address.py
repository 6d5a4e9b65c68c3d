"""Tests of crdtgossip.transport._address: parsing and formatting "host:port"."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip.errors import ConfigError
from crdtgossip.transport import format_address, parse_address
from crdtgossip.transport._address import MAX_ADDRESS_LENGTH, format_sockaddr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7000", ("127.0.0.1", 7000)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("node-1.example.com:7946", ("node-1.example.com", 7946)),
        ("svc_a:1", ("svc_a", 1)),
        ("[::1]:7000", ("::1", 7000)),
        ("[::]:0", ("::", 0)),
        ("[fe80::1%eth0]:7000", ("fe80::1%eth0", 7000)),
        ("[::ffff:10.0.0.1]:80", ("::ffff:10.0.0.1", 80)),
    ],
)
def test_parse_accepts_well_formed_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "host:port"),
        ("127.0.0.1", "host:port"),
        (":7000", "not a host name"),
        ("127.0.0.1:", "port"),
        ("127.0.0.1:65536", "port"),
        ("127.0.0.1:-1", "port"),
        ("127.0.0.1:+80", "port"),
        ("127.0.0.1: 80", "port"),
        ("127.0.0.1:0x50", "port"),
        ("127.0.0.1:٣", "port"),  # a non-ASCII digit
        ("::1:7000", "brackets"),
        ("[::1]7000", "IPv6"),
        ("[::1:7000", "IPv6"),
        ("[not-v6]:7000", "not an IPv6"),
        ("[127.0.0.1]:7000", "not an IPv6"),
        ("bad host:7000", "not a host name"),
        ("-leading.example:7000", "not a host name"),
        ("a..b:7000", "not a host name"),
        ("héllo:7000", "not a host name"),
        ("a" * 64 + ":7000", "not a host name"),
        ("a" * (MAX_ADDRESS_LENGTH + 1) + ":1", "longer than"),
    ],
)
def test_parse_refuses_malformed_addresses(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_address(text)


def test_parse_refuses_non_str() -> None:
    with pytest.raises(ConfigError, match="must be a str"):
        parse_address(b"127.0.0.1:80")  # type: ignore[arg-type]


def test_format_brackets_ipv6_only() -> None:
    assert format_address("127.0.0.1", 7000) == "127.0.0.1:7000"
    assert format_address("::1", 7000) == "[::1]:7000"
    assert format_address("node-1", 1) == "node-1:1"


def test_format_sockaddr_unmaps_ipv4_mapped_addresses() -> None:
    assert format_sockaddr(("::ffff:127.0.0.1", 9, 0, 0)) == "127.0.0.1:9"
    assert format_sockaddr(("::1", 9, 0, 0)) == "[::1]:9"
    assert format_sockaddr(("10.1.2.3", 9)) == "10.1.2.3:9"


@given(st.ip_addresses(), st.integers(min_value=0, max_value=65535))
def test_format_then_parse_round_trips(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    assert parse_address(format_address(str(ip), port)) == (str(ip), port)


@given(st.text(max_size=80))
def test_parse_of_any_text_raises_only_config_error(text: str) -> None:
    try:
        host, port = parse_address(text)
    except ConfigError:
        return
    assert 0 <= port <= 65535
    assert parse_address(format_address(host, port)) == (host, port)
