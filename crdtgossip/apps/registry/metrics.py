"""``GET /metrics``: the agent's numbers in the Prometheus text exposition format.

Four families of samples:

* ``crdtgossip_node_*`` and ``crdtgossip_members``: the node's, as the library renders
  them for any service that embeds a node (:func:`crdtgossip.metrics.node_families`);
* ``crdtgossip_registry_*``: the registry: the change index, instances by service,
  environment and health, instances in maintenance, and per (env, service) what is
  available against the expectation, so an alert can fire on ``shortfall > 0``;
* ``crdtgossip_http_requests_total``: requests answered, by method and status code.

The format (text format 0.0.4) is :mod:`crdtgossip.metrics`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from crdtgossip.apps.registry.health import HEALTH_STATES
from crdtgossip.metrics import CONTENT_TYPE, GAUGES, family, node_families

__all__ = ["CONTENT_TYPE", "NODE_GAUGES", "render_metrics"]

#: Entries of :meth:`Node.stats` that are values at a moment, not running totals
#: (the library's :data:`crdtgossip.metrics.GAUGES`).
NODE_GAUGES = GAUGES

_family = family


def render_metrics(
    *,
    stats: Mapping[str, int | float],
    members: Sequence[Mapping[str, Any]],
    health: Mapping[str, Any],
    releases: int,
    index: int,
    requests: Mapping[tuple[str, int], int],
) -> str:
    """The whole ``/metrics`` page.

    Args:
        stats: :meth:`Node.stats`.
        members: the members as ``/v1/members`` lists them.
        health: the registry's health summary, as ``GET /v1/health`` answers it
            (:func:`~crdtgossip.apps.registry.view.health_view`).
        releases: how many releases are recorded.
        index: the agent's change index.
        requests: (method, status) -> requests answered.

    Returns:
        The text, ending with a newline.
    """
    lines = node_families(stats, (str(member["status"]) for member in members))
    lines += _family(
        "crdtgossip_registry_index", "gauge", "This agent's change index.", [({}, index)]
    )
    lines += _registry_families(health, releases)
    lines += _family(
        "crdtgossip_http_requests_total",
        "counter",
        "HTTP requests answered, by method and status code.",
        [
            ({"method": method, "code": str(code)}, count)
            for (method, code), count in sorted(requests.items())
        ],
    )
    return "\n".join(lines) + "\n"


def _registry_families(health: Mapping[str, Any], releases: int) -> list[str]:
    summary: Mapping[str, Mapping[str, Mapping[str, Any]]] = health["health"]
    counted = sorted(
        (
            (service, env, found)
            for env, services in summary.items()
            for service, found in services.items()
            if any(found[state] for state in HEALTH_STATES)  # pairs with an instance
        ),
        key=lambda row: (row[0], row[1]),
    )
    lines = _family(
        "crdtgossip_registry_instances",
        "gauge",
        "Registered instances by service, environment and health.",
        [
            ({"service": service, "env": env, "health": state}, found[state])
            for service, env, found in counted
            for state in HEALTH_STATES
        ],
    )
    lines += _family(
        "crdtgossip_registry_maintenance",
        "gauge",
        "Instances in maintenance by service and environment.",
        [
            ({"service": service, "env": env}, found["maintenance"])
            for service, env, found in counted
        ],
    )
    rows = [
        (env, service, found)
        for env, services in summary.items()
        for service, found in services.items()
    ]
    lines += _family(
        "crdtgossip_registry_available",
        "gauge",
        "Instances passing and not in maintenance, by environment and service.",
        [({"env": env, "service": service}, found["available"]) for env, service, found in rows],
    )
    lines += _family(
        "crdtgossip_registry_min_passing",
        "gauge",
        "The operator's expectation of available instances (absent: none set).",
        [
            ({"env": env, "service": service}, found["min_passing"])
            for env, service, found in rows
            if found["min_passing"] is not None
        ],
    )
    lines += _family(
        "crdtgossip_registry_shortfall",
        "gauge",
        "Available instances missing to meet the expectation.",
        [({"env": env, "service": service}, found["shortfall"]) for env, service, found in rows],
    )
    lines += _family(
        "crdtgossip_registry_releases",
        "gauge",
        "Releases recorded (the whole history).",
        [({}, releases)],
    )
    return lines
