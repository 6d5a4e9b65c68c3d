"""TCP transport (optionally TLS): length-prefixed frames over pooled connections.

Wire format. Each connection carries frames in one direction only, from the side that
connected to the side that accepted::

    frame := length (4 bytes, big-endian, unsigned) || payload (length bytes)

The first frame of every connection is a *hello* whose payload is
``b"CGT" || version (1 byte) || the sender's listening "host:port" in ASCII``, so the
receiver can report the address to reply to rather than the connection's ephemeral
source port. A sender listening on a wildcard address (``0.0.0.0`` or ``::``) is
reported with the connection's source IP and its listening port.

Sending never waits: a frame goes into the pooled connection's buffer (or, while the
connection is being made, into a bounded queue). Idle connections are closed after
``idle_timeout`` seconds. On the receiving side, malformed input (a bad hello, a length
over ``max_frame``, a truncated frame) closes that one connection and is counted; the
server goes on serving everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from typing import Any

from crdtgossip.errors import ConfigError, TransportError
from crdtgossip.transport._address import (
    MAX_ADDRESS_LENGTH,
    format_address,
    format_sockaddr,
    parse_address,
    resolve,
)
from crdtgossip.transport._base import ReceiveCallback, TransportStats, deliver

__all__ = [
    "TCP_CONNECT_TIMEOUT",
    "TCP_HELLO_MAGIC",
    "TCP_HELLO_VERSION",
    "TCP_IDLE_TIMEOUT",
    "TCP_MAX_FRAME",
    "TcpTransport",
]

_log = logging.getLogger(__name__)

TCP_MAX_FRAME = 16 * 1024 * 1024
"""Default largest frame in bytes, sent or accepted. Large enough for a push-pull state
exchange of many keys; small enough that a hostile length prefix cannot make a node
buffer more than this per connection (etcd caps requests at 1.5 MiB, gRPC messages
default to 4 MiB; anti-entropy splits anything larger)."""

TCP_LENGTH_SIZE = 4
"""Bytes of the big-endian length prefix of every frame."""

_MAX_LENGTH_FIELD = 2 ** (8 * TCP_LENGTH_SIZE) - 1

TCP_HELLO_MAGIC = b"CGT"
"""First bytes of a hello payload: tells a crdtgossip peer from a stray client (an HTTP
health checker, a port scanner) at the first frame."""

TCP_HELLO_VERSION = 1
"""Version of the connection protocol, carried in the hello."""

TCP_MAX_HELLO_SIZE = len(TCP_HELLO_MAGIC) + 1 + MAX_ADDRESS_LENGTH
"""Largest hello payload: magic, version and the longest address accepted."""

TCP_CONNECT_TIMEOUT = 10.0
"""Seconds to connect (and finish the TLS handshake) before the queued frames are
dropped; memberlist's TCPTimeout default is also 10 s."""

TCP_HELLO_TIMEOUT = 10.0
"""Seconds an accepted connection may take to finish its TLS handshake, and then to send
its hello, before it is closed, so connections that never speak cannot hold server
resources."""

TCP_IDLE_TIMEOUT = 60.0
"""Default seconds an outgoing connection may stay unused before it is closed. Longer
than the default push-pull interval (memberlist: 30 s), so a pair of nodes keeps one
connection between exchanges instead of reconnecting for each."""

TCP_INBOUND_IDLE_GRACE = 30.0
"""Seconds beyond ``idle_timeout`` an accepted connection may stay silent before the
receiver closes it: the sender closes idle connections itself, so this only reclaims
connections from peers that vanished without a FIN."""

TCP_MAX_INBOUND_CONNECTIONS = 1024
"""Accepted connections held at once; past this new ones are closed at once and
counted. One connection per peer sending to us, so this allows clusters of about a
thousand nodes while bounding descriptors and memory against a connection flood."""

TCP_SEND_BUFFER_LIMIT = 64 * 1024 * 1024
"""Bytes that may wait to be written to one peer (queued while connecting, or in the
socket's buffer) before further frames to it are dropped; raised to twice
``max_frame`` when that is larger, so one maximal frame always fits."""

TCP_CLOSE_TIMEOUT = 5.0
"""Seconds :meth:`TcpTransport.close` waits for accepted connections to wind down after
cutting them (normally at once) before cancelling what is left."""

_READ_CHUNK = 64 * 1024


class _FrameTooLarge(Exception):
    """A length prefix exceeded the bound for that frame."""


class _Outbound:
    """A pooled connection to one peer, or the attempt to make it."""

    __slots__ = ("address", "host", "last_used", "pending", "pending_bytes", "port", "writer")

    def __init__(self, address: str, host: str, port: int, now: float) -> None:
        self.address = address
        self.host = host
        self.port = port
        self.writer: asyncio.StreamWriter | None = None
        self.pending: list[tuple[bytes, int]] = []  # (framed bytes, payload length)
        self.pending_bytes = 0
        self.last_used = now


class TcpTransport:
    """A :class:`~crdtgossip.transport.Transport` over TCP, with TLS if contexts are given.

    Args:
        bind: ``"host:port"`` to listen on; port 0 picks a free port.
        on_receive: called with ``(data, sender_listening_address)`` for every frame.
        ssl_context: the server-side TLS context (``ssl.PROTOCOL_TLS_SERVER``), used
            for accepted connections. Set ``verify_mode = ssl.CERT_REQUIRED`` on it for
            mutual TLS.
        client_ssl_context: the client-side TLS context (``ssl.PROTOCOL_TLS_CLIENT``),
            used for outgoing connections; the destination host is the name checked
            against the peer's certificate. Give both contexts or neither.
        max_frame: the largest frame in bytes, sent or accepted.
        idle_timeout: seconds an outgoing connection may stay unused before closing.

    Raises:
        ConfigError: ``bind`` is malformed, only one TLS context is given, or a bound
            is out of range.
    """

    def __init__(
        self,
        bind: str,
        on_receive: ReceiveCallback,
        ssl_context: ssl.SSLContext | None = None,
        max_frame: int = TCP_MAX_FRAME,
        *,
        client_ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = TCP_IDLE_TIMEOUT,
    ) -> None:
        self._bind_host, self._bind_port = parse_address(bind)
        if (ssl_context is None) != (client_ssl_context is None):
            raise ConfigError(
                "TLS needs both ssl_context (server side, for accepted connections) and "
                "client_ssl_context (client side, for outgoing ones), or neither"
            )
        if not 1 <= max_frame <= _MAX_LENGTH_FIELD:
            raise ConfigError(f"max_frame must be 1 to {_MAX_LENGTH_FIELD} bytes, not {max_frame}")
        if not idle_timeout > 0:
            raise ConfigError(f"idle_timeout must be more than 0 seconds, not {idle_timeout!r}")
        self.max_datagram = max_frame
        self._bind = bind
        self._on_receive = on_receive
        self._server_ssl = ssl_context
        self._client_ssl = client_ssl_context
        self._idle_timeout = float(idle_timeout)
        self._buffer_limit = max(TCP_SEND_BUFFER_LIMIT, 2 * max_frame)
        self._stats = TransportStats()
        self._extra = dict.fromkeys(
            (
                "connections_opened",
                "connections_accepted",
                "connections_rejected",
                "connect_failures",
                "idle_closes",
            ),
            0,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._address: str | None = None
        self._hello = b""
        self._outbound: dict[str, _Outbound] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Accepted connections: the task asyncio runs _serve in, and its writer.
        self._inbound: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._closed = False

    @property
    def max_frame(self) -> int:
        """The largest frame in bytes (the same as ``max_datagram``)."""
        return self.max_datagram

    @property
    def address(self) -> str:
        """The ``"host:port"`` listened on.

        Raises:
            TransportError: not started.
        """
        if self._address is None:
            raise TransportError("the TCP transport is not started")
        return self._address

    async def start(self) -> None:
        """Listen and begin accepting connections.

        Raises:
            TransportError: already started or closed, or the address cannot be
                resolved or bound.
        """
        if self._server is not None or self._closed:
            raise TransportError("a TCP transport can be started only once")
        family, host = await resolve(self._bind_host, self._bind_port, socket.SOCK_STREAM)
        loop = asyncio.get_running_loop()
        try:
            server = await asyncio.start_server(
                self._serve,
                host,
                self._bind_port,
                family=family,
                ssl=self._server_ssl,
                ssl_handshake_timeout=TCP_HELLO_TIMEOUT if self._server_ssl else None,
                reuse_address=True,
            )
        except OSError as exc:
            raise TransportError(f"cannot listen on TCP {self._bind}: {exc}") from exc
        self._loop = loop
        self._server = server
        self._address = format_sockaddr(server.sockets[0].getsockname())
        self._hello = _frame(
            TCP_HELLO_MAGIC + bytes([TCP_HELLO_VERSION]) + self._address.encode("ascii")
        )
        self._spawn(self._sweep_idle())

    async def close(self) -> None:
        """Stop listening and close every connection; idempotent.

        Frames not yet written are dropped.
        """
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for connection in self._outbound.values():
            if connection.writer is not None:
                connection.writer.transport.abort()
        self._outbound.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Accepted connections run in tasks asyncio made; cancelling them makes asyncio
        # log an error (its done-callback asks a cancelled task for its exception), so
        # cut their connections instead and let them finish.
        serving = list(self._inbound)
        for writer in self._inbound.values():
            writer.transport.abort()
        if serving:
            _, stuck = await asyncio.wait(serving, timeout=TCP_CLOSE_TIMEOUT)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    def send(self, address: str, data: bytes) -> None:
        """Queue one frame for ``address`` on a pooled connection; never raises.

        Frames to one address are written in the order sent. Failures (bad address,
        connection refused or timed out, buffer full) are counted in :meth:`stats`.
        """
        if self._loop is None or self._closed:
            self._stats.send_errors += 1
            return
        if len(data) > self.max_datagram:
            self._stats.oversize_drops += 1
            return
        connection = self._outbound.get(address)
        if (
            connection is not None
            and connection.writer is not None
            and connection.writer.is_closing()
        ):
            # The peer went away; forget this connection and make a new one.
            del self._outbound[address]
            connection = None
        if connection is None:
            try:
                host, port = parse_address(address)
            except ConfigError:
                self._stats.send_errors += 1
                return
            if port == 0:
                self._stats.send_errors += 1
                return
            connection = _Outbound(address, host, port, self._loop.time())
            self._outbound[address] = connection
            self._spawn(self._run_outbound(connection))
        framed = _frame(data)
        connection.last_used = self._loop.time()
        writer = connection.writer
        if writer is None:
            if connection.pending_bytes + len(framed) > self._buffer_limit:
                self._stats.send_errors += 1
                return
            connection.pending.append((framed, len(data)))
            connection.pending_bytes += len(framed)
            return
        if writer.transport.get_write_buffer_size() + len(framed) > self._buffer_limit:
            self._stats.send_errors += 1
            return
        self._write(writer, framed, len(data))

    def stats(self) -> dict[str, int]:
        """Counters: those of :class:`~crdtgossip.transport.TransportStats`, plus
        ``connections_opened`` (outgoing, connected), ``connections_accepted``,
        ``connections_rejected`` (over the inbound limit), ``connect_failures`` and
        ``idle_closes``; and ``open_connections`` (outgoing and accepted, now)."""
        counters = self._stats.as_dict()
        counters.update(self._extra)
        counters["open_connections"] = sum(
            1 for c in self._outbound.values() if c.writer is not None
        ) + len(self._inbound)
        return counters

    def _spawn(self, coroutine: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write(self, writer: asyncio.StreamWriter, framed: bytes, payload_length: int) -> None:
        try:
            writer.write(framed)
        except (OSError, RuntimeError) as exc:
            self._stats.send_errors += 1
            _log.debug("TCP write failed: %s", exc)
            return
        self._stats.frames_sent += 1
        self._stats.bytes_sent += payload_length

    async def _run_outbound(self, connection: _Outbound) -> None:
        """Connect, send the hello and the queued frames, then watch for the close."""
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                reader, stream = await asyncio.wait_for(
                    asyncio.open_connection(
                        connection.host,
                        connection.port,
                        ssl=self._client_ssl,
                        server_hostname=connection.host if self._client_ssl else None,
                        ssl_handshake_timeout=TCP_CONNECT_TIMEOUT if self._client_ssl else None,
                    ),
                    TCP_CONNECT_TIMEOUT,
                )
            except (OSError, TimeoutError) as exc:
                self._extra["connect_failures"] += 1
                self._stats.send_errors += len(connection.pending)
                _log.debug("TCP connect to %s failed: %s", connection.address, exc)
                return
            writer = stream
            self._extra["connections_opened"] += 1
            stream.write(self._hello)
            connection.writer = stream
            for framed, payload_length in connection.pending:
                self._write(stream, framed, payload_length)
            connection.pending.clear()
            connection.pending_bytes = 0
            # Nothing is read on an outgoing connection; reading only notices the close.
            if await reader.read(_READ_CHUNK):
                # A peer that writes here does not speak this protocol.
                self._stats.receive_errors += 1
        except (OSError, TimeoutError) as exc:
            _log.debug("TCP connection to %s lost: %s", connection.address, exc)
        finally:
            if self._outbound.get(connection.address) is connection:
                del self._outbound[connection.address]
            if writer is not None:
                if self._closed:
                    writer.transport.abort()
                else:
                    writer.close()

    async def _sweep_idle(self) -> None:
        """Close outgoing connections unused for longer than ``idle_timeout``."""
        assert self._loop is not None
        interval = self._idle_timeout / 4
        while True:
            await asyncio.sleep(interval)
            now = self._loop.time()
            for address, connection in list(self._outbound.items()):
                if connection.writer is None:
                    continue
                if now - connection.last_used > self._idle_timeout:
                    del self._outbound[address]
                    self._extra["idle_closes"] += 1
                    # Graceful: frames still buffered are written before the FIN.
                    connection.writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read the hello, then frames, from one accepted connection until it ends."""
        task = asyncio.current_task()
        if self._closed or task is None or len(self._inbound) >= TCP_MAX_INBOUND_CONNECTIONS:
            self._extra["connections_rejected"] += 1
            writer.transport.abort()
            return
        self._inbound[task] = writer
        self._extra["connections_accepted"] += 1
        peer = writer.get_extra_info("peername")
        read_timeout = self._idle_timeout + TCP_INBOUND_IDLE_GRACE
        try:
            hello = await _read_frame(reader, TCP_MAX_HELLO_SIZE, TCP_HELLO_TIMEOUT)
            sender = _parse_hello(hello, peer) if hello is not None else None
            if sender is None:
                if not self._closed:
                    self._stats.receive_errors += 1
                return
            while True:
                data = await _read_frame(reader, self.max_datagram, read_timeout)
                if data is None:
                    return
                deliver(self._on_receive, self._stats, data, sender)
        except (_FrameTooLarge, asyncio.IncompleteReadError):
            if not self._closed:  # close() cutting a connection is not the peer's fault
                self._stats.receive_errors += 1
        except TimeoutError:
            _log.debug("closing silent TCP connection from %s", peer)
        except OSError as exc:
            _log.debug("TCP connection from %s failed: %s", peer, exc)
        finally:
            self._inbound.pop(task, None)
            writer.transport.abort()


def _frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length."""
    return len(payload).to_bytes(TCP_LENGTH_SIZE, "big") + payload


async def _read_frame(reader: asyncio.StreamReader, limit: int, timeout: float) -> bytes | None:
    """Read one frame of at most ``limit`` bytes, each part within ``timeout`` seconds.

    Returns:
        The payload, or None at a clean end of stream (between frames).

    Raises:
        _FrameTooLarge: the length prefix exceeds ``limit``.
        asyncio.IncompleteReadError: the stream ended inside a frame.
        TimeoutError: a part did not arrive in time.
    """
    try:
        header = await asyncio.wait_for(reader.readexactly(TCP_LENGTH_SIZE), timeout)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    length = int.from_bytes(header, "big")
    if length > limit:
        raise _FrameTooLarge(length)
    return await asyncio.wait_for(reader.readexactly(length), timeout)


def _parse_hello(payload: bytes, peer: Any) -> str | None:
    """Return the sender's listening address from a hello, or None if it is malformed."""
    prefix = len(TCP_HELLO_MAGIC)
    if payload[:prefix] != TCP_HELLO_MAGIC or payload[prefix : prefix + 1] != bytes(
        [TCP_HELLO_VERSION]
    ):
        return None
    try:
        host, port = parse_address(payload[prefix + 1 :].decode("ascii"))
    except (UnicodeDecodeError, ConfigError):
        return None
    if port == 0:
        return None
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_unspecified and peer:
            # Listening on every interface: the connection's source IP is the one
            # that reached us, so it is the one to reply to.
            peer_host, _, _ = format_sockaddr(peer).rpartition(":")
            return f"{peer_host}:{port}"
    return format_address(host, port)
