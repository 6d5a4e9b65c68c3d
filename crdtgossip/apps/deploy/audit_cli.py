"""``crdtgossip deploy audit``: who wrote what to the registry, when and from where.

::

    crdtgossip deploy audit --agent URL [--since TIME] [--who NAME ...] [--from-agent ID]
                            [--limit N] [--json]

Prints one line per entry of the audit record (:mod:`crdtgossip.apps.registry.audit`),
oldest first: the time (ISO 8601, UTC), who (the token's name), the HTTP status, the
method and path, the agent that answered, the client's address and the summary.
``--who`` repeated shows the entries of each token named, in one timeline.
``--json`` prints the agent's answer, ``{"audit": [entry, ...]}``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from crdtgossip.apps.deploy.client import AgentClient
from crdtgossip.apps.deploy.release_cli import parse_moment

__all__ = ["add_audit_action", "audit_lines", "run_audit_action"]


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a count of 1 or more, not {text!r}")
    return int(text)


def add_audit_action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Add ``audit`` to the deploy actions (``common`` adds ``--agent`` and ``--token``)."""
    audit = common("audit", "show the audit record: who wrote what, when, from where")
    audit.add_argument("--since", type=parse_moment, metavar="TIME", help="entries from then")
    audit.add_argument(
        "--who",
        action="append",
        metavar="NAME",
        help="one token's entries; repeat for several, in one timeline",
    )
    audit.add_argument(
        "--from-agent", dest="from_agent", metavar="ID", help="entries one agent answered"
    )
    audit.add_argument("--limit", type=_count, metavar="N", help="the newest N entries")
    audit.add_argument("--json", action="store_true", help="print the agent's JSON")


def audit_lines(entries: list[Mapping[str, Any]]) -> str:
    """The text of ``deploy audit``: one line per entry, or a line saying there is none."""
    if not entries:
        return "no audit entries"
    lines = []
    for entry in entries:
        moment = datetime.fromtimestamp(float(entry["time"]), UTC).isoformat(timespec="seconds")
        summary = f"  {entry['summary']}" if entry["summary"] else ""
        lines.append(
            f"{moment} {entry['who']} {entry['status']} {entry['method']} {entry['path']}"
            f" via {entry['agent']} from {entry['peer'] or '?'}{summary}"
        )
    return "\n".join(lines)


async def run_audit_action(args: argparse.Namespace, agent: AgentClient) -> str:
    """Read the audit record as ``args`` ask; the text to print.

    Raises:
        AgentError: the agent refused (a 401 or 403 without the read scope) or failed.
    """
    query: dict[str, str] = {}
    if args.since is not None:
        query["since"] = repr(args.since)
    if args.who is not None:
        query["who"] = ",".join(args.who)
    if args.from_agent is not None:
        query["agent"] = args.from_agent
    if args.limit is not None:
        query["limit"] = str(args.limit)
    path = "/v1/audit" + ("?" + urlencode(query) if query else "")
    reply = await agent.request("GET", path)
    if args.json:
        return json.dumps(reply, indent=2, sort_keys=True)
    return audit_lines(list(reply["audit"]))
