"""The sans-I/O gossip engine: membership, dissemination and anti-entropy in one object.

:class:`Engine` is to crdtgossip what h11's ``Connection`` is to HTTP: it never owns a
socket, a clock, a thread or a global random generator. Its driver feeds it

* frames received: :meth:`Engine.receive` with the sender's address and the time;
* the passing of time: :meth:`Engine.tick`;
* local changes: :meth:`Engine.update`, :meth:`Engine.join`, :meth:`Engine.leave`,
  and state read back from storage: :meth:`Engine.restore`;
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
(the failure detector), ``broadcast`` (the transmit-limited queue), ``sync`` (the
anti-entropy driver, with the hash tree over keys in ``antientropy`` and the repair of a
key by its difference in ``repair``), ``quorum`` (quorum requests), ``messages`` (the
wire format) and ``outbox`` (framing).
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, cast

from crdtgossip.codec import decode, encode
from crdtgossip.config import GossipConfig
from crdtgossip.crdts import CRDT
from crdtgossip.errors import ConfigError, DecodeError, MergeError, OperationError
from crdtgossip.protocol.antientropy import HashTree, key_digest, push_pull_interval, state_digest
from crdtgossip.protocol.awareness import Awareness
from crdtgossip.protocol.broadcast import BroadcastQueue, retransmit_limit
from crdtgossip.protocol.events import Event, KeyChanged, Member, Outgoing
from crdtgossip.protocol.membership import FormedTable, Membership, MembershipRumor
from crdtgossip.protocol.messages import (
    MAX_ADDRESS_BYTES,
    MAX_KEY_BYTES,
    MAX_NODE_ID_BYTES,
    Ack,
    Alive,
    Dead,
    Delta,
    Diff,
    Left,
    Members,
    Message,
    Nack,
    Ping,
    PingReq,
    ReadReply,
    ReadRequest,
    State,
    Suspect,
    Sync,
    WriteAck,
    WriteRequest,
    decode_frame,
    encode_message,
)
from crdtgossip.protocol.outbox import Outbox
from crdtgossip.protocol.probe import Prober
from crdtgossip.protocol.quorum import FIRST_ROUND_SPARE, Pending, QuorumResult, QuorumTracker
from crdtgossip.protocol.states import Status
from crdtgossip.protocol.sync import AntiEntropy

__all__ = ["DROP_REASONS", "MAX_SEEN_DELTAS", "Engine"]

MAX_SEEN_DELTAS: Final = 16_384
"""Digests of recently received deltas remembered, so a delta that comes back by
another path is merged once and relayed once. Copies of a delta arrive within a few
gossip rounds; this covers a burst of that many distinct updates meanwhile, for 16
bytes each (256 KiB). A delta forgotten too early is merged again (harmless: merge is
idempotent) and relayed once more."""

_MAX_NOTICES: Final = 1024
"""Bound on the table of "you are dead" notices sent (one per member per interval)."""

_LIVE_STATUSES: Final = (Status.ALIVE, Status.SUSPECT)
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
)
"""Why the engine drops input or output; each has a ``drop_<reason>`` counter."""

_COUNTERS: Final = (
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
    "stale_accusations_corrected",
    "quorum_writes",
    "quorum_reads",
    "quorum_failures",
    "quorum_late_answers",
    "write_requests_served",
    "read_requests_served",
    "read_repairs",
    "held_acks_dropped",
)


@dataclass(frozen=True, slots=True)
class _From:
    """Where the frame being handled came from."""

    node_id: str
    address: str
    now: float


def _check_text(value: object, max_bytes: int, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty str, not {value!r}")
    if len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ConfigError(f"{what} must be at most {max_bytes} bytes of UTF-8")
    return value


class Engine:
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
    ) -> None:
        self.node_id = _check_text(node_id, MAX_NODE_ID_BYTES, "node_id")
        self.address = _check_text(address, MAX_ADDRESS_BYTES, "address")
        self.replica_id = _check_text(replica_id, MAX_NODE_ID_BYTES, "replica_id")
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
        )
        self._outbox = Outbox(node_id, config.max_datagram, config.max_reliable_frame)
        self._prober = Prober(self._membership, self._awareness, config, rng, self._send_datagram)
        self._store: dict[str, CRDT] = {}
        self._tree = HashTree(self._digest_of)
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._notices: dict[str, float] = {}
        # (accuser, accused) -> when we last sent the accuser the refutation it missed.
        self._corrections: dict[tuple[str, str], float] = {}
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._drops = dict.fromkeys(DROP_REASONS, 0)
        self._sync = AntiEntropy(
            store=self._store,
            tree=self._tree,
            membership=self._membership,
            outbox=self._outbox,
            counters=self._counters,
            drops=self._drops,
            changed=self._changed,
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
        self._counters["frames_in"] += 1
        self._counters["bytes_in"] += len(data)
        try:
            frame = decode_frame(data, self.config.max_reliable_frame)
        except DecodeError:
            self._counters["decode_errors"] += 1
            self._drops["malformed"] += 1
            return
        if frame.sender == self.node_id:
            self._drops["from_self"] += 1
            return
        origin = _From(frame.sender, sender, now)
        for message in frame.messages:
            self._counters["messages_in"] += 1
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
        self._flush()

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
        if state is None:
            self._store[key] = delta.copy()
        else:
            state.merge(delta)
        self._counters["local_updates"] += 1
        self._changed(key)
        self._remember(payload)
        self._queue_delta(key, delta.copy(), payload, frozenset())
        self._flush()

    def restore(self, key: str, state: CRDT) -> None:
        """Put a state read back from storage into the store, without spreading it.

        Unlike :meth:`update` it queues no gossip and emits no event: the state is
        not news, and anti-entropy reconciles it with the cluster's. Call it before
        the first other input.

        Args:
            key: the data key.
            state: the stored state (the engine keeps its own copy).

        Raises:
            OperationError: an invalid key.
            MergeError: the key already holds a state of another type.
        """
        self._check_key(key)
        current = self._store.get(key)
        if current is None:
            self._store[key] = state.copy()
        elif type(current) is not type(state):
            raise MergeError(
                f"key {key!r} holds a {type(current).__name__}, not a {type(state).__name__}"
            )
        else:
            current.merge(state)
        self._counters["keys_restored"] += 1
        self._tree.touch(key)

    def quorum_members(self) -> int:
        """The N of the quorum levels: members alive or suspect, this node included.

        A suspect member still counts: it may refute, and dropping it from N at the
        first missed probe would let a slow network shrink every majority.
        """
        return self._membership.live_count()

    def start_write(self, key: str, delta: CRDT, needed: int, timeout: float, now: float) -> int:
        """Ask the other members to merge a delta already applied by :meth:`update`.

        ``needed - 1`` random live members are asked first (alive ones before
        suspects), plus :data:`~crdtgossip.protocol.quorum.FIRST_ROUND_SPARE`; if they
        are slow, every live member that has not acknowledged is asked after
        ``timeout`` x :data:`~crdtgossip.protocol.quorum.HEDGE_FRACTION`, and again
        after each further such fraction. Akka Distributed Data's write aggregator
        works the same way (its primary nodes, then the rest after a fifth of the
        timeout): asking everyone at once would make every member wake, open, merge
        and acknowledge, when ``needed - 1`` acknowledgements are all the write waits
        for; the others get the delta by gossip.
        The outcome comes from :meth:`take_quorum_results` under the returned id: a
        success once ``needed`` members (this one included) merged it, else a failure
        at the deadline. The delta spreads by gossip either way.

        Args:
            key: the data key.
            delta: the delta given to :meth:`update`.
            needed: members that must have merged it, this one included.
            timeout: seconds until the request fails.
            now: the driver's time in seconds.

        Returns:
            The request id.

        Raises:
            OperationError: an invalid key.
            EncodeError: the delta cannot be encoded.
        """
        self._check_key(key)
        now = self._begin(now)
        payload = encode(delta)
        pending = self._quorum.new(
            write=True, key=key, needed=needed, timeout=timeout, now=now, payload=payload
        )
        self._counters["quorum_writes"] += 1
        self._ask(pending, everyone=False)
        self._flush()
        return pending.request_id

    def start_read(self, key: str, needed: int, timeout: float, now: float) -> int:
        """Ask members for their state of ``key``; merge each reply into the store.

        ``needed - 1`` random live members are asked first (alive ones before
        suspects), plus :data:`~crdtgossip.protocol.quorum.FIRST_ROUND_SPARE`; if they
        are slow, every live member that has not answered is asked after ``timeout`` x
        :data:`~crdtgossip.protocol.quorum.HEDGE_FRACTION`. Once ``needed`` members
        (this one included) answered, the members whose reply differed from the
        joined state are sent it (read repair), and a success comes from
        :meth:`take_quorum_results`; else a failure at the deadline. Replies merged
        before a failure stay merged.

        Args:
            key: the data key.
            needed: members that must answer, this one included.
            timeout: seconds until the request fails.
            now: the driver's time in seconds.

        Returns:
            The request id.

        Raises:
            OperationError: an invalid key.
        """
        self._check_key(key)
        now = self._begin(now)
        pending = self._quorum.new(
            write=False, key=key, needed=needed, timeout=timeout, now=now, payload=b""
        )
        self._counters["quorum_reads"] += 1
        self._ask(pending, everyone=False)
        self._flush()
        return pending.request_id

    def take_quorum_results(self) -> list[QuorumResult]:
        """The quorum requests that ended since the last call, in order."""
        return self._quorum.take_results()

    @property
    def held_acks(self) -> int:
        """Write acks held until :meth:`release_acks` (with ``hold_write_acks``)."""
        return self._quorum.held

    def ack_mark(self) -> int:
        """A mark to pass to :meth:`release_acks` once everything merged so far is
        persisted: it releases the acks held up to now, not later ones."""
        return self._quorum.mark

    def release_acks(self, mark: int, now: float) -> None:
        """Send the write acks held before ``mark`` (from :meth:`ack_mark`).

        Args:
            mark: what :meth:`ack_mark` returned before the driver persisted.
            now: the driver's time in seconds.
        """
        now = self._begin(now)
        for address, request_id in self._quorum.release(mark):
            self._send_datagram(address, WriteAck(request_id), None)
        self._flush()

    @staticmethod
    def _check_key(key: object) -> None:
        if not isinstance(key, str) or not key:
            raise OperationError(f"a key must be a non-empty str, not {key!r}")
        if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise OperationError(f"a key must be at most {MAX_KEY_BYTES} bytes of UTF-8")

    def join(self, seeds: list[str], now: float) -> None:
        """Join the cluster through seed addresses: exchange full state with each.

        Attempts repeat every ``join_retry_interval`` until some member is alive, so
        nodes started together in any order find each other. This node's own address
        is skipped; an empty list makes this node the first of its cluster.

        Args:
            seeds: ``"host:port"`` of members to contact.
            now: the driver's time in seconds.
        """
        now = self._begin(now)
        for seed in seeds:
            if seed != self.address and seed not in self._seeds:
                self._seeds.append(seed)
        for seed in self._seeds:
            self._push_pull(seed, join=True)
        self._next_join = now + self.config.join_retry_interval
        self._flush()

    def adopt_formed(self, table: FormedTable, now: float) -> None:
        """Start as a member of a cluster formed long ago: know all of ``table`` alive.

        A simulator and testing facility (:class:`crdtgossip.testing.Simulation` uses
        it for ``formed=True``). The table is shared with every engine that adopts it,
        and each engine copies only the rows it later changes, so N engines of an
        N-node cluster take O(N) work and memory in all, not O(N²). Unlike members
        learned by push-pull, it raises no events and queues no broadcasts: every
        member already knows all of them. And as in a cluster that has run for a
        while, the first anti-entropy exchange comes at a random point of the
        interval scaled for the cluster's size, not of the unscaled first one, which
        would put the first exchanges of all N nodes within one unscaled interval.
        Call it first, instead of any other input.

        Args:
            table: the cluster's members, this node among them at its address and
                incarnation.
            now: the driver's time in seconds.

        Raises:
            ConfigError: the engine has already run or knows other members, or the
                table does not hold this node as it is.
        """
        if self._started:
            raise ConfigError("adopt_formed() must come before any other input")
        self._membership.adopt(table)
        now = self._begin(now)
        members = self._membership.live_count()
        interval = push_pull_interval(self.config.push_pull_interval, members)
        self._next_push_pull = now + self._rng.uniform(0, interval)

    def leave(self, now: float) -> None:
        """Leave gracefully: tell every live member, then keep gossiping the goodbye.

        Afterwards the engine stops probing and anti-entropy but still answers pings
        and relays gossip; the driver should keep ticking it for a few gossip
        intervals before closing its transport, so the goodbye spreads (the goodbye is
        also sent at once to every live member, so one interval is usually enough).
        Calling it again does nothing.

        Args:
            now: the driver's time in seconds.
        """
        now = self._begin(now)
        if self._membership.leaving:
            return
        goodbye = self._membership.leave()
        self._prober.stop()
        self._broadcast_rumor(goodbye)
        everyone = self._membership.live_count()
        for member in self._membership.random_members(everyone, _LIVE_STATUSES):
            self._send_datagram(member.address, goodbye, None)
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
        ):
            if deadline is not None and deadline < wakeup:
                wakeup = deadline
        return wakeup

    def members(self) -> list[Member]:
        """Every member known, this node included, sorted by node id."""
        return self._membership.members()

    @property
    def incarnation(self) -> int:
        """This node's current incarnation (rises when it refutes a suspicion)."""
        return self._membership.local.incarnation

    @property
    def health_score(self) -> int:
        """The Lifeguard local health score: 0 is healthy; timeouts scale by it + 1."""
        return self._awareness.score

    def get(self, key: str) -> CRDT | None:
        """A copy of the state of ``key``, or ``None`` if this node has none."""
        state = self._store.get(key)
        return None if state is None else state.copy()

    def keys(self) -> list[str]:
        """Every key with a state here, sorted."""
        return sorted(self._store)

    def stats(self) -> dict[str, int]:
        """Counters since construction.

        Returns:
            ``frames_in``/``bytes_in``/``messages_in`` and the same ``_out``,
            ``datagrams_out``, ``reliable_frames_out``, ``decode_errors`` (malformed
            frames and undecodable payloads), ``merge_errors`` (payloads of the wrong
            type or that failed to merge), ``duplicate_deltas``, ``deltas_merged``,
            ``states_merged``, ``local_updates``, ``push_pulls``, ``keys_restored``,
            the quorum counters (``quorum_writes``, ``quorum_reads``,
            ``quorum_failures``, ``quorum_late_answers``, ``write_requests_served``,
            ``read_requests_served``, ``read_repairs``, ``held_acks_dropped``), one
            ``drop_<reason>`` per reason in :data:`DROP_REASONS`, and the gauges
            ``members_alive``, ``queue_length``, ``keys`` and ``health_score``.
        """
        self._drops["oversize"] = self._outbox.oversize_drops
        self._drops["queue_overflow"] = self._queue.overflow_drops
        self._drops["relay_limit"] = self._prober.relay_drops
        self._drops["stale_reply"] = self._prober.stale_replies
        self._counters["quorum_failures"] = self._quorum.failures
        self._counters["quorum_late_answers"] = self._quorum.late_answers
        self._counters["held_acks_dropped"] = self._quorum.held_dropped
        stats = dict(self._counters)
        stats.update({f"drop_{reason}": n for reason, n in self._drops.items()})
        stats["members_alive"] = self._membership.count(Status.ALIVE)
        stats["queue_length"] = len(self._queue)
        stats["keys"] = len(self._store)
        stats["health_score"] = self._awareness.score
        return stats

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
        return now

    def _joining(self) -> bool:
        return bool(self._seeds) and self._membership.others_alive() == 0

    # --- dispatch ------------------------------------------------------------------

    def _dispatch(self, message: Message, origin: _From) -> None:
        match message:
            case Ping():
                if not self._prober.on_ping(message, origin.address, origin.node_id):
                    self._drops["wrong_target"] += 1
            case PingReq():
                self._prober.on_ping_req(message, origin.address, origin.now)
            case Ack():
                self._prober.on_ack(message)
            case Nack():
                self._prober.on_nack(message)
            case Alive() | Left():
                self._membership.apply(message, origin.now, origin.node_id)
            case Suspect() | Dead():
                if not self._membership.apply(message, origin.now, origin.node_id):
                    self._correct_stale_accusation(message, origin)
            case Delta():
                self._on_delta(message, origin)
            case State():
                self._on_state(message)
            case Members():
                self._sync.on_members(message, origin.node_id, origin.address, origin.now)
            case Sync():
                self._sync.on_sync(message, origin.address)
            case Diff():
                self._sync.on_diff(message, origin.address)
            case WriteRequest():
                self._on_write_request(message, origin)
            case WriteAck():
                self._on_write_ack(message, origin)
            case ReadRequest():
                self._on_read_request(message, origin)
            case ReadReply():
                self._on_read_reply(message, origin)

    def _notice_if_dead(self, origin: _From) -> None:
        """Tell a member we hold dead (or gone) that it is, so it can refute.

        A member that restarted and never hears its old incarnation would otherwise
        stay dead for us forever (memberlist#311); told, it raises its incarnation and
        everyone accepts it back. One notice per member per probe interval.
        """
        member = self._membership.get(origin.node_id)
        if member is None or member.status not in (Status.DEAD, Status.LEFT):
            return
        if self._membership.leaving:
            return
        last = self._notices.get(origin.node_id)
        if last is not None and origin.now - last < self.config.probe_interval:
            return
        if len(self._notices) >= _MAX_NOTICES:
            self._notices.clear()
        self._notices[origin.node_id] = origin.now
        notice = Dead(member.node_id, member.incarnation, self.node_id)
        self._send_datagram(origin.address, notice, None)

    def _correct_stale_accusation(self, rumor: Suspect | Dead, origin: _From) -> None:
        """Send the sender of an outdated accusation the refutation it missed.

        A member that gossips ``Suspect`` or ``Dead`` about a member we know alive at a
        higher incarnation has missed that member's refutation. The refutation spreads
        by a bounded number of piggybacked transmissions (about a second's worth); a
        node that drew too few of them, all lost, would otherwise learn it only from
        anti-entropy, whose interval (90 s at 100 members) is longer than the
        suspicion timeout, and would declare a live member dead. Measured before
        this answer: 2 false deaths in one simulated hour of 100 members at 10%
        loss, each an observer that received 2 of the 1,188 transmissions of the
        refutation, both lost. Its own stale accusation is what gives such a node
        away, and it keeps sending it, so each receiver that knows better answers it
        directly: one answer per accuser per probe interval, as the dead notices.
        """
        member = self._membership.get(rumor.node_id)
        if (
            member is None
            or member.incarnation <= rumor.incarnation
            or member.status is not Status.ALIVE
            or rumor.node_id == origin.node_id
        ):
            return
        key = (origin.node_id, rumor.node_id)
        last = self._corrections.get(key)
        if last is not None and origin.now - last < self.config.probe_interval:
            return
        if len(self._corrections) >= _MAX_NOTICES:
            self._corrections.clear()
        self._corrections[key] = origin.now
        self._counters["stale_accusations_corrected"] += 1
        correction = Alive(member.node_id, member.address, member.incarnation)
        self._send_datagram(origin.address, correction, None)

    # --- data ----------------------------------------------------------------------

    def _digest_of(self, key: str) -> bytes:
        return key_digest(self._store[key])

    def _changed(self, key: str) -> None:
        self._tree.touch(key)
        self._events.append(KeyChanged(key))

    def _remember(self, payload: bytes) -> bool:
        """Record a delta payload as seen; ``False`` if it already was."""
        digest = hashlib.blake2b(payload, digest_size=16).digest()
        if digest in self._seen:
            self._seen.move_to_end(digest)
            return False
        self._seen[digest] = None
        if len(self._seen) > MAX_SEEN_DELTAS:
            self._seen.popitem(last=False)
        return True

    def _merge_payload(self, key: str, payload: bytes) -> CRDT | None:
        """Decode a payload and merge it into the store; ``None`` if it was dropped."""
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
        state = self._store.get(key)
        if state is None:
            self._store[key] = value.copy()
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
        self._changed(key)
        return value

    def _on_delta(self, message: Delta, origin: _From) -> None:
        if not self._remember(message.payload):
            self._counters["duplicate_deltas"] += 1
            return
        delta = self._merge_payload(message.key, message.payload)
        if delta is None:
            return
        self._counters["deltas_merged"] += 1
        # Relay it, but never back to the member it came from (Enes et al.).
        self._queue_delta(message.key, delta, message.payload, frozenset((origin.node_id,)))

    def _on_state(self, message: State) -> None:
        if self._merge_payload(message.key, message.payload) is not None:
            self._counters["states_merged"] += 1

    def _queue_delta(self, key: str, delta: CRDT, payload: bytes, exclude: frozenset[str]) -> None:
        """Queue a delta; a delta of the same key already queued is joined into it."""
        name = ("key", key)
        older = self._queue.get(name)
        if older is not None and older.extra is not None and type(older.extra) is type(delta):
            joined = older.extra.copy()
            try:
                joined.merge(delta)
            except (MergeError, TypeError, ValueError):
                joined = delta  # nested types disagree: the newer delta alone goes out
            else:
                payload = encode(joined)
                exclude &= older.exclude
                self._remember(payload)
            delta = joined
        packed = encode_message(Delta(key, payload))
        if len(packed) > self._outbox.reliable_room:
            self._drops["oversize"] += 1
            return
        self._queue.put(name, packed, exclude=exclude, extra=delta)

    # --- quorum --------------------------------------------------------------------

    def _ask(self, pending: Pending, *, everyone: bool) -> None:
        """Send a request to live members that have not answered it.

        Args:
            pending: the request.
            everyone: ask every such member; else as many as answers are missing,
                plus a spare (the first round of a request), alive members before
                suspect ones, which are less likely to answer in time.
        """
        if pending.done or not self._quorum.is_pending(pending.request_id):
            return
        membership = self._membership
        if everyone:
            candidates = membership.random_members(
                membership.live_count(), _LIVE_STATUSES, exclude=pending.answered
            )
        else:
            missing = pending.needed - len(pending.answered) + FIRST_ROUND_SPARE
            candidates = membership.random_members(
                missing, (Status.ALIVE,), exclude=pending.answered
            )
            if len(candidates) < missing:
                candidates += membership.random_members(
                    missing - len(candidates), (Status.SUSPECT,), exclude=pending.answered
                )
        message: Message
        if pending.write:
            message = WriteRequest(pending.request_id, pending.key, pending.payload)
        else:
            message = ReadRequest(pending.request_id, pending.key)
        packed = encode_message(message)
        for member in candidates:
            pending.asked[member.node_id] = member.address
            self._outbox.send(member.address, packed)

    def _quorum_tick(self, now: float) -> None:
        for pending in self._quorum.expired(now):
            self._quorum.finish(pending, ok=False)
        for pending in self._quorum.retries_due(now):
            self._ask(pending, everyone=True)

    def _on_write_request(self, message: WriteRequest, origin: _From) -> None:
        if self._remember(message.payload):
            if self._merge_payload(message.key, message.payload) is None:
                return  # not merged: no ack, the coordinator counts someone else
            self._counters["deltas_merged"] += 1
        self._counters["write_requests_served"] += 1
        if self._hold_write_acks:
            self._quorum.hold(origin.address, message.request_id)
        else:
            self._send_datagram(origin.address, WriteAck(message.request_id), None)

    def _on_write_ack(self, message: WriteAck, origin: _From) -> None:
        pending = self._quorum.get(message.request_id, origin.node_id)
        if pending is None or not pending.write:
            return
        pending.answered.add(origin.node_id)
        if pending.done:
            self._quorum.finish(pending, ok=True)

    def _on_read_request(self, message: ReadRequest, origin: _From) -> None:
        self._counters["read_requests_served"] += 1
        state = self._store.get(message.key)
        payload = b"" if state is None else encode(state)
        self._send_datagram(
            origin.address, ReadReply(message.request_id, message.key, payload), None
        )

    def _on_read_reply(self, message: ReadReply, origin: _From) -> None:
        pending = self._quorum.get(message.request_id, origin.node_id)
        if pending is None or pending.write or message.key != pending.key:
            return
        if origin.node_id in pending.answered:
            return
        digest: bytes | None = None
        if message.payload:
            if self._merge_payload(message.key, message.payload) is None:
                return  # a reply that cannot be merged does not count
            self._counters["states_merged"] += 1
            digest = state_digest(message.payload)
        pending.answered.add(origin.node_id)
        pending.digests[origin.node_id] = digest
        if pending.done:
            self._repair(pending)
            self._quorum.finish(pending, ok=True)

    def _repair(self, pending: Pending) -> None:
        """Send the joined state to every replier whose reply was behind it."""
        state = self._store.get(pending.key)
        if state is None:
            return
        payload = encode(state)
        digest = state_digest(payload)
        for node_id, theirs in pending.digests.items():
            if theirs != digest:
                self._counters["read_repairs"] += 1
                self._outbox.send(
                    pending.asked[node_id], State(pending.key, payload), reliable=True
                )

    # --- membership and anti-entropy -----------------------------------------------

    def _broadcast_rumor(
        self, rumor: MembershipRumor, exclude: frozenset[str] = frozenset()
    ) -> None:
        self._queue.put(("member", rumor.node_id), encode_message(rumor), exclude=exclude)

    def _push_pull(self, address: str, *, join: bool) -> None:
        self._sync.push_pull(address, join=join)

    # --- output --------------------------------------------------------------------

    def _send_datagram(self, address: str, message: Message, piggyback_to: str | None) -> None:
        self._outbox.send(address, message, piggyback_to=piggyback_to)

    def _gossip(self) -> None:
        """One gossip round: queued broadcasts to ``fanout`` random live members."""
        if not len(self._queue):
            return
        limit = self._retransmit_limit()
        targets = self._membership.random_members(self.config.fanout, _LIVE_STATUSES)
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
        if self._outbox.empty:  # most inputs send nothing (a local update waits for gossip)
            return
        frames = self._outbox.flush(self._queue, self._retransmit_limit())
        self._counters["messages_out"] += self._outbox.take_message_count()
        for frame in frames:
            self._counters["frames_out"] += 1
            self._counters["bytes_out"] += len(frame.data)
            self._counters["reliable_frames_out" if frame.reliable else "datagrams_out"] += 1
        self._outgoing.extend(frames)
