"""Prometheus text exposition of a :class:`~crdtgossip.Node`'s numbers.

A service that embeds a node serves :func:`render` on its ``/metrics`` page (or adds
:func:`node_families` to its own families). Every entry of :meth:`Node.stats` becomes
one family named ``crdtgossip_node_<entry>``: running totals as counters with the
``_total`` suffix, values at a moment (:data:`GAUGES`) as gauges; the members the node
knows are ``crdtgossip_members`` by status. The text format is 0.0.4: ``# HELP``,
``# TYPE``, then ``name{label="value"} number`` lines.

Example:
    >>> import asyncio
    >>> from crdtgossip import Node
    >>> from crdtgossip.metrics import render
    >>> async def main() -> list[str]:
    ...     async with Node("a", bind="127.0.0.1:0") as node:
    ...         return render(node).splitlines()
    >>> lines = asyncio.run(main())
    >>> "# TYPE crdtgossip_node_members_alive gauge" in lines
    True
    >>> "# TYPE crdtgossip_node_frames_in_total counter" in lines
    True
    >>> 'crdtgossip_members{status="alive"} 1' in lines
    True
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final

from crdtgossip.node import Node

__all__ = ["CONTENT_TYPE", "GAUGES", "family", "node_families", "render"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The Content-Type of the Prometheus text format."""

GAUGES: Final = frozenset(
    {
        "members_alive",
        "queue_length",
        "keys",
        "tombstones",
        "health_score",
        "keys_dirty",
        "tcp_open_connections",
        "tcp_unauthenticated_connections",
        "tcp_unauthenticated_bytes",
    }
)
"""Entries of :meth:`Node.stats` that are values at a moment, not running totals;
every other entry only grows while the node runs (a counter)."""

Labels = Mapping[str, str]


def _metric_name(name: str) -> str:
    # Prometheus names are [a-zA-Z_:][a-zA-Z0-9_:]*; every stats key already fits.
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _escape(value: str) -> str:
    return _escape_help(value).replace('"', '\\"')


def _escape_help(value: str) -> str:
    # HELP text escapes backslashes and newlines only; label values quotes as well.
    return value.replace("\\", "\\\\").replace("\n", "\\n")


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


def family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]
) -> list[str]:
    """The lines of one metric family: ``# HELP``, ``# TYPE``, then its samples.

    Args:
        name: the metric name (a counter's ends in ``_total``).
        kind: ``"counter"`` or ``"gauge"``.
        help_text: one line saying what it counts.
        samples: ``(labels, value)`` pairs; label values are escaped here.

    Returns:
        The lines, without newlines.
    """
    lines = [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}"]
    lines.extend(_sample(name, labels, value) for labels, value in samples)
    return lines


def node_families(stats: Mapping[str, int | float], statuses: Iterable[str]) -> list[str]:
    """The node's families: every stats entry, and the members by status.

    Args:
        stats: :meth:`Node.stats`.
        statuses: the status of every member known (``str(member.status)``).

    Returns:
        The lines, without newlines, in a stable order.
    """
    lines: list[str] = []
    for name in sorted(stats):
        metric = _metric_name(name)
        help_text = f"Node.stats()['{name}']"
        if name in GAUGES:
            lines += family(f"crdtgossip_node_{metric}", "gauge", help_text, [({}, stats[name])])
        else:
            lines += family(
                f"crdtgossip_node_{metric}_total", "counter", help_text, [({}, stats[name])]
            )
    by_status = Counter(statuses)
    lines += family(
        "crdtgossip_members",
        "gauge",
        "Members known to this node, by status.",
        [({"status": status}, count) for status, count in sorted(by_status.items())],
    )
    return lines


def render(node: Node) -> str:
    """The whole exposition of one running node, ending with a newline.

    Raises:
        CRDTGossipError: the node is not running.
    """
    statuses = [str(member.status) for member in node.members()]
    return "\n".join(node_families(node.stats(), statuses)) + "\n"
