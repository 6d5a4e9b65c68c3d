"""``crdtgossip deploy``: the deploy hooks from a shell, for provisioning tools and CI.

::

    crdtgossip deploy register|deregister|drain|undrain --agent URL --service S --instance I
                      [--address A --port P --env E --tag T ...]
    crdtgossip deploy release --agent URL --env E --service S --version V [--build B]
                      [--commit C]

Additions to that contract, all optional: ``--token FILE`` (every action), ``--meta
KEY=VALUE`` and ``--ttl SECONDS`` (register), ``--reason``, ``--timeout``,
``--grace``, ``--renderer`` and ``--no-confirm`` (drain), ``--instance``, ``--url``,
``--initiator``, ``--started`` and
``--finished`` (release); and the actions ``plan``, ``diff`` and ``compare``
(:mod:`.release_cli`) and ``audit`` (:mod:`.audit_cli`).

Success prints on stdout (one line, but for plan, diff and compare); failure one line
on stderr and exit status 1; ``compare`` exits 3 on a regression.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from pathlib import Path

from crdtgossip.apps._client import DEFAULT_AGENT_HTTP
from crdtgossip.apps.deploy.audit_cli import add_audit_action, run_audit_action
from crdtgossip.apps.deploy.client import MAX_GRACE, AgentClient, AgentError
from crdtgossip.apps.deploy.confirm import DEFAULT_CONFIRM_TIMEOUT, Confirmation
from crdtgossip.apps.deploy.release_cli import ACTIONS as RELEASE_ACTIONS
from crdtgossip.apps.deploy.release_cli import (
    EXIT_REGRESSION,
    Outcome,
    add_release_actions,
    parse_moment,
    run_release_action,
)
from crdtgossip.apps.registry.agent import read_token
from crdtgossip.errors import CRDTGossipError

__all__ = ["add_deploy_command", "run"]


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, not {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}")
    return value


def _meta(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    return key, value


def add_deploy_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``deploy`` subcommand (with its actions) to ``subparsers``.

    Returns:
        The subcommand's parser; each action's parser runs :func:`run`.
    """
    parser = subparsers.add_parser(
        "deploy",
        help="deploy hooks: register, deregister, drain, undrain, release, plan, diff, compare, "
        "audit",
        description="Tell a registry agent about an instance or a release.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def common(name: str, help_text: str) -> argparse.ArgumentParser:
        action = actions.add_parser(name, help=help_text, description=help_text)
        action.add_argument(
            "--agent",
            default=DEFAULT_AGENT_HTTP,
            metavar="URL",
            help=f"the agent, HOST:PORT or http(s)://HOST:PORT (default {DEFAULT_AGENT_HTTP})",
        )
        action.add_argument(
            "--token", type=Path, metavar="FILE", help="bearer token file, if the agent has one"
        )
        action.set_defaults(run=run)
        return action

    def instance(name: str, help_text: str) -> argparse.ArgumentParser:
        action = common(name, help_text)
        action.add_argument("--service", required=True, metavar="S")
        action.add_argument("--instance", required=True, metavar="I")
        return action

    register = instance("register", "register an instance (or update its registration)")
    register.add_argument("--address", required=True, metavar="A", help="host name or IP")
    register.add_argument("--port", required=True, type=_port, metavar="P")
    register.add_argument("--env", metavar="E", help="environment (default: 'default')")
    register.add_argument(
        "--tag", action="append", default=[], metavar="T", help="a tag (repeat for several)"
    )
    register.add_argument(
        "--meta", action="append", default=[], type=_meta, metavar="KEY=VALUE", help="metadata"
    )
    register.add_argument(
        "--ttl", type=_seconds, metavar="SECONDS", help="default ttl of its health events"
    )
    instance("deregister", "deregister an instance")
    drain = instance(
        "drain",
        "put an instance in maintenance, wait until a majority of agents has it and the "
        "load balancers' renderers have left it out, then the grace period",
    )
    drain.add_argument("--reason", metavar="TEXT", help="why, shown in the registry")
    drain.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_CONFIRM_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for the majority and the renderers, in all "
        f"(default {DEFAULT_CONFIRM_TIMEOUT:g})",
    )
    drain.add_argument(
        "--renderer",
        action="append",
        default=[],
        metavar="NAME",
        help="a renderer (render --name) that must apply the drain; repeat for several "
        "(default: every renderer that has reported to the registry)",
    )
    drain.add_argument(
        "--no-confirm",
        action="store_true",
        help="do not wait for the renderers, only for the majority",
    )
    drain.add_argument(
        "--grace",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help=f"then wait this long for connections to finish (at most {MAX_GRACE:g})",
    )
    instance("undrain", "take an instance out of maintenance")
    release = common("release", "record the release of a service in an environment")
    release.add_argument("--env", required=True, metavar="E")
    release.add_argument("--service", required=True, metavar="S")
    release.add_argument("--version", required=True, metavar="V")
    release.add_argument("--build", metavar="B")
    release.add_argument("--commit", metavar="C")
    release.add_argument("--instance", metavar="I", help="one instance only (a canary)")
    release.add_argument("--url", metavar="URL", help="link to the build or deploy job")
    release.add_argument("--initiator", metavar="WHO", help="who or what started it")
    release.add_argument("--started", type=parse_moment, metavar="TIME", help="deploy start")
    release.add_argument("--finished", type=parse_moment, metavar="TIME", help="deploy end")
    add_release_actions(actions, common)
    add_audit_action(actions, common)
    return parser


async def _act(args: argparse.Namespace) -> str | Outcome:
    token = read_token(args.token) if args.token is not None else None
    async with AgentClient(args.agent, token=token) as agent:
        if args.action in RELEASE_ACTIONS:
            return await run_release_action(args, agent)
        if args.action == "audit":
            return await run_audit_action(args, agent)
        if args.action == "register":
            found = await agent.register(
                args.service,
                args.instance,
                address=args.address,
                port=args.port,
                env=args.env,
                tags=args.tag,
                meta=dict(args.meta),
                ttl=args.ttl,
            )
            return (
                f"registered {args.service}/{args.instance} at {found['address']}:"
                f"{found['port']} (env {found['env']})"
            )
        if args.action == "deregister":
            await agent.deregister(args.service, args.instance)
            return f"deregistered {args.service}/{args.instance}"
        if args.action == "drain":
            await agent.drain(
                args.service,
                args.instance,
                reason=args.reason,
                timeout=args.timeout,
                grace=args.grace,
                confirm=not args.no_confirm,
                renderers=args.renderer,
            )
            grace = f", then waited {args.grace:g} s" if args.grace else ""
            confirmed = _confirmed(agent.last_confirmation)
            return f"drained {args.service}/{args.instance}: a majority has it{confirmed}{grace}"
        if args.action == "undrain":
            await agent.undrain(args.service, args.instance)
            return f"undrained {args.service}/{args.instance}"
        if args.action == "release":
            recorded = await agent.release(
                args.env,
                args.service,
                args.version,
                build=args.build,
                commit=args.commit,
                instance=args.instance,
                url=args.url,
                initiator=args.initiator,
                started=args.started,
                finished=args.finished,
            )
            where = args.service if args.instance is None else f"{args.service}/{args.instance}"
            return f"released {where} {recorded['version']} in {args.env} at {recorded['time']:.3f}"
        raise AgentError(f"unknown deploy action {args.action!r}")


def _confirmed(confirmation: Confirmation | None) -> str:
    if confirmation is None:
        return ""
    if not confirmation.renderers:
        return "; no renderer has reported, none to wait for"
    return f"; applied by renderer(s) {', '.join(confirmation.renderers)}"


def run(args: argparse.Namespace) -> int:
    """Run one deploy action from parsed arguments; returns the exit status.

    Success prints one line on stdout; any failure prints one line on stderr and
    returns 1.
    """
    try:
        done = asyncio.run(_act(args))
    except CRDTGossipError as exc:
        print(f"crdtgossip: error: {exc}", file=sys.stderr)
        return 1
    outcome = done if isinstance(done, Outcome) else Outcome(done)
    print(outcome.text, flush=True)
    if outcome.status == EXIT_REGRESSION:
        print("crdtgossip: the candidate regressed (see above)", file=sys.stderr)
    return outcome.status
