"""``GET /metrics``: the agent's numbers in the Prometheus text exposition format.

Four families of samples:

* ``crdtgossip_node_*``: every counter of :meth:`Node.stats` (messages, bytes, drops
  by reason, decode and merge errors ...), as counters with the ``_total`` suffix, and
  its point-in-time values (:data:`NODE_GAUGES`) as gauges;
* ``crdtgossip_members``: members by status, as this agent sees them;
* ``crdtgossip_registry_*``: the registry: the change index, instances by service,
  environment and health, instances in maintenance, and per (env, service) what is
  available against the expectation, so an alert can fire on ``shortfall > 0``;
* ``crdtgossip_http_requests_total``: requests answered, by method and status code.

The format is small enough to write directly (text format 0.0.4: ``# HELP``,
``# TYPE``, then ``name{label="value"} number`` lines).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from crdtgossip.apps.registry.health import HEALTH_STATES

__all__ = ["CONTENT_TYPE", "NODE_GAUGES", "render_metrics"]

#: The Content-Type of the Prometheus text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Entries of :meth:`Node.stats` that are values at a moment, not running totals.
NODE_GAUGES = frozenset(
    {"members_alive", "queue_length", "keys", "health_score", "tcp_open_connections"}
)

Labels = Mapping[str, str]


def _metric_name(name: str) -> str:
    # Prometheus names are [a-zA-Z_:][a-zA-Z0-9_:]*; a stats key is used as it is when
    # it already fits, which every current one does.
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    # Integers exactly (a "g" format would round a large counter); floats by repr.
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return repr(value)


def _sample(name: str, labels: Labels, value: float) -> str:
    if labels:
        inner = ",".join(f'{key}="{_escape(str(item))}"' for key, item in labels.items())
        return f"{name}{{{inner}}} {_number(value)}"
    return f"{name} {_number(value)}"


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines.extend(_sample(name, labels, value) for labels, value in samples)
    return lines


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
    lines: list[str] = []
    for name in sorted(stats):
        metric = _metric_name(name)
        if name in NODE_GAUGES:
            lines += _family(
                f"crdtgossip_node_{metric}", "gauge", f"Node.stats()['{name}']", [({}, stats[name])]
            )
        else:
            lines += _family(
                f"crdtgossip_node_{metric}_total",
                "counter",
                f"Node.stats()['{name}']",
                [({}, stats[name])],
            )
    by_status = Counter(str(member["status"]) for member in members)
    lines += _family(
        "crdtgossip_members",
        "gauge",
        "Members known to this agent, by status.",
        [({"status": status}, count) for status, count in sorted(by_status.items())],
    )
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
