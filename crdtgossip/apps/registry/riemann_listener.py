"""Riemann's own protocol: health events over TCP and UDP, as a Riemann server takes them.

With ``crdtgossip agent --riemann-tcp HOST:PORT`` (or ``--riemann-udp``), Riemann's
clients send events to the agent unchanged (``riemann-client``'s ``TCPTransport`` and
``UDPTransport``, riemann-tools, ...). Every event goes through the same path as a
``POST /v1/events``: :meth:`Registry.push_event
<crdtgossip.apps.registry.state.Registry.push_event>`, so it is checked the same way
(an unknown instance is refused), takes its instance's ``ttl`` when it has none, and
adds the same performance samples. How an ``Event``'s fields map onto the registry's
is :mod:`.riemann_wire`'s.

TCP, as Riemann frames it: each message is a 4-byte big-endian length, then a ``Msg``
of that many bytes; the server answers each with a framed ``Msg``: ``ok`` true, or
``ok`` false and ``error`` (riemann-client waits for that answer and raises
``RiemannError`` on an error). UDP: one ``Msg`` per datagram, no answer.

A message's events are recorded in order, each its own write (as that many ``POST
/v1/events`` would be). The first event refused stops the message: the events before
it are recorded, it and those after it are not, and the answer is ``ok`` false with
``event N: why`` (N counts from 0). A message holding a query is refused whole
(``queries are not supported``), as are ``states`` and more than
:data:`~crdtgossip.apps.registry.riemann_wire.MAX_EVENTS_PER_MESSAGE` events.

Riemann's protocol has no authentication: the listener is off unless asked for, and
anyone who can reach it can push health events (the agent warns when it listens
beyond loopback). Given the agent's audit record, each message decoded adds one entry
to it, as a ``POST /v1/events`` does: ``who`` :data:`AUDIT_WHO`, ``method``
:data:`AUDIT_METHOD`, ``path`` the transport, the status a ``POST`` would have got
(200, 400 or 404), the events' names or the error as summary, and the client's
address. Bytes that are no message are counted, not recorded (a flood of garbage
datagrams must not become a flood of replicated writes).

Every limit is a module constant below; what happened is counted in a
:class:`~crdtgossip.apps.registry.metrics.RiemannCounters` (``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from crdtgossip._ratelimit import LogLimiter
from crdtgossip.apps.registry.audit import AuditLog
from crdtgossip.apps.registry.fields import RegistryError
from crdtgossip.apps.registry.metrics import RiemannCounters
from crdtgossip.apps.registry.riemann_wire import (
    MAX_EVENTS_PER_MESSAGE,
    MessageRefused,
    decode_message,
    encode_ack,
)
from crdtgossip.errors import DecodeError, TransportError
from crdtgossip.transport import format_address, parse_address

__all__ = [
    "AUDIT_METHOD",
    "AUDIT_WHO",
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_EVENTS_PER_MESSAGE",
    "MAX_FRAME_BYTES",
    "READ_AHEAD",
    "UDP_BACKLOG",
    "UDP_RECEIVE_BUFFER",
    "PushEvent",
    "RiemannListener",
]

_log = logging.getLogger(__name__)

#: Largest TCP frame (a ``Msg``), in bytes. A thousand events with 1 KiB descriptions
#: fit. Riemann's own server takes up to 2 GiB (``Integer/MAX_VALUE`` in
#: transport/tcp.clj) and Spotify's ffwd 16 MiB; an agent holds a frame whole for each
#: of its connections, so a megabyte. Bigger: the error is answered and the
#: connection closed (the rest of the frame is never read).
MAX_FRAME_BYTES = 1024 * 1024

#: Most TCP connections open at once. A client holds one connection and sends on it
#: (riemann-client, riemann-tools); beyond the limit a new connection is closed at
#: once and counted.
MAX_CONNECTIONS = 64

#: Seconds a TCP connection may wait for its next frame, take to send one, or leave
#: an answer unread, before it is closed. Riemann's clients keep a connection open
#: between batches; five minutes is far longer than any reporting interval.
IDLE_TIMEOUT = 300.0

#: Events of UDP messages decoded and waiting to be recorded (a message refused whole
#: counts one). Datagrams come faster than writes are made (about 2,000 a second) only
#: in a burst; this holds a burst of 10,000 one-event datagrams, at most a few tens of
#: megabytes even with the longest descriptions. Past it, a new message is dropped and
#: counted (UDP is lossy by contract: riemann-client gets no answer either way).
UDP_BACKLOG = 10_000

#: The UDP socket's receive buffer asked for, in bytes (the kernel caps it at
#: ``net.core.rmem_max``). The event loop reads one datagram per pass, between event
#: writes, so a burst waits in this buffer: the default of about 208 KiB held 633 of a
#: blast of 5,000 one-event datagrams from riemann-client; the rest were lost unseen.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024

#: Bytes the stream reader holds ahead of what it was asked for (asyncio pauses the
#: socket at twice this), so a connection buffers at most a frame plus this much.
READ_AHEAD = 64 * 1024

_LENGTH = struct.Struct("!I")

#: The ``who`` of the audit entries of Riemann messages (the protocol names nobody).
AUDIT_WHO = "riemann"
#: Their ``method``; their ``path`` is ``tcp`` or ``udp``.
AUDIT_METHOD = "RIEMANN"
#: Events named in an entry's summary (the rest as a count).
_AUDIT_NAMED = 5

#: Records one event body (``Registry.push_event``); raises RegistryError to refuse it.
PushEvent = Callable[[Mapping[str, Any]], Awaitable[object]]


def _frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


def _weight(decoded: Sequence[Mapping[str, Any]] | MessageRefused) -> int:
    """What a queued UDP message counts against :data:`UDP_BACKLOG`."""
    return 1 if isinstance(decoded, MessageRefused) else max(1, len(decoded))


def _names(events: Sequence[Mapping[str, Any]]) -> str:
    """An audit summary of a message taken: its events' instances and states."""
    named = ", ".join(
        f"{e.get('service')}/{e.get('host')} {e.get('state')}" for e in events[:_AUDIT_NAMED]
    )
    more = f" and {len(events) - _AUDIT_NAMED} more" if len(events) > _AUDIT_NAMED else ""
    return f"{len(events)} event(s): {named}{more}" if events else "no events"


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return format_address(str(peer[0]), int(peer[1]))
    return "an unknown peer"


class RiemannListener:
    """Riemann's protocol on TCP and UDP, each event handed to ``push_event``.

    Args:
        push_event: records one event (``Registry.push_event``); a
            :class:`~crdtgossip.apps.registry.fields.RegistryError` refuses it.
        counters: where to count (by default a new one, :attr:`counters`).
        max_connections: :data:`MAX_CONNECTIONS`.
        idle_timeout: :data:`IDLE_TIMEOUT`, in seconds.
        max_frame: :data:`MAX_FRAME_BYTES`.
        max_events: most events in one message
            (:data:`~crdtgossip.apps.registry.riemann_wire.MAX_EVENTS_PER_MESSAGE`).
        udp_backlog: :data:`UDP_BACKLOG`.
        audit: the agent's audit record, or None to record nothing there.
    """

    def __init__(
        self,
        push_event: PushEvent,
        counters: RiemannCounters | None = None,
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        max_frame: int = MAX_FRAME_BYTES,
        max_events: int = MAX_EVENTS_PER_MESSAGE,
        udp_backlog: int = UDP_BACKLOG,
        audit: AuditLog | None = None,
    ) -> None:
        self._push_event = push_event
        #: What the listener has seen (rendered on ``/metrics``).
        self.counters = RiemannCounters() if counters is None else counters
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._max_frame = max_frame
        self._max_events = max_events
        self._audit = audit
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_queue: asyncio.Queue[tuple[Sequence[Mapping[str, Any]] | MessageRefused, str]]
        self._udp_queue = asyncio.Queue()
        self._udp_backlog = udp_backlog
        self._udp_waiting = 0  # events (a refused message: one) in the queue
        self._udp_worker: asyncio.Task[None] | None = None
        self._stopping = False
        # Lines a client causes (refusals, hang-ups) are rate-limited per kind, so a
        # client that repeats a mistake cannot flood the agent's log.
        self._log_limiter = LogLimiter()
        #: The TCP address bound (``host:port``), once started.
        self.tcp_address: str | None = None
        #: The UDP address bound, once started.
        self.udp_address: str | None = None

    # ---- lifecycle -------------------------------------------------------------------
    async def start_tcp(self, address: str) -> str:
        """Listen for framed messages on ``address`` (``host:port``; port 0 picks one).

        Returns:
            The address bound.

        Raises:
            ConfigError: a malformed address. TransportError: it cannot be bound.
        """
        host, port = parse_address(address)
        try:
            self._server = await asyncio.start_server(
                self._connection, host, port, limit=READ_AHEAD
            )
        except OSError as exc:
            raise TransportError(
                f"cannot serve Riemann TCP on {address}: {exc.strerror or exc}"
            ) from None
        bound = self._server.sockets[0].getsockname()
        self.tcp_address = format_address(str(bound[0]), int(bound[1]))
        return self.tcp_address

    async def start_udp(self, address: str) -> str:
        """Take one message per datagram on ``address`` (``host:port``; port 0 picks one).

        Returns:
            The address bound.

        Raises:
            ConfigError: a malformed address. TransportError: it cannot be bound.
        """
        host, port = parse_address(address)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _DatagramReceiver(self), local_addr=(host, port)
            )
        except OSError as exc:
            raise TransportError(
                f"cannot serve Riemann UDP on {address}: {exc.strerror or exc}"
            ) from None
        self._udp = transport
        udp_socket = transport.get_extra_info("socket")
        if udp_socket is not None:
            with contextlib.suppress(OSError):  # a smaller buffer is still a buffer
                udp_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        self._udp_worker = asyncio.create_task(self._record_datagrams(), name="riemann:udp")
        bound = transport.get_extra_info("sockname")
        self.udp_address = format_address(str(bound[0]), int(bound[1]))
        return self.udp_address

    async def stop(self) -> None:
        """Stop listening and close every connection (a message being recorded stops)."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        tasks = [*self._connections, *filter(None, [self._udp_worker])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._udp is not None:
            self._udp.close()

    # ---- messages --------------------------------------------------------------------
    def decode(
        self, data: bytes, transport: str
    ) -> Sequence[Mapping[str, Any]] | MessageRefused | DecodeError:
        """Decode one message and count it: its event bodies, or why it is refused (a
        message refused whole, or bytes that are no message)."""
        try:
            message = decode_message(data, max_events=self._max_events)
        except MessageRefused as exc:
            self.counters.messages[transport] += 1
            self.counters.messages_refused[(transport, exc.reason)] += 1
            if exc.events:
                self.counters.events_refused[(transport, "message_refused")] += exc.events
            return exc
        except DecodeError as exc:
            self.counters.frames_malformed[transport] += 1
            return exc
        self.counters.messages[transport] += 1
        self.counters.attributes_ignored += message.ignored_attributes
        return message.events

    async def record(
        self, events: Sequence[Mapping[str, Any]], transport: str, peer: str = ""
    ) -> str | None:
        """Record ``events`` in order, up to the first refused, and audit the message.

        Args:
            events: the message's event bodies.
            transport: ``tcp`` or ``udp``.
            peer: the client's address, for the audit entry.

        Returns:
            None when all were recorded, else the error to answer:
            ``event N: why``.
        """
        status, error = 200, None
        for index, body in enumerate(events):
            try:
                await self._push_event(body)
            except RegistryError as exc:
                reason = "unknown_instance" if exc.status == 404 else "invalid"
                status, error = exc.status, f"event {index}: {exc}"
            except Exception:
                _log.exception("riemann %s: error recording event %d", transport, index)
                reason, error = "error", f"event {index}: internal error; see the agent's log"
                status = 500
            else:
                self.counters.events_accepted[transport] += 1
                continue
            self.counters.events_refused[(transport, reason)] += 1
            rest = len(events) - index - 1
            if rest:
                self.counters.events_refused[(transport, "not_tried")] += rest
            if index:
                error += f" (the {index} event(s) before it were recorded, none after it)"
            break
        await self._audit_message(transport, status, error or _names(events), peer)
        return error

    async def receive(self, data: bytes, transport: str, peer: str = "") -> str | None:
        """One message, decoded and recorded: None when taken, else the error to answer."""
        return await self._take(self.decode(data, transport), transport, peer)

    async def _take(
        self,
        decoded: Sequence[Mapping[str, Any]] | MessageRefused | DecodeError,
        transport: str,
        peer: str,
    ) -> str | None:
        if isinstance(decoded, DecodeError):
            return str(decoded)  # counted; no message, so no audit entry
        if isinstance(decoded, MessageRefused):
            await self._audit_message(transport, 400, str(decoded), peer)
            return str(decoded)
        return await self.record(decoded, transport, peer)

    async def _audit_message(self, transport: str, status: int, summary: str, peer: str) -> None:
        if self._audit is not None:
            await self._audit.record_quietly(
                AUDIT_WHO, AUDIT_METHOD, transport, status, summary, peer
            )

    def _note(self, kind: str, message: str, *args: object) -> None:
        """Log a line a client caused, at most a burst of each kind per interval."""
        held = self._log_limiter.allow(kind)
        if held is None:
            return
        if held:
            message += f" ({held} more such line(s) held back)"
        _log.info(message, *args)

    # ---- TCP -------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer_name(writer)
        if self._stopping or self.counters.connections_open >= self._max_connections:
            self.counters.connections_refused += 1
            self._note(
                "connection_refused",
                "riemann tcp: refused a connection from %s: %d open already",
                peer,
                self.counters.connections_open,
            )
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None  # asyncio runs each connection's handler in a task
        self._connections.add(task)
        self.counters.connections_open += 1
        try:
            await self._serve(reader, writer, peer)
        except asyncio.IncompleteReadError as exc:
            self._note(
                "hung_up",
                "riemann tcp %s: the client hung up mid-frame (%d of %s bytes)",
                peer,
                len(exc.partial),
                exc.expected,
            )
        except TimeoutError:
            self._note("idle", "riemann tcp %s: idle for %g s, closed", peer, self._idle_timeout)
        except OSError as exc:  # reset, broken pipe
            self._note("lost", "riemann tcp %s: connection lost: %s", peer, exc.strerror or exc)
        except Exception:
            _log.exception("riemann tcp %s: error serving the connection", peer)
        finally:
            self.counters.connections_open -= 1
            self._connections.discard(task)
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        """Answer frames until the client hangs up between two of them."""
        while True:
            try:
                async with asyncio.timeout(self._idle_timeout):
                    header = await reader.readexactly(_LENGTH.size)
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    return  # closed between frames: the normal end
                raise
            (length,) = _LENGTH.unpack(header)
            if length > self._max_frame:
                self.counters.frames_oversized += 1
                too_big = (
                    f"a message of {length} bytes is over the limit of {self._max_frame} bytes"
                )
                self._note("oversized", "riemann tcp %s: refused: %s; closing", peer, too_big)
                await self._answer(writer, too_big)
                return
            async with asyncio.timeout(self._idle_timeout):
                data = await reader.readexactly(length)
            error = await self.receive(data, "tcp", peer)
            if error is not None:
                self._note("refused", "riemann tcp %s: refused: %s", peer, error)
            await self._answer(writer, error)

    async def _answer(self, writer: asyncio.StreamWriter, error: str | None) -> None:
        writer.write(_frame(encode_ack(error)))
        async with asyncio.timeout(self._idle_timeout):
            await writer.drain()

    # ---- UDP -------------------------------------------------------------------------
    def _datagram(self, data: bytes, peer: str) -> None:
        decoded = self.decode(data, "udp")
        if isinstance(decoded, DecodeError):
            _log.debug("riemann udp: refused a datagram from %s: %s", peer, decoded)
            return
        weight = _weight(decoded)
        if self._udp_waiting + weight > self._udp_backlog:
            self.counters.messages_refused[("udp", "backlog")] += 1
            if not isinstance(decoded, MessageRefused) and decoded:
                self.counters.events_refused[("udp", "message_refused")] += len(decoded)
            return
        self._udp_waiting += weight
        self._udp_queue.put_nowait((decoded, peer))

    async def _record_datagrams(self) -> None:
        while True:
            decoded, peer = await self._udp_queue.get()
            self._udp_waiting -= _weight(decoded)
            error = await self._take(decoded, "udp", peer)
            if error is not None:
                _log.debug("riemann udp: refused from %s: %s", peer, error)


class _DatagramReceiver(asyncio.DatagramProtocol):
    def __init__(self, listener: RiemannListener) -> None:
        self._listener = listener

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._listener._datagram(data, format_address(str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # The socket never sends (UDP gets no answer), so this is no client's doing.
        _log.debug("riemann udp: %s", exc)
