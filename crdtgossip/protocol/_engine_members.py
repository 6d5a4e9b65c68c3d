"""The engine's membership inputs and views: joining, leaving, answering outdated news.

The SWIM rules themselves live in ``membership`` (the table) and ``probe`` (the failure
detector); this part turns the driver's join and leave into messages, adopts a formed
table for the simulator, and answers members that gossip news we know to be outdated.
"""

from __future__ import annotations

from typing import Final, TypeVar

from crdtgossip.errors import ConfigError
from crdtgossip.protocol._engine_base import LIVE_STATUSES, MAX_NOTICES, EngineCore, From
from crdtgossip.protocol.antientropy import push_pull_interval
from crdtgossip.protocol.events import Member
from crdtgossip.protocol.membership import FormedTable, MembershipRumor
from crdtgossip.protocol.messages import Alive, Dead, Suspect, encode_message
from crdtgossip.protocol.retirement import retired
from crdtgossip.protocol.states import Status

__all__ = ["MAX_MEMBER_NAMES", "MembersEngine"]

K = TypeVar("K")

MAX_MEMBER_NAMES: Final = 1 << 16
"""Most queue names of member rumors kept for reuse (see ``_member_names``)."""

# The queue name of each member's rumors, shared: every engine of a simulator (N of
# them in one process) queues a rumor about each of N members, and one name tuple per
# member serves them all (a tuple is 56 bytes; N² of them at 1,000 nodes, 56 MB).
_member_names: dict[str, tuple[str, str]] = {}


def _forget_older(sent: dict[K, float], now: float, interval: float) -> None:
    """Drop the entries of ``sent`` (answer -> when it was sent) at least ``interval``
    old: they no longer hold back an answer, so keeping them only costs memory (in a
    simulator of N nodes at 10% loss, some N per node: N² in all, where what
    one interval holds is a few per node).

    Entries go in as they are sent and are never re-dated (a repeat waits for its
    entry to go), so the dict is in sending order and the oldest come first.
    """
    old = []
    for answer, when in sent.items():
        if now - when < interval:
            break
        old.append(answer)
    for answer in old:
        del sent[answer]


class MembersEngine(EngineCore):
    """The membership half of :class:`~crdtgossip.protocol.Engine` (see the module doc)."""

    _seeds: list[str]
    _started: bool
    _next_join: float
    _next_push_pull: float
    _notices: dict[str, float]
    # (accuser, accused) -> when we last sent the accuser the refutation it missed.
    _corrections: dict[tuple[str, str], float]

    def members(self) -> list[Member]:
        """Every member known, this node included, sorted by node id."""
        return self._membership.members()

    def member(self, node_id: str) -> Member | None:
        """What this node knows of ``node_id`` (itself included), or ``None``; O(1)."""
        row = self._membership.get(node_id)
        return None if row is None else row.snapshot()

    @property
    def incarnation(self) -> int:
        """This node's current incarnation (rises when it refutes a suspicion)."""
        return self._membership.local.incarnation

    @property
    def health_score(self) -> int:
        """The Lifeguard local health score: 0 is healthy; timeouts scale by it + 1."""
        return self._awareness.score

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
        """Leave gracefully: tell every live member and every seed, then keep gossiping
        the goodbye.

        Afterwards the engine stops probing and anti-entropy but still answers pings
        and relays gossip; the driver should keep ticking it for a few gossip
        intervals before closing its transport, so the goodbye spreads (the goodbye is
        also sent at once to every live member, by datagram and by stream, so one
        interval is usually enough).
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
        addresses = [m.address for m in self._membership.random_members(everyone, LIVE_STATUSES)]
        # And the seeds not among them: a node that leaves while its join is under way
        # (its seed took it in, the reply has not arrived) knows no member yet, but the
        # seed knows it, and would otherwise find it dead rather than left.
        known = set(addresses)
        addresses += [seed for seed in self._seeds if seed not in known]
        for address in addresses:
            self._send_datagram(address, goodbye, None)
            # And by stream: a datagram dropped under load (a full socket buffer drops
            # loopback UDP too) would leave the member to find this node dead, not
            # left, if the gossip rounds after it do not get to run before the stop.
            self._outbox.send(address, goodbye, reliable=True)
        self._flush()

    def _notice_if_dead(self, origin: From) -> None:
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
        _forget_older(self._notices, origin.now, self.config.probe_interval)
        if origin.node_id in self._notices:
            return
        if len(self._notices) >= MAX_NOTICES:
            self._notices.clear()
        self._notices[origin.node_id] = origin.now
        notice = Dead(member.node_id, member.incarnation, self.node_id)
        self._send_datagram(origin.address, notice, None)

    def _correct_stale_accusation(self, rumor: Suspect | Dead, origin: From) -> None:
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
        _forget_older(self._corrections, origin.now, self.config.probe_interval)
        if key in self._corrections:
            return
        if len(self._corrections) >= MAX_NOTICES:
            self._corrections.clear()
        self._corrections[key] = origin.now
        self._counters["stale_accusations_corrected"] += 1
        correction = Alive(member.node_id, member.address, member.incarnation)
        self._send_datagram(origin.address, correction, None)

    def _broadcast_rumor(self, rumor: MembershipRumor, exclude: tuple[str, ...] = ()) -> None:
        name = _member_names.get(rumor.node_id)
        if name is None:
            if len(_member_names) >= MAX_MEMBER_NAMES:
                _member_names.clear()
            name = _member_names[rumor.node_id] = ("member", rumor.node_id)
        self._queue.put(name, encode_message(rumor), exclude=exclude)

    def retired_replicas(self) -> set[str]:
        """The replica ids this node's states and life records name whose node is
        alive under another id (see :mod:`~crdtgossip.protocol.retirement`): the
        names pruning is to take out. It goes through every state (O(data)): for
        inspection and tests, not for every tick."""
        membership = self._membership
        alive = {
            member.node_id: replica
            for member in membership.members()
            if member.status is Status.ALIVE and (replica := membership.replica_of(member.node_id))
        }
        named: set[str] = set()
        for state in self._store.values():
            names = getattr(state, "replicas", None)
            if callable(names):
                named.update(names())
        for key in self._lives:
            named.update(self._lives.get(key) or ())
        return retired(named, alive)
