"""The SWIM failure detector: direct probes, indirect probes and Lifeguard nacks.

Once per (health-scaled) probe interval this node pings the next member of the
shuffled round-robin. Without an ack within the probe timeout it asks
``indirect_checks`` other members to ping the target for it (``PingReq``); they forward
the target's ack, or a nack when they got none, which tells this node that *they* can
hear it. If no ack arrived by the end of the interval the target becomes suspect.

Local health (:mod:`crdtgossip.protocol.awareness`): an ack in time lowers the score; a
failed probe raises it by the number of nacks that did not come back (each one hints
that this node, not the target, is the problem), or by one when nobody was asked.

Lifeguard's buddy system: a ping to a member this node suspects carries the suspicion
with it (a :class:`Suspect` in the same datagram), so the suspected member learns of it
from the one node sure to reach it soon and refutes at once; its refutation rides back
on the ack. Without it the member hears of the suspicion only when gossip happens to
pick it, which may come after the suspicion timeout (Dadgar et al., 2017).

This node also serves other members' indirect probes: it pings the target with a
sequence number of its own and forwards the outcome.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from crdtgossip.config import GossipConfig
from crdtgossip.protocol.awareness import Awareness
from crdtgossip.protocol.membership import Membership
from crdtgossip.protocol.messages import Ack, Message, Nack, Ping, PingReq, Suspect
from crdtgossip.protocol.states import Status

__all__ = ["MAX_RELAYS", "Probe", "Prober", "Send"]

MAX_RELAYS: Final = 1024
"""Most indirect probes served at once for other members. A well-behaved member asks
one node at most ``indirect_checks`` times per probe interval, so this is far above
normal load and only bounds a misbehaving peer's hold on memory."""

Send = Callable[[str, Message, "str | None"], None]
"""``send(address, message, piggyback_to)``: queue a datagram; ``piggyback_to`` is the
receiver's node id when gossip may ride along (and must not be sent back to it)."""


@dataclass(slots=True)
class Probe:
    """The probe in progress.

    Attributes:
        target: the probed member's id.
        address: where it was pinged.
        seq: the ping's sequence number.
        timeout_at: when to fall back to indirect probes.
        end_at: when the probe fails if no ack came.
        indirect: indirect probes were sent.
        expected_nacks: members asked to probe indirectly.
        nacks: nacks received from them.
    """

    target: str
    address: str
    seq: int
    timeout_at: float
    end_at: float
    indirect: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    requester_address: str
    requester_seq: int
    deadline: float


class Prober:
    """Runs this node's probes and serves other members' indirect probes.

    Args:
        membership: the member table (targets, helpers, suspicion).
        awareness: the local health score.
        config: the protocol configuration.
        rng: the engine's random generator.
        send: how to queue a datagram.
    """

    def __init__(
        self,
        membership: Membership,
        awareness: Awareness,
        config: GossipConfig,
        rng: random.Random,
        send: Send,
    ) -> None:
        self._membership = membership
        self._awareness = awareness
        self._config = config
        self._rng = rng
        self._send = send
        self._seq = 0
        self._next_probe_at: float | None = None
        self._relays: dict[int, _Relay] = {}
        #: The probe in progress, if any.
        self.current: Probe | None = None
        #: Indirect probe requests refused because :data:`MAX_RELAYS` were in flight.
        self.relay_drops = 0
        #: Acks and nacks that matched no probe (late, duplicated or forged).
        self.stale_replies = 0
        #: Suspicions sent on a probe to the suspected member (the buddy system).
        self.buddy_suspicions = 0

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF_FFFF_FFFF_FFFF
        return self._seq

    def start(self, now: float) -> None:
        """Schedule the first probe at a random point of the first interval, so nodes
        started together do not probe in lockstep (memberlist staggers the same way).

        Args:
            now: the driver's time.
        """
        self._next_probe_at = now + self._rng.uniform(0, self._config.probe_interval)

    def stop(self) -> None:
        """Start no more probes (the node is leaving); relays are still served."""
        self._next_probe_at = None
        self.current = None

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` has something to do."""
        # Called after every input the driver gives the engine: no list unless relays.
        earliest = self._next_probe_at
        current = self.current
        if current is not None:
            due = current.end_at if current.indirect else current.timeout_at
            if earliest is None or due < earliest:
                earliest = due
        if self._relays:
            relays = min(relay.deadline for relay in self._relays.values())
            if earliest is None or relays < earliest:
                earliest = relays
        return earliest

    def tick(self, now: float) -> None:
        """Advance the probe and the relays to ``now``.

        Args:
            now: the driver's time.
        """
        probe = self.current
        if probe is not None and not probe.indirect and now >= probe.timeout_at:
            self._go_indirect(probe)
        if probe is not None and now >= probe.end_at:
            self._fail(probe, now)
        if self._next_probe_at is not None and now >= self._next_probe_at:
            self._begin(now)
        for seq in [seq for seq, relay in self._relays.items() if relay.deadline <= now]:
            relay = self._relays.pop(seq)
            self._send(relay.requester_address, Nack(relay.requester_seq), None)

    def _begin(self, now: float) -> None:
        interval = self._awareness.scale(self._config.probe_interval)
        self._next_probe_at = now + interval
        target = self._membership.next_probe_target()
        if target is None:
            self.current = None
            return
        seq = self._next_seq()
        timeout = self._awareness.scale(self._config.probe_timeout)
        self.current = Probe(target.node_id, target.address, seq, now + timeout, now + interval)
        self._send(target.address, Ping(seq, target.node_id), target.node_id)
        if target.status is Status.SUSPECT:
            # The buddy system: the suspicion rides on the probe (same datagram).
            accusation = Suspect(target.node_id, target.incarnation, self._membership.local_id)
            self._send(target.address, accusation, None)
            self.buddy_suspicions += 1

    def _go_indirect(self, probe: Probe) -> None:
        probe.indirect = True
        helpers = self._membership.random_members(
            self._config.indirect_checks, (Status.ALIVE,), exclude=(probe.target,)
        )
        probe.expected_nacks = len(helpers)
        request = PingReq(probe.seq, probe.target, probe.address)
        for helper in helpers:
            self._send(helper.address, request, helper.node_id)

    def _fail(self, probe: Probe, now: float) -> None:
        self.current = None
        if probe.expected_nacks > 0:
            self._awareness.apply(max(0, probe.expected_nacks - probe.nacks))
        else:
            self._awareness.apply(1)
        self._membership.suspect(probe.target, now)

    def on_ping(self, ping: Ping, sender_address: str, sender_id: str) -> bool:
        """Answer a ping meant for this node.

        Args:
            ping: the ping.
            sender_address: where it came from; the ack goes there.
            sender_id: the pinging node (gossip rides along on the ack).

        Returns:
            ``False`` when the ping named another node (it was not answered).
        """
        if ping.target != self._membership.local_id:
            return False
        self._send(sender_address, Ack(ping.seq), sender_id)
        return True

    def on_ping_req(self, request: PingReq, sender_address: str, now: float) -> bool:
        """Ping a target on behalf of another member.

        Args:
            request: the request.
            sender_address: the requester's address, where the ack or nack goes.
            now: the driver's time.

        Returns:
            ``False`` when it was refused (too many relays in flight).
        """
        if len(self._relays) >= MAX_RELAYS:
            self.relay_drops += 1
            return False
        seq = self._next_seq()
        deadline = now + self._awareness.scale(self._config.probe_timeout)
        self._relays[seq] = _Relay(sender_address, request.seq, deadline)
        self._send(request.target_address, Ping(seq, request.target), request.target)
        return True

    def on_ack(self, ack: Ack) -> None:
        """An ack arrived: it ends this node's probe, or is forwarded to a requester.

        Args:
            ack: the ack.
        """
        probe = self.current
        if probe is not None and ack.seq == probe.seq:
            self.current = None
            self._awareness.apply(-1)
            return
        relay = self._relays.pop(ack.seq, None)
        if relay is not None:
            self._send(relay.requester_address, Ack(relay.requester_seq), None)
            return
        self.stale_replies += 1

    def on_nack(self, nack: Nack) -> None:
        """A helper could not reach the target of this node's probe.

        Args:
            nack: the nack.
        """
        probe = self.current
        if probe is not None and nack.seq == probe.seq and probe.indirect:
            probe.nacks += 1
        else:
            self.stale_replies += 1
