"""The engine's merge of what arrives, and each key's life record.

Everything received for a key (a delta, a whole state, a part of one, a quorum write or
read reply) comes through :meth:`MergeEngine._merge_payload`: decoded once, checked,
and merged into the live state. A payload may carry its content's *life record* in
front (:mod:`~crdtgossip.keylife`): the writes it holds, and which of them a
delete has seen. The engine keeps each key's record, joins what arrives into it, and
lets :func:`~crdtgossip.keylife.join_life` decide: content whose writes are all
deleted is not merged (``drop_deleted``), local content whose writes all are deleted is
dropped, and a key whose record names no live write is a *tombstone*: no state, only
the record, kept so that a lagging member's old state cannot bring the key back, until
``GossipConfig.deleted_keys_kept`` has passed.

Each local write raises this replica's write number in its key's record
(:meth:`MergeEngine.stamp_local`), so a delete elsewhere that did not see it cannot
remove it: update wins. Content that came without a record (restored without one) is
of unknown writes: kept and merged, as :mod:`~crdtgossip.keylife` says.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final, cast

from crdtgossip.codec import decode
from crdtgossip.crdts import CRDT
from crdtgossip.errors import DecodeError, MergeError
from crdtgossip.keylife import (
    Record,
    is_wrapped,
    join_into,
    join_life,
    of_write,
    packed_replica,
    present,
    unwrap,
    wrap,
    wrap_write,
    wrote,
)
from crdtgossip.protocol._engine_base import EngineCore
from crdtgossip.protocol.antientropy import key_digest
from crdtgossip.protocol.clock import HLC
from crdtgossip.protocol.events import KeyChanged
from crdtgossip.protocol.keysize import KeySizes
from crdtgossip.protocol.lifetable import LifeTable

__all__ = ["MAX_SEEN_DELTAS", "MergeEngine"]

MAX_SEEN_DELTAS: Final = 16_384
"""Digests of recently received deltas remembered, so a delta that comes back by
another path is merged once and relayed once. Copies of a delta arrive within a few
gossip rounds; this covers a burst of that many distinct updates meanwhile, for 16
bytes each (256 KiB). A delta forgotten too early is merged again (harmless: merge is
idempotent) and relayed once more."""


class MergeEngine(EngineCore):
    """The merge half of the data store of :class:`~crdtgossip.protocol.Engine` (see
    the module doc)."""

    _sizes: KeySizes
    # Each key's life record, for keys held here and for tombstones.
    _lives: LifeTable
    # Tombstones (a record, no state) -> the driver time each became one, oldest first.
    _tombstones: dict[str, float]
    # Keys whose record holds a delete (some write deleted): their writes' deltas carry
    # the deletes.
    _with_deletes: set[str]
    # This replica's id as msgpack, for the record of each local write.
    _packed_replica: bytes | None
    _now: float
    clock: HLC

    def life(self, key: str) -> Record | None:
        """A copy of ``key``'s life record here, or ``None`` if it has none (see
        :mod:`~crdtgossip.keylife`)."""
        record = self._lives.get(key)
        return None if record is None else dict(record)

    def lives(self) -> dict[str, Record]:
        """A copy of every key's life record here, tombstones' included."""
        return self._lives.copies()

    def restore_life(self, key: str, record: Record) -> None:
        """Put ``key``'s life record as stored back (see :meth:`restore`): joined
        into what is here; a record with no live write is a tombstone, kept another
        ``deleted_keys_kept`` from now. Call it before the first other input.

        Raises:
            OperationError: an invalid key.
        """
        self._check_key(key)
        self._take_life(key, record)
        self._tree.touch(key)

    def _take_life(self, key: str, record: Mapping[str, tuple[int, int]]) -> None:
        """Join a stored record into ``key``'s (see :meth:`restore_life`), unchecked."""
        life = self._lives.get(key)
        if life is None:
            life = dict(record)  # the common case at start-up: nothing here yet
        else:
            join_into(life, record)
        self._keep_life(key, life)

    def _keep_life(self, key: str, life: Record) -> None:
        """Keep ``life`` as ``key``'s record, its notes in step: whether it holds a
        delete, and (no state, no live write) since when it is a tombstone."""
        self._lives.put(key, life)
        self._note_deletes(key, life)
        if key not in self._store and not present(life):
            self._tombstones.setdefault(key, self._now)

    def _put_life(self, key: str, life: Mapping[str, tuple[int, int]] | None) -> None:
        """Replace ``key``'s record (None: it has none), its notes kept in step."""
        self._with_deletes.discard(key)
        self._tombstones.pop(key, None)
        if life is None:
            self._lives.pop(key)
        else:
            self._keep_life(key, dict(life))

    def is_tombstone(self, key: str) -> bool:
        """Whether ``key`` was deleted here: no state, only its record."""
        return key in self._tombstones

    def stamp_local(self, key: str, payload: bytes) -> bytes:
        """Record one more local write of this replica to ``key``; ``payload`` (its
        encoded delta) with the write's record in front.

        A driver that persists a write first calls this before persisting, so the
        storage holds the record too, and passes the result to
        :meth:`~crdtgossip.protocol.Engine.commit_local`; a payload that already has a
        record is returned as it is.

        Raises:
            OperationError: this replica has made
                :data:`~crdtgossip.keylife.MAX_WRITES` writes to the key.
        """
        if is_wrapped(payload):
            return payload
        pair = self._lives.wrote(key, self.replica_id)
        if self._tombstones:
            self._tombstones.pop(key, None)
        if pair is None or key in self._with_deletes:  # other writers, or deletes
            record = self._lives.get(key)
            assert record is not None
            if pair is None:
                wrote(record, self.replica_id)
                self._lives.put(key, record)
            return wrap(of_write(record, self.replica_id), payload)
        newest, dropped = pair
        if self._packed_replica is None:
            self._packed_replica = packed_replica(self.replica_id)
        return wrap_write(self._packed_replica, newest, dropped, payload)

    def state_payload(self, key: str, payload: bytes) -> bytes:
        """``payload`` (an encoding of ``key``'s state or of a part of it) with the
        key's record in front, as every whole state sent carries it."""
        record = self._lives.get(key)
        return payload if record is None else wrap(record, payload)

    def _life_payload(self, key: str, payload: bytes) -> bytes:
        """:meth:`state_payload` for a key held here or a tombstone (given no
        payload: the tombstone's record alone); ``payload`` itself for any other."""
        if key in self._store or key in self._tombstones:
            return self.state_payload(key, payload)
        return payload

    def _settle_repair(self, key: str, record: Record) -> bool:
        """Join the record of a repair step into ``key``'s; whether the repair goes
        on (both sides hold live writes), else the whole states go instead."""
        return self._settle(key, record, with_content=True) and key in self._store

    def _note_deletes(self, key: str, record: Record) -> None:
        """Note whether ``key``'s record (just grown) holds a delete."""
        if key not in self._with_deletes and any(dropped for _, dropped in record.values()):
            self._with_deletes.add(key)

    def _digest_of(self, key: str) -> bytes:
        """The hash-tree digest of ``key``: its state's, joined with its record's when
        it has one (a tombstone has only the record's)."""
        state = self._store.get(key)
        record = self._lives.fingerprint(key)
        if record is None:
            return key_digest(cast(CRDT, state))
        if state is not None:
            record += key_digest(state)
        return hashlib.blake2b(record, digest_size=16).digest()

    def _changed(
        self, key: str, change: CRDT, payload: bytes, *, local: bool = False, written: int = 0
    ) -> None:
        """Note a change merged into ``key``: its size, hash-tree entry and event, and
        for a key that expires its last-write stamp (``written``: a full state's, which
        the key keeps if later than its own; 0: a write, stamped now)."""
        self._sizes.grow(key, len(payload))
        self._tree.touch(key)
        if self._last_writes.active:
            self._last_writes.raise_to(key, written or self.clock.now())
        self._events.append(KeyChanged(key, change, payload, local))

    def _remember(self, key: str, payload: bytes) -> bool:
        """Record a delta of ``key`` as seen; ``False`` if it already was.

        The key is part of what is remembered: equal deltas of two keys (one increment
        by the same replica, say) are two updates, not one seen twice.
        """
        key_bytes = key.encode("utf-8", "surrogatepass")
        hasher = hashlib.blake2b(digest_size=16)
        hasher.update(len(key_bytes).to_bytes(2, "big"))
        hasher.update(key_bytes)
        hasher.update(payload)
        digest = hasher.digest()
        if digest in self._seen:
            self._seen.move_to_end(digest)
            return False
        self._seen[digest] = None
        if len(self._seen) > MAX_SEEN_DELTAS:
            self._seen.popitem(last=False)
        return True

    def _merge_payload(
        self, key: str, payload: bytes, *, keep: bool = True, written: int = 0
    ) -> CRDT | None:
        """Decode a payload and merge it into the store; ``None`` if it was dropped.

        With ``keep`` the decoded value returned stays apart from the store (it is
        relayed as a delta), so a key new here stores a copy of it; without, the store
        may take the decoded object itself (a whole state: a copy would cost its size).
        ``written``: a full state's last-write stamp (see :meth:`_changed`). A payload
        with a life record is first settled against the key's (see the module doc).
        """
        original = payload
        self._settled = False
        if is_wrapped(payload):
            try:
                record, payload = unwrap(payload)
            except DecodeError:
                self._counters["decode_errors"] += 1
                self._drops["bad_payload"] += 1
                return None
            if record is None or not self._settle(key, record, with_content=bool(payload)):
                self._settled = True
                return None
        else:
            life = self._lives.get(key)
            if life is not None and not present(life):
                self._drops["deleted"] += 1  # unknown content of a key deleted here
                self._settled = True
                return None
        try:
            decoded: object = decode(payload)
        except DecodeError:
            self._counters["decode_errors"] += 1
            self._drops["bad_payload"] += 1
            return None
        # The codec only builds data types; a cheap duck check instead of a slow
        # isinstance() against the runtime-checkable CRDT protocol.
        if not (
            callable(getattr(decoded, "merge", None)) and callable(getattr(decoded, "copy", None))
        ):
            self._counters["merge_errors"] += 1
            self._drops["type_mismatch"] += 1
            return None
        value = cast(CRDT, decoded)
        if not self._admit(value):
            return None  # a stamp beyond the clock's offset: counted by _admit
        self._rollback_watch(key, value)
        state = self._store.get(key)
        if state is None:
            stored = self._store[key] = value.copy() if keep else value
            # A built-in type's running digest sums, now that it is one payload (a first
            # part): merges keep them from here, so no exchange builds them whole.
            if hasattr(stored, "_digest"):
                key_digest(stored)
        elif type(state) is not type(value):
            self._counters["merge_errors"] += 1
            self._drops["type_mismatch"] += 1
            return None
        else:
            try:
                state.merge(value)
            except (MergeError, TypeError, ValueError):
                self._counters["merge_errors"] += 1
                self._drops["merge_failed"] += 1
                return None
        self._changed(key, value, original, written=written)
        return value

    def _settle(self, key: str, record: Record, *, with_content: bool) -> bool:
        """Join a payload's record into ``key``'s; whether its content (``with_content``:
        the payload has some) is to be merged. Drops the local state when none of its
        writes is live any more, and notes a key left with no live write (and no state)
        as a tombstone."""
        life = self._lives.get(key)
        if life is None:
            if not present(record) and key not in self._store:
                return False  # the delete of a key never held here: nothing to keep
            life = dict(record)
            keep_local, take, grew = True, present(life), True
        else:
            keep_local, take, grew = join_life(life, record)
        state = self._store.get(key)
        if state is not None and not keep_local:
            self._drop_state(key)
        if grew:
            self._keep_life(key, life)
        if take and with_content:
            self._tombstones.pop(key, None)
            return True
        if with_content:
            self._drops["deleted"] += 1  # old content of a deleted key
        if state is not None and not keep_local and not present(life):
            self._counters["keys_deleted"] += 1
            self._events.append(KeyChanged(key, None, wrap(life, b""), deleted=True))
        elif grew:
            self._events.append(KeyChanged(key, None, wrap(life, b""), life=True))
        if grew or not keep_local:
            self._tree.touch(key)
        return False

    def _drop_state(self, key: str) -> None:
        """Forget ``key``'s state (every write in it deleted); its record stays."""
        raise NotImplementedError
