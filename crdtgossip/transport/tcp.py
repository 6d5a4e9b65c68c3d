"""TCP transport (optionally TLS): length-prefixed frames over pooled connections.

Wire format. Each connection carries frames in one direction only, from the side that
connected to the side that accepted (:mod:`._tcp_frames`)::

    frame := length (4 bytes, big-endian, unsigned) || payload (length bytes)

The first frame of every connection is a *hello* (:mod:`._tcp_hello`) naming the
sender's listening address; with an authenticator (the node's keyring) the receiver first
writes a random challenge and the hello must answer it, sealed. Until its hello has
passed, a connection may send no frame over 1 KiB, and its bytes count against a budget
shared by every unauthenticated connection (:mod:`._tcp_inbound`), so a peer without the
key cannot make a node buffer anything worth having, nor hold its slots.

Sending never waits: a frame goes into the pooled connection's buffer (or, while the
connection is being made, into a bounded queue). Idle connections are closed after
``idle_timeout`` seconds; a connection whose peer stops taking bytes for
:data:`TCP_WRITE_TIMEOUT` seconds is cut and made anew on the next send. On the
receiving side, malformed input closes that one connection and is counted; the server
goes on serving everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from typing import Any

from crdtgossip.errors import ConfigError, TransportError
from crdtgossip.transport import _tcp_inbound
from crdtgossip.transport._address import format_sockaddr, parse_address, resolve
from crdtgossip.transport._base import ReceiveCallback, TransportStats, deliver
from crdtgossip.transport._tcp_frames import MAX_LENGTH_FIELD, frame
from crdtgossip.transport._tcp_hello import (
    TCP_CHALLENGE_SIZE,
    TCP_HELLO_MAGIC,
    TCP_HELLO_VERSION,
    TCP_SEALED_HELLO_VERSION,
    Authenticator,
    make_hello,
)
from crdtgossip.transport._tcp_inbound import InboundConnection, InboundTable
from crdtgossip.transport._tcp_outbound import Outbound

__all__ = [
    "TCP_CONNECT_TIMEOUT",
    "TCP_HELLO_MAGIC",
    "TCP_HELLO_VERSION",
    "TCP_IDLE_TIMEOUT",
    "TCP_MAX_FRAME",
    "TCP_SEALED_HELLO_VERSION",
    "TCP_WRITE_TIMEOUT",
    "Authenticator",
    "TcpTransport",
]

_log = logging.getLogger(__name__)

TCP_MAX_FRAME = 16 * 1024 * 1024
"""Default largest frame in bytes, sent or accepted from an authenticated peer. Large
enough for a push-pull state exchange of many keys (etcd caps requests at 1.5 MiB, gRPC
messages default to 4 MiB; anti-entropy splits anything larger). A frame's buffer grows
with the bytes that arrive, never with the length a peer declares."""

TCP_CONNECT_TIMEOUT = 10.0
"""Seconds to connect (finish the TLS handshake, and receive the challenge when a keyring
is set) before the queued frames are dropped; memberlist's TCPTimeout is also 10 s."""

TCP_WRITE_TIMEOUT = 10.0
"""Seconds an outgoing connection may hold unsent bytes without the peer taking any
before it is cut (``write_timeouts``) and the next frame opens a new one; also the
kernel's TCP_USER_TIMEOUT, so a peer that vanished (half-open) is noticed even while our
own buffer is empty. As memberlist's TCPTimeout; nginx's send_timeout is 60 s."""

TCP_IDLE_TIMEOUT = 60.0
"""Default seconds an outgoing connection may stay unused before it is closed. Longer
than the default push-pull interval (memberlist: 30 s), so a pair of nodes keeps one
connection between exchanges instead of reconnecting for each."""

TCP_INBOUND_IDLE_GRACE = 30.0
"""Seconds beyond ``idle_timeout`` an accepted connection may go without a non-empty
frame before the receiver closes it: the sender closes idle connections itself, so this
reclaims connections from peers that vanished without a FIN, or that send only empty
frames to hold a slot."""

TCP_LISTEN_BACKLOG = 1024
"""Connections the kernel may queue before they are accepted. asyncio's default of 100
overflows under a burst of connects: the kernel then drops the handshake's last packet,
the connecting side believes it is connected, and its first frames wait for SYN-ACK
retransmissions (1, 3, 7, 15 s later). nginx uses 511, Go the system's somaxconn."""

TCP_SEND_BUFFER_LIMIT = 64 * 1024 * 1024
"""Bytes that may wait to be written to one peer (queued while connecting, or in the
socket's buffer) before further frames to it are dropped; raised to twice
``max_frame`` when that is larger, so one maximal frame always fits."""

TCP_CLOSE_TIMEOUT = 5.0
"""Seconds :meth:`TcpTransport.close` waits for connections to wind down."""

_READ_CHUNK = 64 * 1024

_OUTBOUND_COUNTERS = (
    "connections_opened",
    "connect_failures",
    "idle_closes",
    "write_timeouts",
)


class TcpTransport:
    """A :class:`~crdtgossip.transport.Transport` over TCP, with TLS if contexts are given.

    Args:
        bind: ``"host:port"`` to listen on; port 0 picks a free port.
        on_receive: called with ``(data, sender_listening_address)`` for every frame.
        ssl_context: the server-side TLS context (``ssl.PROTOCOL_TLS_SERVER``), used
            for accepted connections. Set ``verify_mode = ssl.CERT_REQUIRED`` on it for
            mutual TLS.
        max_frame: the largest frame in bytes, sent or accepted.
        client_ssl_context: the client-side TLS context (``ssl.PROTOCOL_TLS_CLIENT``),
            used for outgoing connections; the destination host is the name checked
            against the peer's certificate. Give both contexts or neither.
        idle_timeout: seconds an outgoing connection may stay unused before closing.
        authenticator: seals this side's hellos and checks the peers' (a
            :class:`~crdtgossip.Keyring` fits: the node passes its own). With one, a
            connection whose hello does not open under it is closed before it may send
            anything larger than 1 KiB. Every side of a cluster needs one, or none.

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
        authenticator: Authenticator | None = None,
    ) -> None:
        self._bind_host, self._bind_port = parse_address(bind)
        if (ssl_context is None) != (client_ssl_context is None):
            raise ConfigError(
                "TLS needs both ssl_context (server side, for accepted connections) and "
                "client_ssl_context (client side, for outgoing ones), or neither"
            )
        if not 1 <= max_frame <= MAX_LENGTH_FIELD:
            raise ConfigError(f"max_frame must be 1 to {MAX_LENGTH_FIELD} bytes, not {max_frame}")
        if not idle_timeout > 0:
            raise ConfigError(f"idle_timeout must be more than 0 seconds, not {idle_timeout!r}")
        self.max_datagram = max_frame
        self._bind = bind
        self._on_receive = on_receive
        self._server_ssl = ssl_context
        self._client_ssl = client_ssl_context
        self._idle_timeout = float(idle_timeout)
        self._authenticator = authenticator
        self._buffer_limit = max(TCP_SEND_BUFFER_LIMIT, 2 * max_frame)
        self._stats = TransportStats()
        self._extra = dict.fromkeys(_OUTBOUND_COUNTERS, 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._inbound: InboundTable | None = None
        self._address: str | None = None
        self._outbound: dict[str, Outbound] = {}
        self._tasks: set[asyncio.Task[None]] = set()
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
        table = InboundTable(
            loop,
            self._stats,
            self._deliver,
            self._authenticator,
            self.max_datagram,
            self._idle_timeout + TCP_INBOUND_IDLE_GRACE,
        )
        try:
            server = await loop.create_server(
                lambda: InboundConnection(table),
                host,
                self._bind_port,
                family=family,
                ssl=self._server_ssl,
                ssl_handshake_timeout=_tcp_inbound.TCP_HELLO_TIMEOUT if self._server_ssl else None,
                reuse_address=True,
                backlog=TCP_LISTEN_BACKLOG,
            )
        except OSError as exc:
            raise TransportError(f"cannot listen on TCP {self._bind}: {exc}") from exc
        self._loop = loop
        self._server = server
        self._inbound = table
        self._address = format_sockaddr(server.sockets[0].getsockname())
        self._spawn(self._sweep())

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
        if self._inbound is not None:
            self._inbound.abort_all()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), TCP_CLOSE_TIMEOUT)

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
            connection = Outbound(address, host, port, self._loop.time())
            self._outbound[address] = connection
            self._spawn(self._run_outbound(connection))
        framed = frame(data)
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
        self._write(connection, writer, framed, len(data))

    def backlog(self, address: str | None = None) -> int:
        """Bytes for ``address`` (or every peer) not yet taken by the kernel, which
        :meth:`close` drops."""
        held = self._outbound.values() if address is None else [self._outbound.get(address)]
        return sum(c.unsent for c in held if c is not None)

    def stats(self) -> dict[str, int]:
        """Counters since construction.

        Those of :class:`~crdtgossip.transport.TransportStats`, plus, for outgoing
        connections: ``connections_opened`` (connected), ``connect_failures``,
        ``idle_closes`` and ``write_timeouts`` (cut because the peer took no bytes for
        :data:`TCP_WRITE_TIMEOUT` seconds, or the kernel's TCP_USER_TIMEOUT fired).
        For accepted ones: ``connections_accepted``; ``connections_rejected``
        (arrived while closing); ``hello_auth_failures`` (hello unsealed, under
        another key or answering another challenge); ``hello_timeouts`` (no whole
        hello in time); ``unauthenticated_oversize`` (a length prefix over 1 KiB
        before the hello passed, closed unread); ``unauthenticated_evictions`` (the
        oldest unauthenticated connection closed to admit a newer one, over the
        per-host or total bound); ``idle_evictions`` (the longest-idle connection
        closed because the table was full); ``inbound_idle_closes`` (no non-empty
        frame for ``idle_timeout`` plus a grace); ``frame_timeouts`` (a frame begun
        arrived too slowly); ``buffer_overflows`` (the bytes unauthenticated
        connections hold passed their shared budget); ``empty_frames`` (ignored,
        never delivered). Malformed input (bad hellos, failed authentication,
        oversized prefixes, truncated frames) also counts in ``receive_errors``.
        Gauges: ``open_connections`` (outgoing and accepted, now),
        ``unauthenticated_connections`` and ``unauthenticated_bytes`` (held now).
        """
        counters = self._stats.as_dict()
        counters.update(self._extra)
        inbound = self._inbound
        if inbound is None:
            counters.update(dict.fromkeys(_tcp_inbound.INBOUND_COUNTERS, 0))
        else:
            counters.update(inbound.counters)
        outgoing = sum(1 for c in self._outbound.values() if c.writer is not None)
        counters["open_connections"] = outgoing + (len(inbound) if inbound else 0)
        counters["unauthenticated_connections"] = inbound.unauthenticated if inbound else 0
        counters["unauthenticated_bytes"] = inbound.budget.used if inbound else 0
        return counters

    def _deliver(self, data: bytes, sender: str) -> None:
        deliver(self._on_receive, self._stats, data, sender)

    def _spawn(self, coroutine: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write(
        self, connection: Outbound, writer: asyncio.StreamWriter, framed: bytes, payload: int
    ) -> None:
        try:
            writer.write(framed)
        except (OSError, RuntimeError) as exc:
            self._stats.send_errors += 1
            _log.debug("TCP write failed: %s", exc)
            return
        connection.written += len(framed)
        self._stats.frames_sent += 1
        self._stats.bytes_sent += payload

    async def _connect(
        self, connection: Outbound
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        """Connect, then with an authenticator read the receiver's challenge."""
        reader, writer = await asyncio.open_connection(
            connection.host,
            connection.port,
            ssl=self._client_ssl,
            server_hostname=connection.host if self._client_ssl else None,
            ssl_handshake_timeout=TCP_CONNECT_TIMEOUT if self._client_ssl else None,
        )
        try:
            _set_user_timeout(writer)
            if self._authenticator is None:
                return reader, writer, make_hello(self.address, None)
            challenge = await reader.readexactly(TCP_CHALLENGE_SIZE)
            return reader, writer, make_hello(self.address, self._authenticator, challenge)
        except BaseException:
            writer.transport.abort()
            raise

    async def _run_outbound(self, connection: Outbound) -> None:
        """Connect, send the hello and the queued frames, then watch for the close."""
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                reader, stream, hello = await asyncio.wait_for(
                    self._connect(connection), TCP_CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                self._extra["connect_failures"] += 1
                self._stats.send_errors += len(connection.pending)
                _log.debug("TCP connect to %s failed: %s", connection.address, exc)
                return
            writer = stream
            self._extra["connections_opened"] += 1
            stream.write(frame(hello))
            connection.written = len(hello) + 4
            connection.writer = stream
            connection.progress_at = self._loop.time() if self._loop else 0.0
            for framed, payload_length in connection.pending:
                self._write(connection, stream, framed, payload_length)
            connection.pending.clear()
            connection.pending_bytes = 0
            # Nothing is read on an outgoing connection; reading only notices the close.
            if await reader.read(_READ_CHUNK):
                # A peer that writes here does not speak this protocol.
                self._stats.receive_errors += 1
        except (OSError, TimeoutError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT:
                self._extra["write_timeouts"] += 1  # the kernel's TCP_USER_TIMEOUT
            _log.debug("TCP connection to %s lost: %s", connection.address, exc)
        finally:
            if self._outbound.get(connection.address) is connection:
                del self._outbound[connection.address]
            if writer is not None:
                if self._closed:
                    writer.transport.abort()
                else:
                    writer.close()

    async def _sweep(self) -> None:
        """Close outgoing connections unused for ``idle_timeout``, or stuck for
        :data:`TCP_WRITE_TIMEOUT` with bytes the peer will not take."""
        assert self._loop is not None
        interval = min(self._idle_timeout, TCP_WRITE_TIMEOUT) / 4
        while True:
            await asyncio.sleep(interval)
            now = self._loop.time()
            for address, connection in list(self._outbound.items()):
                writer = connection.writer
                if writer is None:
                    continue
                unsent = writer.transport.get_write_buffer_size()
                flushed = connection.written - unsent
                if unsent == 0 or flushed > connection.flushed:
                    connection.flushed = flushed
                    connection.progress_at = now
                elif now - connection.progress_at > TCP_WRITE_TIMEOUT:
                    # A peer that stopped reading (or vanished) must not keep every
                    # later frame to it waiting; a new connection may get through.
                    del self._outbound[address]
                    self._extra["write_timeouts"] += 1
                    self._stats.send_errors += 1
                    writer.transport.abort()
                    continue
                if now - connection.last_used > self._idle_timeout:
                    del self._outbound[address]
                    self._extra["idle_closes"] += 1
                    # Graceful: frames still buffered are written before the FIN.
                    writer.close()


def _set_user_timeout(writer: asyncio.StreamWriter) -> None:
    """Have the kernel cut the connection when sent bytes stay unacknowledged for
    :data:`TCP_WRITE_TIMEOUT` (Linux's TCP_USER_TIMEOUT; elsewhere a no-op)."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    sock = writer.get_extra_info("socket")
    if option is None or sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, int(TCP_WRITE_TIMEOUT * 1000))
    except OSError as exc:
        _log.debug("cannot set TCP_USER_TIMEOUT: %s", exc)
