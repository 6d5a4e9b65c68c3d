"""One node id, one live process: a joiner with the id of a live member is refused.

A process is told apart from another with the same node id by the address it listens
on (two live processes cannot listen on one address). When a member receives a join
(``Members`` with ``join``) from ``node_id`` at an address other than the one its table
holds for a live (alive or suspect) ``node_id``, it asks that holder, with
:class:`~crdtgossip.protocol.messages.IdClaim`, whether it is still there. Only the
live holder answers: it sends the joiner
:class:`~crdtgossip.protocol.messages.IdInUse` and logs a warning. A join sent to the
holder itself (it was the seed) is answered at once. A holder that is gone does not
answer, so a node restarted on a new address with its old id (whose previous life the
cluster has not declared dead yet) joins as before.

The refused joiner logs an error, stops taking part (it ignores every frame and timer,
as a stopped engine), and :attr:`IdentityEngine.refusal` says why; ``Node`` raises it
as a :class:`~crdtgossip.errors.ConfigError` from its next operation.
"""

from __future__ import annotations

import logging

from crdtgossip.protocol._engine_base import LIVE_STATUSES, MAX_NOTICES, EngineCore, From
from crdtgossip.protocol.messages import IdClaim, IdInUse, Members, Message

__all__ = ["IdentityEngine"]

_log = logging.getLogger("crdtgossip.identity")


class IdentityEngine(EngineCore):
    """The identity checks of :class:`~crdtgossip.protocol.Engine` (see the module doc)."""

    #: Why this engine was refused by the cluster, or None.
    refusal: str | None
    # claimant address -> when we last passed its claim on (one per probe interval).
    _claims: dict[str, float]

    def _check_join(self, message: Members, origin: From) -> None:
        """Ask the live holder of the joiner's id, if it listens elsewhere."""
        if not message.join:
            return
        holder = self._membership.get(origin.node_id)
        if holder is None or holder.status not in LIVE_STATUSES or holder.address == origin.address:
            return
        last = self._claims.get(origin.address)
        if last is not None and origin.now - last < self.config.probe_interval:
            return
        if len(self._claims) >= MAX_NOTICES:
            self._claims.clear()
        self._claims[origin.address] = origin.now
        self._send_datagram(holder.address, IdClaim(origin.node_id, origin.address), None)

    def _from_own_id(self, messages: tuple[Message, ...], address: str) -> None:
        """Handle a frame sent under this node's own id (by another process, or back).

        The only messages taken from such a frame are a join to this node (answered
        with IdInUse) and IdInUse itself (this node is the refused joiner).
        """
        if address == self.address:
            return
        for message in messages:
            if isinstance(message, IdInUse) and message.node_id == self.node_id:
                self._refused(message.holder)
                return
            if isinstance(message, Members) and message.join and self.refusal is None:
                self._refuse_claimant(address)

    def _on_id_claim(self, message: IdClaim) -> None:
        if message.node_id != self.node_id or message.address == self.address:
            return
        if self.refusal is None:
            self._refuse_claimant(message.address)

    def _refuse_claimant(self, address: str) -> None:
        _log.warning(
            "crdtgossip: a process at %s tried to join with node id %r, which this live "
            "member at %s holds: refused",
            address,
            self.node_id,
            self.address,
        )
        self._counters["id_claims_refused"] += 1
        self._send_datagram(address, IdInUse(self.node_id, self.address), None)

    def _refused(self, holder: str) -> None:
        if self.refusal is not None:
            return
        self.refusal = (
            f"node id {self.node_id!r} is already used by a live member at {holder}: "
            "start this node with another node id (or stop that one first)"
        )
        _log.error("crdtgossip: %s", self.refusal)
        self._prober.stop()
