"""``GET /metrics``: the agent's numbers in the Prometheus text exposition format.

Five families of samples:

* ``crdtgossip_node_*`` and ``crdtgossip_members``: the node's, as the library renders
  them for any service that embeds a node (:func:`crdtgossip.metrics.node_families`);
* ``crdtgossip_registry_*``: the registry: the change index, instances by service,
  environment and health, instances in maintenance, and per (env, service) what is
  available against the expectation, so an alert can fire on ``shortfall > 0``;
* ``crdtgossip_http_requests_total``: requests answered, by method and status code;
* ``crdtgossip_riemann_*``: the Riemann protocol listener's counters
  (:class:`RiemannCounters`), when the agent runs one.

The format (text format 0.0.4) is :mod:`crdtgossip.metrics`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crdtgossip.apps.registry.health import HEALTH_STATES
from crdtgossip.metrics import CONTENT_TYPE, GAUGES, family, node_families

__all__ = ["CONTENT_TYPE", "NODE_GAUGES", "RiemannCounters", "render_metrics"]

#: Entries of :meth:`Node.stats` that are values at a moment, not running totals
#: (the library's :data:`crdtgossip.metrics.GAUGES`).
NODE_GAUGES = GAUGES

_family = family


@dataclass(slots=True)
class RiemannCounters:
    """What the Riemann protocol listener has seen (:mod:`.riemann_listener`).

    ``transport`` is ``tcp`` or ``udp``. Every field but ``connections_open`` only
    grows.

    Attributes:
        messages: transport -> messages decoded (each a ``Msg``).
        messages_refused: (transport, reason) -> messages refused whole: ``query``,
            ``states``, ``too_many_events``, or ``backlog`` (UDP: more events
            waiting than the listener queues).
        events_accepted: transport -> events recorded.
        events_refused: (transport, reason) -> events not recorded: ``invalid`` (the
            check a ``POST /v1/events`` would answer 400 to), ``unknown_instance``
            (404), ``error`` (a failure of the agent), ``not_tried`` (after a refused
            event of its message), ``message_refused`` (its message was refused).
        frames_malformed: transport -> frames or datagrams that are no Riemann
            ``Msg``.
        frames_oversized: TCP frames over the size limit (the connection is closed).
        connections_refused: TCP connections closed at once, over the limit.
        connections_open: TCP connections open now.
        attributes_ignored: event attributes received and not recorded.
    """

    messages: Counter[str] = field(default_factory=Counter)
    messages_refused: Counter[tuple[str, str]] = field(default_factory=Counter)
    events_accepted: Counter[str] = field(default_factory=Counter)
    events_refused: Counter[tuple[str, str]] = field(default_factory=Counter)
    frames_malformed: Counter[str] = field(default_factory=Counter)
    frames_oversized: int = 0
    connections_refused: int = 0
    connections_open: int = 0
    attributes_ignored: int = 0


def render_metrics(
    *,
    stats: Mapping[str, int | float],
    members: Sequence[Mapping[str, Any]],
    health: Mapping[str, Any],
    releases: int,
    index: int,
    requests: Mapping[tuple[str, int], int],
    riemann: RiemannCounters | None = None,
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
        riemann: the Riemann listener's counters, or None when the agent runs none
            (then no ``crdtgossip_riemann_*`` family is rendered).

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
    if riemann is not None:
        lines += _riemann_families(riemann)
    return "\n".join(lines) + "\n"


def _by_transport(counts: Counter[str]) -> list[tuple[Mapping[str, str], float]]:
    return [({"transport": transport}, count) for transport, count in sorted(counts.items())]


def _by_reason(counts: Counter[tuple[str, str]]) -> list[tuple[Mapping[str, str], float]]:
    return [
        ({"transport": transport, "reason": reason}, count)
        for (transport, reason), count in sorted(counts.items())
    ]


def _riemann_families(riemann: RiemannCounters) -> list[str]:
    Samples = list[tuple[Mapping[str, str], float]]
    families: tuple[tuple[str, str, str, Samples], ...] = (
        (
            "messages_total",
            "counter",
            "Riemann messages decoded, by transport.",
            _by_transport(riemann.messages),
        ),
        (
            "messages_refused_total",
            "counter",
            "Riemann messages refused whole, by transport and reason.",
            _by_reason(riemann.messages_refused),
        ),
        (
            "events_accepted_total",
            "counter",
            "Events received over Riemann's protocol and recorded, by transport.",
            _by_transport(riemann.events_accepted),
        ),
        (
            "events_refused_total",
            "counter",
            "Events received over Riemann's protocol and not recorded, by transport and reason.",
            _by_reason(riemann.events_refused),
        ),
        (
            "frames_malformed_total",
            "counter",
            "TCP frames or UDP datagrams that are no Riemann message, by transport.",
            _by_transport(riemann.frames_malformed),
        ),
        (
            "frames_oversized_total",
            "counter",
            "TCP frames over the size limit (connection closed).",
            [({}, riemann.frames_oversized)],
        ),
        (
            "connections_refused_total",
            "counter",
            "TCP connections closed at once, over the limit.",
            [({}, riemann.connections_refused)],
        ),
        (
            "connections",
            "gauge",
            "TCP connections of the Riemann listener open now.",
            [({}, riemann.connections_open)],
        ),
        (
            "attributes_ignored_total",
            "counter",
            "Event attributes received and not recorded.",
            [({}, riemann.attributes_ignored)],
        ),
    )
    lines: list[str] = []
    for name, kind, help_text, samples in families:
        lines += _family("crdtgossip_riemann_" + name, kind, help_text, samples)
    return lines


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
