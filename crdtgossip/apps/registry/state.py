"""The registry's replicated state: five node keys, one per concern, all CRDTs.

* ``registry/instances``: ``ORMap(ORMap(LWWRegister))``, service -> instance id ->
  registration record;
* ``registry/maintenance``: ``ORMap(LWWRegister)``, (service, instance) ->
  ``{enabled, reason, time}``;
* ``registry/events``: ``ORMap(LWWRegister)``, (service, instance) -> latest event;
* ``registry/releases``: ``GSet`` of every release, (env, service, time, version,
  build, commit);
* ``registry/expectations``: ``LWWMap``, (env, service) -> ``min_passing``.

What concurrent writes do (every agent reaches the same answer, in any order):

* **register vs register** of one instance: the later write wins (LWW, on timestamps
  that never go back on one agent; ties broken by replica id).
* **deregister vs register** of one instance: the maps are observed-remove, so a
  deregistration removes what it saw and a concurrent (re-)registration survives: the
  instance stays registered, as its provisioning tool most recently asked. Removal
  leaves no tombstone: churn of instances costs nothing beyond the maps' causal
  context (a version vector).
* **drain vs undrain**: both are writes of one LWW register; the later wins.
* **health events** for one instance: the one *received* last (by the writing agent's
  clock) wins, not the one with the highest ``time``: a host with a clock set
  ahead cannot pin its state. Expiry still uses the event's own ``time + ttl``.
* **deregister** also removes the instance's maintenance flag and latest event (both
  observed removes), so an instance registered again under the same id starts clean;
  a concurrent drain or event survives, as above.
* **releases** are only ever added (a grow-only set), so the history is complete on
  every agent and "what was current at time T" is answerable for any past T. Two
  agents recording the same release at the same instant keep one copy.
* **expectations**: the later write wins per (env, service).

Each registration records the agent it came through (its node id); every agent follows
the membership (``Node.on_member_event``) and shows the instances of an agent it knows
dead or gone as critical, until that agent is seen alive again. So a dead agent's
instances turn critical everywhere within the failure-detection time. Once an agent
is ready (synced with a peer, :mod:`.readiness`), an agent that is no member it knows
counts as gone too: a fresh agent never hears of members that died before it joined.

Each write updates one key, except deregister, which updates up to three in turn; a
reader may see the instance gone before its flag and event are, which changes nothing
it shows (flags and events of unregistered instances are not shown).

What a write or a read costs: every write touches one instance's state (the update
functions of :mod:`.layout` never copy a service or the registry). Reads are served
from a :class:`~crdtgossip.apps.registry.materialized.MaterializedView` that follows
each change of the keys (``Node.on_key_changed``) and re-reads only what the change
touched, so a read costs the size of its answer and an idle agent does no work per
instance: the only timer is the expiry watch, which looks at the top of a heap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from crdtgossip.apps.registry.index import ChangeIndex
from crdtgossip.apps.registry.layout import (
    EVENTS_KEY,
    EXPECTATIONS_KEY,
    INSTANCES_KEY,
    MAINTENANCE_KEY,
    REGISTRY_KEYS,
    RELEASES_KEY,
    deregister_op,
    instances_type,
    keyed_type,
    put_op,
    register_op,
    remove_op,
)
from crdtgossip.apps.registry.liveness import AgentLiveness
from crdtgossip.apps.registry.materialized import MaterializedView
from crdtgossip.apps.registry.readiness import Readiness
from crdtgossip.apps.registry.view import Snapshot
from crdtgossip.apps.registry.writes import RegistryWrites
from crdtgossip.crdts import GSet, LWWMap
from crdtgossip.errors import CRDTGossipError
from crdtgossip.node import Node

__all__ = [
    "EVENTS_KEY",
    "EXPECTATIONS_KEY",
    "EXPIRY_CHECK_INTERVAL",
    "INSTANCES_KEY",
    "MAINTENANCE_KEY",
    "REGISTRY_KEYS",
    "RELEASES_KEY",
    "Registry",
    "deregister_op",
    "instances_type",
    "keyed_type",
    "put_op",
    "register_op",
    "remove_op",
]

_log = logging.getLogger(__name__)

#: Longest pause, in seconds, between two looks at the soonest event expiry. The agent
#: sleeps until the next expiry when it knows it; this bound also catches clock jumps
#: and clocks injected by tests. Each look costs O(1): the top of a heap.
EXPIRY_CHECK_INTERVAL = 1.0

#: Shortest pause between two looks for expired events, so an expiry that is due now
#: never turns the watcher into a busy loop.
MIN_EXPIRY_PAUSE = 0.01


def _key_type(key: str) -> Any:
    """The CRDT type (or prototype) of a registry key, for ``Node.get``."""
    if key == INSTANCES_KEY:
        return instances_type()
    if key in (MAINTENANCE_KEY, EVENTS_KEY):
        return keyed_type()
    if key == RELEASES_KEY:
        return GSet
    return LWWMap


class Registry(RegistryWrites):
    """The service registry on top of a running :class:`~crdtgossip.node.Node`.

    Args:
        node: a started node; the registry keeps its state under the keys of
            :data:`REGISTRY_KEYS`.
        clock: the current Unix time in seconds; injectable so tests can expire events
            without sleeping.
        expiry_check_interval: see :data:`EXPIRY_CHECK_INTERVAL`.
        alone: the agent was given no peer to join, so it is ready at once; otherwise
            it is ready once it has synced with a peer (:mod:`.readiness`).

    Call :meth:`start` before serving (it follows the keys into the in-memory view
    and drives the change index) and :meth:`stop` when done.
    """

    def __init__(
        self,
        node: Node,
        *,
        clock: Callable[[], float] = time.time,
        expiry_check_interval: float = EXPIRY_CHECK_INTERVAL,
        alone: bool = True,
    ) -> None:
        self._node = node
        self._readiness = Readiness(
            alone=alone,
            read=lambda key, level: node.get(key, _key_type(key), consistency=level),
            keys=REGISTRY_KEYS,
            on_ready=self._on_ready,
        )
        self._clock = clock
        self._expiry_check_interval = expiry_check_interval
        self._index = ChangeIndex()
        self._view = MaterializedView()
        self._liveness = AgentLiveness(node, self._view, clock, self._membership_changed)
        self._settling = asyncio.Lock()
        self._kick: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ---- lifecycle -------------------------------------------------------------------
    @property
    def node(self) -> Node:
        """The node holding the state."""
        return self._node

    @property
    def index(self) -> ChangeIndex:
        """This agent's change index (see :mod:`crdtgossip.apps.registry.index`)."""
        return self._index

    @property
    def readiness(self) -> Readiness:
        """Whether this agent has synced with a peer (``GET /v1/ready``)."""
        return self._readiness

    @property
    def view(self) -> MaterializedView:
        """The in-memory view the reads are served from (settle it first: :meth:`settle`)."""
        return self._view

    def now(self) -> float:
        """The registry's current Unix time."""
        return self._clock()

    async def start(self) -> None:
        """Load the registry keys into the view, then follow their changes."""
        if self._tasks or self._unsubscribe is not None:
            return
        self._unsubscribe = self._node.on_key_changed(self._on_key_changed)
        for key in REGISTRY_KEYS:
            self._view.note_everything(key)
        await self.settle()
        self._liveness.start(synced=self._readiness.ready)
        self._tasks.append(asyncio.create_task(self._follow_expiry(), name="registry:expiry"))
        self._tasks.append(asyncio.create_task(self._readiness.run(), name="registry:ready"))

    async def stop(self) -> None:
        """Stop following and release every blocked reader."""
        self._index.close()
        self._liveness.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = [*self._tasks, *([self._kick] if self._kick is not None else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._kick = None

    async def _on_ready(self) -> None:
        """Synced with a peer: the member table now holds every live agent."""
        await self.settle()
        self._liveness.synced()

    def _membership_changed(self) -> None:
        if not self._index.closed:
            self._index.bump()

    def _on_key_changed(self, key: str, change: Any) -> None:
        """The node's change notification: note what changed, settle soon."""
        if key not in REGISTRY_KEYS or self._index.closed:
            return
        try:
            if self._view.note(key, change):
                self._index.bump()
        except Exception:  # never break the node's delivery; re-read the key instead
            _log.exception("crdtgossip registry: cannot follow a change of %s", key)
            self._view.note_everything(key)
        self._schedule_settle()

    def _schedule_settle(self) -> None:
        if self._kick is None or self._kick.done():
            self._kick = asyncio.get_running_loop().create_task(self._settle_quietly())

    async def _settle_quietly(self) -> None:
        try:
            await self.settle()
        except CRDTGossipError:  # the node stopped under us; readers will see it
            return

    async def settle(self) -> None:
        """Apply every noted change to the view; the index moves if the view did.

        Costs what the noted changes touched. Readers call it before they read, so
        they see every change the node has made visible.
        """
        async with self._settling:
            if self._unsubscribe is None and not self._tasks:
                # Not started: nothing follows the keys, so read them whole.
                for key in REGISTRY_KEYS:
                    self._view.note_everything(key)
            changed = False
            while True:
                pending = self._view.pending()
                if not pending:
                    break
                for key in pending:
                    live = await self._node.get(key, _key_type(key))
                    changed = self._view.apply(key, live, self._clock()) or changed
            if changed and not self._index.closed:
                self._index.bump()

    async def _follow_expiry(self) -> None:
        """Move the index when events expire, which changes health with no write.

        Each wake-up looks at the soonest expiry only: idle, this costs O(1) a second.
        """
        while not self._index.closed:
            now = self._clock()
            if self._view.advance(now):
                self._index.bump()
            upcoming = self._view.next_expiry()
            pause = self._expiry_check_interval
            if upcoming is not None:
                pause = min(pause, max(upcoming - now, MIN_EXPIRY_PAUSE))
            await self._index.wait_past(self._index.value, pause)

    # ---- reading ---------------------------------------------------------------------
    async def current(self) -> Snapshot:
        """The view, settled and with expiries counted up to now, without a copy.

        Read it at once, without awaiting in between, and never mutate it.
        """
        await self.settle()
        if self._view.advance(self._clock()):
            self._index.bump()
        return self._view.live_snapshot()

    async def snapshot(self) -> Snapshot:
        """The whole registry state as plain values: an independent copy (costs its
        size; the REST API reads :meth:`current` instead)."""
        await self.settle()
        return self._view.snapshot()

    async def health(self) -> dict[str, Any]:
        """``GET /v1/health``, from counts kept per change (costs the number of
        (env, service) pairs)."""
        await self.current()
        return self._view.health()

    def members(self) -> list[dict[str, Any]]:
        """Every member this agent knows, sorted by node id."""
        return [
            {
                "node_id": member.node_id,
                "address": member.address,
                "status": str(member.status),
                "incarnation": member.incarnation,
            }
            for member in sorted(self._node.members(), key=lambda member: member.node_id)
        ]
