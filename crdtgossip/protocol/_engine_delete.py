"""The engine's key deletion and expiry: a top-level key and all the engine keeps of it, gone.

A key's state is not the only thing the engine holds for it: its entry in the
anti-entropy hash tree, its size estimate, and the gossip queue item a newer delta of it
would be joined into. A delete drops them all and says so in a
:class:`~crdtgossip.protocol.events.KeyChanged` event with ``deleted`` set.

:meth:`DeleteEngine.delete` is cluster-wide: it marks every write the key's life record
names as deleted (:mod:`~crdtgossip.keylife`) and hands that record to
acknowledged delivery like a local write, so every live member drops the writes it saw,
and anti-entropy carries it to the others. A write the deleter had not seen wins. The
record stays as the key's tombstone for ``GossipConfig.deleted_keys_kept``, then goes
too (:meth:`DeleteEngine._forget_tombstones`).

Expiry (``GossipConfig.expire_keys_after``, see :mod:`~crdtgossip.protocol.expiry`)
drops a key the same way on every member once no write reached it for its time; the
event then has ``expired`` set too. Nothing is sent and no tombstone is kept.
"""

from __future__ import annotations

from typing import Final

from crdtgossip.errors import DecodeError, OperationError
from crdtgossip.keylife import (
    deleted,
    join_into,
    join_life,
    present,
    unwrap,
    wrap,
    wrote,
)
from crdtgossip.protocol._engine_base import LIVE_STATUSES
from crdtgossip.protocol._engine_data import DataEngine
from crdtgossip.protocol.compaction import MIN_DROPS, shrink
from crdtgossip.protocol.events import KeyChanged
from crdtgossip.protocol.keysize import KeySizes
from crdtgossip.protocol.lifetable import LifeTable

__all__ = ["DeleteEngine"]

_NS: Final = 1_000_000_000
_RETRY_NS: Final = _NS


class DeleteEngine(DataEngine):
    """The data store of :class:`~crdtgossip.protocol.Engine` with its deletes (see the
    module doc)."""

    _sizes: KeySizes
    _open_deltas: dict[str, tuple[str, str]]
    _joined: dict[str, int]
    _lives: LifeTable
    _tombstones: dict[str, float]
    _with_deletes: set[str]

    def others_live(self) -> int:
        """How many other members are alive or suspect (who could still hold a key)."""
        return sum(
            member.status in LIVE_STATUSES and member.node_id != self.node_id
            for member in self._membership.members()
        )

    def deletion(self, key: str) -> bytes | None:
        """The payload a delete of ``key`` now spreads: its life record with every write
        marked deleted, and no content; ``None`` when there is nothing to delete here.

        A driver that persists a delete stores it first, then passes it to
        :meth:`delete`, so storage and memory delete the same writes. Content without
        a record (restored without one) gets one: a write of this replica, deleted.

        Raises:
            OperationError: an invalid key.
        """
        self._check_key(key)
        life = self._lives.get(key)
        if key not in self._store and (life is None or not present(life)):
            return None
        record = {} if life is None else dict(life)
        if not record:
            wrote(record, self.replica_id)
        return wrap(deleted(record), b"")

    def delete(self, key: str, now: float, *, deletion: bytes | None = None) -> bool:
        """Delete ``key`` on every member: the writes this node has seen of it go, here
        at once and on each member as the delete reaches it; a write not seen here
        wins (see the module doc).

        Args:
            key: the data key.
            now: the driver's time in seconds.
            deletion: what :meth:`deletion` returned, as persisted by the driver; None:
                :meth:`deletion` now.

        Returns:
            Whether there was something to delete (False: nothing changed, no event).

        Raises:
            OperationError: an invalid key, or a local write to it is being persisted
                (:meth:`begin_local`): delete it once the write is committed.
        """
        self._check_key(key)
        now = self._begin(now)
        if key in self._held_keys:
            raise OperationError(f"a write to key {key!r} is being persisted; delete it after")
        if deletion is None:
            deletion = self.deletion(key)
            if deletion is None:
                return False
        try:
            record, _ = unwrap(deletion)
        except DecodeError:
            record = None
        if record is None or present(record):
            raise OperationError("not a deletion: call Engine.deletion for one")
        held = key in self._store
        life = self._lives.get(key) or {}
        # Content of no record (restored without one) is this delete's to remove: the
        # deletion gave it a write of this replica.
        keep_local = bool(life) and join_life(life, record)[0]
        join_into(life, record)
        self._lives.put(key, life)
        self._with_deletes.add(key)
        if held and not keep_local:
            self._drop_state(key)
        if not present(life):
            self._tombstones.setdefault(key, now)
        self._counters["keys_deleted"] += 1
        self._tree.touch(key)
        self._events.append(
            KeyChanged(key, None, deletion, local=True, deleted=key not in self._store)
        )
        self._deliver(key, None, deletion)
        self._flush()
        return True

    def _drop_state(self, key: str) -> None:
        """Forget ``key``'s state and all kept for it but its record (see
        :meth:`_drop`); the hash tree entry stays, now the record's."""
        self._drop(key)
        self._tree.touch(key)

    def _forget_tombstones(self) -> None:
        """Drop the records of keys deleted ``deleted_keys_kept`` ago and not written
        since: out of memory and of the hash tree; the driver deletes their rows."""
        cutoff = self._now - self.config.deleted_keys_kept
        due: list[str] = []
        for key, since in self._tombstones.items():  # oldest first
            if since > cutoff:
                break
            due.append(key)
        for key in due:
            del self._tombstones[key]
            life = self._lives.get(key)
            if life is None or present(life) or key in self._store:
                continue
            self._lives.pop(key)
            self._with_deletes.discard(key)
            self._tree.remove(key)
            self._events.append(KeyChanged(key, deleted=True, expired=True, life=True))
            self._dropped_keys += 1
        if due and self._dropped_keys >= max(MIN_DROPS, len(self._store)):
            self._compact()

    def _drop(self, key: str) -> bool:
        """Forget everything held for ``key``; False if it had no state here."""
        self._last_writes.forget(key)
        if self._store.pop(key, None) is None:
            return False
        self._tree.remove(key)
        self._sizes.forget(key)
        open_name = self._open_deltas.pop(key, None)
        if open_name is not None:
            self._queue.discard(open_name)
        self._joined.pop(key, None)
        self._dropped_keys += 1
        if self._dropped_keys >= max(MIN_DROPS, len(self._store)):
            self._compact()
        return True

    def _compact(self) -> None:
        """Rebuild the per-key tables at their live size (see
        :mod:`~crdtgossip.protocol.compaction`)."""
        self._dropped_keys = 0
        shrink(self._store)
        shrink(self._joined)
        self._lives.compact()
        shrink(self._tombstones)
        self._with_deletes = set(self._with_deletes)
        self._tree.compact()
        self._sizes.compact()
        self._last_writes.compact()

    def expires(self, key: str) -> bool:
        """Whether a rule of ``GossipConfig.expire_keys_after`` matches ``key``."""
        return self._last_writes.active and self._last_writes.ttl_ns(key) is not None

    def write_stamp(self, key: str) -> int:
        """The last-write stamp a local write to ``key`` made now gets (ns), or 0 when
        ``key`` does not expire: a driver that persists the write stores it beside the
        write and hands it to :meth:`commit_local`."""
        return self.clock.now() if self.expires(key) else 0

    def written(self, key: str) -> int:
        """``key``'s last-write stamp (ns) when it expires and is held here, else 0."""
        return self._last_writes.stamps.get(key, 0)

    def _state_stamp(self, key: str, written: int) -> int | None:
        """The last-write stamp a full state of ``key`` stamped ``written`` brings (see
        :meth:`~crdtgossip.protocol.expiry.LastWrites.admit`); None: drop it, it is past
        its expiry or its stamp is beyond ``max_clock_offset`` ahead (counted: a sender
        with a clock set ahead cannot keep a key alive)."""
        if not self._last_writes.active:
            return written
        if not self.clock.admits(written):
            self._drops["clock_ahead"] += 1
            return None
        admitted = self._last_writes.admit(key, written, self.clock.now())
        if admitted is None:
            self._drops["expired"] += 1  # the sender has not expired it yet
        return admitted

    def _expire_due(self) -> None:
        """Drop every key whose time without a write has run out (see the module doc).

        A key with a local write being persisted is looked at again a second later
        (the write raises its stamp when it is committed).
        """
        if not self._last_writes.active:
            return
        now_ns = self.clock.now()
        for key in self._last_writes.due(now_ns):
            if key in self._held_keys:
                self._last_writes.defer(key, now_ns + _RETRY_NS)
                continue
            self._lives.pop(key)
            self._with_deletes.discard(key)
            self._tombstones.pop(key, None)
            if self._drop(key):
                self._counters["keys_expired"] += 1
                self._events.append(KeyChanged(key, deleted=True, expired=True))

    def _next_expiry(self, now: float) -> float | None:
        """When the next key is due to expire, in the driver's seconds; None: none."""
        if not self._last_writes.active:
            return None
        deadline = self._last_writes.next_deadline()
        if deadline is None:
            return None
        return now + max(0, deadline - self.clock.now()) / _NS
