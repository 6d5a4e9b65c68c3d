"""``crdtgossip deploy plan|diff|compare``: release engineering from a shell.

::

    crdtgossip deploy plan --env prod --at T [--json]
    crdtgossip deploy diff --from staging --to prod [--json]
    crdtgossip deploy compare --env prod --service web --baseline 1.2.3 --candidate 1.2.4
                              --metric latency --max-regression 10%

``plan`` lists the (service, version) changes that bring ``--env`` back to what ran at
``--at`` (Unix seconds or ISO 8601; a time without a zone is UTC); ``diff`` the changes
that make ``--to`` run what ``--from`` runs (:mod:`.plan`). Both exit 0; ``--json``
prints ``{"changes": [{service, instance, from, to, build, commit}], ...}`` for a deploy
tool to run.

``compare`` prints p50, p95 and p99 of ``--metric`` for both versions and exits with
:data:`EXIT_REGRESSION` when any of the candidate's is more than ``--max-regression``
above the baseline's (or either version has no samples: a gate without data must not
pass); 0 when none is.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crdtgossip.apps.deploy.client import AgentClient
from crdtgossip.apps.deploy.plan import changes_between, render_changes

__all__ = [
    "ACTIONS",
    "EXIT_REGRESSION",
    "GATED_PERCENTILES",
    "Outcome",
    "add_release_actions",
    "parse_moment",
    "parse_share",
    "run_release_action",
]

#: The exit status of ``compare`` on a regression: not 1 (an error) nor 2 (argparse's
#: usage error), so a pipeline can tell a failing gate from a broken one.
EXIT_REGRESSION = 3

#: The percentiles ``compare`` shows and gates on.
GATED_PERCENTILES = ("p50", "p95", "p99")

#: The release actions this module runs.
ACTIONS = frozenset({"plan", "diff", "compare"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an action prints on stdout, and its exit status."""

    text: str
    status: int = 0


def parse_moment(text: str) -> float:
    """Unix seconds from ``text``: a number, or ISO 8601 (no zone means UTC).

    Raises:
        argparse.ArgumentTypeError: neither.
    """
    try:
        moment = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected Unix seconds or an ISO 8601 time, not {text!r}"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        moment = parsed.timestamp()
    if not math.isfinite(moment) or moment < 0:
        raise argparse.ArgumentTypeError(f"expected a time after 1970, not {text!r}")
    return moment


def parse_share(text: str) -> float:
    """A fraction from ``10%`` or ``0.1``.

    Raises:
        argparse.ArgumentTypeError: not a finite, non-negative number.
    """
    number, percent = (text[:-1], True) if text.endswith("%") else (text, False)
    try:
        value = float(number) / (100.0 if percent else 1.0)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a share like 10% or 0.1, not {text!r}")
    return value


def add_release_actions(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Add ``plan``, ``diff`` and ``compare`` to the deploy actions.

    Args:
        actions: the ``deploy`` subparsers.
        common: makes an action's parser with the shared ``--agent`` and ``--token``.
    """
    plan = common("plan", "the changes that bring an environment back to a moment")
    plan.add_argument("--env", required=True, metavar="E")
    plan.add_argument("--at", required=True, type=parse_moment, metavar="TIME")
    plan.add_argument("--json", action="store_true", help="print JSON for a deploy tool")
    diff = common("diff", "the changes that make one environment run what another runs")
    diff.add_argument("--from", dest="source", required=True, metavar="E", help="e.g. staging")
    diff.add_argument("--to", dest="target", required=True, metavar="E", help="e.g. prod")
    diff.add_argument("--json", action="store_true", help="print JSON for a deploy tool")
    compare = common("compare", "gate a release on its metric's percentiles")
    compare.add_argument("--env", required=True, metavar="E")
    compare.add_argument("--service", required=True, metavar="S")
    compare.add_argument("--baseline", required=True, metavar="V")
    compare.add_argument("--candidate", required=True, metavar="V")
    compare.add_argument("--metric", default="metric", metavar="NAME")
    compare.add_argument(
        "--max-regression",
        type=parse_share,
        default=0.1,
        metavar="SHARE",
        help="how much higher a candidate percentile may be (default 10%%)",
    )
    compare.add_argument("--json", action="store_true", help="print JSON")
    del actions  # the actions are made through common


def _services(reply: dict[str, Any]) -> dict[str, Any]:
    return dict(reply.get("services") or {})


async def _plan(args: argparse.Namespace, agent: AgentClient) -> Outcome:
    now = _services(await agent.releases_of(args.env))
    then = _services(await agent.releases_of(args.env, at=args.at))
    changes = changes_between(now, then)
    if args.json:
        body = {"env": args.env, "at": args.at, "changes": [c.as_json() for c in changes]}
        return Outcome(json.dumps(body, sort_keys=True))
    return Outcome(render_changes(changes, f"{args.env} runs what it ran at {args.at:.3f}"))


async def _diff(args: argparse.Namespace, agent: AgentClient) -> Outcome:
    wanted = _services(await agent.releases_of(args.source))
    running = _services(await agent.releases_of(args.target))
    changes = changes_between(running, wanted)
    if args.json:
        body = {"from": args.source, "to": args.target, "changes": [c.as_json() for c in changes]}
        return Outcome(json.dumps(body, sort_keys=True))
    return Outcome(render_changes(changes, f"{args.target} runs what {args.source} runs"))


def _cell(value: object) -> str:
    return "-" if value is None else f"{value:.6g}"


async def _compare(args: argparse.Namespace, agent: AgentClient) -> Outcome:
    base = await agent.performance(args.env, args.service, args.baseline, args.metric)
    cand = await agent.performance(args.env, args.service, args.candidate, args.metric)
    verdicts: dict[str, str] = {}
    for name in GATED_PERCENTILES:
        before, after = base.get(name), cand.get(name)
        if before is None or after is None:
            verdicts[name] = "no data"
        elif after > before * (1 + args.max_regression) and after > before:
            verdicts[name] = "regression"
        else:
            verdicts[name] = "ok"
    failed = any(verdict != "ok" for verdict in verdicts.values())
    status = EXIT_REGRESSION if failed else 0
    if args.json:
        body = {"baseline": base, "candidate": cand, "verdicts": verdicts, "passed": not failed}
        return Outcome(json.dumps(body, sort_keys=True), status)
    lines = [
        f"{args.service} in {args.env}, metric {args.metric}, "
        f"max regression {args.max_regression:.2%}",
        f"{'':12}{'count':>10}" + "".join(f"{name:>12}" for name in GATED_PERCENTILES),
    ]
    for label, found in ((args.baseline, base), (args.candidate, cand)):
        cells = "".join(f"{_cell(found.get(name)):>12}" for name in GATED_PERCENTILES)
        lines.append(f"{label[:12]:12}{found.get('count', 0):>10}{cells}")
    lines.append(
        ("REGRESSION: " if failed else "ok: ")
        + ", ".join(f"{name} {verdict}" for name, verdict in verdicts.items())
    )
    return Outcome("\n".join(lines), status)


async def run_release_action(args: argparse.Namespace, agent: AgentClient) -> Outcome:
    """Run ``plan``, ``diff`` or ``compare`` against ``agent``.

    Raises:
        AgentError: the agent refused (an unknown environment is a 404) or failed.
    """
    if args.action == "plan":
        return await _plan(args, agent)
    if args.action == "diff":
        return await _diff(args, agent)
    return await _compare(args, agent)
