"""The engine's quorum requests: asking members, counting answers, read repair.

A write asks ``needed - 1`` members plus a spare, then hedges to every live member; a
read merges each reply and repairs the repliers that were behind. With
``hold_write_acks`` a member acknowledges a write only once its driver persisted it.
"""

from __future__ import annotations

from crdtgossip.codec import encode
from crdtgossip.crdts import CRDT
from crdtgossip.keylife import is_wrapped
from crdtgossip.protocol._engine_base import LIVE_STATUSES, MAX_NOTICES, EngineCore, From
from crdtgossip.protocol.antientropy import state_digest
from crdtgossip.protocol.messages import (
    Message,
    ReadReply,
    ReadRequest,
    State,
    WriteAck,
    WriteRequest,
    encode_message,
)
from crdtgossip.protocol.quorum import FIRST_ROUND_SPARE, Pending, QuorumResult
from crdtgossip.protocol.states import Status

__all__ = ["QuorumEngine"]


class QuorumEngine(EngineCore):
    """The quorum half of :class:`~crdtgossip.protocol.Engine` (see the module doc)."""

    def quorum_members(self) -> int:
        """The N of the quorum levels: members alive or suspect, this node included.

        A suspect member still counts: it may refute, and dropping it from N at the
        first missed probe would let a slow network shrink every majority.
        """
        return self._membership.live_count()

    def start_write(
        self,
        key: str,
        delta: CRDT,
        needed: int,
        timeout: float,
        now: float,
        *,
        payload: bytes | None = None,
    ) -> int:
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
            payload: ``encode(delta)``, when the driver has it already.

        Returns:
            The request id.

        Raises:
            OperationError: an invalid key.
            EncodeError: the delta cannot be encoded.
        """
        self._check_key(key)
        now = self._begin(now)
        if payload is None:
            payload = encode(delta)
        if not is_wrapped(payload):  # (a driver that called update, not stamp_local)
            payload = self.state_payload(key, payload)
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
                membership.live_count(), LIVE_STATUSES, exclude=pending.answered
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

    def _on_write_request(self, message: WriteRequest, origin: From) -> None:
        if self._remember(message.key, message.payload):
            merged = self._merge_payload(message.key, message.payload)
            if merged is None and not self._settled:
                return  # not merged: no ack, the coordinator counts someone else
            if merged is not None:  # (else a delete here had seen it: its record kept)
                self._counters["deltas_merged"] += 1
        self._counters["write_requests_served"] += 1
        if self._hold_write_acks:
            self._quorum.hold(origin.address, message.request_id)
        else:
            self._send_datagram(origin.address, WriteAck(message.request_id), None)

    def _on_write_ack(self, message: WriteAck, origin: From) -> None:
        pending = self._quorum.get(message.request_id, origin.node_id)
        if pending is None or not pending.write:
            return
        pending.answered.add(origin.node_id)
        if pending.done:
            self._quorum.finish(pending, ok=True)

    def _on_read_request(self, message: ReadRequest, origin: From) -> None:
        if message.key in self._held_keys:
            # A local write to the key is being persisted: answer once it is.
            deferred = self._deferred_reads.setdefault(message.key, [])
            if len(deferred) < MAX_NOTICES:
                deferred.append((origin.address, message.request_id))
            return
        self._answer_read(origin.address, message.request_id, message.key)

    def _answer_read(self, address: str, request_id: int, key: str) -> None:
        self._counters["read_requests_served"] += 1
        state = self._store.get(key)
        payload = b"" if state is None else encode(state)
        if state is not None or key in self._lives:
            payload = self.state_payload(key, payload)  # a tombstone: its record alone
        written = self._last_writes.stamps.get(key, 0)
        self._send_datagram(address, ReadReply(request_id, key, payload, written), None)

    def _on_read_reply(self, message: ReadReply, origin: From) -> None:
        pending = self._quorum.get(message.request_id, origin.node_id)
        if pending is None or pending.write or message.key != pending.key:
            return
        if origin.node_id in pending.answered:
            return
        digest: bytes | None = None
        written = self._state_stamp(message.key, message.written) if message.payload else 0
        if message.payload and written is not None:
            merged = self._merge_payload(message.key, message.payload, written=written)
            if merged is None and not self._settled:
                return  # a reply that cannot be merged does not count
            if merged is not None:
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
        if state is None or pending.key in self._held_keys:
            return  # (a held key's repair waits for anti-entropy)
        payload = self.state_payload(pending.key, encode(state))
        digest = state_digest(payload)
        for node_id, theirs in pending.digests.items():
            if theirs != digest:
                self._counters["read_repairs"] += 1
                self._outbox.send(
                    pending.asked[node_id],
                    State(pending.key, payload, self._last_writes.stamps.get(pending.key, 0)),
                    reliable=True,
                )
