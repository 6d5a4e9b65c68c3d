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

Like the rest of the protocol it does no I/O: it reads and merges into the engine's
store and queues messages in the engine's outbox.
"""

from __future__ import annotations

from collections.abc import Callable, Container

from crdtgossip.codec import encode
from crdtgossip.crdts import CRDT
from crdtgossip.errors import DecodeError, MergeError
from crdtgossip.protocol import antientropy, repair
from crdtgossip.protocol.antientropy import HashTree
from crdtgossip.protocol.membership import Membership
from crdtgossip.protocol.messages import Diff, Members, State, Sync
from crdtgossip.protocol.outbox import Outbox

__all__ = ["COUNTERS", "AntiEntropy"]

COUNTERS = ("repairs_opened", "repair_steps")
"""The driver's own counters, added to the engine's stats: repairs of a differing key
opened here, and Diff messages handled."""


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
    ) -> None:
        self._store = store
        self._tree = tree
        self._membership = membership
        self._outbox = outbox
        self._counters = counters
        self._drops = drops
        self._held = held
        self._changed = changed
        for name in COUNTERS:
            counters.setdefault(name, 0)

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
        self.send_states(address, plan.send_keys)
        for key in plan.repair_keys:
            state = self._store.get(key)
            if state is not None and key not in self._held:
                self._counters["repairs_opened"] += 1
                self._outbox.send(address, repair.opening(key, state), reliable=True)

    def on_diff(self, message: Diff, address: str) -> None:
        """Handle one step of the repair of a key: merge what came, answer with ours.

        A malformed context or patch is counted (``decode_errors``, ``bad_payload``)
        and dropped; one of another type too (``merge_errors``, ``type_mismatch``).

        Args:
            message: the step.
            address: where the sender listens.
        """
        self._counters["repair_steps"] += 1
        if message.key in self._held:
            return  # its state may not leave the node now; the next exchange repairs it
        state = self._store.get(message.key)
        if state is None:
            # Nothing here to compare: ask for the whole state instead.
            self._outbox.send(address, Sync((), (message.key,), ()), reliable=True)
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
            self._outbox.send(address, outcome.reply, reliable=True)

    def send_states(self, address: str, keys: list[str]) -> None:
        """Send the whole state of each of ``keys`` held here.

        Args:
            address: the destination.
            keys: the keys, in order.
        """
        for key in keys:
            state = self._store.get(key)
            if state is not None and key not in self._held:
                self._outbox.send(address, State(key, encode(state)), reliable=True)
