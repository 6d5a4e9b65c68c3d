"""What the REST API answers, computed from one snapshot of the registry state.

Pure functions of a :class:`Snapshot` and the current time: no node, no I/O, so every
answer of the API can be tested by building a snapshot by hand.

A service is *known* when at least one instance of it is registered, or when an
operator set an expectation for it in some environment. The second case keeps a
service whose every instance is gone visible (with no instances) rather than unknown,
so a load-balancer renderer keeps its upstream and a health summary shows the
shortfall.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

from crdtgossip.apps.registry.health import (
    CRITICAL,
    PASSING,
    WARNING,
    instance_health,
    shown_event,
)
from crdtgossip.apps.registry.model import RegistryError
from crdtgossip.apps.registry.releases import Release, ReleaseElement, service_releases

__all__ = [
    "ReleaseElement",
    "Snapshot",
    "health_view",
    "instance_view",
    "release_record",
    "releases_view",
    "service_view",
    "services_view",
]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The registry state at one moment, as plain values.

    Attributes:
        instances: service -> instance id -> stored registration record.
        maintenance: (service, instance) -> ``{enabled, reason, time}``.
        events: (service, instance) -> the latest stored health event.
        releases: every release ever recorded.
        expectations: (env, service) -> ``min_passing``.
        dead_agents: node ids of the agents known dead or gone from the cluster; the
            instances registered through one of them are critical
            (:func:`~crdtgossip.apps.registry.health.instance_health`).
    """

    instances: Mapping[str, Mapping[str, Mapping[str, Any]]]
    maintenance: Mapping[tuple[str, str], Mapping[str, Any]]
    events: Mapping[tuple[str, str], Mapping[str, Any]]
    releases: Set[ReleaseElement]
    expectations: Mapping[tuple[str, str], int]
    dead_agents: Set[str] = frozenset()

    def known_services(self) -> set[str]:
        """Services with an instance or an expectation (see the module docstring)."""
        known = {service for service, found in self.instances.items() if found}
        known.update(service for _, service in self.expectations)
        return known

    def is_known(self, service: str) -> bool:
        """Whether ``service`` is known: ``service in known_services()``, without
        listing every service (it costs the number of expectations)."""
        if self.instances.get(service):
            return True
        return any(name == service for _, name in self.expectations)

    def record(self, service: str, instance: str) -> Mapping[str, Any] | None:
        """The registration of ``instance`` of ``service``, or None."""
        return self.instances.get(service, {}).get(instance)

    def agent_alive(self, record: Mapping[str, Any]) -> bool:
        """Whether the agent that registered ``record`` is not known dead or gone (a
        record that names no agent counts as alive)."""
        agent = record.get("agent")
        return agent is None or agent not in self.dead_agents

    def in_maintenance(self, service: str, instance: str) -> bool:
        """Whether the instance is in maintenance."""
        entry = self.maintenance.get((service, instance))
        return bool(entry and entry.get("enabled"))


def services_view(snapshot: Snapshot) -> dict[str, Any]:
    """``GET /v1/services``: ``{"services": {name: [instance id, ...]}}``, sorted."""
    return {
        "services": {
            service: sorted(snapshot.instances.get(service, {}))
            for service in sorted(snapshot.known_services())
        }
    }


def instance_view(snapshot: Snapshot, service: str, instance: str, now: float) -> dict[str, Any]:
    """One instance as the API shows it: its record, health and maintenance.

    Raises:
        RegistryError: (404) the instance is not registered.
    """
    record = snapshot.record(service, instance)
    if record is None:
        raise RegistryError(f"no instance {instance!r} of service {service!r}", status=404)
    event = snapshot.events.get((service, instance))
    maintenance = snapshot.maintenance.get((service, instance)) or {}
    enabled = bool(maintenance.get("enabled"))
    return {
        "id": instance,
        "address": record["address"],
        "port": record["port"],
        "env": record["env"],
        "tags": list(record.get("tags") or []),
        "meta": dict(record.get("meta") or {}),
        "ttl": record.get("ttl"),
        "agent": record.get("agent"),
        "health": instance_health(event, now, agent_alive=snapshot.agent_alive(record)),
        "maintenance": enabled,
        "maintenance_reason": maintenance.get("reason") if enabled else None,
        "last_event": shown_event(event, now),
    }


def service_view(
    snapshot: Snapshot,
    service: str,
    now: float,
    *,
    passing_only: bool = False,
    env: str | None = None,
) -> dict[str, Any]:
    """``GET /v1/services/{service}``: ``{"instances": [...]}`` sorted by id.

    Args:
        snapshot: the state.
        service: the service name.
        now: the current Unix time (for event expiry).
        passing_only: keep only passing instances not in maintenance.
        env: keep only the instances of this environment.

    Raises:
        RegistryError: (404) the service is not known.
    """
    if not snapshot.is_known(service):
        raise RegistryError(f"unknown service {service!r}", status=404)
    views = []
    for instance in sorted(snapshot.instances.get(service, {})):
        view = instance_view(snapshot, service, instance, now)
        if env is not None and view["env"] != env:
            continue
        if passing_only and (view["health"] != PASSING or view["maintenance"]):
            continue
        views.append(view)
    return {"instances": views}


def release_record(element: ReleaseElement) -> dict[str, Any]:
    """A stored release as the API shows it (see :meth:`Release.record`).

    Raises:
        RegistryError: (500) the element is of neither release shape.
    """
    release = Release.of(element)
    if release is None:
        raise RegistryError("a stored release has an unknown shape", status=500)
    return release.record()


def releases_view(
    snapshot: Snapshot,
    at: float | None = None,
    *,
    env: str | None = None,
    service: str | None = None,
    instance: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """``GET /v1/releases``: per env and service, the current release and the history.

    Args:
        snapshot: the state.
        at: a past Unix time: answer as of then (only releases recorded at or before
            ``at`` count; environments and services with none are left out). None:
            now, all releases.
        env: keep only this environment.
        service: keep only this service.
        instance: keep only the releases that concern this instance (its own, and its
            service's where it is released on its own or registered under that
            service); ``current`` is then the instance's.
        limit: keep at most this many history entries per service (newest first).

    Returns:
        ``{"at": at, "releases": {env: {service: {"current": record, "history":
        [record, ...], "instances": {id: record}}}}}``, the history newest first
        (see :mod:`.releases` for what is current).
    """
    grouped = service_releases(snapshot.releases, at, env=env, service=service)
    releases: dict[str, dict[str, dict[str, Any]]] = {}
    for name, by_service in grouped.items():
        for svc, found in by_service.items():
            chosen = found
            if instance is not None:
                if not found.names(instance) and snapshot.record(svc, instance) is None:
                    continue  # neither released on its own nor registered under svc
                chosen = found.of_instance(instance)
            releases.setdefault(name, {})[svc] = chosen.view(limit)
    return {"at": at, "releases": releases}


def health_view(snapshot: Snapshot, now: float) -> dict[str, Any]:
    """``GET /v1/health``: per env and service, counts against the expectation.

    For each (env, service) with an instance or an expectation: ``passing``,
    ``warning`` and ``critical`` count every instance by health; ``maintenance`` counts
    those in maintenance; ``available`` those passing and not in maintenance (what a
    load balancer would use); ``min_passing`` is the expectation (None when unset);
    ``shortfall`` is how many available instances are missing to meet it; ``ok`` is
    whether there is no shortfall. The top-level ``ok`` is whether every entry is ok.
    """
    counts: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(env: str, service: str) -> dict[str, Any]:
        return counts.setdefault(
            (env, service),
            {PASSING: 0, WARNING: 0, CRITICAL: 0, "maintenance": 0, "available": 0},
        )

    for service, instances in snapshot.instances.items():
        for instance, record in instances.items():
            health = instance_health(
                snapshot.events.get((service, instance)),
                now,
                agent_alive=snapshot.agent_alive(record),
            )
            maintained = snapshot.in_maintenance(service, instance)
            found = entry(str(record["env"]), service)
            found[health] += 1
            found["maintenance"] += int(maintained)
            found["available"] += int(health == PASSING and not maintained)
    for env, service in snapshot.expectations:
        entry(env, service)
    summary: dict[str, dict[str, Any]] = {}
    for (env, service), found in sorted(counts.items()):
        expected = snapshot.expectations.get((env, service))
        shortfall = max(0, expected - found["available"]) if expected is not None else 0
        found.update(min_passing=expected, shortfall=shortfall, ok=shortfall == 0)
        summary.setdefault(env, {})[service] = found
    return {"ok": all(found["ok"] for found in counts.values()), "health": summary}
