"""The asyncio runtime: one :class:`Node` wires the engine to transports, keyring and clock.

The protocol itself is the sans-I/O :class:`~crdtgossip.protocol.Engine`; this module
only moves bytes and time in and out of it:

* frames from the UDP and TCP transports are opened with the keyring (if any) and fed
  to the engine; a frame that does not authenticate is dropped and counted, never
  decoded further;
* frames the engine wants sent are sealed and go by UDP when they fit a datagram, by
  TCP otherwise;
* one event-loop timer ticks the engine at the time it asks for (``next_wakeup``), on
  the loop's monotonic clock; it is moved only when a call made the engine's next
  wakeup earlier, so a frame costs no extra task switch;
* local updates go through the engine; key changes wake the watchers;
* state goes to the storage: every local update is persisted before ``update``
  returns and before its delta leaves the node; states merged from the network are
  persisted in batches by a background task (and at stop), and with a durable storage
  a member acknowledges a quorum write only once its merge is persisted;
* quorum writes and reads are coordinated by the engine; ``update`` and ``get`` await
  futures resolved from the engine's quorum results.

UDP and TCP listen on the same port number, as memberlist does, so a member has one
address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final, TypeVar

from crdtgossip.codec import decode, encode
from crdtgossip.config import GossipConfig
from crdtgossip.consistency import Consistency, Local
from crdtgossip.crdts._base import CRDT, delta_of, state_of
from crdtgossip.errors import (
    ConfigError,
    CRDTGossipError,
    DecodeError,
    QuorumError,
    StorageError,
    TransportError,
)
from crdtgossip.protocol import Engine, Event, KeyChanged, Member
from crdtgossip.protocol.quorum import QuorumResult
from crdtgossip.security import Keyring
from crdtgossip.storage import MAX_INCARNATION, MemoryStorage, Storage
from crdtgossip.transport import TcpTransport, UdpTransport, format_address, parse_address

__all__ = ["Node"]

_log = logging.getLogger(__name__)

T = TypeVar("T", bound=CRDT)
_R = TypeVar("_R")

#: How many times to look for a port free for both UDP and TCP when binding port 0.
BIND_ATTEMPTS = 20

#: After ``leave()``, how many gossip intervals to keep running so the goodbye spreads
#: (the goodbye is also sent directly to every live member at once).
LEAVE_GOSSIP_ROUNDS = 5

FLUSH_INTERVAL: Final = 0.05
"""Seconds the background flusher gathers states merged from the network before it
writes them in one transaction: one fsync per batch instead of one per merge (an
anti-entropy exchange merges many keys at once). A crash in this window loses only
merges, which peers hold and anti-entropy brings back; local updates are never in it.
Write acks held for persistence skip the wait."""

FLUSH_RETRY: Final = 1.0
"""Seconds before the flusher retries after a failed storage write (a full disk, a
lock held by another process); the keys stay dirty meanwhile."""


def _new_replica_id(node_id: str) -> str:
    """A replica id never used before: the node id plus 64 random bits.

    A node that lost its state must not reuse its old replica id, or its new counter
    slots and dots would collide with ones it already issued (riak_kv#679).
    """
    return f"{node_id}.{secrets.token_hex(8)}"


class Node:
    """A gossip cluster member holding replicated CRDT state.

    Args:
        node_id: this node's unique, stable name in the cluster.
        bind: ``"host:port"`` to listen on (UDP and TCP); port 0 picks a free port.
        seeds: addresses of members to join through; empty for the first node.
        keyring: seal every frame with AES-GCM; frames under no installed key are
            dropped and counted.
        storage: durable state (see :mod:`crdtgossip.storage`), opened at start and
            closed at stop. None: nothing is kept, and each start takes a fresh
            replica id (as with a new :class:`~crdtgossip.storage.MemoryStorage`).
        config: protocol timers and limits; :meth:`GossipConfig.lan` by default.
        seed: seed of the engine's random choices (tests and reproducible runs);
            random by default.

    Example:
        >>> import asyncio
        >>> from crdtgossip import GCounter, Node
        >>> async def main() -> int:
        ...     async with Node("a", bind="127.0.0.1:0") as node:
        ...         replica = node.replica_id
        ...         hits = await node.update("hits", GCounter, lambda c: c.increment(replica))
        ...         return hits.value
        >>> asyncio.run(main())
        1
    """

    def __init__(
        self,
        node_id: str,
        bind: str = "127.0.0.1:0",
        seeds: Sequence[str] = (),
        keyring: Keyring | None = None,
        storage: Storage | None = None,
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
        # The loop timer that ticks the engine, and the loop time it is set for.
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_at = math.inf
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._member_listeners: list[Callable[[Event], None]] = []
        self._replica_id: str | None = None
        self._running = False
        self._auth_drops = 0
        self._receive_errors = 0
        # Persistence: the number of KeyChanged seen per key, and the number the
        # storage already reflects; a key is dirty while the first is ahead.
        self._changes: dict[str, int] = {}
        self._saved: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._store_lock = asyncio.Lock()  # one writer: each put reflects a newer state
        self._flush_wanted = asyncio.Event()
        self._flush_urgent = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._storage_errors = 0
        self._waiters: dict[int, asyncio.Future[QuorumResult]] = {}

    # ---- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the storage, bind the transports, start the protocol and join the seeds.

        With a storage holding a replica id, the node keeps it and starts at the
        stored incarnation + 1; otherwise it takes a fresh replica id, saved before
        any write. Every stored key is restored (not gossiped as news).

        Raises:
            StorageError: the storage cannot be opened or read completely (corrupt,
                unreadable, locked by another process); the node does not start.
            TransportError: the address cannot be bound.
            CRDTGossipError: the node is already running.
        """
        if self._running:
            raise CRDTGossipError(f"node {self.node_id!r} is already running")
        incarnation = 0
        restored: dict[str, CRDT] = {}
        storage = self._storage
        if storage is None:
            self._replica_id = _new_replica_id(self.node_id)
        else:
            try:
                stored = await self._call(storage.open)
            except StorageError as exc:
                raise StorageError(f"node {self.node_id!r} cannot start: {exc}") from exc
            try:
                restored = _decode_states(stored.states)
                if stored.replica_id is not None:
                    self._replica_id = stored.replica_id
                    incarnation = min(stored.incarnation + 1, MAX_INCARNATION)
                else:
                    self._replica_id = _new_replica_id(self.node_id)
                # Before any write: a crash after a write must not lose the id it used.
                await self._call(storage.save_identity, self._replica_id, incarnation)
            except StorageError as exc:
                await self._close_storage()
                raise StorageError(f"node {self.node_id!r} cannot start: {exc}") from exc
            except BaseException:
                await self._close_storage()
                raise
        try:
            await self._bind_transports()
        except BaseException:
            await self._close_storage()
            raise
        loop = asyncio.get_running_loop()
        assert self._udp is not None
        self._engine = Engine(
            self.node_id,
            self._udp.address,
            self._config,
            self._rng,
            self._replica_id,
            incarnation=incarnation,
            hold_write_acks=storage is not None and storage.durable,
        )
        for key, state in restored.items():
            self._engine.restore(key, state)
        self._changes.clear()
        self._saved.clear()
        self._dirty.clear()
        self._flush_wanted.clear()
        self._flush_urgent.clear()
        self._running = True
        self._engine.join(self._seeds, loop.time())
        self._pump()
        if storage is not None:
            self._flusher = asyncio.create_task(
                self._run_flusher(), name=f"crdtgossip-flush:{self.node_id}"
            )

    async def _call(self, function: Callable[..., _R], *args: Any) -> _R:
        """Call a storage method: inline for memory, else in a thread (it blocks)."""
        if isinstance(self._storage, MemoryStorage):
            return function(*args)
        return await asyncio.to_thread(function, *args)

    async def _close_storage(self) -> None:
        if self._storage is None:
            return
        try:
            await self._call(self._storage.close)
        except StorageError:
            _log.exception("crdtgossip: closing the storage of %s failed", self.node_id)

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
        """Stop at once (others will see this node fail, then mark it dead).

        States merged from the network and not yet persisted are written first, then
        the storage is closed. Pending quorum operations fail with
        :class:`~crdtgossip.CRDTGossipError`.
        """
        if not self._running:
            return
        self._running = False
        self._disarm_timer()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self._flusher = None
        for transport in (self._udp, self._tcp):
            if transport is not None:
                await transport.close()
        if self._storage is not None and self._engine is not None:
            try:
                await self._flush_dirty(release=False)
                await self._call(
                    self._storage.save_identity, self.replica_id, self._engine.incarnation
                )
            except StorageError:
                _log.exception("crdtgossip: final flush of %s failed", self.node_id)
            await self._close_storage()
        stopped = CRDTGossipError(f"node {self.node_id!r} stopped")
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(stopped)
        self._waiters.clear()
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

        The new state is persisted (with a storage) before the delta leaves this
        node; then the level's members are asked to merge it.

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
            StorageError: the write could not be persisted; it was not applied.
            QuorumError: too few members merged the write in time (it still spreads,
                and it holds here).
        """
        level = consistency if consistency is not None else Local()
        async with self._store_lock:
            engine = self._require_engine()
            current = self._current(engine, key, value_type)
            delta = delta_of(current, fn)
            if self._storage is not None:
                # If stop() runs meanwhile the write is on disk all the same: apply it,
                # so memory matches the storage; it spreads after the next start.
                await self._persist_local(key, current)
            engine.update(key, delta, asyncio.get_running_loop().time())
            self._pump()
        if not isinstance(level, Local):
            needed = level.required(engine.quorum_members())
            loop = asyncio.get_running_loop()
            request = engine.start_write(key, delta, needed, level.timeout, loop.time())
            await self._await_quorum(request, f"write of {key!r}")
        state = engine.get(key)
        assert state is not None
        return state  # type: ignore[return-value]

    async def _persist_local(self, key: str, state: CRDT) -> None:
        """Persist the state of a local update, before the engine applies it.

        The storage will reflect exactly one more change of ``key`` than it has seen
        (the KeyChanged the engine emits for this update); a merge from the network
        that lands meanwhile makes the key dirty again, for the flusher.
        """
        assert self._storage is not None
        data = encode(state)  # first: a state that cannot be encoded changes nothing
        previous = self._saved.get(key, 0)
        self._saved[key] = self._changes.get(key, 0) + 1
        try:
            await self._call(self._storage.put, key, data)
        except BaseException:
            self._saved[key] = previous
            raise

    async def get(
        self, key: str, value_type: type[T] | T, consistency: Consistency | None = None
    ) -> T:
        """The state of ``key`` (an empty one when absent).

        With a quorum level, the level's members are asked for their state; replies
        are merged here and members whose reply was behind are repaired.

        Raises:
            MergeError: the key holds a state of another type.
            QuorumError: too few members answered in time (the replies that did
                arrive are merged here all the same).
        """
        engine = self._require_engine()
        level = consistency if consistency is not None else Local()
        if not isinstance(level, Local):
            self._current(engine, key, value_type)  # the type check, before asking
            needed = level.required(engine.quorum_members())
            loop = asyncio.get_running_loop()
            request = engine.start_read(key, needed, level.timeout, loop.time())
            await self._await_quorum(request, f"read of {key!r}")
        state = self._current(engine, key, value_type)
        await self._durable_before_visible(key)
        return state

    async def _durable_before_visible(self, key: str) -> None:
        """With storage, write ``key``'s merged state before a reader sees it.

        States merged from the network are written in batches; a reader must not see
        one that is not on disk yet, or a crash could show it a smaller value later
        (a counter going back). The state is read before this is called, and a state
        only grows, so what is written covers what the reader got.
        """
        if self._storage is None:
            return
        if key in self._dirty:
            await self._flush_dirty(release=False)
        else:
            # Not dirty, but a batch holding this state may still be on its way to
            # disk: the write holds the lock until it has landed.
            async with self._store_lock:
                pass

    async def _await_quorum(self, request: int, what: str) -> None:
        """Wait for the engine's result of a quorum request; raise if it failed."""
        if not self._running:
            raise CRDTGossipError(f"node {self.node_id!r} stopped before the {what} completed")
        waiter: asyncio.Future[QuorumResult] = asyncio.get_running_loop().create_future()
        self._waiters[request] = waiter
        self._pump()  # sends the requests, delivers a result already reached, sets the timer
        try:
            result = await waiter
        finally:
            self._waiters.pop(request, None)
        if not result.ok:
            raise QuorumError(
                f"{what}: {result.answered} of the {result.needed} members needed answered in time",
                answered=result.answered,
                needed=result.needed,
            )

    @staticmethod
    def _current(engine: Engine, key: str, value_type: type[T] | T) -> T:
        return state_of(key, engine.get(key), value_type)

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
                await self._durable_before_visible(key)
                yield state.value
            while self._running:
                await changed.wait()
                changed.clear()
                if not self._running:
                    return
                state = engine.get(key)
                if state is not None:
                    await self._durable_before_visible(key)
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
        errors, quorum requests), each transport's (prefixed ``udp_`` and ``tcp_``),
        ``drop_unauthenticated`` for frames no installed key opened,
        ``storage_errors`` (failed background writes) and ``keys_dirty`` (merged
        states not persisted yet)."""
        engine = self._require_engine()
        stats = dict(engine.stats())
        for prefix, transport in (("udp", self._udp), ("tcp", self._tcp)):
            if transport is not None:
                stats.update({f"{prefix}_{name}": n for name, n in transport.stats().items()})
        stats["drop_unauthenticated"] = self._auth_drops
        stats["receive_errors"] = self._receive_errors
        stats["storage_errors"] = self._storage_errors
        stats["keys_dirty"] = len(self._dirty)
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

    def _pump(self) -> None:
        """Send what the engine produced, deliver its events and quorum results, and set
        the timer for its next wakeup."""
        engine = self._engine
        udp, tcp = self._udp, self._tcp
        if engine is None or udp is None or tcp is None or not self._running:
            return
        if engine.held_acks:
            self._flush_urgent.set()
            self._flush_wanted.set()
        for frame in engine.take_outgoing():
            data = frame.data if self._keyring is None else self._keyring.seal(frame.data)
            if frame.reliable or len(data) > udp.max_datagram:
                tcp.send(frame.address, data)
            else:
                udp.send(frame.address, data)
        for result in engine.take_quorum_results():
            waiter = self._waiters.get(result.request_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(result)
        for event in engine.take_events():
            if isinstance(event, KeyChanged):
                if self._storage is not None:
                    self._changes[event.key] = self._changes.get(event.key, 0) + 1
                    self._dirty.add(event.key)
                    self._flush_wanted.set()
                for changed in self._watchers.get(event.key, ()):
                    changed.set()
            else:
                for listener in list(self._member_listeners):
                    try:
                        listener(event)
                    except Exception:
                        _log.exception("crdtgossip: member listener failed")
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
        engine = self._engine
        if not self._running or engine is None:
            return
        now = asyncio.get_running_loop().time()
        try:
            engine.tick(now)
        except Exception:  # a bug guard: keep the node ticking, not spinning
            _log.exception("crdtgossip: error in the protocol timers of %s", self.node_id)
            self._arm_timer(now + self._config.gossip_interval)
            return
        self._pump()

    # ---- persistence of merged states ----------------------------------------------
    async def _run_flusher(self) -> None:
        """Persist keys merged from the network, in batches (see FLUSH_INTERVAL)."""
        while self._running:
            await self._flush_wanted.wait()
            if not self._flush_urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_urgent.wait(), timeout=FLUSH_INTERVAL)
            self._flush_wanted.clear()
            self._flush_urgent.clear()
            try:
                await self._flush_dirty(release=True)
            except StorageError:
                self._storage_errors += 1
                _log.exception("crdtgossip: persisting merged states of %s failed", self.node_id)
                await asyncio.sleep(FLUSH_RETRY)
                self._flush_wanted.set()

    async def _flush_dirty(self, *, release: bool) -> None:
        """Write every dirty key's state in one transaction, then release held acks.

        Raises:
            StorageError: the write failed; the keys stay dirty.
        """
        storage, engine = self._storage, self._engine
        if storage is None or engine is None:
            return
        async with self._store_lock:
            mark = engine.ack_mark()  # acks held so far acknowledge merges in this batch
            items: list[tuple[str, bytes]] = []
            previous: dict[str, int] = {}
            for key in self._dirty:
                changes = self._changes.get(key, 0)
                if changes <= self._saved.get(key, 0):
                    continue  # a local update already wrote this state
                state = engine.get(key)
                if state is None:
                    continue
                items.append((key, encode(state)))
                previous[key] = self._saved.get(key, 0)
                self._saved[key] = changes
            self._dirty.clear()
            if items:
                try:
                    await self._call(storage.put_many, items)
                except BaseException:
                    for key, count in previous.items():
                        self._saved[key] = count
                        self._dirty.add(key)
                    raise
            if release and self._running:
                engine.release_acks(mark, asyncio.get_running_loop().time())
                self._pump()


def _decode_states(states: dict[str, bytes]) -> dict[str, CRDT]:
    """Decode every stored state, or refuse them all.

    Raises:
        StorageError: a stored state cannot be decoded (never a silently smaller node).
    """
    restored: dict[str, CRDT] = {}
    for key, data in states.items():
        try:
            value = decode(data)
        except DecodeError as exc:
            raise StorageError(f"the stored state of key {key!r:.80} is unreadable: {exc}") from exc
        if not isinstance(value, CRDT):
            raise StorageError(f"the stored state of key {key!r:.80} is not a CRDT state")
        restored[key] = value
    return restored
