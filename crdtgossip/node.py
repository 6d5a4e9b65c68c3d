"""The asyncio runtime: one :class:`Node` wires the engine to transports, keyring and clock.

The protocol itself is the sans-I/O :class:`~crdtgossip.protocol.Engine`; this module
only moves bytes and time in and out of it:

* frames from the UDP and TCP transports are opened with the keyring (if any) and fed
  to the engine; a frame that does not authenticate is dropped and counted, never
  decoded further;
* frames the engine wants sent are sealed and go by UDP when they fit a datagram, by
  TCP otherwise;
* one timer task ticks the engine at the time it asks for (``next_wakeup``), on the
  event loop's monotonic clock;
* local updates go through the engine; key changes wake the watchers.

UDP and TCP listen on the same port number, as memberlist does, so a member has one
address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from crdtgossip.config import GossipConfig
from crdtgossip.consistency import Consistency, Local
from crdtgossip.crdts._base import CRDT
from crdtgossip.errors import ConfigError, CRDTGossipError, DecodeError, MergeError, TransportError
from crdtgossip.protocol import Engine, Event, KeyChanged, Member
from crdtgossip.security import Keyring
from crdtgossip.transport import TcpTransport, UdpTransport, format_address, parse_address

__all__ = ["Node"]

_log = logging.getLogger(__name__)

T = TypeVar("T", bound=CRDT)

#: How many times to look for a port free for both UDP and TCP when binding port 0.
BIND_ATTEMPTS = 20

#: After ``leave()``, how many gossip intervals to keep running so the goodbye spreads
#: (the goodbye is also sent directly to every live member at once).
LEAVE_GOSSIP_ROUNDS = 5


def _new_replica_id(node_id: str) -> str:
    """A replica id never used before: the node id plus 64 random bits.

    A node that lost its state must not reuse its old replica id, or its new counter
    slots and dots would collide with ones it already issued (riak_kv#679).
    """
    return f"{node_id}.{secrets.token_hex(8)}"


def _empty_of(value_type: type[T] | T) -> T:
    """A new empty state from a type or an empty prototype instance."""
    if isinstance(value_type, type):
        made: T = value_type()
        return made
    if isinstance(value_type, CRDT):
        fresh: T = value_type.copy()
        return fresh
    raise ConfigError(f"expected a CRDT type or an empty instance, not {value_type!r}")


class Node:
    """A gossip cluster member holding replicated CRDT state.

    Args:
        node_id: this node's unique, stable name in the cluster.
        bind: ``"host:port"`` to listen on (UDP and TCP); port 0 picks a free port.
        seeds: addresses of members to join through; empty for the first node.
        keyring: seal every frame with AES-GCM; frames under no installed key are
            dropped and counted.
        storage: durable state (see :mod:`crdtgossip.storage`); memory-only when None.
        config: protocol timers and limits; :meth:`GossipConfig.lan` by default.
        seed: seed of the engine's random choices (tests and reproducible runs);
            random by default.

    Example::

        async with Node("a", bind="127.0.0.1:0") as node:
            await node.update("hits", GCounter, lambda c: c.increment(node.replica_id))
    """

    def __init__(
        self,
        node_id: str,
        bind: str = "127.0.0.1:0",
        seeds: Sequence[str] = (),
        keyring: Keyring | None = None,
        storage: Any = None,
        config: GossipConfig | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        if not isinstance(node_id, str) or not node_id:
            raise ConfigError(f"node_id must be a non-empty str, not {node_id!r}")
        parse_address(bind)
        for address in seeds:
            parse_address(address)
        self.node_id = node_id
        self._bind = bind
        self._seeds = list(seeds)
        self._keyring = keyring
        self._storage = storage
        self._config = config if config is not None else GossipConfig.lan()
        self._rng = random.Random(seed if seed is not None else secrets.randbits(64))
        self._engine: Engine | None = None
        self._udp: UdpTransport | None = None
        self._tcp: TcpTransport | None = None
        self._timer: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._member_listeners: list[Callable[[Event], None]] = []
        self._replica_id: str | None = None
        self._running = False
        self._auth_drops = 0
        self._receive_errors = 0

    # ---- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind the transports, start the protocol and join the seeds.

        Raises:
            TransportError: the address cannot be bound.
            CRDTGossipError: the node is already running.
        """
        if self._running:
            raise CRDTGossipError(f"node {self.node_id!r} is already running")
        self._replica_id = _new_replica_id(self.node_id)
        await self._bind_transports()
        loop = asyncio.get_running_loop()
        assert self._udp is not None
        self._engine = Engine(
            self.node_id,
            self._udp.address,
            self._config,
            self._rng,
            self._replica_id,
        )
        self._running = True
        self._engine.join(self._seeds, loop.time())
        self._pump()
        self._timer = asyncio.create_task(self._run_timers(), name=f"crdtgossip:{self.node_id}")

    async def _bind_transports(self) -> None:
        host, port = parse_address(self._bind)
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
                max_frame=self._config.max_reliable_frame + 64,
            )
            try:
                await tcp.start()
            except TransportError as exc:
                last_error = exc
                await udp.close()
                continue
            self._udp, self._tcp = udp, tcp
            return
        raise TransportError(
            f"could not bind UDP and TCP on the same port at {self._bind}: {last_error}"
        )

    async def stop(self) -> None:
        """Stop at once (others will see this node fail, then mark it dead)."""
        if not self._running:
            return
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        for transport in (self._udp, self._tcp):
            if transport is not None:
                await transport.close()
        for events in self._watchers.values():
            for event in events:
                event.set()

    async def leave(self) -> None:
        """Leave gracefully: tell the cluster (members mark this node ``left``), then stop."""
        if not self._running:
            return
        engine = self._require_engine()
        loop = asyncio.get_running_loop()
        engine.leave(loop.time())
        self._pump()
        await asyncio.sleep(self._config.gossip_interval * LEAVE_GOSSIP_ROUNDS)
        await self.stop()

    # ---- identity --------------------------------------------------------------------
    @property
    def address(self) -> str:
        """The ``"host:port"`` actually bound (UDP and TCP share it)."""
        if self._udp is None:
            raise CRDTGossipError("the node is not started: no address yet")
        return self._udp.address

    @property
    def replica_id(self) -> str:
        """The replica id to pass to mutators; new for every life without stored state."""
        if self._replica_id is None:
            raise CRDTGossipError("the node is not started: no replica id yet")
        return self._replica_id

    @property
    def running(self) -> bool:
        """Whether the node is started and not stopped."""
        return self._running

    def _require_engine(self) -> Engine:
        if self._engine is None or not self._running:
            raise CRDTGossipError(f"node {self.node_id!r} is not running: call start() first")
        return self._engine

    # ---- data ------------------------------------------------------------------------
    async def update(
        self,
        key: str,
        value_type: type[T] | T,
        fn: Callable[[T], Any],
        consistency: Consistency | None = None,
    ) -> T:
        """Apply a mutation to ``key`` and spread it.

        Args:
            key: the data key (a non-empty str).
            value_type: the key's CRDT type, or an empty prototype (``ORMap(ORSet)``).
            fn: ``fn(state) -> delta``: call one mutator and return what it returned.
            consistency: how many members must have merged the write before returning;
                :class:`~crdtgossip.Local` by default.

        Returns:
            A copy of the key's state after the write.

        Raises:
            MergeError: the key holds a state of another type.
            QuorumError: too few members merged the write in time (it still spreads).
        """
        engine = self._require_engine()
        level = consistency if consistency is not None else Local()
        current = self._current(engine, key, value_type)
        delta = fn(current)
        if type(delta) is not type(current):
            raise MergeError(
                f"the update function must return the delta its mutator returned (a "
                f"{type(current).__name__}), not {delta!r:.80}"
            )
        engine.update(key, delta, asyncio.get_running_loop().time())
        self._pump()
        self._check_level(level)
        state = engine.get(key)
        assert state is not None
        return state  # type: ignore[return-value]

    async def get(
        self, key: str, value_type: type[T] | T, consistency: Consistency | None = None
    ) -> T:
        """The state of ``key`` (an empty one when absent).

        Raises:
            MergeError: the key holds a state of another type.
            QuorumError: too few members answered in time.
        """
        engine = self._require_engine()
        level = consistency if consistency is not None else Local()
        self._check_level(level)
        return self._current(engine, key, value_type)

    def _check_level(self, level: Consistency) -> None:
        if not isinstance(level, Local):
            raise ConfigError(
                f"{type(level).__name__} needs quorum coordination, not available in this "
                "version yet; use Local()"
            )

    @staticmethod
    def _current(engine: Engine, key: str, value_type: type[T] | T) -> T:
        empty = _empty_of(value_type)
        state = engine.get(key)
        if state is None:
            return empty
        if type(state) is not type(empty) or not _same_kind(state, empty):
            raise MergeError(
                f"key {key!r} holds a {type(state).__name__}, not a {type(empty).__name__}"
            )
        found: T = state
        return found

    def keys(self) -> list[str]:
        """Every key this node holds, sorted."""
        return self._require_engine().keys()

    async def watch(self, key: str) -> AsyncIterator[Any]:
        """Yield the ``value`` of ``key`` now (if present) and after every change.

        Changes that arrive faster than the consumer reads are coalesced: the next
        value yielded is the latest. The iteration ends when the node stops.
        """
        engine = self._require_engine()
        changed = asyncio.Event()
        self._watchers.setdefault(key, set()).add(changed)
        try:
            state = engine.get(key)
            if state is not None:
                yield state.value
            while self._running:
                await changed.wait()
                changed.clear()
                if not self._running:
                    return
                state = engine.get(key)
                if state is not None:
                    yield state.value
        finally:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(changed)
                if not watchers:
                    del self._watchers[key]

    def on_member_event(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener(event)`` for every membership event (joined, suspect, dead ...)."""
        self._member_listeners.append(listener)

    # ---- membership and stats --------------------------------------------------------
    def members(self) -> list[Member]:
        """Every member known, this node included: ``Member(node_id, address, status,
        incarnation)``."""
        return self._require_engine().members()

    def stats(self) -> dict[str, int]:
        """Counters: the engine's (messages, bytes, drops by reason, decode and merge
        errors), each transport's (prefixed ``udp_`` and ``tcp_``), and
        ``drop_unauthenticated`` for frames no installed key opened."""
        engine = self._require_engine()
        stats = dict(engine.stats())
        for prefix, transport in (("udp", self._udp), ("tcp", self._tcp)):
            if transport is not None:
                stats.update({f"{prefix}_{name}": n for name, n in transport.stats().items()})
        stats["drop_unauthenticated"] = self._auth_drops
        stats["receive_errors"] = self._receive_errors
        return stats

    # ---- the engine's I/O --------------------------------------------------------------
    def _on_frame(self, data: bytes, sender: str) -> None:
        if not self._running or self._engine is None:
            return
        if self._keyring is not None:
            try:
                data = self._keyring.open(data)
            except DecodeError:
                self._auth_drops += 1
                return
        try:
            self._engine.receive(data, sender, asyncio.get_running_loop().time())
        except Exception:  # the engine never raises for bad input; this is a bug guard
            self._receive_errors += 1
            _log.exception("crdtgossip: error handling a frame from %s", sender)
            return
        self._pump()
        self._wakeup.set()

    def _pump(self) -> None:
        """Send what the engine produced and deliver its events."""
        engine = self._engine
        udp, tcp = self._udp, self._tcp
        if engine is None or udp is None or tcp is None:
            return
        for frame in engine.take_outgoing():
            data = frame.data if self._keyring is None else self._keyring.seal(frame.data)
            if frame.reliable or len(data) > udp.max_datagram:
                tcp.send(frame.address, data)
            else:
                udp.send(frame.address, data)
        for event in engine.take_events():
            if isinstance(event, KeyChanged):
                for changed in self._watchers.get(event.key, ()):
                    changed.set()
            else:
                for listener in list(self._member_listeners):
                    try:
                        listener(event)
                    except Exception:
                        _log.exception("crdtgossip: member listener failed")

    async def _run_timers(self) -> None:
        loop = asyncio.get_running_loop()
        engine = self._require_engine()
        while self._running:
            engine.tick(loop.time())
            self._pump()
            delay = engine.next_wakeup() - loop.time()
            self._wakeup.clear()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=delay)


def _same_kind(state: object, empty: object) -> bool:
    """Whether a stored state and a requested empty one are of one kind (nested too)."""
    same = getattr(state, "_same_kind", None)
    return bool(same(empty)) if same is not None else True
