"""How a :class:`~crdtgossip.Node` drives its engine: transports, keyring and loop timer.

* frames from the UDP and TCP transports are opened with the keyring (if any) and fed
  to the engine; a frame that does not authenticate is dropped and counted, never
  decoded further;
* frames the engine wants sent are sealed and go by UDP when they fit a datagram, by
  TCP otherwise;
* one event-loop timer ticks the engine at the time it asks for (``next_wakeup``), on
  the loop's monotonic clock; it is moved only when a call made the engine's next
  wakeup earlier, so a frame costs no extra task switch.

UDP and TCP listen on the same port number, as memberlist does, so a member has one
address; TCP may run over TLS. A node given its own transport (a
:data:`~crdtgossip.transport.TransportFactory`, e.g. a
:class:`~crdtgossip.transport.MemoryNetwork`'s) sends every frame through that one.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

from crdtgossip.config import GossipConfig
from crdtgossip.errors import DecodeError, TransportError
from crdtgossip.protocol import Engine
from crdtgossip.security import Keyring
from crdtgossip.transport import (
    TcpTransport,
    TlsConfig,
    Transport,
    TransportFactory,
    UdpTransport,
    format_address,
    parse_address,
)

__all__ = ["BIND_ATTEMPTS", "LINGER_PATIENCE", "Driver"]

_log = logging.getLogger("crdtgossip.node")

#: How many times to look for a port free for both UDP and TCP when binding port 0.
BIND_ATTEMPTS = 20

#: Seconds :meth:`Driver.linger` waits at most for the stream transport to send what it
#: holds (a loopback or LAN connection is made in milliseconds; a member that does not
#: answer takes TCP_CONNECT_TIMEOUT, and is not worth waiting that long for).
LINGER_PATIENCE = 2.0

#: Seconds between two looks at what the stream transport still holds, while lingering.
LINGER_POLL = 0.01


class Driver:
    """The I/O half of a node: bytes and time in and out of one engine.

    Args:
        node_id: for log lines.
        config: the datagram and frame limits, and the gossip interval.
        keyring: seals and opens every frame, or None.
        deliver: called after every call into the engine, to take its events and
            quorum results (the node's half).
        transport: makes the one transport to use instead of UDP and TCP, or None.
        tls: run the default TCP transport over TLS, or None (not with ``transport``).
    """

    def __init__(
        self,
        node_id: str,
        config: GossipConfig,
        keyring: Keyring | None,
        deliver: Callable[[Engine], None],
        *,
        transport: TransportFactory | None = None,
        tls: TlsConfig | None = None,
    ) -> None:
        self._node_id = node_id
        self._factory = transport
        self._tls = tls
        self._config = config
        self._keyring = keyring
        self._deliver = deliver
        self.engine: Engine | None = None
        self.udp: UdpTransport | None = None
        self.tcp: TcpTransport | None = None
        # Where small frames go, and reliable or large ones: UDP and TCP by default,
        # the same transport twice when the node was given its own.
        self._small: Transport | None = None
        self._large: Transport | None = None
        # The loop timer that ticks the engine, and the loop time it is set for.
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_at = math.inf
        self.auth_drops = 0
        self.receive_errors = 0

    @property
    def address(self) -> str | None:
        """The ``"host:port"`` bound, or None before :meth:`bind`."""
        return None if self._small is None else self._small.address

    async def bind(self, bind: str) -> str:
        """Bind UDP and TCP on one port (or start the node's own transport); returns
        the ``"host:port"`` bound.

        Raises:
            TransportError: the address cannot be bound.
        """
        if self._factory is not None:
            transport = self._factory(bind, self._on_frame)
            await transport.start()
            self._small = self._large = transport
            return transport.address
        host, port = parse_address(bind)
        server_tls = None if self._tls is None else self._tls.server
        client_tls = None if self._tls is None else self._tls.client
        attempts = BIND_ATTEMPTS if port == 0 else 1
        last_error: Exception | None = None
        for _ in range(attempts):
            udp = UdpTransport(
                format_address(host, port), self._on_frame, max_datagram=self._config.max_datagram
            )
            await udp.start()
            _, bound_port = parse_address(udp.address)
            tcp = TcpTransport(
                format_address(host, bound_port),
                self._on_frame,
                server_tls,
                max_frame=self._config.max_reliable_frame + 64,
                client_ssl_context=client_tls,
                authenticator=self._keyring,
            )
            try:
                await tcp.start()
            except TransportError as exc:
                last_error = exc
                await udp.close()
                continue
            self.udp, self.tcp = udp, tcp
            self._small, self._large = udp, tcp
            return udp.address
        raise TransportError(f"could not bind UDP and TCP on the same port at {bind}: {last_error}")

    async def close(self) -> None:
        """Stop the timer and close the transports; the engine gets no more input."""
        self.engine = None
        self._disarm_timer()
        small, large = self._small, self._large
        for transport in (small, large) if large is not small else (small,):
            if transport is not None:
                await transport.close()

    def stats(self) -> dict[str, int]:
        """Each transport's counters, prefixed ``udp_`` and ``tcp_`` (``transport_``
        for a node's own transport)."""
        stats: dict[str, int] = {}
        pairs: tuple[tuple[str, Transport | None], ...] = (
            (("udp", self.udp), ("tcp", self.tcp))
            if self._factory is None
            else (("transport", self._small),)
        )
        for prefix, transport in pairs:
            if transport is not None:
                stats.update({f"{prefix}_{name}": n for name, n in transport.stats().items()})
        return stats

    def _on_frame(self, data: bytes, sender: str) -> None:
        engine = self.engine
        if engine is None:
            return
        if self._keyring is not None:
            try:
                data = self._keyring.open(data)
            except DecodeError:
                self.auth_drops += 1
                return
        try:
            engine.receive(data, sender, asyncio.get_running_loop().time())
        except Exception:  # the engine never raises for bad input; this is a bug guard
            self.receive_errors += 1
            _log.exception("crdtgossip: error handling a frame from %s", sender)
            return
        self.pump()

    def backlog(self, address: str | None = None) -> int:
        """Bytes the stream transport still holds for ``address``, or for every peer
        (0 for a transport of the node's own, which keeps no such count)."""
        return 0 if self.tcp is None else self.tcp.backlog(address)

    async def linger(self, seconds: float, patience: float = LINGER_PATIENCE) -> None:
        """Keep running ``seconds``, then until the stream transport has handed the
        kernel every frame it holds, or ``patience`` more seconds have passed: closing
        drops what it still holds (a goodbye to a member still being connected to)."""
        await asyncio.sleep(seconds)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while self.backlog() and loop.time() < deadline:
            await asyncio.sleep(LINGER_POLL)

    def pump(self) -> None:
        """Send what the engine produced, let the node take its events and results, and
        set the timer for its next wakeup."""
        engine, small, large = self.engine, self._small, self._large
        if engine is None or small is None or large is None:
            return
        for frame in engine.take_outgoing():
            data = frame.data if self._keyring is None else self._keyring.seal(frame.data)
            if frame.reliable or len(data) > small.max_datagram:
                large.send(frame.address, data)
            else:
                small.send(frame.address, data)
        self._deliver(engine)
        if self.engine is engine:  # (the node may have stopped meanwhile)
            self._arm_timer(engine.next_wakeup())

    def _arm_timer(self, wakeup: float) -> None:
        """Have the loop tick the engine at ``wakeup`` (loop time), unless it already will
        by then: a timer set for earlier just ticks early, which the engine allows."""
        if self._tick_handle is not None:
            if self._tick_at <= wakeup:
                return
            self._tick_handle.cancel()
        self._tick_at = wakeup
        self._tick_handle = asyncio.get_running_loop().call_at(wakeup, self._on_tick)

    def _disarm_timer(self) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._tick_handle = None
        self._tick_at = math.inf

    def _on_tick(self) -> None:
        self._tick_handle = None
        self._tick_at = math.inf
        engine = self.engine
        if engine is None:
            return
        now = asyncio.get_running_loop().time()
        try:
            engine.tick(now)
        except Exception:  # a bug guard: keep the node ticking, not spinning
            _log.exception("crdtgossip: error in the protocol timers of %s", self._node_id)
            self._arm_timer(now + self._config.gossip_interval)
            return
        self.pump()
