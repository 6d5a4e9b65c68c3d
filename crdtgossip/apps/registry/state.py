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

Each write updates one key, except deregister, which updates up to three in turn; a
reader may see the instance gone before its flag and event are, which changes nothing
it shows (flags and events of unregistered instances are not shown).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from crdtgossip.apps.registry.health import expired, instance_health, next_expiry
from crdtgossip.apps.registry.index import ChangeIndex
from crdtgossip.apps.registry.model import (
    HealthEvent,
    InstanceRecord,
    MaintenanceRequest,
    RegistryError,
    ReleaseRequest,
    parse_event,
)
from crdtgossip.apps.registry.view import (
    ReleaseElement,
    Snapshot,
    instance_view,
    release_record,
)
from crdtgossip.consistency import Consistency, Local, Majority
from crdtgossip.crdts import GSet, LWWMap, LWWRegister, ORMap
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

INSTANCES_KEY = "registry/instances"
MAINTENANCE_KEY = "registry/maintenance"
EVENTS_KEY = "registry/events"
RELEASES_KEY = "registry/releases"
EXPECTATIONS_KEY = "registry/expectations"

#: Every node key the registry uses.
REGISTRY_KEYS = (INSTANCES_KEY, MAINTENANCE_KEY, EVENTS_KEY, RELEASES_KEY, EXPECTATIONS_KEY)

#: Longest pause, in seconds, between two looks for expired events. The agent sleeps
#: until the next expiry when it knows it; this bound also catches clock jumps and
#: clocks injected by tests.
EXPIRY_CHECK_INTERVAL = 1.0

#: Shortest pause between two looks for expired events, so an expiry that is due now
#: never turns the watcher into a busy loop.
MIN_EXPIRY_PAUSE = 0.01

Update = Callable[[Any], Any]


def instances_type() -> ORMap[str]:
    """An empty ``registry/instances`` state: service -> instance id -> record."""
    return ORMap(ORMap(LWWRegister))


def keyed_type() -> ORMap[tuple[str, str]]:
    """An empty state of the keys ``(service, instance) -> LWW record``."""
    return ORMap(LWWRegister)


def register_op(replica: str, service: str, instance: str, record: dict[str, Any]) -> Update:
    """The update that registers (or re-registers) ``instance`` of ``service``."""

    def apply(state: ORMap[str]) -> ORMap[str]:
        return state.update(
            service,
            replica,
            lambda instances: instances.update(
                instance, replica, lambda register: register.set(record, replica)
            ),
        )

    return apply


def deregister_op(replica: str, service: str, instance: str) -> Update:
    """The update that deregisters ``instance`` of ``service``.

    Removing the last instance removes the service entry itself, so the map does not
    keep an empty entry per service ever registered.
    """

    def apply(state: ORMap[str]) -> ORMap[str]:
        instances = state.get(service)
        if instances is None or set(instances.keys()) <= {instance}:
            return state.remove(service)
        return state.update(service, replica, lambda found: found.remove(instance))

    return apply


def put_op(replica: str, key: tuple[str, str], value: dict[str, Any]) -> Update:
    """The update that writes ``value`` at ``key`` of a :func:`keyed_type` state."""

    def apply(state: ORMap[tuple[str, str]]) -> ORMap[tuple[str, str]]:
        return state.update(key, replica, lambda register: register.set(value, replica))

    return apply


def remove_op(key: tuple[str, str]) -> Update:
    """The update that removes ``key`` of a :func:`keyed_type` state, as observed."""

    def apply(state: ORMap[tuple[str, str]]) -> ORMap[tuple[str, str]]:
        return state.remove(key)

    return apply


class Registry:
    """The service registry on top of a running :class:`~crdtgossip.node.Node`.

    Args:
        node: a started node; the registry keeps its state under the keys of
            :data:`REGISTRY_KEYS`.
        clock: the current Unix time in seconds; injectable so tests can expire events
            without sleeping.
        expiry_check_interval: see :data:`EXPIRY_CHECK_INTERVAL`.

    Call :meth:`start` before serving (it follows the keys to drive the change index)
    and :meth:`stop` when done.
    """

    def __init__(
        self,
        node: Node,
        *,
        clock: Callable[[], float] = time.time,
        expiry_check_interval: float = EXPIRY_CHECK_INTERVAL,
    ) -> None:
        self._node = node
        self._clock = clock
        self._expiry_check_interval = expiry_check_interval
        self._index = ChangeIndex()
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

    def now(self) -> float:
        """The registry's current Unix time."""
        return self._clock()

    async def start(self) -> None:
        """Follow the registry keys, expiries and membership to move the index."""
        if self._tasks:
            return
        for key in REGISTRY_KEYS:
            self._tasks.append(asyncio.create_task(self._follow(key), name=f"registry:{key}"))
        self._tasks.append(asyncio.create_task(self._follow_expiry(), name="registry:expiry"))
        self._node.on_member_event(self._on_member_event)

    async def stop(self) -> None:
        """Stop following and release every blocked reader."""
        self._index.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def _on_member_event(self, _: object) -> None:
        if not self._index.closed:
            self._index.bump()

    async def _follow(self, key: str) -> None:
        async for _ in self._node.watch(key):
            self._index.bump()

    async def _follow_expiry(self) -> None:
        """Move the index when events expire, which changes health with no write."""
        reported: frozenset[tuple[str, str]] = frozenset()
        while not self._index.closed:
            try:
                events = (await self._node.get(EVENTS_KEY, keyed_type())).value
            except CRDTGossipError:  # the node stopped under us
                return
            now = self._clock()
            gone = expired(events, now)
            if gone != reported:
                reported = gone
                self._index.bump()
            upcoming = next_expiry(events, now)
            pause = self._expiry_check_interval
            if upcoming is not None:
                pause = min(pause, max(upcoming - now, MIN_EXPIRY_PAUSE))
            await self._index.wait_past(self._index.value, pause)

    # ---- reading ---------------------------------------------------------------------
    async def snapshot(self) -> Snapshot:
        """The whole registry state as plain values."""
        node = self._node
        instances = await node.get(INSTANCES_KEY, instances_type())
        maintenance = await node.get(MAINTENANCE_KEY, keyed_type())
        events = await node.get(EVENTS_KEY, keyed_type())
        releases: GSet[ReleaseElement] = await node.get(RELEASES_KEY, GSet)
        expectations: LWWMap[tuple[str, str], int] = await node.get(EXPECTATIONS_KEY, LWWMap)
        return Snapshot(
            instances=instances.value,
            maintenance=maintenance.value,
            events=events.value,
            releases=releases.value,
            expectations=expectations.value,
        )

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

    # ---- writing ---------------------------------------------------------------------
    async def register(self, service: str, instance: str, record: InstanceRecord) -> dict[str, Any]:
        """Register ``instance`` of ``service`` (or replace its registration).

        Returns:
            The instance as :func:`~crdtgossip.apps.registry.view.instance_view` shows it.
        """
        replica = self._node.replica_id
        await self._node.update(
            INSTANCES_KEY,
            instances_type(),
            register_op(replica, service, instance, record.stored()),
        )
        return instance_view(await self.snapshot(), service, instance, self.now())

    async def deregister(self, service: str, instance: str) -> None:
        """Deregister an instance, with its maintenance flag and latest event.

        Raises:
            RegistryError: (404) the instance is not registered.
        """
        snapshot = await self.snapshot()
        self._require(snapshot, service, instance)
        replica = self._node.replica_id
        key = (service, instance)
        await self._node.update(INSTANCES_KEY, instances_type(), deregister_op(replica, *key))
        if key in snapshot.maintenance:
            await self._node.update(MAINTENANCE_KEY, keyed_type(), remove_op(key))
        if key in snapshot.events:
            await self._node.update(EVENTS_KEY, keyed_type(), remove_op(key))

    async def set_maintenance(
        self, service: str, instance: str, request: MaintenanceRequest
    ) -> dict[str, Any]:
        """Put an instance in maintenance or take it out.

        With ``request.consistency == "majority"`` this returns only once more than
        half of the alive members have merged the change.

        Raises:
            RegistryError: (404) the instance is not registered.
            QuorumError: the majority did not confirm within ``request.timeout`` (the
                change is applied here and still spreads).
        """
        self._require(await self.snapshot(), service, instance)
        level: Consistency = (
            Majority(timeout=request.timeout) if request.consistency == "majority" else Local()
        )
        value = {"enabled": request.enable, "reason": request.reason, "time": self.now()}
        await self._node.update(
            MAINTENANCE_KEY,
            keyed_type(),
            put_op(self._node.replica_id, (service, instance), value),
            consistency=level,
        )
        return instance_view(await self.snapshot(), service, instance, self.now())

    async def push_event(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Record a health event (see :func:`~crdtgossip.apps.registry.model.parse_event`).

        An event without ``ttl`` takes its instance's registered ``ttl``, if any.

        Returns:
            ``{"event": stored event, "health": health it gives now}``.

        Raises:
            RegistryError: (400) a malformed event; (404) its instance (``host``) is not
                registered under its ``service``.
        """
        now = self.now()
        event: HealthEvent = parse_event(body, now)
        snapshot = await self.snapshot()
        record = self._require(snapshot, event.service, event.host)
        if body.get("ttl") is None and record.get("ttl") is not None:
            event = dataclasses.replace(event, ttl=float(record["ttl"]))
        stored = event.stored()
        await self._node.update(
            EVENTS_KEY,
            keyed_type(),
            put_op(self._node.replica_id, (event.service, event.host), stored),
        )
        return {"event": stored, "health": instance_health(stored, now)}

    async def record_release(
        self, env: str, service: str, request: ReleaseRequest
    ) -> dict[str, Any]:
        """Record that ``service`` runs ``request.version`` in ``env`` from now on.

        Returns:
            The release as recorded (with its ``time``), plus ``env`` and ``service``.
        """
        element: ReleaseElement = (
            env,
            service,
            self.now(),
            request.version,
            request.build,
            request.commit,
        )
        await self._node.update(RELEASES_KEY, GSet, lambda releases: releases.add(element))
        return {"env": env, "service": service, **release_record(element)}

    async def set_expectation(self, env: str, service: str, min_passing: int) -> dict[str, Any]:
        """Expect at least ``min_passing`` available instances of ``service`` in ``env``."""
        replica = self._node.replica_id
        await self._node.update(
            EXPECTATIONS_KEY,
            LWWMap,
            lambda expectations: expectations.set((env, service), min_passing, replica),
        )
        return {"env": env, "service": service, "min_passing": min_passing}

    @staticmethod
    def _require(snapshot: Snapshot, service: str, instance: str) -> Mapping[str, Any]:
        if service not in snapshot.known_services():
            raise RegistryError(f"unknown service {service!r}", status=404)
        record = snapshot.record(service, instance)
        if record is None:
            raise RegistryError(f"no instance {instance!r} of service {service!r}", status=404)
        return record
