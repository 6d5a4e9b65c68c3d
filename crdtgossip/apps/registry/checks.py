"""Active checks run by the agent next to what they watch, reported as health events.

A check is HTTP (a GET: 2xx ok, 429 warning, anything else or no answer critical, as
Consul does), TCP (a connection opened in time: ok, else critical) or a command (exit
0 ok, 1 warning, anything else critical: the Nagios plugin convention Consul and Sensu
follow), each with a timeout. Each run becomes one Riemann-shaped event, ``{host,
service, state, metric, time, ttl, tags, description}``: ``host`` is the instance,
``metric`` the seconds the check took, ``description`` its output (cut at
:data:`MAX_OUTPUT_BYTES`, control characters replaced), ``tags`` ``check:KIND``.

The event's ``ttl`` is :func:`check_ttl`: a few intervals, so a check runner that dies
(or an agent that hangs) lets the instance expire to critical instead of leaving its
last ``ok`` standing. :class:`CheckRunner` runs every check on its own interval and
hands each event to a sink (``Registry.push_event`` for the agent's own registry).
No decision here needs a socket: :func:`state_of_status` and :func:`state_of_exit`
are the tables, the runners only measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from crdtgossip.apps._cli import read_small_file
from crdtgossip.apps.registry.fields import MAX_DESCRIPTION_LENGTH, RegistryError, check_name
from crdtgossip.errors import ConfigError, CRDTGossipError

__all__ = [
    "MAX_OUTPUT_BYTES",
    "TTL_INTERVALS",
    "Check",
    "CheckRunner",
    "check_ttl",
    "load_checks",
    "parse_checks",
    "run_check",
    "state_of_exit",
    "state_of_status",
]

_log = logging.getLogger(__name__)

#: Bytes of a check's output kept in the event. Consul keeps 4 KiB by default
#: (``check_output_max_size``); the registry's description limit is the same.
MAX_OUTPUT_BYTES = MAX_DESCRIPTION_LENGTH

#: Intervals an event stays valid: one missed run is noise, three in a row mean the
#: checker is gone, and the instance turns critical.
TTL_INTERVALS = 3.0

#: Shortest interval and timeout, in seconds: below this a check is a busy loop.
MIN_INTERVAL = 0.05

CheckKind = Literal["http", "tcp", "command"]

#: Largest checks file read, in bytes: a few hundred checks fit in a few KiB each.
MAX_CHECKS_FILE_BYTES = 1024 * 1024

_KINDS: tuple[CheckKind, ...] = ("http", "tcp", "command")
_CHECK_FIELDS = frozenset({"service", "instance", "interval", "timeout", *_KINDS})

#: HTTP status Consul maps to warning ("too many requests": alive, but shedding load).
_TOO_MANY_REQUESTS = 429


@dataclass(frozen=True, slots=True)
class Check:
    """One active check of one instance.

    Attributes:
        service: the instance's service.
        instance: the instance id (the event's ``host``).
        kind: ``http``, ``tcp`` or ``command``.
        target: the URL (http), ``HOST:PORT`` (tcp), or the argv (command).
        interval: seconds between two runs.
        timeout: seconds one run may take before it counts as critical.
    """

    service: str
    instance: str
    kind: CheckKind
    target: str | tuple[str, ...]
    interval: float = 10.0
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in ("http", "tcp", "command"):
            raise ConfigError(f"a check is http, tcp or command, not {self.kind!r}")
        if not (self.interval >= MIN_INTERVAL and self.timeout >= MIN_INTERVAL):
            raise ConfigError(f"check interval and timeout must be at least {MIN_INTERVAL} s")
        if self.kind == "command":
            if not isinstance(self.target, tuple) or not self.target:
                raise ConfigError("a command check needs its argv as a non-empty tuple")
        elif not isinstance(self.target, str) or not self.target:
            raise ConfigError(f"a {self.kind} check needs its target as a string")


def parse_checks(document: object) -> tuple[Check, ...]:
    """The checks of a checks file's JSON: ``{"checks": [{service, instance, one of
    http (a URL) | tcp (HOST:PORT) | command (an argv list), interval?, timeout?}]}``,
    seconds as numbers.

    Raises:
        ConfigError: the document is not of that shape (the message names the entry).
    """
    entries = document.get("checks") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError('a checks file holds {"checks": [...]}')
    checks = []
    for number, entry in enumerate(entries, 1):
        where = f"check {number}"
        if not isinstance(entry, dict) or set(entry) - _CHECK_FIELDS:
            raise ConfigError(f"{where}: an object of {', '.join(sorted(_CHECK_FIELDS))}")
        kinds = [kind for kind in _KINDS if kind in entry]
        if len(kinds) != 1:
            raise ConfigError(f"{where}: exactly one of http, tcp or command")
        target = entry[kinds[0]]
        if kinds[0] == "command":
            if not isinstance(target, list) or not all(isinstance(a, str) for a in target):
                raise ConfigError(f"{where}: command is a list of strings (an argv)")
            target = tuple(target)
        try:
            service = check_name("service", entry.get("service"))
            instance = check_name("instance", entry.get("instance"))
        except RegistryError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        timing = {}
        for field in ("interval", "timeout"):
            value = entry.get(field)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(f"{where}: {field} is a number of seconds")
                if not math.isfinite(value):
                    raise ConfigError(f"{where}: {field} is a finite number of seconds")
                timing[field] = float(value)
        try:
            checks.append(Check(service, instance, kinds[0], target, **timing))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(checks)


def load_checks(path: Path) -> tuple[Check, ...]:
    """The checks of the JSON file at ``path`` (:func:`parse_checks`).

    Raises:
        ConfigError: the file cannot be read, is not JSON, or is not a checks file.
    """
    raw = read_small_file(path, MAX_CHECKS_FILE_BYTES, "checks file")
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"checks file {path} is not JSON: {exc}") from None
    try:
        return parse_checks(document)
    except ConfigError as exc:
        raise ConfigError(f"checks file {path}: {exc}") from None


def check_ttl(check: Check) -> float:
    """The ``ttl`` of the check's events: :data:`TTL_INTERVALS` intervals, and never
    less than one interval plus the timeout."""
    return max(check.interval * TTL_INTERVALS, check.interval + check.timeout)


def state_of_status(status: int) -> str:
    """An HTTP status as a state: 2xx ok, 429 warning, else critical."""
    if 200 <= status < 300:
        return "ok"
    return "warning" if status == _TOO_MANY_REQUESTS else "critical"


def state_of_exit(code: int) -> str:
    """A command's exit status as a state: 0 ok, 1 warning, else critical."""
    return {0: "ok", 1: "warning"}.get(code, "critical")


def _text(raw: bytes) -> str:
    """Output as event text: cut to fit, undecodable bytes and control characters
    (but line breaks and tabs) replaced, so the registry accepts it."""
    text = raw[:MAX_OUTPUT_BYTES].decode("utf-8", errors="replace")
    return "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text)


async def _http(check: Check) -> tuple[str, str]:
    import aiohttp

    assert isinstance(check.target, str)
    timeout = aiohttp.ClientTimeout(total=check.timeout)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(check.target, allow_redirects=False) as response,
    ):
        body = await response.content.read(MAX_OUTPUT_BYTES)
        return state_of_status(response.status), f"HTTP {response.status}: {_text(body)}"


async def _tcp(check: Check) -> tuple[str, str]:
    assert isinstance(check.target, str)
    host, _, port = check.target.rpartition(":")
    if not host or not port.isdigit():
        return "critical", f"bad tcp target {check.target!r}: expected HOST:PORT"
    _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return "ok", f"TCP connect {check.target}: success"


async def _command(check: Check) -> tuple[str, str]:
    assert isinstance(check.target, tuple)
    process = await asyncio.create_subprocess_exec(
        *check.target,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        output = await process.stdout.read(MAX_OUTPUT_BYTES)
        # Whatever it prints beyond the cap is read and dropped, so it never blocks.
        while await process.stdout.read(64 * 1024):
            pass
        code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return state_of_exit(code), f"exit {code}: {_text(output)}"


_RUNNERS = {"http": _http, "tcp": _tcp, "command": _command}


async def run_check(check: Check, clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Run ``check`` once; its event (see the module docstring). Never raises for
    what the check finds: a timeout, a refused connection, a missing command are each
    a critical event saying so."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(check.timeout):
            state, description = await _RUNNERS[check.kind](check)
    except TimeoutError:
        state, description = "critical", f"{check.kind} check timed out after {check.timeout:g} s"
    except (OSError, ValueError, CRDTGossipError) as exc:
        state, description = "critical", f"{check.kind} check failed: {exc}"
    except Exception as exc:  # aiohttp's client errors, any other failure to check
        state, description = "critical", f"{check.kind} check failed: {type(exc).__name__}: {exc}"
    return {
        "host": check.instance,
        "service": check.service,
        "state": state,
        "metric": loop.time() - started,
        "time": clock(),
        "ttl": check_ttl(check),
        "tags": [f"check:{check.kind}"],
        "description": description[:MAX_DESCRIPTION_LENGTH] or state,
    }


Sink = Callable[[Mapping[str, Any]], Awaitable[object]]


class CheckRunner:
    """Runs checks on their intervals and hands each event to ``sink``.

    Args:
        checks: the checks to run.
        sink: takes each event (``Registry.push_event``); an error of ours it raises
            (the instance is not registered yet) is logged once per check and the
            check goes on.
        clock: the Unix time of the events.
    """

    def __init__(
        self, checks: Sequence[Check], sink: Sink, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.checks = tuple(checks)
        self._sink = sink
        self._clock = clock
        #: Events handed to the sink and accepted, over the runner's life.
        self.reported = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Run every check until ``stop`` is set."""
        tasks = [asyncio.create_task(self._loop(check, stop)) for check in self.checks]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _loop(self, check: Check, stop: asyncio.Event) -> None:
        refused: str | None = None
        while not stop.is_set():
            event = await run_check(check, self._clock)
            try:
                await self._sink(event)
            except CRDTGossipError as exc:
                if str(exc) != refused:
                    _log.warning(
                        "check of %s/%s: event refused: %s", check.service, check.instance, exc
                    )
                refused = str(exc)
            else:
                refused = None
                self.reported += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(check.interval):
                    await stop.wait()
