"""``crdtgossip agent``: a cluster member serving the registry's REST API.

The lead's ``crdtgossip.cli`` wires :func:`add_agent_command` into the ``crdtgossip``
command; ``python -m crdtgossip.apps.registry agent ...`` runs the same thing alone.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from crdtgossip.apps.registry.agent import CONFIG_PRESETS, DEFAULT_HTTP, AgentOptions, run_agent
from crdtgossip.errors import CRDTGossipError

__all__ = ["add_agent_command", "run"]

#: The signals that stop the agent gracefully (it leaves the cluster first).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def add_agent_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``agent`` subcommand to ``subparsers``; it runs :func:`run`.

    Returns:
        The subcommand's parser.
    """
    parser = subparsers.add_parser(
        "agent",
        help="run a cluster member with the service registry's REST API",
        description=(
            "Run a gossip node and the registry's REST API until SIGTERM or SIGINT, "
            "then leave the cluster gracefully. Prints one line when ready: "
            "'agent ID listening gossip=HOST:PORT http=HOST:PORT', then "
            "' riemann-tcp=HOST:PORT' and ' riemann-udp=HOST:PORT' when those listen."
        ),
    )
    parser.add_argument("--node-id", required=True, metavar="ID", help="this member's unique name")
    parser.add_argument(
        "--bind",
        required=True,
        metavar="HOST:PORT",
        help="gossip address (UDP and TCP); port 0 picks one",
    )
    parser.add_argument(
        "--join",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a member to join through (repeat for several)",
    )
    parser.add_argument(
        "--http",
        default=DEFAULT_HTTP,
        metavar="HOST:PORT",
        help=f"REST API address (default {DEFAULT_HTTP}: loopback only)",
    )
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="keep the state in DIR/state.db (SQLite)"
    )
    parser.add_argument(
        "--keyring", type=Path, metavar="FILE", help="encrypt gossip with the keys in FILE"
    )
    parser.add_argument(
        "--config",
        choices=tuple(CONFIG_PRESETS),
        default="lan",
        help="gossip timers (default lan)",
    )
    parser.add_argument(
        "--token",
        type=Path,
        metavar="FILE",
        help="writes need 'Authorization: Bearer <the token in FILE>' (an admin token "
        "named 'default')",
    )
    parser.add_argument(
        "--tokens",
        type=Path,
        metavar="FILE",
        help="named tokens with scopes, one 'name scope[,scope] token' a line "
        "(scopes: read, register, deploy, admin); reads need the read scope",
    )
    parser.add_argument(
        "--open-reads",
        action="store_true",
        help="with --tokens, reads need no token",
    )
    parser.add_argument(
        "--checks",
        type=Path,
        metavar="FILE",
        help="run the active checks of this JSON file, each run a health event",
    )
    parser.add_argument(
        "--riemann-tcp",
        metavar="HOST:PORT",
        help="take health events in Riemann's protocol over TCP (riemann-client's "
        "TCPTransport); off by default; no authentication; port 0 picks one",
    )
    parser.add_argument(
        "--riemann-udp",
        metavar="HOST:PORT",
        help="take health events in Riemann's protocol over UDP, one message a "
        "datagram; off by default; no authentication; port 0 picks one",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the agent described by parsed arguments; returns the exit status.

    Failures print one line on stderr and return 1.
    """
    options = AgentOptions(
        node_id=args.node_id,
        bind=args.bind,
        join=tuple(args.join),
        http=args.http,
        data_dir=args.data_dir,
        keyring=args.keyring,
        config=args.config,
        token=args.token,
        tokens=args.tokens,
        open_reads=args.open_reads,
        checks=args.checks,
        riemann_tcp=args.riemann_tcp,
        riemann_udp=args.riemann_udp,
    )
    _log_to_stderr()
    try:
        asyncio.run(_serve(options))
    except CRDTGossipError as exc:
        print(f"crdtgossip: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _log_to_stderr() -> None:
    """Log the agent's joins, failures and refusals on stderr, timestamped (unless the
    program embedding the agent configured logging itself)."""
    logger = logging.getLogger("crdtgossip")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s crdtgossip agent: %(levelname)s %(message)s")
    )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


async def _serve(options: AgentOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        await run_agent(options, stop)
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
