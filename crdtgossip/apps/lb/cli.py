"""``crdtgossip render``: keep a proxy's configuration file rendered from an agent.

The main command line (:mod:`crdtgossip.cli`) calls :func:`add_render_command` to
register the subcommand; :func:`run` raises :class:`~crdtgossip.errors.CRDTGossipError`
subclasses for every failure, which the main command prints as one line on stderr
before exiting non-zero. Progress and non-fatal errors of the running loop (a refused
check, an agent retry) are logged to stderr, one line each.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import socket
import sys
from pathlib import Path

from crdtgossip.apps._cli import read_small_file
from crdtgossip.apps._client import DEFAULT_AGENT_HTTP
from crdtgossip.apps.lb._client import DAEMON_RETRY, ONCE_RETRY, AgentClient
from crdtgossip.apps.lb._guard import DEFAULT_MAX_DROP, DropGuard
from crdtgossip.apps.lb._install import LiveFile
from crdtgossip.apps.lb._loop import RenderLoop
from crdtgossip.apps.lb._plugins import load_renderer
from crdtgossip.apps.lb._protocol import Renderer, RenderOptions
from crdtgossip.apps.lb._quiescence import DEFAULT_WAIT, Wait
from crdtgossip.apps.lb._report import ApplyReporter
from crdtgossip.apps.registry.agent import read_token
from crdtgossip.apps.registry.fields import MAX_NAME_LENGTH, RegistryError, check_name
from crdtgossip.errors import ConfigError

__all__ = ["MAX_TEMPLATE_BYTES", "add_render_command", "default_name", "run"]

#: Largest ``--template`` file read, in bytes. Templates of real configurations are a
#: few KiB; a bigger file is a wrong path (a log, a binary), refused before jinja2
#: spends memory compiling it.
MAX_TEMPLATE_BYTES = 1024 * 1024

_DESCRIPTION = """\
Render the healthy instances (not in maintenance) of every service registered with an
agent into a proxy configuration file, and keep it current. Each new text is written
to a temporary file beside --out, validated (the format's own check, such as nginx -t
or haproxy -c, or --check), and only then renamed over --out; then --reload runs. An
unchanged text writes nothing and reloads nothing. A service with no healthy instance
still renders to a valid config (nginx: a placeholder server marked down; haproxy: a
backend with no server).

After each install the renderer reports to the agent, under --name, which drains its
file applies (GET /v1/renderers lists the reports); `crdtgossip deploy drain` waits
for them.
"""

_EPILOG = """\
examples:
  crdtgossip render --agent 127.0.0.1:7700 --format nginx \\
      --out /etc/nginx/conf.d/upstreams.inc --reload 'nginx -s reload'
  crdtgossip render --agent 127.0.0.1:7700 --format haproxy \\
      --out /etc/haproxy/backends.cfg \\
      --check 'haproxy -c -f /etc/haproxy/haproxy.cfg -f {path}' \\
      --reload 'systemctl reload haproxy'
"""


def add_render_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``render`` on the main parser's subcommands.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers`` returned.

    Returns:
        The ``render`` parser; its ``run`` default is :func:`run`.
    """
    parser = subparsers.add_parser(
        "render",
        help="render nginx/haproxy/template config from an agent and keep it current",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--agent",
        default=DEFAULT_AGENT_HTTP,
        metavar="URL",
        help="the agent's HTTP address, HOST:PORT or http(s)://HOST:PORT "
        f"(default {DEFAULT_AGENT_HTTP}, the agent's own default)",
    )
    parser.add_argument(
        "--format",
        required=True,
        metavar="FORMAT",
        help="nginx, haproxy, template, or the name of an installed renderer plugin",
    )
    parser.add_argument(
        "--template", metavar="FILE", type=Path, help="the jinja2 template (--format template)"
    )
    parser.add_argument(
        "--out", required=True, metavar="FILE", type=Path, help="the live file to keep rendered"
    )
    parser.add_argument(
        "--check",
        metavar="CMD",
        help="shell command validating the candidate, {path} replaced by its path; "
        "replaces the format's own check (nginx -t, haproxy -c)",
    )
    parser.add_argument(
        "--reload", metavar="CMD", help="shell command run after each change of --out"
    )
    parser.add_argument(
        "--wait",
        metavar="MIN:MAX",
        default=DEFAULT_WAIT,
        help="render once nothing changed for MIN, at most MAX after the first change "
        f"(durations: 500ms, 2s, 1m; default {DEFAULT_WAIT})",
    )
    parser.add_argument(
        "--once", action="store_true", help="render once, install if changed, and exit"
    )
    parser.add_argument(
        "--max-drop",
        metavar="SHARE",
        type=float,
        default=DEFAULT_MAX_DROP,
        help="refuse a render that drops more than this share (0 to 1) of a service's "
        f"instances, or of all instances, at once (default {DEFAULT_MAX_DROP:g}; "
        "one instance may always go)",
    )
    parser.add_argument(
        "--allow-drop",
        action="store_true",
        help="render even what --max-drop would refuse (an intended mass drain)",
    )
    parser.add_argument(
        "--name",
        metavar="NAME",
        help="this renderer's name in the registry's reports, which deploy drain waits "
        "for (default: HOST-OUTSTEM, the host name and --out's file name; with --once, "
        "no report unless named)",
    )
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="report nothing to the agent (deploy drain then cannot wait for this one)",
    )
    parser.add_argument(
        "--token", type=Path, metavar="FILE", help="bearer token file, if the agent has one"
    )
    parser.set_defaults(run=run)
    return parser


#: Characters of a host or file name that a renderer name may not hold.
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def default_name(out: Path, host: str | None = None) -> str:
    """The renderer name ``render`` reports under without ``--name``: the host name and
    the live file's stem, so two renderers on one host do not share a report."""
    raw = f"{host if host is not None else socket.gethostname()}-{out.stem}"
    name = _NOT_NAME.sub("-", raw).lstrip("-_.")[:MAX_NAME_LENGTH]
    return name or "renderer"


def _reporter_name(args: argparse.Namespace) -> str | None:
    if args.no_report:
        return None
    if args.name is None:
        # A one-shot run is no standing load balancer: a report left behind by it
        # would hold every later drain until it timed out. It reports when named.
        return None if args.once else default_name(args.out)
    try:
        return check_name("renderer", args.name)
    except RegistryError as exc:
        raise ConfigError(f"--name: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Run ``crdtgossip render`` with parsed arguments.

    With ``--once``: read, render, install if changed, exit 0; a refused check or a
    failed reload is an error. Without: run until SIGTERM (exit 0) or SIGINT.

    Returns:
        0.

    Raises:
        ~crdtgossip.errors.ConfigError: a bad option, an unknown format, an unreadable template, a
            refused check or failed reload with ``--once``, a missing proxy binary.
        ~crdtgossip.errors.TransportError: the agent stayed unreachable.
        ~crdtgossip.errors.DecodeError: the agent's replies are not the contract's JSON.
        ~crdtgossip.errors.StorageError: --out could not be written.
    """
    # --once is for scripts: silent on success, and one line on failure (the error the
    # main command prints), not a line per retry before it.
    _log_to_stderr(logging.ERROR if args.once else logging.INFO)
    wait = Wait.parse(args.wait)
    if args.template is not None:
        options = RenderOptions(
            template=_read_template(args.template), template_name=str(args.template)
        )
    else:
        options = RenderOptions()
    renderer = load_renderer(args.format, options)
    guard = DropGuard(1.0 if args.allow_drop else args.max_drop)
    live = LiveFile(args.out, renderer, check=args.check, reload=args.reload)
    name = _reporter_name(args)
    token = read_token(args.token) if args.token is not None else None
    return asyncio.run(
        _render(args.agent, renderer, live, wait, guard, once=args.once, name=name, token=token)
    )


async def _render(
    agent: str,
    renderer: Renderer,
    live: LiveFile,
    wait: Wait,
    guard: DropGuard,
    *,
    once: bool,
    name: str | None,
    token: str | None,
) -> int:
    retry = ONCE_RETRY if once else DAEMON_RETRY
    async with AgentClient(agent, retry=retry, token=token) as client:
        reporter = None if name is None else ApplyReporter(client, name)
        render_loop = RenderLoop(client, renderer, live, wait=wait, guard=guard, reporter=reporter)
        if once:
            result = await render_loop.render_once()
            if result.error is not None:
                raise ConfigError(result.error)
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        except (ValueError, RuntimeError, NotImplementedError):
            # Not the main thread (an embedding program): it stops us its own way.
            handled = False
        else:
            handled = True
        try:
            await render_loop.run(stop)
        finally:
            if handled:
                loop.remove_signal_handler(signal.SIGTERM)
    return 0


def _read_template(path: Path) -> str:
    data = read_small_file(path, MAX_TEMPLATE_BYTES, "--template")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--template {path} is not UTF-8 text") from exc


def _log_to_stderr(level: int) -> None:
    """Send the loop's lines of ``level`` and above to stderr, unless logging is set up
    already (by an embedding program, or pytest)."""
    logger = logging.getLogger("crdtgossip.apps.lb")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s crdtgossip render: %(levelname)s %(message)s")
    )
    logger.addHandler(handler)
    logger.setLevel(level)
