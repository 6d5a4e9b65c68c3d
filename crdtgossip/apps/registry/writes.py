"""The registry's writes: one instance's state per write, through the node.

Every write is one ``Node.update`` of one registry key with an update function of
:mod:`.layout` (which never copies a service or the registry), then the view settled
with it, so a reader right after sees it. Deregister writes up to three keys in turn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from crdtgossip.apps.registry.health import instance_health
from crdtgossip.apps.registry.layout import (
    EVENTS_KEY,
    EXPECTATIONS_KEY,
    INSTANCES_KEY,
    MAINTENANCE_KEY,
    RELEASES_KEY,
    Update,
    deregister_op,
    instances_type,
    keyed_type,
    put_op,
    register_op,
    remove_op,
)
from crdtgossip.apps.registry.materialized import MaterializedView
from crdtgossip.apps.registry.model import (
    HealthEvent,
    InstanceRecord,
    MaintenanceRequest,
    RegistryError,
    ReleaseRequest,
    parse_event,
)
from crdtgossip.apps.registry.perf import sample_of
from crdtgossip.apps.registry.releases import Release, release_element
from crdtgossip.apps.registry.sketch import DDSketch
from crdtgossip.apps.registry.view import Snapshot, instance_view
from crdtgossip.consistency import Consistency, Local, Majority
from crdtgossip.crdts import GSet, LWWMap
from crdtgossip.node import Node

__all__ = ["RegistryWrites"]


class RegistryWrites:
    """The writing half of :class:`~crdtgossip.apps.registry.state.Registry`."""

    _node: Node
    _view: MaterializedView
    _unsubscribe: Callable[[], None] | None

    def now(self) -> float:
        raise NotImplementedError

    async def current(self) -> Snapshot:
        raise NotImplementedError

    async def settle(self) -> None:
        raise NotImplementedError

    def _schedule_settle(self) -> None:
        raise NotImplementedError

    # ---- writing ---------------------------------------------------------------------
    async def _write(
        self, key: str, value_type: Any, fn: Update, consistency: Consistency | None = None
    ) -> None:
        """One write through the node, then the view settled with it.

        A write that raises (a quorum not reached) may still hold here: the view
        follows it all the same, soon after.
        """
        try:
            await self._node.update(key, value_type, fn, consistency=consistency)
        except BaseException:
            if self._unsubscribe is None:
                self._view.note_everything(key)
            self._schedule_settle()
            raise
        if self._unsubscribe is None:  # no change notification: see start()
            self._view.note_everything(key)
        await self.settle()

    async def register(self, service: str, instance: str, record: InstanceRecord) -> dict[str, Any]:
        """Register ``instance`` of ``service`` (or replace its registration).

        The record keeps this agent's node id (``agent``): while that agent is dead or
        gone, every agent shows the instance critical.

        Returns:
            The instance as :func:`~crdtgossip.apps.registry.view.instance_view` shows it.
        """
        replica = self._node.replica_id
        stored = {**record.stored(), "agent": self._node.node_id}
        await self._write(
            INSTANCES_KEY,
            instances_type(),
            register_op(replica, service, instance, stored),
        )
        return instance_view(await self.current(), service, instance, self.now())

    async def deregister(self, service: str, instance: str) -> None:
        """Deregister an instance, with its maintenance flag and latest event.

        Raises:
            RegistryError: (404) the instance is not registered.
        """
        current = await self.current()
        self._require(current, service, instance)
        key = (service, instance)
        flagged, reported = key in current.maintenance, key in current.events
        replica = self._node.replica_id
        await self._write(INSTANCES_KEY, instances_type(), deregister_op(replica, *key))
        if flagged:
            await self._write(MAINTENANCE_KEY, keyed_type(), remove_op(key))
        if reported:
            await self._write(EVENTS_KEY, keyed_type(), remove_op(key))

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
        self._require(await self.current(), service, instance)
        level: Consistency = (
            Majority(timeout=request.timeout) if request.consistency == "majority" else Local()
        )
        value = {"enabled": request.enable, "reason": request.reason, "time": self.now()}
        await self._write(
            MAINTENANCE_KEY,
            keyed_type(),
            put_op(self._node.replica_id, (service, instance), value),
            consistency=level,
        )
        return instance_view(await self.current(), service, instance, self.now())

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
        current = await self.current()
        record = self._require(current, event.service, event.host)
        alive = current.agent_alive(record)
        if body.get("ttl") is None and record.get("ttl") is not None:
            event = dataclasses.replace(event, ttl=float(record["ttl"]))
        sample = sample_of(event, record, current)  # checked before anything is written
        stored = event.stored()
        await self._write(
            EVENTS_KEY,
            keyed_type(),
            put_op(self._node.replica_id, (event.service, event.host), stored),
        )
        if sample is not None:  # performance history (:mod:`.perf`)
            await self._node.update(sample.key, DDSketch, sample.update(self._node.replica_id))
        return {"event": stored, "health": instance_health(stored, now, agent_alive=alive)}

    async def record_release(
        self, env: str, service: str, request: ReleaseRequest
    ) -> dict[str, Any]:
        """Record that ``service`` (or ``request.instance`` of it) runs
        ``request.version`` in ``env`` from now on (see :mod:`.releases`).

        Returns:
            The release as recorded (with its ``time``), plus ``env`` and ``service``.
        """
        release = Release(
            env,
            service,
            self.now(),
            request.version,
            request.build,
            request.commit,
            request.instance,
            request.url,
            request.initiator,
            request.started,
            request.finished,
        )
        element = release_element(release)
        await self._write(RELEASES_KEY, GSet, lambda releases: releases.add(element))
        return {"env": env, "service": service, **release.record()}

    async def set_expectation(self, env: str, service: str, min_passing: int) -> dict[str, Any]:
        """Expect at least ``min_passing`` available instances of ``service`` in ``env``."""
        replica = self._node.replica_id
        await self._write(
            EXPECTATIONS_KEY,
            LWWMap,
            lambda expectations: expectations.set((env, service), min_passing, replica),
        )
        return {"env": env, "service": service, "min_passing": min_passing}

    async def delete_expectation(self, env: str, service: str) -> None:
        """Expect nothing of ``service`` in ``env`` any more.

        Raises:
            RegistryError: (404) no expectation is set for the pair.
        """
        if (env, service) not in (await self.current()).expectations:
            raise RegistryError(f"no expectation for {service!r} in {env!r}", status=404)
        replica = self._node.replica_id
        await self._write(
            EXPECTATIONS_KEY,
            LWWMap,
            lambda expectations: expectations.remove((env, service), replica),
        )

    @staticmethod
    def _require(snapshot: Snapshot, service: str, instance: str) -> Mapping[str, Any]:
        if not snapshot.is_known(service):
            raise RegistryError(f"unknown service {service!r}", status=404)
        record = snapshot.record(service, instance)
        if record is None:
            raise RegistryError(f"no instance {instance!r} of service {service!r}", status=404)
        return record
