"""Accepted TCP connections: reading within bounds, deadlines, and the table that evicts.

Each accepted connection is an :class:`InboundConnection` (an asyncio buffered protocol,
so the event loop reads straight into one scratch buffer shared by every connection:
nothing is held per connection but its partial frame). It is *unauthenticated* until
its hello passes (:mod:`._tcp_hello`); until then its frames are limited to
:data:`TCP_UNAUTHENTICATED_MAX_FRAME` bytes and charged to a budget shared by all
connections not authenticated by a key.

:class:`InboundTable` admits connections. When a bound is reached it makes room rather
than refusing the newcomer, since a refused newcomer may be the member trying to join
while an attacker holds every slot: the oldest unauthenticated connection (from the same
host, then from any) goes first, then the authenticated connection idle the longest.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from crdtgossip.transport._base import TransportStats
from crdtgossip.transport._tcp_frames import BudgetExceeded, FrameDecoder, FrameTooLarge, ReadBudget
from crdtgossip.transport._tcp_hello import (
    TCP_CHALLENGE_SIZE,
    TCP_UNAUTHENTICATED_MAX_FRAME,
    Authenticator,
    HelloRefused,
    check_hello,
)

__all__ = [
    "INBOUND_COUNTERS",
    "TCP_FRAME_TIMEOUT",
    "TCP_HELLO_TIMEOUT",
    "TCP_MAX_INBOUND_CONNECTIONS",
    "TCP_MAX_UNAUTHENTICATED_BUFFER",
    "TCP_MAX_UNAUTHENTICATED_CONNECTIONS",
    "TCP_MAX_UNAUTHENTICATED_PER_HOST",
    "TCP_MIN_FRAME_RATE",
    "InboundConnection",
    "InboundTable",
]

_log = logging.getLogger("crdtgossip.transport.tcp")

TCP_HELLO_TIMEOUT = 10.0
"""Seconds an accepted connection has, from its TLS handshake's end (or its accept), to
deliver its whole hello, however it dribbles the bytes; then it is closed. memberlist
gives a whole stream exchange its TCPTimeout of 10 s; nginx's client_header_timeout is
60 s, for humans on slow links rather than cluster peers."""

TCP_FRAME_TIMEOUT = 10.0
"""Seconds of grace a frame once begun has, beyond ``bytes received / TCP_MIN_FRAME_RATE``;
a frame that falls behind closes the connection (``frame_timeouts``). Without it a peer
could hold a slot and its partial frame by sending a byte a minute (slowloris)."""

TCP_MIN_FRAME_RATE = 128 * 1024
"""Bytes a second a frame must keep up after :data:`TCP_FRAME_TIMEOUT`: a 16 MiB frame may
take 138 s, one that stalls is cut 10 s after its last progress is used up. Apache's
mod_reqtimeout asks a request body for at least 500 B/s (``MinRate``); cluster links are
faster than that by far, and a frame this slow is stale when it lands."""

TCP_MAX_INBOUND_CONNECTIONS = 1024
"""Accepted connections held at once. One connection per peer sending to us, so this
allows clusters of about a thousand nodes while bounding descriptors and memory. When
full, the oldest unauthenticated or longest-idle connection is evicted for a new one."""

TCP_MAX_UNAUTHENTICATED_CONNECTIONS = 128
"""Accepted connections whose hello has not yet passed, in all. A peer's hello arrives
with its first packets, so a connection spends a round trip or two in this state;
memberlist serves at most 128 concurrent push-pull streams (``maxPushPullRequests``).
Past it, the oldest unauthenticated connection is evicted."""

TCP_MAX_UNAUTHENTICATED_PER_HOST = 16
"""Unauthenticated connections from one remote IP address. Real peers need one at a
time (a few while reconnecting); Consul caps connections per client IP too
(``limits.http_max_conns_per_client``, 200, counting established ones). Past it, that
address's oldest unauthenticated connection is evicted, so one host cannot fill the
unauthenticated table alone."""

TCP_MAX_UNAUTHENTICATED_BUFFER = 64 * 1024 * 1024
"""Bytes held in partial frames, in all, by connections not authenticated by a key
(before their hello; and every connection when no keyring is set, since nothing then
tells a peer from an attacker). Four maximal 16 MiB frames may be in flight at once; a
connection whose bytes would pass it is closed (``buffer_overflows``). Raised to the
largest frame when that is bigger, so one frame always fits."""

TCP_SCRATCH_SIZE = 64 * 1024
"""Bytes of the one read buffer every connection's socket is read into (then parsed at
once): the size asyncio's streams read at a time by default."""

INBOUND_COUNTERS = (
    "connections_accepted",
    "connections_rejected",
    "hello_auth_failures",
    "hello_timeouts",
    "unauthenticated_oversize",
    "unauthenticated_evictions",
    "idle_evictions",
    "inbound_idle_closes",
    "frame_timeouts",
    "buffer_overflows",
    "empty_frames",
)
"""The counters :class:`InboundTable` keeps; documented in :meth:`TcpTransport.stats`."""


class InboundConnection(asyncio.BufferedProtocol):
    """One accepted connection: its hello, then its frames, within bounds and deadlines."""

    def __init__(self, table: InboundTable) -> None:
        self._table = table
        self.transport: asyncio.Transport | None = None
        self.host = ""
        self.peer: Any = None
        self.sender: str | None = None  # set once the hello has passed
        self.accepted_at = 0.0
        self.last_activity = 0.0
        self.frame_started = 0.0
        self.challenge: bytes | None = None
        self.decoder = FrameDecoder(TCP_UNAUTHENTICATED_MAX_FRAME, table.budget)
        self.open = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def authenticated(self) -> bool:
        """Whether the hello has passed."""
        return self.sender is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.host = str(self.peer[0]) if self.peer else ""
        self.accepted_at = self.last_activity = self._table.loop.time()
        if not self._table.admit(self):
            transport.abort()
            return
        self.open = True
        if self._table.authenticator is not None:
            self.challenge = os.urandom(TCP_CHALLENGE_SIZE)
            transport.write(self.challenge)
        self._arm(self.accepted_at + TCP_HELLO_TIMEOUT)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._table.scratch

    def buffer_updated(self, nbytes: int) -> None:
        view = self._table.scratch[:nbytes]
        offset = 0
        while offset < nbytes and self.open:
            was_in_frame = self.decoder.in_frame
            try:
                offset += self.decoder.feed(view[offset:])
            except FrameTooLarge:
                self.close(
                    None if self.authenticated else "unauthenticated_oversize", malformed=True
                )
                return
            except BudgetExceeded:
                self.close("buffer_overflows")
                return
            payload = self.decoder.take()
            if payload is not None:
                self._on_frame(payload)
            elif not was_in_frame and self.decoder.in_frame:
                self.frame_started = self._table.loop.time()
                self._arm(self._frame_deadline())

    def eof_received(self) -> bool:
        if self.decoder.in_frame and not self._table.closing:
            self._table.stats.receive_errors += 1  # truncated frame
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._table.forget(self)

    def close(self, counter: str | None, *, malformed: bool = False) -> None:
        """Cut the connection now; its partial frame is dropped.

        Args:
            counter: the counter that says why, or None.
            malformed: the peer sent bad input; counted in ``receive_errors`` too.
        """
        if not self.open:
            return
        if counter is not None:
            self._table.counters[counter] += 1
        if malformed:
            self._table.stats.receive_errors += 1
        self._table.forget(self)
        if self.transport is not None:
            self.transport.abort()

    def _on_frame(self, payload: bytes) -> None:
        table = self._table
        if self.sender is None:
            try:
                self.sender = check_hello(payload, self.peer, table.authenticator, self.challenge)
            except HelloRefused as exc:
                _log.debug("TCP hello from %s refused: %s", self.peer, exc)
                self.close("hello_auth_failures" if exc.authentication else None, malformed=True)
                return
            table.authenticated(self)
            self.decoder.limit = table.max_frame
            if table.authenticator is not None:
                self.decoder.budget = None  # a key holder: its frames are not rationed
            self.last_activity = table.loop.time()
            self._arm(self._idle_deadline())
            return
        if not payload:
            # A keep-alive that carries nothing does not count as activity, so a
            # connection sending only these is closed as idle all the same.
            table.counters["empty_frames"] += 1
            return
        self.last_activity = table.loop.time()
        table.deliver(payload, self.sender)

    def _frame_deadline(self) -> float:
        # The frame must keep up TCP_MIN_FRAME_RATE after a grace: each byte that
        # arrives earns 1 / rate seconds more, so a stalled frame is cut early, whatever
        # length it declared.
        return self.frame_started + TCP_FRAME_TIMEOUT + self.decoder.buffered / TCP_MIN_FRAME_RATE

    def _idle_deadline(self) -> float:
        return self.last_activity + self._table.idle_timeout

    def _deadline(self) -> tuple[float, str]:
        if self.sender is None:
            return self.accepted_at + TCP_HELLO_TIMEOUT, "hello_timeouts"
        if self.decoder.in_frame:
            return self._frame_deadline(), "frame_timeouts"
        return self._idle_deadline(), "inbound_idle_closes"

    def _arm(self, when: float) -> None:
        """Have the timer fire by ``when``; a later deadline is found when it fires."""
        if self._timer is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._table.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self.open:
            return
        deadline, counter = self._deadline()
        if self._table.loop.time() >= deadline:
            _log.debug("closing TCP connection from %s: %s", self.peer, counter)
            self.close(counter)
        else:
            self._arm(deadline)

    def cancel_timer(self) -> None:
        """Stop the deadline timer (the connection is gone)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class InboundTable:
    """The accepted connections of one transport, and the bounds that govern them.

    Args:
        loop: the event loop.
        stats: the transport's shared counters (for ``receive_errors`` and delivery).
        deliver: called with ``(payload, sender)`` for every non-empty frame after the
            hello.
        authenticator: checks sealed hellos, or None for plain hellos.
        max_frame: the largest frame after the hello.
        idle_timeout: seconds a connection may go without a non-empty frame.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stats: TransportStats,
        deliver: Callable[[bytes, str], None],
        authenticator: Authenticator | None,
        max_frame: int,
        idle_timeout: float,
    ) -> None:
        self.loop = loop
        self.stats = stats
        self.deliver = deliver
        self.authenticator = authenticator
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.budget = ReadBudget(max(TCP_MAX_UNAUTHENTICATED_BUFFER, max_frame))
        self.scratch = memoryview(bytearray(TCP_SCRATCH_SIZE))
        self.counters = dict.fromkeys(INBOUND_COUNTERS, 0)
        self.closing = False
        # Insertion order is acceptance order, so the first entry is the oldest.
        self._all: dict[InboundConnection, None] = {}
        self._unauthenticated: dict[InboundConnection, None] = {}
        self._unauthenticated_by_host: dict[str, dict[InboundConnection, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    @property
    def unauthenticated(self) -> int:
        """Connections whose hello has not passed yet."""
        return len(self._unauthenticated)

    def admit(self, connection: InboundConnection) -> bool:
        """Take a new connection, evicting others to make room; False if closing."""
        if self.closing:
            self.counters["connections_rejected"] += 1
            return False
        same_host = self._unauthenticated_by_host.get(connection.host, {})
        if len(same_host) >= TCP_MAX_UNAUTHENTICATED_PER_HOST:
            next(iter(same_host)).close("unauthenticated_evictions")
        if len(self._unauthenticated) >= TCP_MAX_UNAUTHENTICATED_CONNECTIONS:
            next(iter(self._unauthenticated)).close("unauthenticated_evictions")
        if len(self._all) >= TCP_MAX_INBOUND_CONNECTIONS:
            if self._unauthenticated:
                next(iter(self._unauthenticated)).close("unauthenticated_evictions")
            else:
                idlest = min(self._all, key=lambda c: c.last_activity)
                idlest.close("idle_evictions")
        self.counters["connections_accepted"] += 1
        self._all[connection] = None
        self._unauthenticated[connection] = None
        self._unauthenticated_by_host.setdefault(connection.host, {})[connection] = None
        return True

    def authenticated(self, connection: InboundConnection) -> None:
        """Move ``connection`` out of the unauthenticated tables (its hello passed)."""
        self._unauthenticated.pop(connection, None)
        self._drop_from_host(connection)

    def forget(self, connection: InboundConnection) -> None:
        """Remove a connection that closed; give back its partial frame's budget."""
        connection.open = False
        connection.cancel_timer()
        connection.decoder.discard()
        self._all.pop(connection, None)
        self._unauthenticated.pop(connection, None)
        self._drop_from_host(connection)

    def _drop_from_host(self, connection: InboundConnection) -> None:
        same_host = self._unauthenticated_by_host.get(connection.host)
        if same_host is not None:
            same_host.pop(connection, None)
            if not same_host:
                del self._unauthenticated_by_host[connection.host]

    def abort_all(self) -> None:
        """Cut every connection (the transport is closing)."""
        self.closing = True
        for connection in list(self._all):
            transport = connection.transport
            self.forget(connection)
            if transport is not None:
                transport.abort()
