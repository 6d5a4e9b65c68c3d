"""What each load-balancer renderer has applied, replicated so every agent sees it.

A drain is only done when the load balancers have stopped sending the instance
traffic. Agents count their change index (``X-Index``) each on their own, so an index
a renderer applied through one agent says nothing about a drain made through another.
What every agent shares is the maintenance flag itself, with its write ``time``
(its *stamp*). So a renderer, after each install (and reload) of its file, reports

* ``applied``: service -> instance -> the stamp of each maintenance flag it has seen
  enabled *for an instance its installed file leaves out*;
* ``services``: service -> how many instances its installed file routes to;
* ``reloaded_at``: the Unix time of its last install, or null if it has made none.

The reports are one ``LWWMap`` under :data:`RENDERERS_KEY`, renderer name -> report
(the agent adds ``agent``, its node id, and ``reported_at``, its time); the later
report of a name wins. A drain with stamp ``T`` is confirmed by a renderer whose report
holds a stamp of at least ``T`` for the instance (:func:`confirms`). The key sits
beside the registry's own keys (not in the change index): reports change on every
render, and nothing watches them but a drain, which polls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crdtgossip.apps.registry.fields import (
    RegistryError,
    check_name,
    kind_of,
    number,
    only_fields,
)
from crdtgossip.crdts import LWWMap
from crdtgossip.node import Node

__all__ = [
    "MAX_APPLIED",
    "RENDERERS_KEY",
    "confirms",
    "delete_report",
    "parse_report",
    "read_reports",
    "store_report",
]

RENDERERS_KEY = "registry/renderers"

#: Most (service, instance) stamps one report may hold. A renderer reports only the
#: instances in maintenance that it leaves out; a few hundred drained at once is a
#: whole-fleet maintenance, far past a rolling deploy's handful.
MAX_APPLIED = 4096

#: Most services one report may count (the registry's body limit binds first).
MAX_SERVICES = 4096

_FIELDS = ("applied", "services", "reloaded_at")
_WHAT = "a renderer report"


def _mapping(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise RegistryError(f"{field} must be an object, not {kind_of(value)}")
    return value


def parse_report(body: Mapping[str, Any]) -> dict[str, Any]:
    """Check a ``PUT /v1/renderers/{name}`` body; return the report to store.

    Args:
        body: ``{applied?, services?, reloaded_at?}`` as the module docstring says.

    Returns:
        The report with every field present (empty objects, null time by default).

    Raises:
        RegistryError: (400) an unknown field, a bad name, a stamp or time that is not
            a finite number at or after 0, a count that is not an integer, too many
            entries.
    """
    only_fields(body, _FIELDS, _WHAT)
    applied: dict[str, dict[str, float]] = {}
    entries = 0
    for service, instances in _mapping(body.get("applied", {}), "applied").items():
        check_name("service", service)
        stamps: dict[str, float] = {}
        for instance, stamp in _mapping(instances, f"applied.{service}").items():
            check_name("instance", instance)
            stamps[instance] = _moment(stamp, f"applied.{service}.{instance}")
            entries += 1
        applied[service] = stamps
    if entries > MAX_APPLIED:
        raise RegistryError(f"applied holds {entries} stamps; at most {MAX_APPLIED}")
    services: dict[str, int] = {}
    listed = _mapping(body.get("services", {}), "services")
    if len(listed) > MAX_SERVICES:
        raise RegistryError(f"services lists {len(listed)}; at most {MAX_SERVICES}")
    for service, count in listed.items():
        check_name("service", service)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise RegistryError(f"services.{service} must be a count of instances")
        services[service] = count
    reloaded = body.get("reloaded_at")
    reloaded_at = None if reloaded is None else _moment(reloaded, "reloaded_at")
    return {"applied": applied, "services": services, "reloaded_at": reloaded_at}


def _moment(value: object, field: str) -> float:
    moment = number(value, field)
    if moment < 0:
        raise RegistryError(f"{field} must be a Unix time at or after 0")
    return moment


def confirms(report: Mapping[str, Any], service: str, instance: str, stamp: float) -> bool:
    """Whether ``report`` shows the drain of ``instance`` stamped ``stamp`` applied:
    the renderer left the instance out having seen its flag at ``stamp`` or later."""
    applied = report.get("applied")
    if not isinstance(applied, Mapping):
        return False
    stamps = applied.get(service)
    if not isinstance(stamps, Mapping):
        return False
    seen = stamps.get(instance)
    return isinstance(seen, int | float) and not isinstance(seen, bool) and seen >= stamp


async def read_reports(node: Node) -> dict[str, dict[str, Any]]:
    """Every renderer's latest report, by name (a copy)."""
    reports = await node.get(RENDERERS_KEY, LWWMap)
    return {str(name): dict(report) for name, report in reports.value.items()}


async def store_report(
    node: Node, name: str, report: Mapping[str, Any], now: float
) -> dict[str, Any]:
    """Store ``report`` (from :func:`parse_report`) as renderer ``name``'s.

    Returns:
        The stored report: with ``name``, ``agent`` (this node's id) and
        ``reported_at`` (``now``).
    """
    stored = {**report, "name": name, "agent": node.node_id, "reported_at": now}
    replica = node.replica_id
    await node.update(RENDERERS_KEY, LWWMap, lambda reports: reports.set(name, stored, replica))
    return stored


async def delete_report(node: Node, name: str) -> None:
    """Forget renderer ``name`` (a load balancer taken out of service).

    Raises:
        RegistryError: (404) no renderer of that name has reported.
    """
    if name not in await read_reports(node):
        raise RegistryError(f"no renderer {name!r} has reported", status=404)
    replica = node.replica_id
    await node.update(RENDERERS_KEY, LWWMap, lambda reports: reports.remove(name, replica))
