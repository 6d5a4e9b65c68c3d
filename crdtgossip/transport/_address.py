"""Parsing and formatting of ``"host:port"`` addresses, IPv6 as ``"[::1]:7000"``."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from typing import Any

from crdtgossip.errors import ConfigError, TransportError

__all__ = [
    "MAX_ADDRESS_LENGTH",
    "format_address",
    "format_sockaddr",
    "is_ip_literal",
    "parse_address",
    "resolve",
]

MAX_ADDRESS_LENGTH = 300
"""Longest address text accepted: a DNS name is at most 253 characters (RFC 1035), an
IPv6 literal with a zone id well under that, plus brackets, colon and five port digits.
Addresses arrive from the network (peers announce them), so the parser bounds them."""

_MAX_LABEL_LENGTH = 63
"""Longest DNS label (RFC 1035)."""

# RFC 1123 host names, with underscores tolerated because container runtimes use them.
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")


def parse_address(text: str) -> tuple[str, int]:
    """Split ``"host:port"`` into a host and a port.

    The host is an IPv4 literal, a DNS name, or an IPv6 literal in brackets (an
    optional zone id after ``%`` is kept): ``"127.0.0.1:7000"``, ``"node-1:7000"``,
    ``"[::1]:7000"``, ``"[fe80::1%eth0]:7000"``. Port 0 is accepted (bind to any free
    port); whoever sends must refuse it.

    Args:
        text: the address.

    Returns:
        ``(host, port)``, the host without brackets.

    Raises:
        ConfigError: the text is not a well-formed address; the message says why.
    """
    if not isinstance(text, str):
        raise ConfigError(f"an address must be a str 'host:port', not {type(text).__name__}")
    if len(text) > MAX_ADDRESS_LENGTH:
        raise ConfigError(f"address longer than {MAX_ADDRESS_LENGTH} characters")
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ConfigError(f"bad address {text!r}: expected '[IPv6]:port', like '[::1]:7000'")
        host, port_text = text[1:close], text[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"bad address {text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, separator, port_text = text.rpartition(":")
        if not separator:
            raise ConfigError(f"bad address {text!r}: expected 'host:port', like '127.0.0.1:7000'")
        if ":" in host:
            raise ConfigError(
                f"bad address {text!r}: put an IPv6 address in brackets, like '[::1]:7000'"
            )
        if not _is_host_name(host):
            raise ConfigError(f"bad address {text!r}: {host!r} is not a host name or IPv4 address")
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ConfigError(f"bad address {text!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    """Join a host and a port into ``"host:port"``, bracketing IPv6 literals.

    Args:
        host: an IPv4 or IPv6 literal (without brackets) or a DNS name.
        port: the port.

    Returns:
        The address text, which :func:`parse_address` reads back.
    """
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def format_sockaddr(sockaddr: Any) -> str:
    """Format a socket address tuple as ``"host:port"``.

    IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``, as a dual-stack socket reports
    IPv4 peers) are written as plain IPv4, so one peer has one address whichever
    socket family saw it.

    Args:
        sockaddr: ``(host, port)`` or ``(host, port, flowinfo, scope_id)`` as the
            socket module returns them.

    Returns:
        The address text.
    """
    host, port = str(sockaddr[0]), int(sockaddr[1])
    if ":" in host:
        try:
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
        except ValueError:
            mapped = None
        if mapped is not None:
            host = str(mapped)
    return format_address(host, port)


def is_ip_literal(host: str) -> bool:
    """Tell whether ``host`` is an IPv4 or IPv6 literal (so needs no name lookup)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve(
    host: str,
    port: int,
    kind: socket.SocketKind,
    family: socket.AddressFamily = socket.AF_UNSPEC,
) -> tuple[socket.AddressFamily, str]:
    """Resolve ``host`` to one address without blocking the event loop.

    Binding a name such as ``localhost`` to port 0 would otherwise give one socket per
    resolved address, each on a different port; resolving first gives one socket and
    one address.

    Args:
        host: an IP literal or a DNS name.
        port: the port.
        kind: ``socket.SOCK_DGRAM`` or ``socket.SOCK_STREAM``.
        family: only addresses of this family (``AF_UNSPEC``: any).

    Returns:
        ``(family, ip)`` of the first address found.

    Raises:
        TransportError: the name does not resolve.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, family=family, type=kind)
    except OSError as exc:
        raise TransportError(f"cannot resolve {host!r}: {exc}") from exc
    if not infos:
        raise TransportError(f"cannot resolve {host!r}: no address")
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


def _is_host_name(host: str) -> bool:
    """Tell whether ``host`` is a syntactically valid DNS name or IPv4 literal."""
    if not host or len(host) > 253:
        return False
    return all(
        len(label) <= _MAX_LABEL_LENGTH and _HOST_LABEL.fullmatch(label) is not None
        for label in host.split(".")
    )
