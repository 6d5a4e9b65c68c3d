"""The engine's data store: live states, local writes, merges and the delta queue.

A local write costs the size of its change: the driver mutates the live state and hands
over the mutator's delta (:meth:`commit_local`); nothing is copied or re-merged. What
arrives is decoded once and merged into the live state. Local deltas go to acknowledged
delivery (:mod:`~crdtgossip.protocol.delivery`: pushed to every live member until each
acknowledges them); a delta received in the older single-delta message is relayed by
the transmit-limited gossip queue, a burst to one key joined into bounded items.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from crdtgossip.codec import encode
from crdtgossip.crdts import CRDT
from crdtgossip.errors import MergeError
from crdtgossip.keylife import is_wrapped
from crdtgossip.protocol._engine_base import From
from crdtgossip.protocol._engine_merge import MAX_SEEN_DELTAS, MergeEngine
from crdtgossip.protocol.broadcast import MAX_QUEUE_ITEMS
from crdtgossip.protocol.clock import HLC
from crdtgossip.protocol.delivery import DeliveryLog
from crdtgossip.protocol.events import KeyChanged
from crdtgossip.protocol.keysize import KeySizes
from crdtgossip.protocol.messages import (
    MAX_KEY_BYTES,
    Delta,
    DeltaAck,
    DeltaInterval,
    State,
    encode_message,
)

__all__ = [
    "MAX_ACK_RANGES",
    "MAX_JOINED_BYTES",
    "MAX_JOINED_DELTAS",
    "MAX_SEEN_DELTAS",
    "DataEngine",
]

MAX_JOINED_DELTAS: Final = 64
"""Most deltas of one key joined into one gossip queue item before the next delta gets
an item of its own. Joining saves queue slots and bytes for a burst of writes to one
key, but each join re-encodes the joined delta, so an unbounded join would cost
O(burst) per write; 64 small deltas encode in tens of microseconds."""

MAX_JOINED_BYTES: Final = 16 * 1024
"""The largest queued delta (packed) that a newer delta of its key is joined into: each
join re-encodes the joined delta, so joining into a large one (a whole state written in
one update) would cost its size on every later write. 16 KiB is a few hundred small
deltas, and well inside one reliable frame."""

MAX_ACK_RANGES: Final = 256
"""Most delta-interval ranges acknowledged per call into the engine (one received
frame). A writer sends one interval per member per round, split only when it is larger
than a frame, so an honest frame holds a handful; the bound keeps a hostile frame of
thousands of tiny intervals (each of its own stream) from making as many acks. An
interval past it is merged but not acknowledged (the writer sends it again)."""

# A Delta message beyond its payload: the array, kind and bin headers (at most 1 + 1 + 5
# bytes) and the key (at most MAX_KEY_BYTES of UTF-8 plus a 3-byte header).
_DELTA_OVERHEAD: Final = 16 + MAX_KEY_BYTES


class DataEngine(MergeEngine):
    """The data half of :class:`~crdtgossip.protocol.Engine` (see the module doc)."""

    # The gossip queue item of each key that a newer delta may still be joined
    # into, with the number of deltas joined in it (see _queue_delta).
    _open_deltas: dict[str, tuple[str, str]]
    _joined: dict[str, int]
    _delta_serial: int
    _sizes: KeySizes
    # Local deltas until every live member acknowledged them, and the acks to send at
    # the end of this call: (address, stream) -> acknowledged ranges.
    _delivery: DeliveryLog
    # The member table's epoch when the live members were last handed to _delivery.
    _delivery_epoch: int
    _acks: dict[tuple[str, int], list[tuple[int, int]]]
    clock: HLC

    def set_backlog(self, backlog: Callable[[str], int]) -> None:
        """Tell the engine how many bytes the transport still holds for a member, so
        large-state transfers to a slow member pause instead of overflowing it
        (:data:`~crdtgossip.protocol.transfer.MAX_BACKLOG`)."""
        self._sync.transfers.set_backlog(backlog)

    def check_room(self, key: str) -> None:
        """Refuse a write to ``key`` when its state has reached
        ``GossipConfig.max_key_bytes`` (see :mod:`~crdtgossip.protocol.keysize`).

        Raises:
            OperationError: the key is at the limit; call before the mutator runs.
        """
        self._sizes.check(key, self._store.get(key))

    def update(self, key: str, delta: CRDT, now: float) -> None:
        """Merge a local delta into the store and queue it for gossip.

        Args:
            key: the data key.
            delta: the delta a mutator returned (the engine keeps its own copy).
            now: the driver's time in seconds.

        Raises:
            OperationError: ``key`` is not a non-empty str of at most
                :data:`~crdtgossip.protocol.messages.MAX_KEY_BYTES` bytes.
            MergeError: the key holds a state of another type.
            EncodeError: the delta holds something the codec cannot write.
        """
        self._check_key(key)
        now = self._begin(now)
        state = self._store.get(key)
        if state is not None and type(state) is not type(delta):
            raise MergeError(
                f"key {key!r} holds a {type(state).__name__}, not a {type(delta).__name__}"
            )
        payload = encode(delta)  # first, so a delta that cannot be sent changes nothing
        payload = self.stamp_local(key, payload)
        if state is None:
            self._store[key] = delta.copy()
        else:
            state.merge(delta)
        self._counters["local_updates"] += 1
        self._changed(key, delta, payload, local=True)
        self._remember(key, payload)
        self._deliver(key, delta.copy(), payload)
        self._flush()

    def begin_local(self, key: str) -> None:
        """Hold back ``key``'s state while a local write to it is being persisted.

        A driver that persists a local write before it spreads (a durable storage)
        mutates the live state (:meth:`get`), then persists the delta, then calls
        :meth:`commit_local`. In between, the engine must not send the key's state to
        anyone (anti-entropy, read replies, read repair): it holds a write that is not
        on disk yet. Read requests for the key are answered once it is committed or
        rolled back; anti-entropy skips it until then.

        Raises:
            OperationError: an invalid key.
        """
        self._check_key(key)
        self._held_keys[key] = self._held_keys.get(key, 0) + 1

    def commit_local(
        self, key: str, state: CRDT, delta: CRDT, now: float, *,
        payload: bytes | None = None, written: int = 0,
    ) -> None:  # fmt: skip
        """Record a local mutation already applied to ``state``, and spread its delta.

        This is the write path that costs the size of the change: the driver runs the
        mutator on the live state (``get(key)``, or a new empty state when the key is
        absent) and hands over the state and the mutator's delta; nothing is copied or
        merged again. The engine keeps ``delta`` (for the gossip queue): the driver must
        not change it afterwards.

        Args:
            key: the data key.
            state: the object :meth:`get` returned, mutated in place, or the new state
                of a key that was absent (the engine keeps it).
            delta: the delta the mutator returned.
            now: the driver's time in seconds.
            payload: ``encode(delta)`` when the driver already has it.
            written: the last-write stamp the driver persisted with the write
                (:meth:`write_stamp`), so memory and storage hold the same one; 0: now.

        Raises:
            OperationError: an invalid key.
            MergeError: the key holds a state of another type.
            EncodeError: the delta cannot be encoded (mutators validate their arguments
                first, so this means a bug in a type; the state keeps the change).
        """
        self._check_key(key)
        now = self._begin(now)
        self._release_key(key)
        current = self._store.get(key)
        if current is not None and current is not state and type(current) is not type(delta):
            raise MergeError(
                f"key {key!r} holds a {type(current).__name__}, not a {type(delta).__name__}"
            )
        payload = self.stamp_local(key, encode(delta) if payload is None else payload)
        if current is None:
            self._store[key] = state
        elif current is not state:
            # The key appeared (merged from the network) while the write was persisted,
            # or was rolled back and written again: join the write into what is here.
            current.merge(delta)
        self._counters["local_updates"] += 1
        self._changed(key, delta, payload, local=True, written=written)
        self._remember(key, payload)
        self._deliver(key, delta, payload)
        self._flush()

    def abort_local(
        self,
        key: str,
        state: CRDT | None,
        now: float,
        *,
        life: Mapping[str, tuple[int, int]] | None = None,
        stored_life: bool = False,
    ) -> None:
        """Undo a held local write that could not be persisted (see :meth:`begin_local`).

        Args:
            key: the data key.
            state: the key's state as the storage has it (None: the key is not stored):
                it replaces the live state, which holds the write that failed. States
                merged from the network meanwhile come back by anti-entropy.
            now: the driver's time in seconds.
            life: the key's life record as the storage has it, when ``stored_life``:
                it replaces the live one, which counts the write that failed (a write
                that is not anywhere must not keep old content alive; see
                :mod:`crdtgossip.keylife`). Without ``stored_life`` the record stays.
            stored_life: whether ``life`` is what the storage holds (None: no record).
        """
        now = self._begin(now)
        if state is None:
            self._store.pop(key, None)
        else:
            self._store[key] = state
        if stored_life:
            self._put_life(key, life)
        self._tree.touch(key)
        self._events.append(KeyChanged(key, local=True))
        self._release_key(key)  # last: the reads waiting get the state put back
        self._flush()

    def _release_key(self, key: str) -> None:
        held = self._held_keys.get(key)
        if held is None:
            return
        if held > 1:
            self._held_keys[key] = held - 1
            return
        del self._held_keys[key]
        for address, request_id in self._deferred_reads.pop(key, ()):
            self._answer_read(address, request_id, key)

    def is_held(self, key: str) -> bool:
        """Whether a local write to ``key`` is being persisted (see :meth:`begin_local`)."""
        return key in self._held_keys

    def restore(
        self,
        key: str,
        state: CRDT,
        *,
        copy: bool = True,
        written: int = 0,
        life: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:
        """Put a state read back from storage into the store, without spreading it.

        Unlike :meth:`update` it queues no gossip and emits no event: the state is
        not news, and anti-entropy reconciles it with the cluster's. Call it before
        the first other input.

        Args:
            key: the data key.
            state: the stored state.
            copy: keep a copy of ``state`` (the default); False: keep ``state`` itself,
                which the caller must then leave alone (a copy costs its size).
            written: the key's last-write stamp as stored (ns), for a key that expires
                (``GossipConfig.expire_keys_after``); 0 (none stored): stamped now, so
                a restored key never expires early.
            life: the key's life record as stored, if any (as
                :meth:`restore_life`, in the same call).

        Raises:
            OperationError: an invalid key.
            MergeError: the key already holds a state of another type.
        """
        self._check_key(key)
        current = self._store.get(key)
        if current is None:
            self._store[key] = state.copy() if copy else state
        elif type(current) is not type(state):
            raise MergeError(
                f"key {key!r} holds a {type(current).__name__}, not a {type(state).__name__}"
            )
        else:
            current.merge(state)
        self._counters["keys_restored"] += 1
        if life is not None:
            self._take_life(key, life)
        self._tree.touch(key)
        if self._last_writes.active:
            self._last_writes.raise_to(key, written or self.clock.now())

    def get(self, key: str) -> CRDT | None:
        """The live state of ``key``, or ``None`` if this node has none.

        The engine's own object, not a copy (a copy costs the size of the state): read
        it, or mutate it only as :meth:`commit_local` describes. It changes as the
        engine merges; ``copy()`` it to keep a snapshot.
        """
        return self._store.get(key)

    def keys(self) -> list[str]:
        """Every key with a state here, sorted."""
        return sorted(self._store)

    def _on_delta(self, message: Delta, origin: From) -> None:
        if not self._remember(message.key, message.payload):
            self._counters["duplicate_deltas"] += 1
            return
        delta = self._merge_payload(message.key, message.payload)
        if delta is None:
            return
        self._counters["deltas_merged"] += 1
        # Relay it, but never back to the member it came from (Enes et al.).
        self._queue_delta(message.key, delta, message.payload, frozenset((origin.node_id,)))

    def _deliver(self, key: str, delta: CRDT | None, payload: bytes) -> None:
        """Hand a local delta to acknowledged delivery (every live member, until acked).

        The live members are listed (O(N)) only when the member table changed since
        the last local write, so a write costs the size of its delta, not of the
        cluster; the encoded size is checked only when the payload comes near a frame.
        """
        room = self._outbox.reliable_room
        if len(payload) + _DELTA_OVERHEAD > room and (
            len(encode_message(Delta(key, payload))) > room
        ):
            self._drops["oversize"] += 1  # no frame can carry it: anti-entropy's job
            return
        members: tuple[str, ...] = ()
        epoch = self._membership.epoch
        if epoch != self._delivery_epoch:
            self._delivery_epoch = epoch
            members = tuple(m.node_id for m in self._membership.live_members())
        self._delivery.add(key, delta, payload, members)

    def _on_interval(self, message: DeltaInterval, origin: From) -> None:
        """Merge a writer's delta interval and acknowledge it; it is not relayed."""
        for key, payload in message.entries:
            if not self._remember(key, payload):
                self._counters["duplicate_deltas"] += 1
            elif self._merge_payload(key, payload) is not None:
                self._counters["deltas_merged"] += 1
        if sum(len(r) for r in self._acks.values()) >= MAX_ACK_RANGES:
            self._drops["ack_limit"] += 1
            return
        ranges = self._acks.setdefault((origin.address, message.stream), [])
        ranges.append((message.first, message.last))

    def _on_delta_ack(self, message: DeltaAck, origin: From) -> None:
        self._delivery.on_ack(origin.node_id, message)

    def _send_acks(self) -> None:
        """Queue the acks of this call, contiguous ranges joined into one ack."""
        acks, self._acks = self._acks, {}
        for (address, stream), ranges in acks.items():
            ranges.sort()
            first, last = ranges[0]
            for start, end in ranges[1:]:
                if start <= last + 1:
                    last = max(last, end)
                    continue
                self._outbox.send(address, DeltaAck(stream, first, last))
                first, last = start, end
            self._outbox.send(address, DeltaAck(stream, first, last))

    def _on_state(self, message: State) -> None:
        if len(message.payload) > self._sizes.max_key_bytes:
            self._drops["key_too_large"] += 1
            return
        written = self._state_stamp(message.key, message.written)
        if written is None:
            return
        merged = self._merge_payload(message.key, message.payload, keep=False, written=written)
        if merged is not None:
            self._counters["states_merged"] += 1
            self._sync.arrived(message.key)

    def _queue_delta(self, key: str, delta: CRDT, payload: bytes, exclude: frozenset[str]) -> None:
        """Queue a delta for gossip; the queue keeps ``delta`` (its own object).

        A delta of the same key queued and not sent yet is joined into, in place, up to
        :data:`MAX_JOINED_DELTAS` of them and while it packs into at most
        :data:`MAX_JOINED_BYTES`: a burst of writes to one key costs one queue item per
        that many writes, and each join re-encodes a bounded delta (a large one, such as
        a whole state written at once, is left as it is). A
        queued delta already sent is never changed (its copies are on their way); the
        newer delta gets an item of its own, so nothing queued is ever lost.
        """
        open_name = self._open_deltas.get(key)
        older = None if open_name is None else self._queue.get(open_name)
        # A delta with a life record goes as it came: a join would need the join of
        # the records too, and relayed deltas are an older peer's way, not ours.
        wrapped = is_wrapped(payload)
        if (
            not wrapped
            and open_name is not None
            and older is not None
            and older.transmits == 0
            and older.extra is not None
            and type(older.extra) is type(delta)
            and self._joined.get(key, 0) < MAX_JOINED_DELTAS
            and len(older.packed) <= MAX_JOINED_BYTES
        ):
            joined = older.extra
            try:
                joined.merge(delta)
            except (MergeError, TypeError, ValueError):
                pass  # nested types disagree: the newer delta gets an item of its own
            else:
                joined_payload = encode(joined)
                packed = encode_message(Delta(key, joined_payload))
                if len(packed) <= self._outbox.reliable_room:
                    self._remember(key, joined_payload)
                    self._joined[key] = self._joined.get(key, 0) + 1
                    self._queue.put(
                        open_name, packed, exclude=exclude.intersection(older.exclude), extra=joined
                    )
                    return
                # Too large joined: the older delta goes as it was, this one apart.
                self._queue.put(open_name, older.packed, exclude=older.exclude, extra=None)
        packed = encode_message(Delta(key, payload))
        if len(packed) > self._outbox.reliable_room:
            self._drops["oversize"] += 1
            return
        self._delta_serial += 1
        name = ("key", f"{self._delta_serial}:{key}")
        self._open_deltas[key] = name
        self._joined[key] = 1
        self._queue.put(name, packed, exclude=exclude, extra=None if wrapped else delta)
        if len(self._open_deltas) > 2 * MAX_QUEUE_ITEMS:
            self._forget_sent_deltas()

    def _forget_sent_deltas(self) -> None:
        """Drop the bookkeeping of keys whose open queue item is gone."""
        for key in [k for k, name in self._open_deltas.items() if self._queue.get(name) is None]:
            del self._open_deltas[key]
            self._joined.pop(key, None)
