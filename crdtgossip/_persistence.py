"""How a :class:`~crdtgossip.Node` keeps its state in a storage, at the cost of the change.

The node never writes a whole state. A local update appends its delta to the storage
before the delta leaves the node (:meth:`Persistence.persist_local`); what the engine
merges from the network is appended as the payloads it merged, in batches, by a
background flusher (:meth:`Persistence.run_flusher`). The storage folds its log into
the stored states on its own (see :mod:`crdtgossip.storage`). So a write to a key of a
million elements costs what the write changed, in memory and on disk.

With a durable storage a member acknowledges a quorum write only once its merge is
persisted: the engine holds the acks (``hold_write_acks``) and the flusher releases the
ones held before each batch it wrote.

A key that expires (``GossipConfig.expire_keys_after``) has its last-write stamp stored
beside it (see :mod:`crdtgossip._written`), appended with each write and each batch
that holds it. When the engine expires a key, its rows are deleted before anything
newer of the key is appended: by the next write to it, or by the flusher, at most
:data:`EXPIRED_PER_BATCH` keys a batch so writes to other keys do not wait behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final, TypeVar

from crdtgossip._written import STAMP_PREFIX, encode_stamp, is_reserved, stamp_key
from crdtgossip.codec import decode, encode
from crdtgossip.crdts import LWWRegister
from crdtgossip.crdts._base import CRDT, delta_of, state_of
from crdtgossip.errors import DecodeError, MergeError, StorageError
from crdtgossip.keylife import Record, fold
from crdtgossip.protocol import Engine
from crdtgossip.storage import MemoryStorage, Storage, StoredState

__all__ = [
    "EXPIRED_PER_BATCH",
    "FLUSH_INTERVAL",
    "FLUSH_RETRY",
    "Persistence",
    "decode_stored",
    "decode_stored_life",
    "read_stored",
]

_log = logging.getLogger(__name__)

_R = TypeVar("_R")
C = TypeVar("C", bound=CRDT)

FLUSH_INTERVAL: Final = 0.05
"""Seconds the background flusher gathers what was merged from the network before it
appends it in one transaction: one fsync per batch instead of one per merge (an
anti-entropy exchange merges many keys at once). A crash in this window loses only
merges, which peers hold and anti-entropy brings back; local updates are never in it.
Write acks held for persistence skip the wait."""

FLUSH_RETRY: Final = 1.0
"""Seconds before the flusher retries after a failed storage write (a full disk, a
lock held by another process); the merges stay pending meanwhile."""

EXPIRED_PER_BATCH: Final = 256
"""Most expired keys whose rows the flusher deletes in one go (one transaction with a
storage that has ``delete_many``, as both of crdtgossip's have; else one delete a row);
more wait for the next batch, so writes to other keys never wait behind a mass expiry."""


def _join(key: str, state: CRDT | None, data: bytes) -> CRDT:
    """``state`` joined with the decoded ``data`` (the decoded value when None)."""
    try:
        value = decode(data)
    except DecodeError as exc:
        raise StorageError(f"the stored state of key {key!r:.80} is unreadable: {exc}") from exc
    if not isinstance(value, CRDT):
        raise StorageError(f"the stored state of key {key!r:.80} is not a CRDT state")
    if state is None:
        return value
    try:
        state.merge(value)
    except (MergeError, TypeError, ValueError) as exc:
        raise StorageError(
            f"the stored log of key {key!r:.80} holds a {type(value).__name__} that does not "
            f"merge into its {type(state).__name__}: {exc}"
        ) from exc
    return state


def decode_stored(key: str, state: bytes | None, deltas: list[bytes]) -> CRDT | None:
    """A key's state from what a storage holds: its state row joined with its log
    (see :func:`decode_stored_life`)."""
    return decode_stored_life(key, state, deltas)[0]


def decode_stored_life(
    key: str, state: bytes | None, deltas: list[bytes]
) -> tuple[CRDT | None, Record | None]:
    """A key's state and life record from what a storage holds: its state row joined
    with its log, rows whose writes were deleted left out as the engine left them
    (:func:`crdtgossip.keylife.fold`).

    Raises:
        StorageError: something stored cannot be decoded or merged (never a silently
            smaller node).
    """
    rows = deltas if state is None else [state, *deltas]
    try:
        return fold(rows, lambda joined, data: _join(key, joined, data))
    except DecodeError as exc:
        raise StorageError(
            f"the stored life record of key {key!r:.80} is unreadable: {exc}"
        ) from exc


def read_stored(
    stored: StoredState,
) -> tuple[dict[str, CRDT], dict[str, int], dict[str, Record]]:
    """What :meth:`Storage.open` returned, in one pass: every data key's state (see
    :func:`decode_stored`), every expiring key's stored last-write stamp (its
    records joined, so the largest; see :mod:`crdtgossip._written`), and every key's
    life record (deleted keys' too: their tombstones).

    Raises:
        StorageError: something stored cannot be decoded or merged, or a stamp record is
            not one (never a silently smaller node, nor a key kept alive silently).
    """
    restored: dict[str, CRDT] = {}
    stamps: dict[str, int] = {}
    lives: dict[str, Record] = {}
    for name in stored.states.keys() | stored.deltas.keys():
        reserved = is_reserved(name)
        if reserved and not name.startswith(STAMP_PREFIX):
            continue  # a record of a later version's: not ours to read
        state, life = decode_stored_life(name, stored.states.get(name), stored.deltas.get(name, []))
        if not reserved:
            if state is not None:
                restored[name] = state
            if life is not None:
                lives[name] = life
        elif not isinstance(state, LWWRegister):
            raise StorageError(f"the stamp record {name!r:.80} is not an LWWRegister")
        elif state.timestamp:
            stamps[name[len(STAMP_PREFIX) :]] = state.timestamp
    return restored, stamps, lives


class Persistence:
    """The node's writer to its storage: local deltas, merged payloads, held acks.

    Args:
        storage: the open storage.
        node_id: for log lines.
        engine: returns the running engine, or None once the node stopped.
        pump: the node's pump, called after acks were released.
        running: whether the node still runs.
        stop: stops the node (started as a task when even a roll back fails).
    """

    def __init__(
        self,
        storage: Storage,
        node_id: str,
        engine: Callable[[], Engine | None],
        pump: Callable[[], None],
        running: Callable[[], bool],
        stop: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        self.storage = storage
        self._node_id = node_id
        self._engine = engine
        self._pump = pump
        self._running = running
        self._stop = stop
        self._stopping: asyncio.Task[None] | None = None  # kept, so it is not collected
        # Payloads merged from the network, per key, not yet appended.
        self._unsaved: dict[str, list[bytes]] = {}
        # Keys the engine expired whose rows are still in the storage, oldest first.
        self._expired: dict[str, None] = {}
        # One writer at a time, so the storage sees writes in the order they happened.
        self.lock = asyncio.Lock()
        self._wanted = asyncio.Event()
        self._urgent = asyncio.Event()
        self.errors = 0

    async def call(self, function: Callable[..., _R], *args: Any) -> _R:
        """Call a storage method: inline for memory, else in a thread (it blocks)."""
        if isinstance(self.storage, MemoryStorage):
            return function(*args)
        return await asyncio.to_thread(function, *args)

    @property
    def pending(self) -> int:
        """Keys with merges not persisted yet, or expired with their rows still stored."""
        if not self._expired:  # the usual case: no set built
            return len(self._unsaved)
        return len(self._unsaved.keys() | self._expired.keys())

    def reset(self) -> None:
        """Forget pending merges (a new start)."""
        self._unsaved.clear()
        self._expired.clear()
        self._wanted.clear()
        self._urgent.clear()

    def merged(self, key: str, payload: bytes) -> None:
        """Note a payload the engine merged from the network, for the next batch."""
        self._unsaved.setdefault(key, []).append(payload)
        self._wanted.set()

    def expired(self, key: str) -> None:
        """Note a key the engine expired: its rows go before anything newer of it."""
        self._unsaved.pop(key, None)
        self._expired[key] = None
        self._wanted.set()

    async def _settle(self, keys: Iterable[str]) -> None:
        """Delete the rows of those expired ``keys`` still stored (under the lock).

        Raises:
            StorageError: a delete failed; the keys not deleted stay noted.
        """
        due = [key for key in keys if key in self._expired]
        if due:
            await self.call(_delete_rows, self.storage, due)
            for key in due:
                del self._expired[key]

    def acks_waiting(self) -> None:
        """The engine holds write acks: write the next batch at once."""
        self._urgent.set()
        self._wanted.set()

    async def write(
        self,
        engine: Engine,
        key: str,
        value_type: type[C] | C,
        fn: Callable[[C], object],
    ) -> tuple[C, bytes]:
        """Run ``fn`` on the live state and persist its delta before it spreads.

        The engine holds the key back (no state of it leaves the node) from the moment
        the live state may hold the change until the delta is on disk. If anything
        fails once ``fn`` ran, the key is rolled back to what the storage holds: a
        change that is in memory but not on disk must never spread, or a restart would
        reissue its counter values and dots.

        Args:
            engine: the running engine.
            key: the data key.
            value_type: the key's type (see :meth:`crdtgossip.Node.update`); the live
                state is read once the writer's turn came, so a key that expired
                meanwhile starts again from an empty state.
            fn: the update function.

        Returns:
            The delta and its encoding.

        Raises:
            StorageError: the delta could not be persisted (the key was rolled back).
        """
        async with self.lock:
            await self._settle((key,))
            state = state_of(key, engine.get(key), value_type)
            engine.begin_local(key)
            try:
                delta = delta_of(state, fn, engine.clock.stamp)
                payload = engine.stamp_local(key, encode(delta))
                items = [(key, payload)]
                written = engine.write_stamp(key)  # stored as the engine will hold it
                if written:
                    items.append((stamp_key(key), encode_stamp(written, engine.replica_id)))
                await self.call(self.storage.append, items)
            except BaseException:
                await self._roll_back(engine, key)
                raise
            # If the node stopped meanwhile, the write is on disk all the same: apply it,
            # so memory matches the storage; it spreads after the next start.
            now = asyncio.get_running_loop().time()
            engine.commit_local(key, state, delta, now, payload=payload, written=written)
        return delta, payload

    async def delete(self, engine: Engine, key: str) -> bool:
        """Delete ``key``: its tombstone replaces its rows in the storage, then the
        engine deletes it and spreads the delete.

        The storage goes first, so a delete that cannot be persisted changes nothing
        (a restart must not bring back a key the node said was gone); merges of the key
        waiting for the next batch were seen by the delete and go with it.

        Returns:
            Whether there was something to delete.

        Raises:
            StorageError: the storage could not store it (the key stays).
            OperationError: a local write to the key is being persisted.
        """
        async with self.lock:
            now = asyncio.get_running_loop().time()
            if engine.is_held(key):
                engine.delete(key, now)  # raises: held
            deletion = engine.deletion(key)
            if deletion is None:
                return False
            await self._settle((key,))
            pending = self._unsaved.pop(key, None)
            try:
                await self.call(self.storage.put, key, deletion)
            except BaseException:
                if pending is not None:  # still to be written, before anything newer
                    self._unsaved[key] = [*pending, *self._unsaved.get(key, [])]
                raise
            return engine.delete(key, asyncio.get_running_loop().time(), deletion=deletion)

    async def _roll_back(self, engine: Engine, key: str) -> None:
        """Replace ``key`` by what the storage holds, with the merges still pending."""
        try:
            state, deltas = await self.call(self.storage.load, key)
            rows = [*deltas, *self._unsaved.get(key, [])]
            stored, life = decode_stored_life(key, state, rows)
        except StorageError:
            # Neither written nor readable: stop rather than serve a state that may hold
            # a write not on disk. The key stays held, so none of it leaves meanwhile.
            _log.exception("crdtgossip: %s cannot roll back key %r; stopping", self._node_id, key)
            self._stopping = asyncio.get_running_loop().create_task(self._stop())
            return
        now = asyncio.get_running_loop().time()
        engine.abort_local(key, stored, now, life=life, stored_life=True)
        self._pump()

    async def before_visible(self, key: str) -> None:
        """Make what was merged into ``key`` durable before a reader sees it.

        Merges from the network are written in batches; a reader must not see one that
        is not on disk yet, or a crash could show it a smaller value later (a counter
        going back). The state is read before this is called, and a state only grows,
        so what is written covers what the reader got.
        """
        if key in self._unsaved:
            await self.flush(release=False)
        else:
            # Not pending, but a batch holding it may still be on its way to disk, or a
            # local write being persisted: each holds the lock until it has landed.
            async with self.lock:
                pass

    async def run_flusher(self) -> None:
        """Persist merges from the network, in batches (see :data:`FLUSH_INTERVAL`)."""
        while self._running():
            await self._wanted.wait()
            if not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), timeout=FLUSH_INTERVAL)
            self._wanted.clear()
            self._urgent.clear()
            try:
                await self.flush(release=True)
            except StorageError:
                self.errors += 1
                _log.exception("crdtgossip: persisting merged states of %s failed", self._node_id)
                await asyncio.sleep(FLUSH_RETRY)
                self._wanted.set()

    async def flush(self, *, release: bool) -> None:
        """Append every pending merge in one transaction, then release held acks.

        Raises:
            StorageError: the write failed; the merges stay pending.
        """
        async with self.lock:
            await self._settle(
                [*self._unsaved.keys() & self._expired.keys(),
                 *itertools.islice(self._expired, EXPIRED_PER_BATCH)]
            )  # fmt: skip
            if self._expired:
                self._wanted.set()
            engine = self._engine()
            mark = engine.ack_mark() if engine is not None else 0
            batch, self._unsaved = self._unsaved, {}
            if batch:
                items = [(key, payload) for key, payloads in batch.items() for payload in payloads]
                if engine is not None:
                    items.extend(
                        (stamp_key(key), encode_stamp(written, engine.replica_id))
                        for key in batch
                        if (written := engine.written(key))
                    )
                try:
                    await self.call(self.storage.append, items)
                except BaseException:
                    for key, payloads in batch.items():
                        self._unsaved[key] = [*payloads, *self._unsaved.get(key, [])]
                    raise
            engine = self._engine()
            if release and engine is not None and self._running():
                engine.release_acks(mark, asyncio.get_running_loop().time())
                self._pump()


def _delete_rows(storage: Storage, keys: list[str]) -> None:
    """Delete each data key's rows and its stamp's (see :mod:`crdtgossip._written`): in
    one transaction when the storage can (``delete_many``, as both of ours), else one
    delete each."""
    rows = [name for key in keys for name in (key, stamp_key(key))]
    delete_many = getattr(storage, "delete_many", None)
    if delete_many is not None:
        delete_many(rows)
        return
    for name in rows:
        storage.delete(name)
