"""Which instance addresses the registry accepts and the renderers write.

One policy for both sides, so what the registry accepts is what nginx and haproxy
accept and a registration can never freeze a load balancer:

* an IPv4 literal in dotted-quad form (``10.0.0.1``; no leading zeros, each part at
  most 255), or an IPv6 literal without brackets (``2001:db8::1``) and without a zone
  id: ``fe80::1%eth0`` is refused, since neither nginx nor haproxy resolves it in a
  ``server`` line;
* or a host name under RFC 1123: dot-separated labels of 1 to 63 letters, digits and
  ``-``, neither starting nor ending with ``-``, at most 253 characters in all, and a
  last label that is not all digits (``999.999.999.999`` is a broken IP address, not a
  name). No ``_``, no trailing dot.

A name that passes can still fail to resolve when the proxy checks its configuration
(``doesnotexist.invalid``); the renderer then leaves that instance out and renders the
rest (see :mod:`crdtgossip.apps.lb`).
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["MAX_ADDRESS_LENGTH", "address_problem", "format_endpoint"]

#: Longest address: a DNS name is at most 253 characters (RFC 1035).
MAX_ADDRESS_LENGTH = 253

# RFC 1123 label: letters, digits and "-", 1 to 63 characters, not starting or ending
# with "-".
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")

#: Highest TCP port.
_MAX_PORT = 65_535


def address_problem(address: str) -> str | None:
    """Why ``address`` is not accepted, or None when it is.

    Args:
        address: what a registration gives as ``address``.

    Returns:
        None for an IP literal or host name of the module's policy; otherwise a short
        reason, free of the address itself, for an error message.
    """
    if not address or len(address) > MAX_ADDRESS_LENGTH:
        return f"it must be 1 to {MAX_ADDRESS_LENGTH} characters long"
    if "%" in address:
        return "an IPv6 zone id (after '%') is not accepted by nginx or haproxy"
    if ":" in address:
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return "it is not a valid IPv6 address (give IPv6 without brackets)"
        return None
    if _HOST_NAME.fullmatch(address) is None:
        return (
            "it is neither an IP address nor a host name of RFC 1123 labels "
            "(letters, digits and '-', not starting or ending with '-')"
        )
    if address.rsplit(".", 1)[-1].isdigit():
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            return "it is not a valid IPv4 address"
    return None


def format_endpoint(address: str, port: int) -> str | None:
    """``address:port`` as nginx and haproxy write it (IPv6 in brackets), or None.

    Args:
        address: an address :func:`address_problem` accepts.
        port: 1 to 65535.

    Returns:
        ``10.0.0.1:80``, ``[2001:db8::1]:80`` or ``web-1.internal:80`` (names in lower
        case); None when the address or the port is refused.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= _MAX_PORT:
        return None
    if address_problem(address) is not None:
        return None
    if ":" in address:
        return f"[{ipaddress.IPv6Address(address).compressed}]:{port}"
    return f"{address.lower()}:{port}"
