"""UDP transport: one asyncio datagram endpoint, frames of at most 1400 bytes."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from typing import Any

from crdtgossip.errors import ConfigError, TransportError
from crdtgossip.transport._address import (
    format_sockaddr,
    is_ip_literal,
    parse_address,
    resolve,
)
from crdtgossip.transport._base import ReceiveCallback, TransportStats, deliver

__all__ = ["UDP_MAX_DATAGRAM", "UdpTransport"]

_log = logging.getLogger(__name__)

UDP_MAX_DATAGRAM = 1400
"""Largest datagram sent or accepted, in bytes. It fits the 1500-byte Ethernet MTU
with room for IP, UDP and tunnel (VXLAN, WireGuard) headers, so datagrams are not
fragmented; memberlist's UDPBufferSize default is the same 1400."""

UDP_MAX_BUFFERED_BYTES = 1024 * 1024
"""Bytes asyncio may hold for a socket that is not writable before more frames are
dropped. Gossip is best effort and retransmits; queueing more only delays fresher
frames behind stale ones."""

UDP_MAX_PENDING_LOOKUPS = 64
"""Sends to DNS names waiting for their lookup at once; more are dropped, so a flood of
sends to an unresolvable name cannot pile up tasks without bound."""

ADDRESS_CACHE_SIZE = 4096
"""Addresses whose parse is remembered. Every datagram names its destination as text,
and a node sends to the same few members over and over: parsing each time cost about
3% of a Majority write. Bounded (least recently used go first), so a flood of distinct
addresses cannot grow it."""


@functools.lru_cache(maxsize=ADDRESS_CACHE_SIZE)
def _destination(address: str) -> tuple[str, int, bool]:
    """``(host, port, host is an IP literal)`` of a ``"host:port"`` address.

    Raises:
        ConfigError: the address is malformed (not remembered).
    """
    host, port = parse_address(address)
    return host, port, is_ip_literal(host)


class _Endpoint(asyncio.DatagramProtocol):
    """Glue from asyncio's datagram callbacks to the transport."""

    def __init__(self, owner: UdpTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._owner._datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # Reported for an earlier send (ICMP unreachable and the like): the frame was
        # lost on the way out.
        self._owner._stats.send_errors += 1
        _log.debug("UDP error on %s: %s", self._owner._bind, exc)


class UdpTransport:
    """A :class:`~crdtgossip.transport.Transport` over one UDP socket.

    Frames larger than ``max_datagram`` are dropped (and counted) on send and on
    receipt. The sender address reported is the datagram's source, which is the
    sender's listening address since it sends from the socket it receives on.
    A socket bound to an IPv6 address reaches IPv4 peers through IPv4-mapped
    addresses when the system allows dual stack (Linux does by default).

    Args:
        bind: ``"host:port"`` to bind; port 0 picks a free port.
        on_receive: called with ``(data, sender_address)`` for every frame.
        max_datagram: the largest frame, in bytes.

    Raises:
        ConfigError: ``bind`` is malformed or ``max_datagram`` is out of range.
    """

    def __init__(
        self,
        bind: str,
        on_receive: ReceiveCallback,
        *,
        max_datagram: int = UDP_MAX_DATAGRAM,
    ) -> None:
        self._bind_host, self._bind_port = parse_address(bind)
        # 65507 is the largest UDP payload over IPv4.
        if not 1 <= max_datagram <= 65507:
            raise ConfigError(f"max_datagram must be 1 to 65507 bytes, not {max_datagram}")
        self.max_datagram = max_datagram
        self._bind = bind
        self._on_receive = on_receive
        self._stats = TransportStats()
        self._transport: asyncio.DatagramTransport | None = None
        self._family = socket.AF_INET
        self._address: str | None = None
        self._lookups: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> str:
        """The ``"host:port"`` bound.

        Raises:
            TransportError: not started.
        """
        if self._address is None:
            raise TransportError("the UDP transport is not started")
        return self._address

    async def start(self) -> None:
        """Bind the socket and begin receiving.

        Raises:
            TransportError: already started, or the address cannot be resolved or
                bound.
        """
        if self._transport is not None:
            raise TransportError("the UDP transport is already started")
        family, host = await resolve(self._bind_host, self._bind_port, socket.SOCK_DGRAM)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Endpoint(self), local_addr=(host, self._bind_port), family=family
            )
        except OSError as exc:
            raise TransportError(f"cannot bind UDP {self._bind}: {exc}") from exc
        self._transport = transport
        self._loop = loop
        self._family = family
        self._address = format_sockaddr(transport.get_extra_info("sockname"))

    async def close(self) -> None:
        """Close the socket; idempotent. Frames still buffered are dropped."""
        for task in list(self._lookups):
            task.cancel()
        if self._lookups:
            await asyncio.gather(*self._lookups, return_exceptions=True)
        if self._transport is not None:
            self._transport.abort()
            self._transport = None

    def send(self, address: str, data: bytes) -> None:
        """Send one datagram to ``address``; never raises.

        A DNS name is looked up first, off the event loop; an IP literal goes out at
        once. Failures are counted in :meth:`stats`.
        """
        if self._transport is None or self._loop is None:
            self._stats.send_errors += 1
            return
        if len(data) > self.max_datagram:
            self._stats.oversize_drops += 1
            return
        try:
            host, port, literal = _destination(address)
        except (ConfigError, TypeError):  # TypeError: not hashable, so not a str
            self._stats.send_errors += 1
            return
        if port == 0:
            self._stats.send_errors += 1
            return
        if literal:
            self._send_to(host, port, bytes(data))
            return
        if len(self._lookups) >= UDP_MAX_PENDING_LOOKUPS:
            self._stats.send_errors += 1
            return
        task = self._loop.create_task(self._lookup_and_send(host, port, bytes(data)))
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

    def stats(self) -> dict[str, int]:
        """Counters (see :class:`~crdtgossip.transport.TransportStats`)."""
        return self._stats.as_dict()

    async def _lookup_and_send(self, host: str, port: int, data: bytes) -> None:
        try:
            # An IPv4 socket can only reach IPv4 addresses; a dual-stack one, both.
            wanted = socket.AF_INET if self._family == socket.AF_INET else socket.AF_UNSPEC
            _, ip = await resolve(host, port, socket.SOCK_DGRAM, wanted)
        except TransportError:
            self._stats.send_errors += 1
            return
        self._send_to(ip, port, data)

    def _send_to(self, ip: str, port: int, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            self._stats.send_errors += 1
            return
        if _buffered_bytes(transport) + len(data) > UDP_MAX_BUFFERED_BYTES:
            self._stats.send_errors += 1
            return
        destination = ip.partition("%")[0]
        is_v6 = ":" in destination
        if self._family == socket.AF_INET6 and not is_v6:
            # A dual-stack IPv6 socket reaches IPv4 peers by their mapped address.
            ip = f"::ffff:{ip}"
        elif self._family == socket.AF_INET and is_v6:
            mapped = ipaddress.IPv6Address(destination).ipv4_mapped
            if mapped is None:
                self._stats.send_errors += 1
                return
            ip = str(mapped)
        try:
            transport.sendto(data, (ip, port))
        except (OSError, ValueError, RuntimeError) as exc:
            self._stats.send_errors += 1
            _log.debug("UDP send to %s:%s failed: %s", ip, port, exc)
            return
        self._stats.frames_sent += 1
        self._stats.bytes_sent += len(data)

    def _datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) > self.max_datagram:
            self._stats.receive_errors += 1
            return
        deliver(self._on_receive, self._stats, data, format_sockaddr(addr))


def _buffered_bytes(transport: asyncio.DatagramTransport) -> int:
    """Bytes asyncio holds for ``transport`` until the socket is writable."""
    # asyncio's datagram transports have this method; typeshed declares it only on
    # WriteTransport.
    size = getattr(transport, "get_write_buffer_size", None)
    return int(size()) if callable(size) else 0
