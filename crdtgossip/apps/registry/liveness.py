"""Which agents are alive, from the node's membership: the health of their instances.

Each registration keeps the node id of the agent it came through. An
:class:`AgentLiveness` follows the node's membership events (``Node.on_member_event``)
into the :class:`~crdtgossip.apps.registry.materialized.MaterializedView`: an agent
that is dead or has left makes its instances critical, one that comes back (joined or
alive again) makes them count as their events say. It also logs every membership
change, one line each, so an operator sees joins and failures in the agent's log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from crdtgossip.apps.registry.materialized import MaterializedView
from crdtgossip.node import Node
from crdtgossip.protocol import (
    Event,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberSuspect,
    Status,
)

__all__ = ["GONE", "AgentLiveness"]

_log = logging.getLogger("crdtgossip.apps.registry")

#: Member states whose agent's instances are critical: it failed or left.
GONE = frozenset({Status.DEAD, Status.LEFT})

_WHAT = {
    MemberJoined: "joined",
    MemberAlive: "is alive again",
    MemberSuspect: "is suspect (missed its probes)",
    MemberDead: "is dead (failed its probes); its instances are critical",
    MemberLeft: "left the cluster; its instances are critical",
}


class AgentLiveness:
    """Follows the membership of ``node`` into ``view`` (see the module docstring).

    Args:
        node: the agent's node.
        view: the view whose instance health follows the agents.
        clock: the registry's Unix time.
        changed: called when the health of some instance changed (or the membership
            did), so blocked readers wake.
    """

    def __init__(
        self,
        node: Node,
        view: MaterializedView,
        clock: Callable[[], float],
        changed: Callable[[], None],
    ) -> None:
        self._node = node
        self._view = view
        self._clock = clock
        self._changed = changed
        self._following = False
        self._subscribed = False

    def start(self, *, synced: bool) -> None:
        """Read the members known now, then follow their events.

        Args:
            synced: the agent is ready already (see :meth:`synced`).
        """
        self._view.set_agent(self._node.node_id, alive=True, now=self._clock())
        for member in self._node.members():
            self._set(member.node_id, alive=member.status not in GONE)
        if synced:
            self._view.count_strangers_gone(self._clock())
        self._following = True
        if not self._subscribed:  # Node offers no way to remove a member listener
            self._subscribed = True
            self._node.on_member_event(self._on_event)

    def stop(self) -> None:
        """Stop acting on events (the node keeps its listener; it then does nothing)."""
        self._following = False

    def synced(self) -> None:
        """The agent has synced with a peer: its member table holds every live agent,
        so an agent it does not know counts as gone."""
        if self._view.count_strangers_gone(self._clock()):
            self._changed()

    def _set(self, node_id: str, *, alive: bool) -> bool:
        if node_id == self._node.node_id:  # this agent answers, so it is alive
            return False
        return self._view.set_agent(node_id, alive=alive, now=self._clock())

    def _on_event(self, event: Event) -> None:
        if not self._following:
            return
        what = _WHAT.get(type(event))
        if what is None:
            return
        member = event.member  # type: ignore[union-attr]
        level = logging.INFO if isinstance(event, MemberJoined | MemberAlive) else logging.WARNING
        _log.log(level, "member %s (%s) %s", member.node_id, member.address, what)
        if isinstance(event, MemberJoined | MemberAlive | MemberDead | MemberLeft):
            self._set(member.node_id, alive=isinstance(event, MemberJoined | MemberAlive))
        self._changed()
