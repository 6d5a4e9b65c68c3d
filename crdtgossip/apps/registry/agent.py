"""The agent: one gossip node plus the registry's REST API, until told to stop.

:func:`run_agent` is what ``crdtgossip agent`` runs; it is usable on its own to embed
an agent in a program (give it an :class:`asyncio.Event` to stop it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from crdtgossip.apps._cli import read_small_file
from crdtgossip.apps._client import DEFAULT_AGENT_HTTP
from crdtgossip.apps.registry.api import make_app
from crdtgossip.apps.registry.audit import AuditLog
from crdtgossip.apps.registry.checks import CheckRunner, load_checks
from crdtgossip.apps.registry.fields import RegistryError, check_name
from crdtgossip.apps.registry.metrics import RiemannCounters
from crdtgossip.apps.registry.server import JsonErrorRunner
from crdtgossip.apps.registry.state import Registry
from crdtgossip.apps.registry.tokens import TokenTable, default_table, read_tokens
from crdtgossip.config import GossipConfig
from crdtgossip.errors import ConfigError, StorageError, TransportError
from crdtgossip.node import Node
from crdtgossip.security import Keyring
from crdtgossip.transport import format_address, parse_address

if TYPE_CHECKING:
    from crdtgossip.apps.registry.riemann_listener import RiemannListener
    from crdtgossip.storage import SQLiteStorage

__all__ = [
    "CONFIG_PRESETS",
    "DEFAULT_HTTP",
    "HTTP_SHUTDOWN_TIMEOUT",
    "MAX_TOKEN_FILE_SIZE",
    "STATE_FILE",
    "AgentOptions",
    "open_storage",
    "read_token",
    "run_agent",
    "token_table",
]

#: Where the REST API listens by default (see :data:`~crdtgossip.apps._client.DEFAULT_AGENT_HTTP`).
DEFAULT_HTTP = DEFAULT_AGENT_HTTP

#: The gossip timer presets ``--config`` chooses from.
CONFIG_PRESETS: dict[str, Callable[[], GossipConfig]] = {
    "lan": GossipConfig.lan,
    "wan": GossipConfig.wan,
    "local": GossipConfig.local,
}

#: The state file inside ``--data-dir``.
STATE_FILE = "state.db"

#: Largest token file read, in bytes: a token is a line, not a document.
MAX_TOKEN_FILE_SIZE = 4096

#: Seconds the HTTP server waits for requests in flight when the agent stops. Blocked
#: readers are released first, so this only covers writes already under way.
HTTP_SHUTDOWN_TIMEOUT = 5.0

#: Seconds between two looks at the count of gossip frames refused for their key: a
#: peer with a wrong key sends several a second, so one line per interval says it
#: without flooding the log.
AUTH_DROP_REPORT_INTERVAL = 10.0

_log = logging.getLogger("crdtgossip.apps.registry")


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """What ``crdtgossip agent`` is given.

    Attributes:
        node_id: this member's unique name.
        bind: gossip ``host:port`` (UDP and TCP).
        join: members to join through.
        http: REST API ``host:port``.
        data_dir: directory of the durable state, or None for memory only.
        keyring: keyring file (one base64 key a line, the primary first), or None.
        config: gossip timers: ``lan``, ``wan`` or ``local``.
        token: file holding the bearer token that writes need, or None: the admin
            token named ``default`` (:mod:`.tokens`).
        tokens: a tokens file of named tokens with scopes (:mod:`.tokens`), or None.
        open_reads: with ``tokens``, reads need no token (with ``token`` alone they never
            do).
        checks: a checks file (:func:`~crdtgossip.apps.registry.checks.load_checks`)
            whose active checks the agent runs, or None.
        riemann_tcp: ``host:port`` where health events in Riemann's protocol are taken
            over TCP (:mod:`.riemann_listener`), or None (the default: not at all).
        riemann_udp: the same over UDP, or None.
    """

    node_id: str
    bind: str
    join: tuple[str, ...] = ()
    http: str = DEFAULT_HTTP
    data_dir: Path | None = None
    keyring: Path | None = None
    config: str = "lan"
    token: Path | None = None
    tokens: Path | None = None
    open_reads: bool = False
    checks: Path | None = None
    riemann_tcp: str | None = None
    riemann_udp: str | None = None


def token_table(options: AgentOptions) -> TokenTable | None:
    """The tokens ``options`` give: the tokens file's, plus ``--token`` as ``default``.

    Raises:
        ConfigError: a bad token or tokens file, or a ``default`` token in both.
    """
    if options.tokens is None:
        return None if options.token is None else default_table(read_token(options.token))
    named = read_tokens(options.tokens)
    if options.token is not None:
        single = default_table(read_token(options.token)).tokens[0]
        if any(t.name == single.name or t.digest == single.digest for t in named):
            raise ConfigError(
                f"--token is the token named {single.name!r}: the tokens file "
                f"{options.tokens} must not hold that name or that token too"
            )
        named.append(single)
    return TokenTable(named, open_reads=options.open_reads)


def read_token(path: Path) -> str:
    """The bearer token in ``path``: its content without surrounding whitespace.

    Raises:
        ConfigError: the file cannot be read, is too large, is not text, or is empty.
    """
    raw = read_small_file(path, MAX_TOKEN_FILE_SIZE, "token file")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"token file {path} is not ASCII text") from None
    if not token or not token.isprintable() or any(c.isspace() for c in token):
        raise ConfigError(f"token file {path} must hold one token with no spaces")
    return token


def open_storage(data_dir: Path) -> SQLiteStorage:
    """A :class:`~crdtgossip.storage.SQLiteStorage` at ``data_dir/state.db``.

    The directory is created (mode 0700) when missing.

    Raises:
        StorageError: the directory cannot be made, or this installation has no SQLite
            storage.
    """
    # Imported here, not at the top: only --data-dir needs it, and an installation
    # without it should still run memory-only agents.
    try:
        from crdtgossip.storage import SQLiteStorage
    except ImportError as exc:
        raise StorageError(f"--data-dir needs crdtgossip.storage.SQLiteStorage: {exc}") from None
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot create data directory {str(data_dir)!r}: {exc.strerror}"
        ) from None
    return SQLiteStorage(data_dir / STATE_FILE)


def _config(name: str) -> GossipConfig:
    preset = CONFIG_PRESETS.get(name)
    if preset is None:
        raise ConfigError(f"unknown config {name!r}; use one of {', '.join(CONFIG_PRESETS)}")
    return preset()


def _announce(line: str) -> None:
    print(line, flush=True)


def _check_node_id(node_id: str) -> None:
    """A node id is a name (it appears in member lists, metrics and logs)."""
    try:
        check_name("--node-id", node_id)
    except RegistryError as exc:
        raise ConfigError(str(exc)) from None


def _beyond_loopback(host: str) -> bool:
    """Whether a listener on ``host`` may be reached from other machines."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: it may resolve to any interface


def _open_without_token(host: str, token: TokenTable | None) -> bool:
    """Whether the REST API would accept writes from other machines with no token."""
    return token is None and _beyond_loopback(host)


def _riemann_options(options: AgentOptions) -> list[tuple[str, str]]:
    """The Riemann listeners asked for: (flag, address) pairs."""
    asked = [("--riemann-tcp", options.riemann_tcp), ("--riemann-udp", options.riemann_udp)]
    return [(flag, address) for flag, address in asked if address is not None]


def _warn_riemann_beyond_loopback(flag: str, address: str, tokens: TokenTable | None) -> None:
    """Riemann's protocol has no authentication: say so when others can reach it."""
    if not _beyond_loopback(parse_address(address)[0]):
        return
    bypass = " (--token and --tokens do not apply to it)" if tokens is not None else ""
    print(
        f"crdtgossip agent: warning: {flag} {address} listens beyond this machine and "
        f"Riemann's protocol has no authentication{bypass}: anyone who can reach it can "
        "push health events",
        file=sys.stderr,
        flush=True,
    )


def _riemann_listener_class() -> type[RiemannListener]:
    # Imported here, not at the top: only --riemann-tcp/--riemann-udp need protobuf.
    try:
        from crdtgossip.apps.registry.riemann_listener import RiemannListener
    except ImportError as exc:
        if (exc.name or "").startswith("crdtgossip"):
            raise  # a broken installation, not a missing extra
        raise ConfigError(
            f"--riemann-tcp and --riemann-udp need the protobuf package ({exc.name} is "
            "missing): pip install 'crdtgossip[apps]'"
        ) from None
    return RiemannListener


async def _start_riemann(listener: RiemannListener, options: AgentOptions) -> str:
    """Start the listeners asked for; the ready line's words for them."""
    words = ""
    if options.riemann_tcp is not None:
        address = await listener.start_tcp(options.riemann_tcp)
        _log.info("taking Riemann events over TCP on %s (no authentication)", address)
        words += f" riemann-tcp={address}"
    if options.riemann_udp is not None:
        address = await listener.start_udp(options.riemann_udp)
        _log.info("taking Riemann events over UDP on %s (no authentication)", address)
        words += f" riemann-udp={address}"
    return words


async def _report_refused_frames(node: Node) -> None:
    """Log, at most every :data:`AUTH_DROP_REPORT_INTERVAL`, how many frames no key of
    the keyring opened: a peer with another key (or none) looks like silence otherwise."""
    reported = node.stats().get("drop_unauthenticated", 0)
    while True:
        await asyncio.sleep(AUTH_DROP_REPORT_INTERVAL)
        dropped = node.stats().get("drop_unauthenticated", 0)
        if dropped > reported:
            _log.warning(
                "refused %d gossip frame(s) that no key of the keyring opens: a peer "
                "with another keyring, or none? (check --keyring on every agent)",
                dropped - reported,
            )
        reported = dropped


async def run_agent(
    options: AgentOptions,
    stop: asyncio.Event,
    *,
    announce: Callable[[str], None] = _announce,
    clock: Callable[[], float] = time.time,
) -> None:
    """Run a node and the REST API until ``stop`` is set, then leave the cluster.

    Once both listen, ``announce`` gets one line: ``agent ID listening
    gossip=HOST:PORT http=HOST:PORT`` with the addresses actually bound (so port 0
    works), followed by ``riemann-tcp=HOST:PORT`` and ``riemann-udp=HOST:PORT`` when
    those listen.

    Args:
        options: what to run.
        stop: set it to stop the agent (gracefully: the cluster sees it leave).
        announce: where the ready line goes (stdout by default).
        clock: the registry's Unix time (tests inject one).

    Raises:
        ConfigError: a bad address, preset, token file; KeyringError: a bad keyring
        file; StorageError: a bad data directory; TransportError: an address in use.
    """
    _check_node_id(options.node_id)
    http_host, http_port = parse_address(options.http)
    config = _config(options.config)
    keyring = Keyring.from_file(options.keyring) if options.keyring is not None else None
    tokens = token_table(options)
    checks = load_checks(options.checks) if options.checks is not None else ()
    if _open_without_token(http_host, tokens):
        print(
            f"crdtgossip agent: warning: --http {options.http} listens beyond this machine "
            "and no --token is set (nor --tokens): anyone who can reach it can change the registry",
            file=sys.stderr,
            flush=True,
        )
    riemann = _riemann_options(options)
    for flag, address in riemann:  # a malformed address fails here, before any start
        _warn_riemann_beyond_loopback(flag, address, tokens)
    counters = RiemannCounters() if riemann else None
    listener_class = _riemann_listener_class() if riemann else None
    storage = open_storage(options.data_dir) if options.data_dir is not None else None
    node = Node(
        options.node_id,
        options.bind,
        seeds=options.join,
        keyring=keyring,
        storage=storage,
        config=config,
    )
    await node.start()
    registry = Registry(node, clock=clock, alone=not options.join)
    runner: web.AppRunner | None = None
    audit = AuditLog(node, registry.now)  # one record of the REST API's and Riemann's writes
    listener = (
        None
        if listener_class is None
        else listener_class(registry.push_event, counters, audit=audit)
    )
    ready = False
    try:
        await registry.start()
        runner = JsonErrorRunner(
            make_app(registry, tokens=tokens, audit=audit, riemann=counters),
            access_log=None,
            shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, http_host, http_port).start()
        except OSError as exc:
            raise TransportError(
                f"cannot serve HTTP on {options.http}: {exc.strerror or exc}"
            ) from None
        bound_host, bound_port = runner.addresses[0][:2]
        http_address = format_address(str(bound_host), int(bound_port))
        riemann_words = "" if listener is None else await _start_riemann(listener, options)
        announce(
            f"agent {options.node_id} listening gossip={node.address} http={http_address}"
            + riemann_words
        )
        ready = True
        watch = asyncio.create_task(_report_refused_frames(node), name="agent:auth-drops")
        checking = CheckRunner(checks, registry.push_event, clock=registry.now)
        check_task = asyncio.create_task(checking.run(stop), name="agent:checks")
        try:
            await stop.wait()
        finally:
            watch.cancel()
            check_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await check_task
    finally:
        if listener is not None:
            await listener.stop()
        await registry.stop()
        if runner is not None:
            await runner.cleanup()
        if ready:
            await node.leave()
        else:
            await node.stop()
