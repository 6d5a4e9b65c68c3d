"""The TCP hello: who is sending on this connection, and, with a keyring, proof of it.

The first frame of every connection is a *hello*, a payload of
``b"CGT" || version (1 byte) || body``:

* version 1 (no authenticator): the body is the sender's listening ``"host:port"`` in
  ASCII, so the receiver can report the address to reply to rather than the
  connection's ephemeral source port;
* version 2 (with an authenticator, such as a :class:`~crdtgossip.Keyring`): on
  accepting, the receiver first writes a random *challenge* of
  :data:`TCP_CHALLENGE_SIZE` bytes; the body is ``authenticator.seal(challenge ||
  address)``. The receiver opens it and compares the challenge, so a hello recorded from
  the wire cannot be replayed on another connection, and no clock needs to agree.

Until its hello has passed, a connection may send nothing larger than
:data:`TCP_UNAUTHENTICATED_MAX_FRAME`; that is what keeps a peer without the key from
making a node buffer anything worth having.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
from typing import Any, Protocol

from crdtgossip.errors import ConfigError, DecodeError
from crdtgossip.transport._address import (
    MAX_ADDRESS_LENGTH,
    format_address,
    format_sockaddr,
    parse_address,
)

__all__ = [
    "TCP_CHALLENGE_SIZE",
    "TCP_HELLO_MAGIC",
    "TCP_HELLO_VERSION",
    "TCP_MAX_HELLO_SIZE",
    "TCP_SEALED_HELLO_VERSION",
    "TCP_UNAUTHENTICATED_MAX_FRAME",
    "Authenticator",
    "HelloRefused",
    "check_hello",
    "make_hello",
]

TCP_HELLO_MAGIC = b"CGT"
"""First bytes of a hello payload: tells a crdtgossip peer from a stray client (an HTTP
health checker, a port scanner) at the first frame."""

TCP_HELLO_VERSION = 1
"""Version of a plain hello (no authenticator): the body is the address."""

TCP_SEALED_HELLO_VERSION = 2
"""Version of a sealed hello: the body is the sealed challenge and address."""

TCP_CHALLENGE_SIZE = 16
"""Bytes of the random challenge a receiver with an authenticator writes on accepting: 128
bits, so a recorded hello matches a later challenge with negligible probability."""

TCP_MAX_HELLO_SIZE = len(TCP_HELLO_MAGIC) + 1 + MAX_ADDRESS_LENGTH
"""Largest plain hello payload: magic, version and the longest address accepted."""

TCP_UNAUTHENTICATED_MAX_FRAME = 1024
"""Largest frame, in bytes, a connection may send before its hello has passed: the
longest sealed hello is 304 + 16 + 33 (keyring seal) = 353 bytes. A prefix over this
closes the connection at once, before its body is read, so a peer that cannot
authenticate never makes a node buffer more than this. nginx reads request headers
into a 1 KiB buffer by default (``client_header_buffer_size``) for the same reason."""


class Authenticator(Protocol):
    """What the transport needs to seal and check hellos: a :class:`~crdtgossip.Keyring`
    fits."""

    def seal(self, plaintext: bytes) -> bytes:
        """Return ``plaintext`` encrypted and authenticated."""
        ...

    def open(self, frame: bytes) -> bytes:
        """Return the plaintext of a sealed frame.

        Raises:
            DecodeError: the frame does not authenticate.
        """
        ...


class HelloRefused(Exception):
    """A hello was malformed or did not authenticate.

    Attributes:
        authentication: True when the hello was well formed but failed authentication
            (unsealed where a seal is required, wrong key, wrong challenge).
    """

    def __init__(self, reason: str, *, authentication: bool = False) -> None:
        super().__init__(reason)
        self.authentication = authentication


def make_hello(
    address: str, authenticator: Authenticator | None, challenge: bytes | None = None
) -> bytes:
    """Return the hello payload (not framed) announcing ``address``.

    Args:
        address: the sender's listening ``"host:port"``.
        authenticator: seals the hello, or None for a plain one.
        challenge: the receiver's challenge; required with an authenticator.

    Returns:
        The payload.

    Raises:
        ValueError: an authenticator without a challenge of the right size.
    """
    body = address.encode("ascii")
    if authenticator is None:
        return TCP_HELLO_MAGIC + bytes([TCP_HELLO_VERSION]) + body
    if challenge is None or len(challenge) != TCP_CHALLENGE_SIZE:
        raise ValueError(f"a sealed hello needs a challenge of {TCP_CHALLENGE_SIZE} bytes")
    sealed = authenticator.seal(challenge + body)
    return TCP_HELLO_MAGIC + bytes([TCP_SEALED_HELLO_VERSION]) + sealed


def check_hello(
    payload: bytes, peer: Any, authenticator: Authenticator | None, challenge: bytes | None
) -> str:
    """Check a hello and return the address to reply to.

    A sender listening on a wildcard address (``0.0.0.0`` or ``::``) is reported with
    the connection's source IP and its listening port.

    Args:
        payload: the hello frame's payload.
        peer: the connection's peer socket address, as asyncio reports it.
        authenticator: opens sealed hellos; None accepts only plain ones.
        challenge: what this side wrote to the connection (with an authenticator).

    Returns:
        The sender's listening ``"host:port"``.

    Raises:
        HelloRefused: malformed, or not authenticated as required.
    """
    prefix = len(TCP_HELLO_MAGIC)
    if payload[:prefix] != TCP_HELLO_MAGIC:
        raise HelloRefused("not a crdtgossip hello")
    version = payload[prefix : prefix + 1]
    body = payload[prefix + 1 :]
    if authenticator is None:
        if version != bytes([TCP_HELLO_VERSION]):
            raise HelloRefused(f"hello version {version!r}: a plain hello is expected")
    else:
        if version != bytes([TCP_SEALED_HELLO_VERSION]):
            raise HelloRefused("the hello is not sealed, and a keyring is set", authentication=True)
        assert challenge is not None
        try:
            opened = authenticator.open(body)
        except DecodeError as exc:
            raise HelloRefused(f"the hello did not open: {exc}", authentication=True) from None
        if not hmac.compare_digest(opened[:TCP_CHALLENGE_SIZE], challenge):
            raise HelloRefused("the hello answers another challenge", authentication=True)
        body = opened[TCP_CHALLENGE_SIZE:]
    try:
        host, port = parse_address(body.decode("ascii"))
    except (UnicodeDecodeError, ConfigError):
        raise HelloRefused("the hello holds no address") from None
    if port == 0:
        raise HelloRefused("the hello names port 0")
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_unspecified and peer:
            # Listening on every interface: the connection's source IP is the one
            # that reached us, so it is the one to reply to.
            peer_host, _, _ = format_sockaddr(peer).rpartition(":")
            return f"{peer_host}:{port}"
    return format_address(host, port)
