"""The anti-entropy driver: push-pull exchanges, and the repair of the keys that differ.

Every ``push_pull_interval`` (and on join) the engine starts an exchange with one
member through :meth:`AntiEntropy.push_pull`: the member tables first (the membership
half, :class:`~crdtgossip.protocol.messages.Members`), then the root of the hash tree
over keys (:class:`~crdtgossip.protocol.messages.Sync`, see
:mod:`~crdtgossip.protocol.antientropy`). When the tree exchange is down to single
keys, a key one side lacks goes as its whole state
(:class:`~crdtgossip.protocol.messages.State`), and a key both hold differently is
repaired by its difference with :class:`~crdtgossip.protocol.messages.Diff` messages
(:mod:`~crdtgossip.protocol.repair`). A joining member still gets every state whole.

A whole state is sent by :class:`~crdtgossip.protocol.transfer.Transfers`: at once when
small, else as independent parts or byte chunks spread over ticks, so no state is too
large to send and none is encoded whole on the call path; chunks that arrive are
reassembled within strict bounds by :class:`~crdtgossip.protocol.reassembly.Reassembly`.

A key on its way between two members is left alone by the exchanges meanwhile: the
sender neither opens nor answers a repair of a key it is sending to that member, and a
member receiving a key in parts (a second whole state or part of it merged within
:data:`ARRIVING_QUIET` of the one before) neither repairs nor sends that key. Otherwise
an exchange in the middle of a long transfer (a 10^7-element ORSet takes tens of
seconds) repairs the half-received state by its difference, which costs both sides as
much as the transfer itself, and sends back what is arriving. The next
exchange after the transfer repairs whatever is left.

Like the rest of the protocol it does no I/O: it reads and merges into the engine's
store and queues messages in the engine's outbox.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Container

from crdtgossip.crdts import CRDT
from crdtgossip.errors import DecodeError, MergeError
from crdtgossip.keylife import Record, unwrap
from crdtgossip.protocol import antientropy, repair
from crdtgossip.protocol.antientropy import HashTree
from crdtgossip.protocol.membership import Membership
from crdtgossip.protocol.messages import Diff, Members, State, StateChunk, Sync
from crdtgossip.protocol.outbox import Outbox
from crdtgossip.protocol.reassembly import Reassembly
from crdtgossip.protocol.transfer import COUNTERS as TRANSFER_COUNTERS
from crdtgossip.protocol.transfer import PUMP_INTERVAL, Transfers

__all__ = ["ARRIVING_QUIET", "COUNTERS", "AntiEntropy"]

ARRIVING_QUIET = 2.0
"""Seconds between two whole states or parts of a key merged here within which the key
counts as arriving in parts, and after the last of which it is left out of exchanges
(parts of a transfer arrive every few milliseconds). One state merged alone (an
exchange's answer) leaves the key free."""

_MAX_ARRIVING = 4096  # keys remembered as arriving; older ones are forgotten first

COUNTERS = ("repairs_opened", "repair_steps", "chunks_in", "chunked_states_in",
            *TRANSFER_COUNTERS)  # fmt: skip
"""The driver's own counters, added to the engine's stats: repairs of a differing key
opened here, Diff messages handled, state chunks received and chunked states
reassembled, and the counters of :mod:`~crdtgossip.protocol.transfer`."""


class AntiEntropy:
    """Push-pull and per-key repair over an engine's store.

    Args:
        store: the engine's key -> state table (merged into in place).
        tree: the hash tree over the store's digests.
        membership: the member table (for the membership half of a push-pull).
        outbox: where messages go.
        counters: the engine's counters (``decode_errors``, ``merge_errors``,
            ``push_pulls`` ...); :data:`COUNTERS` are added to it.
        drops: the engine's drop counters by reason.
        held: keys whose state must not leave the node (a local write to them is being
            persisted): no state, patch or repair of theirs is sent.
        changed: called with a key, what was merged into its state and its encoding
            (it touches the tree and raises the event).
        merge_state: decodes and merges a whole state received (a reassembled
            :class:`~crdtgossip.protocol.messages.State`).
        clock: the engine's current time in seconds.
        max_key_bytes: ``GossipConfig.max_key_bytes``.
        measured: called with a key and a measured size of its encoding.
        admit: called with a key and a repair patch before it is merged; False drops
            it (a stamp beyond the clock's offset, counted by the engine).
    """

    def __init__(
        self,
        *,
        store: dict[str, CRDT],
        tree: HashTree,
        membership: Membership,
        outbox: Outbox,
        counters: dict[str, int],
        drops: dict[str, int],
        held: Container[str],
        changed: Callable[[str, CRDT, bytes], None],
        merge_state: Callable[[State], None],
        clock: Callable[[], float],
        max_key_bytes: int,
        admit: Callable[[str, bytes], bool] = lambda key, patch: True,
        measured: Callable[[str, int], None] | None = None,
        written: Callable[[str], int] = lambda key: 0,
        life: Callable[[str, bytes], bytes] = lambda key, payload: payload,
        settle: Callable[[str, Record], bool] = lambda key, record: True,
    ) -> None:
        self._store = store
        self._life = life
        self._settle = settle
        self._tree = tree
        self._membership = membership
        self._outbox = outbox
        self._counters = counters
        self._drops = drops
        self._held = held
        self._changed = changed
        self._merge_state = merge_state
        self._clock = clock
        self._admit = admit
        for name in COUNTERS:
            counters.setdefault(name, 0)
        self._transfers = Transfers(
            store=store,
            held=held,
            outbox=outbox,
            counters=counters,
            max_key_bytes=max_key_bytes,
            clock=clock,
            measured=measured,
            written=written,
            life=life,
        )
        self._reassembly = Reassembly(max_key_bytes, drops)
        # key -> when a whole state or part of it was last merged here, and how many
        # were merged each within ARRIVING_QUIET of the one before.
        self._arriving: dict[str, tuple[float, int]] = {}
        drops.setdefault("key_too_large", 0)  # an incoming state past max_key_bytes

    def pump(self) -> None:
        """Run the pending transfers a step (a bounded number of bytes) and drop the
        reassemblies past their deadline; call it at every tick."""
        self._transfers.pump()
        self._reassembly.expire(self._clock())

    def next_deadline(self) -> float | None:
        """When :meth:`pump` should run next, or None when nothing waits."""
        if self._transfers.pending:
            return self._clock() + PUMP_INTERVAL
        return self._reassembly.next_deadline()

    def on_chunk(self, message: StateChunk, sender: str) -> None:
        """Take one chunk of a large state; merge the state once it is complete.

        Args:
            message: the chunk.
            sender: the sender's node id.
        """
        self._counters["chunks_in"] += 1
        complete = self._reassembly.on_chunk(sender, message, self._clock())
        if complete is not None:
            self._counters["chunked_states_in"] += 1
            self._merge_state(complete)

    def push_pull(self, address: str, *, join: bool) -> None:
        """Start an exchange: our member table, and our hash tree's root (or, on join,
        a request for everything).

        Args:
            address: the member to exchange with.
            join: this node is joining: ask for (and send) every state.
        """
        self._counters["push_pulls"] += 1
        records = self._membership.records()
        self._outbox.send(address, Members(records, reply=True, join=join), reliable=True)
        if not join:
            self._outbox.send(address, antientropy.start(self._tree), reliable=True)

    def on_members(self, message: Members, sender: str, address: str, now: float) -> None:
        """Merge a member table; answer it, and on a join exchange every state.

        Args:
            message: the table.
            sender: the sender's node id.
            address: where it listens.
            now: the driver's time in seconds.
        """
        self._membership.merge_records(message.records, sender, now)
        if message.reply:
            reply = Members(self._membership.records(), reply=False, join=False)
            self._outbox.send(address, reply, reliable=True)
        if message.join:
            # A joiner gets the full state, and is asked for all of its own.
            self.send_states(address, sorted(self._store))
            everything = Sync((), (), ((0, 0),))
            self._outbox.send(address, everything, reliable=True)

    def on_sync(self, message: Sync, address: str) -> None:
        """Compare a step of the tree exchange; answer it, send states, open repairs.

        Args:
            message: the step.
            address: where the sender listens.
        """
        plan = antientropy.respond(self._tree, message)
        reply = plan.reply()
        if reply is not None:
            self._outbox.send(address, reply, reliable=True)
        self.send_states(address, [key for key in plan.send_keys if not self._busy(address, key)])
        for key in plan.repair_keys:
            state = self._store.get(key)
            if state is None and not self._busy(address, key):
                # A tombstone here (its record alone): whole states both ways.
                self._transfers.send(address, key)
                self._outbox.send(address, Sync((), (key,), ()), reliable=True)
            elif state is not None and key not in self._held and not self._busy(address, key):
                self._counters["repairs_opened"] += 1
                self._outbox.send(
                    address, self._with_life(repair.opening(key, state)), reliable=True
                )

    def on_diff(self, message: Diff, address: str) -> None:
        """Handle one step of the repair of a key: merge what came, answer with ours.

        A malformed context or patch is counted (``decode_errors``, ``bad_payload``)
        and dropped; one of another type too (``merge_errors``, ``type_mismatch``).

        Args:
            message: the step.
            address: where the sender listens.
        """
        self._counters["repair_steps"] += 1
        if message.key in self._held or self._busy(address, message.key):
            return  # its state may not leave the node now; the next exchange repairs it
        try:
            record, context = unwrap(message.context)
        except DecodeError:
            self._counters["decode_errors"] += 1
            self._drops["bad_payload"] += 1
            return
        if record is not None:
            message = dataclasses.replace(message, context=context)
            if not self._settle(message.key, record):
                # One side's writes are all deleted: the whole state (or tombstone)
                # goes instead, with its record.
                self._transfers.send(address, message.key)
                return
        state = self._store.get(message.key)
        if state is None:
            # Nothing here to compare: the whole states instead (a tombstone here
            # sends its record).
            self._transfers.send(address, message.key)
            self._outbox.send(address, Sync((), (message.key,), ()), reliable=True)
            return
        if not self._admit(message.key, message.patch):
            return
        try:
            outcome = repair.respond(message.key, state, message)
        except DecodeError:
            self._counters["decode_errors"] += 1
            self._drops["bad_payload"] += 1
            self._tree.touch(message.key)
            return
        except (MergeError, TypeError, ValueError):
            self._counters["merge_errors"] += 1
            self._drops["type_mismatch"] += 1
            self._tree.touch(message.key)
            return
        for change, payload in outcome.changes:
            self._changed(message.key, change, payload)
        if outcome.reply is not None:
            self._outbox.send(address, self._with_life(outcome.reply), reliable=True)

    def _with_life(self, message: Diff) -> Diff:
        """``message`` with its key's life record in front of its context, so the
        records of a key repaired step by step converge as its states do."""
        context = self._life(message.key, message.context)
        if context == message.context:
            return message
        return dataclasses.replace(message, context=context)

    @property
    def transfers(self) -> Transfers:
        """The whole states being sent."""
        return self._transfers

    def arrived(self, key: str) -> None:
        """Note that a whole state or part of ``key`` was just merged here."""
        arriving, now = self._arriving, self._clock()
        last = arriving.get(key)
        if last is None and len(arriving) >= _MAX_ARRIVING:
            cutoff = now - ARRIVING_QUIET
            for stale in [k for k, (when, _) in arriving.items() if when < cutoff]:
                del arriving[stale]
            if len(arriving) >= _MAX_ARRIVING:
                del arriving[next(iter(arriving))]
        in_parts = last is not None and now - last[0] < ARRIVING_QUIET
        arriving[key] = (now, last[1] + 1 if in_parts and last is not None else 1)

    def _busy(self, address: str, key: str) -> bool:
        """Whether ``key`` is on its way between this node and ``address``."""
        if self._transfers.sending(address, key):
            return True
        last = self._arriving.get(key)
        return last is not None and last[1] > 1 and self._clock() - last[0] < ARRIVING_QUIET

    def send_states(self, address: str, keys: list[str]) -> None:
        """Send the whole state of each of ``keys`` held here (see
        :class:`~crdtgossip.protocol.transfer.Transfers`: small ones at once, large ones
        in parts over the next ticks).

        Args:
            address: the destination.
            keys: the keys, in order.
        """
        for key in keys:
            self._transfers.send(address, key)
