"""The sans-I/O gossip engine: membership, dissemination and anti-entropy in one object.

:class:`Engine` is to crdtgossip what h11's ``Connection`` is to HTTP: it never owns a
socket, a clock, a thread or a global random generator. Its driver feeds it

* frames received: :meth:`Engine.receive` with the sender's address and the time;
* the passing of time: :meth:`Engine.tick`;
* local changes: :meth:`Engine.update`, or :meth:`Engine.commit_local` for a mutation
  made on the live state (with :meth:`Engine.begin_local` and
  :meth:`Engine.abort_local` around persisting it), :meth:`Engine.delete`,
  :meth:`Engine.join`,
  :meth:`Engine.leave`, and state read back from storage: :meth:`Engine.restore`;
* quorum requests: :meth:`Engine.start_write`, :meth:`Engine.start_read`, and
  :meth:`Engine.release_acks` once merges it acknowledges are persisted;

and collects

* frames to send: :meth:`Engine.take_outgoing`;
* when to tick next: :meth:`Engine.next_wakeup`;
* what happened: :meth:`Engine.take_events`;
* how quorum requests ended: :meth:`Engine.take_quorum_results`.

The asyncio :class:`crdtgossip.Node`, the virtual-time simulator and the tests are three
drivers of this same code; with the same seed and the same inputs it produces the same
bytes. Times are seconds on any monotonic scale the driver likes (``loop.time()``, or
virtual seconds from 0).

The engine is composed of small modules, one concern each: ``membership`` (the member
table and its transition table in ``states``), ``suspicion``, ``awareness``, ``probe``
(the failure detector), ``delivery`` (local writes pushed to every live member until
acknowledged), ``broadcast`` (the transmit-limited queue), ``sync`` (the
anti-entropy driver, over the hash tree of ``antientropy`` and the repair of a key by
its difference in ``repair``), ``quorum`` (quorum bookkeeping), ``expiry`` (idle keys'
last writes), ``messages`` (the wire format) and ``outbox`` (framing). The class itself
is assembled from one part per concern over the state declared in ``_engine_base``:
``_engine_data`` (live states, local writes, merges, the delta queue),
``_engine_delete`` (dropping a key, by delete or expiry), ``_engine_quorum`` (quorum
requests) and ``_engine_members`` (join, leave, answers to outdated news, the member
views); this module keeps the inputs, timers and dispatch.
"""

from __future__ import annotations

import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable

from crdtgossip.config import GossipConfig
from crdtgossip.crdts import CRDT
from crdtgossip.errors import ConfigError, DecodeError
from crdtgossip.protocol._engine_base import (
    COUNTERS,
    DROP_REASONS,
    LIVE_STATUSES,
    From,
    check_text,
)
from crdtgossip.protocol._engine_clock import ClockEngine
from crdtgossip.protocol._engine_data import MAX_JOINED_DELTAS, MAX_SEEN_DELTAS
from crdtgossip.protocol._engine_delete import DeleteEngine
from crdtgossip.protocol._engine_members import MembersEngine
from crdtgossip.protocol._engine_quorum import QuorumEngine
from crdtgossip.protocol._engine_stats import StatsEngine
from crdtgossip.protocol.antientropy import HashTree, push_pull_interval
from crdtgossip.protocol.awareness import Awareness
from crdtgossip.protocol.broadcast import BroadcastQueue, retransmit_limit
from crdtgossip.protocol.clock import HLC, SkewMonitor
from crdtgossip.protocol.delivery import DeliveryLog
from crdtgossip.protocol.events import Event, Outgoing
from crdtgossip.protocol.expiry import ExpiryRules, LastWrites
from crdtgossip.protocol.keysize import KeySizes
from crdtgossip.protocol.lifetable import LifeTable
from crdtgossip.protocol.membership import Membership
from crdtgossip.protocol.messages import (
    MAX_ADDRESS_BYTES,
    MAX_NODE_ID_BYTES,
    Ack,
    Alive,
    Dead,
    Delta,
    DeltaAck,
    DeltaInterval,
    Diff,
    IdClaim,
    Left,
    MarksQuery,
    MarksReport,
    Members,
    Message,
    Nack,
    Ping,
    PingReq,
    ReadReply,
    ReadRequest,
    State,
    StateChunk,
    Suspect,
    Sync,
    WriteAck,
    WriteRequest,
    decode_frame,
)
from crdtgossip.protocol.outbox import Outbox
from crdtgossip.protocol.probe import Prober
from crdtgossip.protocol.quorum import QuorumTracker
from crdtgossip.protocol.rollback import COUNTERS as ROLLBACK_COUNTERS
from crdtgossip.protocol.rollback import RollbackEngine
from crdtgossip.protocol.states import Status
from crdtgossip.protocol.sync import AntiEntropy

__all__ = ["DROP_REASONS", "MAX_JOINED_DELTAS", "MAX_SEEN_DELTAS", "Engine"]


class Engine(DeleteEngine, QuorumEngine, MembersEngine, ClockEngine, RollbackEngine, StatsEngine):
    """One member of a gossip cluster, with no I/O of its own.

    Args:
        node_id: this node's unique name in the cluster (at most
            :data:`~crdtgossip.protocol.messages.MAX_NODE_ID_BYTES` bytes).
        address: the ``"host:port"`` others reach it at.
        config: the protocol configuration.
        rng: the only source of randomness (probe order, gossip targets, timer
            jitter); seed it for a reproducible run.
        replica_id: the id this node's mutators use (kept for the driver; the engine
            itself never mutates data).
        incarnation: the starting incarnation. A node restarted with its old state may
            pass one above its previous life's; a node that passes 0 after a restart is
            still accepted back: peers tell it of its old incarnation and it outranks
            it (memberlist#311).
        hold_write_acks: hold the ack of every merged
            :class:`~crdtgossip.protocol.messages.WriteRequest` until the driver calls
            :meth:`release_acks` (after persisting the merge), so a quorum write is
            acknowledged only by members that made it durable. Off: ack at once.

    Raises:
        ConfigError: a name is empty or too long, or the incarnation is out of range.

    Example:
        >>> import random
        >>> from crdtgossip.config import GossipConfig
        >>> from crdtgossip.protocol import Engine
        >>> engine = Engine("a", "127.0.0.1:7001", GossipConfig.local(), random.Random(1), "a-1")
        >>> engine.join(["127.0.0.1:7002"], now=0.0)
        >>> [frame.address for frame in engine.take_outgoing()]
        ['127.0.0.1:7002']
    """

    def __init__(
        self,
        node_id: str,
        address: str,
        config: GossipConfig,
        rng: random.Random,
        replica_id: str,
        *,
        incarnation: int = 0,
        hold_write_acks: bool = False,
        wall_clock: Callable[[], int] | None = None,
    ) -> None:
        self.node_id = check_text(node_id, MAX_NODE_ID_BYTES, "node_id")
        self.address = check_text(address, MAX_ADDRESS_BYTES, "address")
        self.replica_id = check_text(replica_id, MAX_NODE_ID_BYTES, "replica_id")
        if isinstance(incarnation, bool) or not isinstance(incarnation, int):
            raise ConfigError(f"incarnation must be an int, not {incarnation!r}")
        if not 0 <= incarnation < 1 << 63:
            raise ConfigError("incarnation must be between 0 and 2**63 - 1")
        if not isinstance(config, GossipConfig):
            raise ConfigError(f"config must be a GossipConfig, not {type(config).__name__}")
        self.config = config
        self._rng = rng
        self._events: list[Event] = []
        self._outgoing: list[Outgoing] = []
        self._awareness = Awareness(config.awareness_max_multiplier)
        self._queue: BroadcastQueue[CRDT] = BroadcastQueue()
        self._membership = Membership(
            node_id,
            address,
            incarnation,
            config=config,
            rng=rng,
            awareness=self._awareness,
            broadcast=self._broadcast_rumor,
            events=self._events,
            replica_id=self.replica_id,
        )
        self._outbox = Outbox(node_id, config.max_datagram, config.max_reliable_frame)
        self._prober = Prober(self._membership, self._awareness, config, rng, self._send_datagram)
        self._store: dict[str, CRDT] = {}
        self._lives = LifeTable()  # see crdtgossip.keylife
        self._tombstones: dict[str, float] = {}
        self._with_deletes: set[str] = set()
        self._packed_replica: bytes | None = None
        self._settled = False
        # Keys with a local write being persisted (see begin_local), and the read
        # requests for them waiting until it is.
        self._held_keys: dict[str, int] = {}
        self._deferred_reads: dict[str, list[tuple[str, int]]] = {}
        # The gossip queue item of each key that a newer delta may still be joined
        # into, with the number of deltas joined in it (see _queue_delta).
        self._open_deltas: dict[str, tuple[str, str]] = {}
        self._joined: dict[str, int] = {}
        self._delta_serial = 0
        # A random stream id, so acks meant for a past life of this node are ignored.
        self._delivery = DeliveryLog(rng.getrandbits(63))
        self._delivery_epoch = -1
        self._acks: dict[tuple[str, int], list[tuple[int, int]]] = {}
        self._tree = HashTree(self._digest_of)
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._notices: dict[str, float] = {}
        # (accuser, accused) -> when we last sent the accuser the refutation it missed.
        self._corrections: dict[tuple[str, str], float] = {}
        self._counters = dict.fromkeys((*COUNTERS, *ROLLBACK_COUNTERS), 0)
        self._drops = dict.fromkeys(DROP_REASONS, 0)
        self._sizes = KeySizes(config.max_key_bytes)
        self._last_writes = LastWrites(ExpiryRules(config.expire_keys_after))
        self._dropped_keys = 0
        self._sync = AntiEntropy(
            store=self._store,
            tree=self._tree,
            membership=self._membership,
            outbox=self._outbox,
            counters=self._counters,
            drops=self._drops,
            held=self._held_keys,
            changed=self._changed,
            merge_state=self._on_state,
            written=self.written,
            clock=lambda: self._now,
            max_key_bytes=config.max_key_bytes,
            measured=self._sizes.measured,
            admit=self._admit_patch,
            life=self._life_payload,
            settle=self._settle_repair,
        )
        self._seeds: list[str] = []
        self._started = False
        self._now = 0.0
        self._next_gossip = 0.0
        self._next_push_pull = 0.0
        self._next_reconnect = 0.0
        self._next_join = 0.0
        self._quorum = QuorumTracker(node_id, rng)
        self._hold_write_acks = bool(hold_write_acks)
        # The LWW stamp source (see protocol.clock): Unix ns from the driver, the wall
        # clock by default (the simulator passes virtual time).
        offset_ns = round(config.max_clock_offset * 1e9)
        self.clock = HLC(time.time_ns if wall_clock is None else wall_clock, offset_ns)
        self._skew = SkewMonitor()
        self.refusal: str | None = None  # see protocol.identity
        self._claims: dict[str, float] = {}
        self._rollback = None  # see protocol.rollback
        self._scans = []

    # --- inputs --------------------------------------------------------------------

    def receive(self, data: bytes, sender: str, now: float) -> None:
        """Handle one frame received from the network. Never raises for bad input.

        Malformed, oversized or hostile frames, undecodable payloads and deltas that
        cannot be merged are dropped and counted in :meth:`stats`.

        Args:
            data: the frame, opened by the keyring if there is one.
            sender: the ``"host:port"`` the sender listens on (replies go there).
            now: the driver's time in seconds.
        """
        now = self._begin(now)
        if self.refusal is not None:
            return  # refused by the cluster (see protocol.identity): taking no part
        self._counters["frames_in"] += 1
        self._counters["bytes_in"] += len(data)
        try:
            # Most of what arrives is alive rumors already known: left out at once.
            frame = decode_frame(
                data,
                self.config.max_reliable_frame,
                known_alive=self._membership.alive_index,
            )
        except DecodeError:
            self._counters["decode_errors"] += 1
            self._drops["malformed"] += 1
            return
        if frame.sender == self.node_id:
            self._drops["from_self"] += 1
            self._from_own_id(frame.messages, sender)
            return
        origin = From(frame.sender, sender, now)
        self._counters["messages_in"] += len(frame.messages) + frame.known
        for message in frame.messages:
            self._dispatch(message, origin)
        self._notice_if_dead(origin)
        self._flush()

    def tick(self, now: float) -> None:
        """Run every timer that is due: probes, suspicion timeouts, gossip, anti-entropy.

        Call it at :meth:`next_wakeup` (earlier or extra calls are harmless).

        Args:
            now: the driver's time in seconds.
        """
        now = self._begin(now)
        if self.refusal is not None:
            return  # refused by the cluster (see protocol.identity): taking no part
        active = not self._membership.leaving
        self._prober.tick(now)
        self._membership.expire(now)
        if now >= self._next_gossip:
            self._next_gossip = now + self.config.gossip_interval
            self._gossip()
        if active and now >= self._next_push_pull:
            members = self._membership.live_count()
            self._next_push_pull = now + push_pull_interval(self.config.push_pull_interval, members)
            self._membership.reap(now)
            for member in self._membership.random_members(1, (Status.ALIVE,)):
                self._push_pull(member.address, join=False)
        if active and now >= self._next_reconnect:
            self._next_reconnect = now + self.config.reconnect_interval
            for member in self._membership.random_members(1, (Status.DEAD,)):
                self._push_pull(member.address, join=False)
        if active and now >= self._next_join and self._joining():
            self._next_join = now + self.config.join_retry_interval
            for seed in self._seeds:
                self._push_pull(seed, join=True)
        self._quorum_tick(now)
        self._rollback_tick(now)
        self._expire_due()
        self._forget_tombstones()
        self._sync.pump()
        self._flush()

    # --- outputs and queries -------------------------------------------------------

    def take_outgoing(self) -> list[Outgoing]:
        """The frames to send since the last call, in order; the list is handed over."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def take_events(self) -> list[Event]:
        """What happened since the last call (member changes, keys changed)."""
        events = list(self._events)
        self._events.clear()
        return events

    def next_wakeup(self) -> float:
        """When :meth:`tick` should run next, in the driver's seconds.

        It changes only when the engine is called (receive, tick, update, join,
        leave), so a driver may read it once after each call and keep it in its own
        timer heap.

        Returns:
            The earliest timer; ``0.0`` before the engine has seen any time (tick it at
            once).
        """
        if self.refusal is not None:
            return math.inf  # refused by the cluster: no timers (see protocol.identity)
        if not self._started:
            return 0.0
        # A driver calls this after every input, so it avoids building lists.
        wakeup = self._next_gossip
        if not self._membership.leaving:
            wakeup = min(wakeup, self._next_push_pull, self._next_reconnect)
            if self._next_join < wakeup and self._joining():
                wakeup = self._next_join
        for deadline in (
            self._prober.next_deadline(),
            self._membership.next_deadline(),
            self._quorum.next_deadline(),
            self._sync.next_deadline(),
            self._rollback_deadline(),
            self._next_expiry(self._now),
        ):
            if deadline is not None and deadline < wakeup:
                wakeup = deadline
        return wakeup

    # --- time ----------------------------------------------------------------------

    def _begin(self, now: float) -> float:
        """Start every call: time never goes backwards, timers start on first use."""
        now = max(float(now), self._now)
        self._now = now
        if not self._started:
            self._started = True
            self._membership.local.since = now
            self._prober.start(now)
            # Random phases, so nodes started together do not act in lockstep.
            self._next_gossip = now + self._rng.uniform(0, self.config.gossip_interval)
            self._next_push_pull = now + self._rng.uniform(0, self.config.push_pull_interval)
            self._next_reconnect = now + self._rng.uniform(0, self.config.reconnect_interval)
            for key in self._tombstones:  # restored ones: kept their time from now
                self._tombstones[key] = now
        return now

    def _joining(self) -> bool:
        return bool(self._seeds) and self._membership.others_alive() == 0

    # --- dispatch ------------------------------------------------------------------

    def _dispatch(self, message: Message, origin: From) -> None:
        # Alive first, the most frequent (each case costs an isinstance check).
        match message:
            case Alive() | Left():
                self._membership.apply(message, origin.now, origin.node_id)
            case Ping():
                if not self._prober.on_ping(message, origin.address, origin.node_id):
                    self._drops["wrong_target"] += 1
            case PingReq():
                self._prober.on_ping_req(message, origin.address, origin.now)
            case Ack():
                self._prober.on_ack(message)
            case Nack():
                self._prober.on_nack(message)
            case Suspect() | Dead():
                if not self._membership.apply(message, origin.now, origin.node_id):
                    self._correct_stale_accusation(message, origin)
            case Delta():
                self._on_delta(message, origin)
            case State():
                self._on_state(message)
            case DeltaInterval():
                self._on_interval(message, origin)
            case DeltaAck():
                self._on_delta_ack(message, origin)
            case Members():
                self._check_join(message, origin)
                self._sync.on_members(message, origin.node_id, origin.address, origin.now)
            case Sync():
                self._sync.on_sync(message, origin.address)
            case Diff():
                self._sync.on_diff(message, origin.address)
            case StateChunk():
                self._sync.on_chunk(message, origin.node_id)
            case IdClaim():
                self._on_id_claim(message)
            case MarksQuery():
                self._on_marks_query(message, origin)
            case MarksReport():
                self._on_marks_report(message, origin)
            case WriteRequest():
                self._on_write_request(message, origin)
            case WriteAck():
                self._on_write_ack(message, origin)
            case ReadRequest():
                self._on_read_request(message, origin)
            case ReadReply():
                self._on_read_reply(message, origin)

    # --- anti-entropy --------------------------------------------------------------

    def _push_pull(self, address: str, *, join: bool) -> None:
        self._sync.push_pull(address, join=join)

    # --- output --------------------------------------------------------------------

    def _send_datagram(self, address: str, message: Message, piggyback_to: str | None) -> None:
        self._outbox.send(address, message, piggyback_to=piggyback_to)

    def _gossip(self) -> None:
        """One gossip round: local deltas to every live member that has not
        acknowledged them (see :mod:`~crdtgossip.protocol.delivery`), then queued
        broadcasts to ``fanout`` random live members."""
        if len(self._delivery):
            live = [(m.node_id, m.address) for m in self._membership.live_members()]
            for address, packed in self._delivery.round(live, self._outbox.reliable_room):
                self._outbox.send(address, packed)
        if not len(self._queue):
            return
        limit = self._retransmit_limit()
        targets = self._membership.random_members(self.config.fanout, LIVE_STATUSES)
        for target in targets:
            # Broadcasts too large for a datagram go by stream, counted like the rest.
            for packed in self._queue.take(
                self._outbox.reliable_room,
                limit,
                destination=target.node_id,
                min_size=self._outbox.datagram_room + 1,
            ):
                self._outbox.send(target.address, packed, reliable=True)
            self._outbox.gossip(target.address, target.node_id)

    def _retransmit_limit(self) -> int:
        return retransmit_limit(self.config.retransmit_mult, self._membership.live_count())

    def _flush(self) -> None:
        if self._acks:
            self._send_acks()
        if self._outbox.empty:  # most inputs send nothing (a local update waits for gossip)
            return
        frames = self._outbox.flush(self._queue, self._retransmit_limit())
        self._counters["messages_out"] += self._outbox.take_message_count()
        for frame in frames:
            self._counters["frames_out"] += 1
            self._counters["bytes_out"] += len(frame.data)
            self._counters["reliable_frames_out" if frame.reliable else "datagrams_out"] += 1
        self._outgoing.extend(frames)
