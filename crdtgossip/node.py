"""The asyncio runtime: one :class:`Node` wires the engine to transports, storage and clock.

The protocol itself is the sans-I/O :class:`~crdtgossip.protocol.Engine`; the node
moves bytes and time in and out of it (:mod:`crdtgossip._driver`: UDP and TCP on one
port, the keyring, one loop timer) and keeps its state in the storage
(:mod:`crdtgossip._persistence`: local deltas before they leave, merges in batches).
A write runs on the key's live state and costs the size of its change; a read returns
the live state, read-only, without a copy. Quorum writes and reads are coordinated by
the engine; ``update`` and ``get`` await futures resolved from its quorum results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, TypeVar

from crdtgossip import _node_log, _startup
from crdtgossip._driver import Driver
from crdtgossip._listeners import Listeners
from crdtgossip._node_events import deliver, node_stats, run_log
from crdtgossip._persistence import Persistence
from crdtgossip._quorum_wait import QuorumWaiters
from crdtgossip._startup import Opened, close_storage, new_replica_id, open_storage
from crdtgossip.codec import encode
from crdtgossip.config import GossipConfig
from crdtgossip.consistency import Consistency, Local
from crdtgossip.crdts._base import CRDT, delta_of, state_of
from crdtgossip.errors import ConfigError, CRDTGossipError, StorageError
from crdtgossip.protocol import Engine, Event, Member
from crdtgossip.security import Keyring
from crdtgossip.storage import Storage
from crdtgossip.transport import TlsConfig, TransportFactory, parse_address

__all__ = ["Node"]

_log = logging.getLogger(__name__)

T = TypeVar("T", bound=CRDT)

#: After ``leave()``, how many gossip intervals to keep running so the goodbye spreads
#: (it is also sent at once to every live member and seed; then the node waits, a
#: bounded time, for the stream transport to send it to them before it closes).
LEAVE_GOSSIP_ROUNDS = 5


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
        transport: the node's own transport instead of UDP and TCP, made at every
            start as ``transport(bind, on_receive)``: ``network.transport`` of a
            :class:`~crdtgossip.transport.MemoryNetwork` runs a cluster in one process
            with seeded faults. Every frame goes through it.
        tls: carry the default transport's TCP frames over TLS (not with
            ``transport``).

    Raises:
        ConfigError: ``node_id`` is empty, an address is malformed, or both
            ``transport`` and ``tls`` are given.

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
        transport: TransportFactory | None = None,
        tls: TlsConfig | None = None,
    ) -> None:
        if not isinstance(node_id, str) or not node_id:
            raise ConfigError(f"node_id must be a non-empty str, not {node_id!r}")
        if transport is not None and tls is not None:
            raise ConfigError("tls is an option of the default transport, not of a given one")
        if tls is not None and not isinstance(tls, TlsConfig):
            raise ConfigError(f"tls must be a TlsConfig, not {type(tls).__name__}")
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
        self._driver = Driver(
            node_id, self._config, keyring, self._deliver, transport=transport, tls=tls
        )
        self._listeners = Listeners()
        self._replica_id: str | None = None
        self._running = False
        self._persistence: Persistence | None = None
        if storage is not None:
            self._persistence = Persistence(
                storage, node_id, lambda: self._engine, self._driver.pump,
                lambda: self._running, self.stop,
            )  # fmt: skip
        # Local writes one at a time: each is persisted (with a storage) before the
        # next one reads the state, so the storage sees them in order.
        self._write_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._waiters = QuorumWaiters(node_id, self._pump)
        self._checked = asyncio.Event()  # the rollback check has ended
        self._node_log = _node_log.NodeLog(node_id, self._seeds)
        self._monitor: asyncio.Task[None] | None = None

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
        any write. Every stored key is restored (not gossiped as news). A node that
        kept its stored id and has seeds returns once its peers have said whether they
        hold more of it than the storage (the rollback check, bounded by
        ``GossipConfig.rollback_check_timeout``); if one does, the node takes a fresh
        replica id before its first write.

        Raises:
            StorageError: the storage cannot be opened or read completely (corrupt,
                unreadable, locked by another process); the node does not start.
            TransportError: the address cannot be bound.
            CRDTGossipError: the node is already running.
        """
        if self._running:
            raise CRDTGossipError(f"node {self.node_id!r} is already running")
        storage, persistence = self._storage, self._persistence
        if storage is None or persistence is None:
            opened = Opened(new_replica_id(self.node_id), 0, {}, kept_id=False)
        else:
            opened = await open_storage(self.node_id, storage, persistence)
        self._replica_id = opened.replica_id
        try:
            address = await self._driver.bind(self._bind)
        except BaseException:
            await self._close_storage()
            raise
        loop = asyncio.get_running_loop()
        self._checked = asyncio.Event()
        durable = storage is not None and storage.durable
        self._engine = _startup.start_engine(
            self.node_id, address, self._config, self._rng, opened, durable, bool(self._seeds)
        )
        self._running = True
        self._driver.engine = self._engine
        self._engine.set_backlog(self._driver.backlog)
        self._engine.join(self._seeds, loop.time())
        self._driver.pump()
        self._node_log.started(self.stats())
        summaries = run_log(
            self._node_log, self.node_id, self.stats, self.members, lambda: self._running
        )
        self._monitor = asyncio.create_task(summaries, name=f"crdtgossip-log:{self.node_id}")
        if persistence is not None:
            persistence.reset()
            self._flusher = asyncio.create_task(
                persistence.run_flusher(), name=f"crdtgossip-flush:{self.node_id}"
            )
        if self._engine.rollback_pending and storage is not None and persistence is not None:
            try:
                self._replica_id = await _startup.settle_replica_id(
                    self._engine, self._checked, storage, persistence
                )
            except BaseException:
                await self.stop()
                raise

    async def _close_storage(self) -> None:
        if self._storage is not None and self._persistence is not None:
            await close_storage(self.node_id, self._storage, self._persistence)

    async def stop(self) -> None:
        """Stop at once (others will see this node fail, then mark it dead).

        States merged from the network and not yet persisted are written first, then
        the storage is closed. Pending quorum operations fail with
        :class:`~crdtgossip.CRDTGossipError`.
        """
        if not self._running:
            return
        self._running = False
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        self._monitor = None
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self._flusher = None
        await self._driver.close()
        if self._storage is not None and self._persistence is not None and self._engine is not None:
            try:
                await self._persistence.flush(release=False)
                await self._persistence.call(
                    self._storage.save_identity, self.replica_id, self._engine.incarnation
                )
            except StorageError:
                _log.exception("crdtgossip: final flush of %s failed", self.node_id)
            await self._close_storage()
        self._waiters.fail_all()
        self._listeners.wake_all()

    async def leave(self) -> None:
        """Leave gracefully: tell the cluster (members mark this node ``left``), then stop."""
        if not self._running:
            return
        engine = self._require_engine()
        loop = asyncio.get_running_loop()
        engine.leave(loop.time())
        self._pump()
        await self._driver.linger(self._config.gossip_interval * LEAVE_GOSSIP_ROUNDS)
        await self.stop()

    # ---- identity --------------------------------------------------------------------
    @property
    def address(self) -> str:
        """The ``"host:port"`` actually bound (UDP and TCP share it)."""
        address = self._driver.address
        if address is None:
            raise CRDTGossipError("the node is not started: no address yet")
        return address

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
        if self._engine.refusal is not None:  # the cluster refused its id: protocol.identity
            raise ConfigError(self._engine.refusal)
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

        ``fn`` runs on the key's live state (nothing is copied), so a write costs the
        size of its change, not of the key. With a storage the delta is persisted
        before it leaves this node (and before any reader or peer sees the state
        holding it); then the level's members are asked to merge it.

        Args:
            key: the data key (a non-empty str).
            value_type: the key's CRDT type, or an empty prototype (``ORMap(ORSet)``).
            fn: ``fn(state) -> delta``: call one mutator and return what it returned.
                It must not keep ``state`` or change it other than through that one
                mutator.
            consistency: how many members must have merged the write before returning;
                :class:`~crdtgossip.Local` by default.

        Returns:
            The key's live state after the write, read-only, as :meth:`get` returns it.

        Raises:
            MergeError: the key holds a state of another type, or ``fn`` did not return
                its mutator's delta.
            OperationError: the mutator refused its arguments, or the key's state has
                reached ``GossipConfig.max_key_bytes`` (nothing changed).
            StorageError: the write could not be persisted; the key is rolled back to
                what the storage holds, so the write is not applied.
            QuorumError: too few members merged the write in time (it still spreads,
                and it holds here).
        """
        level = consistency if consistency is not None else Local()
        persistence = self._persistence
        async with self._write_lock:
            engine = self._require_engine()
            engine.check_room(key)
            if persistence is None:
                state = self._current(engine, key, value_type)
                delta = delta_of(state, fn, engine.clock.stamp)
                payload = engine.stamp_local(key, encode(delta))
                engine.commit_local(key, state, delta, self._now(), payload=payload)
            else:
                delta, payload = await persistence.write(engine, key, value_type, fn)
            self._pump()
        if not isinstance(level, Local):
            needed = level.required(engine.quorum_members())
            request = engine.start_write(
                key, delta, needed, level.timeout, self._now(), payload=payload
            )
            await self._waiters.wait(request, f"write of {key!r}", self._running)
        return self._current(engine, key, value_type)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def get(
        self, key: str, value_type: type[T] | T, consistency: Consistency | None = None
    ) -> T:
        """The state of ``key`` (an empty one when absent), without copying it.

        What you get is the node's live state, read-only: read it at once (``value``,
        ``in``, ``len``, iteration); it changes as the node merges later writes; call
        ``copy()`` for a snapshot to keep or to change. Never call a mutator or
        ``merge`` on it: that would change the node's state without spreading or
        persisting the change (write through :meth:`update`). An absent key gives a new
        empty state, which is yours.

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
            request = engine.start_read(key, needed, level.timeout, self._now())
            await self._waiters.wait(request, f"read of {key!r}", self._running)
        state = self._current(engine, key, value_type)
        await self._durable_before_visible(key)
        return state

    async def _durable_before_visible(self, key: str) -> None:
        if self._persistence is not None:
            await self._persistence.before_visible(key)

    @staticmethod
    def _current(engine: Engine, key: str, value_type: type[T] | T) -> T:
        return state_of(key, engine.get(key), value_type)

    async def delete(self, key: str) -> bool:
        """Delete ``key`` on every member (here at once, there as the delete reaches
        them): its state and storage rows go, and a later write starts empty.

        A write concurrent with the delete wins, as in :class:`~crdtgossip.ORMap`:
        the delete removes the writes this node had seen (see
        :doc:`/concepts/lifecycle`). It spreads like a write; its record (the key's
        *tombstone*) stays for ``GossipConfig.deleted_keys_kept``, so a member that
        was away cannot bring the old state back.

        :meth:`watch` yields ``None``, :meth:`watch_prefix` ``(key, None)``, and
        :meth:`on_key_deleted` listeners are called, here and on every member;
        ``stats()["keys_deleted"]`` counts it. A storage persists it first, so a
        restart does not bring the key back.

        Returns:
            Whether there was something to delete here.

        Raises:
            OperationError: ``key`` is invalid.
            StorageError: the delete could not be persisted (the key stays).
        """
        async with self._write_lock:
            engine = self._require_engine()
            if self._persistence is None:
                existed = engine.delete(key, self._now())
            else:
                existed = await self._persistence.delete(engine, key)
            self._pump()
        return existed

    def keys(self) -> list[str]:
        """Every key this node holds, sorted."""
        return self._require_engine().keys()

    async def watch(self, key: str) -> AsyncGenerator[Any, None]:
        """Yield the ``value`` of ``key`` now (if present) and after every change.

        Changes that arrive faster than the consumer reads are coalesced: the next
        value yielded is the latest. The iteration ends when the node stops.
        """
        engine = self._require_engine()
        values = self._listeners.values(
            key, engine.get, self._durable_before_visible, lambda: self._running
        )
        async with contextlib.aclosing(values):
            async for value in values:
                yield value

    async def watch_prefix(self, prefix: str = "") -> AsyncGenerator[tuple[str, Any], None]:
        """Yield ``(key, value)`` for every key starting with ``prefix`` (every key for
        ``""``): each one held now, sorted, then each key as it changes.

        A key that changes several times before the consumer reads is yielded once,
        with its latest value; keys come in the order they first changed. The
        iteration ends when the node stops.
        """
        engine = self._require_engine()
        pairs = self._listeners.prefixed(
            prefix, engine.keys, engine.get, self._durable_before_visible, lambda: self._running
        )
        async with contextlib.aclosing(pairs):
            async for pair in pairs:
                yield pair

    def on_key_changed(self, listener: Callable[[str, CRDT], None]) -> Callable[[], None]:
        """Call ``listener(key, change)`` after every change of a key on this node.

        ``change`` is what was merged: a local update's delta, or the delta or state
        received from the network. It is read-only and valid only during the call
        (keep what you need from it, not the object). Listeners run synchronously, in
        the order added, right after the change: keep them short. An exception in one
        is logged and does not affect the node or the other listeners.

        Returns:
            A function that removes the listener (calling it twice is harmless).
        """
        return self._listeners.add_key_listener(listener)

    def on_key_deleted(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(key)`` after a key is deleted (:meth:`delete`) or expires
        here (``GossipConfig.expire_keys_after``), as :meth:`on_key_changed` listeners
        are called (which neither calls).

        Returns:
            A function that removes the listener (calling it twice is harmless).
        """
        return self._listeners.add_delete_listener(listener)

    def on_member_event(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener(event)`` for every membership event (joined, suspect, dead ...)."""
        self._listeners.add_member_listener(listener)

    # ---- membership and stats --------------------------------------------------------
    def members(self) -> list[Member]:
        """Every member known, this node included: ``Member(node_id, address, status,
        incarnation)``."""
        return self._require_engine().members()

    def stats(self) -> dict[str, int]:
        """Counters: the engine's (messages, bytes, drops by reason, decode and merge
        errors, quorum requests), each transport's (prefixed ``udp_`` and ``tcp_``),
        ``drop_unauthenticated`` for frames no installed key opened,
        ``storage_errors`` (failed background writes) and ``keys_dirty`` (keys with
        merges from the network not persisted yet)."""
        return node_stats(self._require_engine(), self._driver, self._persistence)

    # ---- what the engine says ---------------------------------------------------------
    def _pump(self) -> None:
        self._driver.pump()

    def _deliver(self, engine: Engine) -> None:
        """Take the engine's quorum results and events (the driver calls it after each
        call into the engine)."""
        deliver(engine, self._persistence, self._waiters, self._listeners, self._node_log)
        if not engine.rollback_pending:
            self._checked.set()
