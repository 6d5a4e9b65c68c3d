"""What the parts of :class:`~crdtgossip.protocol.Engine` share: its state, limits and
counters, declared once.

The engine is one object built from one class per concern (the data store and its
gossip queue in ``_engine_data``, quorum requests in ``_engine_quorum``, membership
input in ``_engine_members``, anti-entropy in ``sync``); each part reads and writes the
engine state declared here, and calls the few engine methods declared at the end.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from crdtgossip.config import GossipConfig
from crdtgossip.crdts import CRDT
from crdtgossip.errors import ConfigError, OperationError
from crdtgossip.protocol.antientropy import HashTree
from crdtgossip.protocol.awareness import Awareness
from crdtgossip.protocol.broadcast import BroadcastQueue
from crdtgossip.protocol.events import Event, Outgoing
from crdtgossip.protocol.expiry import LastWrites
from crdtgossip.protocol.lifetable import LifeTable
from crdtgossip.protocol.membership import Membership
from crdtgossip.protocol.messages import MAX_KEY_BYTES, Message
from crdtgossip.protocol.outbox import Outbox
from crdtgossip.protocol.probe import Prober
from crdtgossip.protocol.quorum import QuorumTracker
from crdtgossip.protocol.states import Status
from crdtgossip.protocol.sync import AntiEntropy
from crdtgossip.protocol.wire import RESERVED_KEY_PREFIX

__all__ = ["DROP_REASONS", "EngineCore"]

MAX_NOTICES: Final = 1024
"""Bound on the table of "you are dead" notices sent (one per member per interval)."""

LIVE_STATUSES: Final = (Status.ALIVE, Status.SUSPECT)
"""The members worth sending to (gossip, quorum requests, a leave): alive ones, and
suspect ones, which may yet refute and answer."""

DROP_REASONS: Final = (
    "malformed",
    "from_self",
    "wrong_target",
    "bad_payload",
    "type_mismatch",
    "merge_failed",
    "oversize",
    "queue_overflow",
    "relay_limit",
    "stale_reply",
    "out_of_range",
    "ack_limit",
    "clock_ahead",
    "expired",
    "deleted",
)
"""Why the engine drops input or output; each has a ``drop_<reason>`` counter."""

COUNTERS: Final = (
    "frames_in",
    "bytes_in",
    "messages_in",
    "frames_out",
    "bytes_out",
    "messages_out",
    "datagrams_out",
    "reliable_frames_out",
    "decode_errors",
    "merge_errors",
    "duplicate_deltas",
    "deltas_merged",
    "states_merged",
    "local_updates",
    "push_pulls",
    "keys_restored",
    "keys_deleted",
    "keys_expired",
    "stale_accusations_corrected",
    "quorum_writes",
    "quorum_reads",
    "quorum_failures",
    "quorum_late_answers",
    "write_requests_served",
    "read_requests_served",
    "read_repairs",
    "held_acks_dropped",
    "id_claims_refused",
)


@dataclass(frozen=True, slots=True)
class From:
    """Where the frame being handled came from."""

    node_id: str
    address: str
    now: float


def check_text(value: object, max_bytes: int, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty str, not {value!r}")
    if len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ConfigError(f"{what} must be at most {max_bytes} bytes of UTF-8")
    return value


class EngineCore:
    """The engine's state, shared by its parts (assigned in ``Engine.__init__``)."""

    node_id: str
    address: str
    replica_id: str
    config: GossipConfig
    _rng: random.Random
    _events: list[Event]
    _outgoing: list[Outgoing]
    _awareness: Awareness
    _queue: BroadcastQueue[CRDT]
    _membership: Membership
    _outbox: Outbox
    _prober: Prober
    _store: dict[str, CRDT]
    _tree: HashTree
    _seen: OrderedDict[bytes, None]
    _counters: dict[str, int]
    _drops: dict[str, int]
    _quorum: QuorumTracker
    _sync: AntiEntropy
    _hold_write_acks: bool
    # Keys with a local write being persisted (see begin_local), and the read
    # requests for them waiting until it is.
    _held_keys: dict[str, int]
    _deferred_reads: dict[str, list[tuple[str, int]]]
    # The last-write stamps of the keys that expire (see protocol.expiry).
    _last_writes: LastWrites
    # Keys dropped (deleted or expired) since the per-key tables were last rebuilt.
    _dropped_keys: int
    # Each key's life record (see protocol.keylife), for held keys and tombstones.
    _lives: LifeTable
    # Deleted keys whose record is kept -> when each became one (see _engine_merge).
    _tombstones: dict[str, float]
    # Whether the last _merge_payload that returned None did so because the key's
    # life record left nothing to merge (a deleted key), not because it was bad.
    _settled: bool

    def _begin(self, now: float) -> float:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _send_datagram(self, address: str, message: Message, piggyback_to: str | None) -> None:
        raise NotImplementedError

    def _remember(self, key: str, payload: bytes) -> bool:
        raise NotImplementedError

    def _admit(self, value: object) -> bool:
        raise NotImplementedError

    def _merge_payload(
        self, key: str, payload: bytes, *, keep: bool = True, written: int = 0
    ) -> CRDT | None:
        raise NotImplementedError

    def _state_stamp(self, key: str, written: int) -> int | None:
        raise NotImplementedError

    def state_payload(self, key: str, payload: bytes) -> bytes:
        raise NotImplementedError

    def _take_life(self, key: str, record: Mapping[str, tuple[int, int]]) -> None:
        raise NotImplementedError

    def _push_pull(self, address: str, *, join: bool) -> None:
        raise NotImplementedError

    def _watching_rollback(self) -> bool:
        raise NotImplementedError

    def _rollback_watch(self, key: str, value: CRDT) -> None:
        raise NotImplementedError

    def _answer_read(self, address: str, request_id: int, key: str) -> None:
        raise NotImplementedError

    def _queue_delta(self, key: str, delta: CRDT, payload: bytes, exclude: frozenset[str]) -> None:
        raise NotImplementedError

    @staticmethod
    def _check_key(key: object) -> None:
        if not isinstance(key, str) or not key:
            raise OperationError(f"a key must be a non-empty str, not {key!r}")
        if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise OperationError(f"a key must be at most {MAX_KEY_BYTES} bytes of UTF-8")
        if key[0] == RESERVED_KEY_PREFIX:
            raise OperationError(
                f"key {key!r:.60} starts with U+0000: such keys are reserved for crdtgossip's "
                "own storage records"
            )
