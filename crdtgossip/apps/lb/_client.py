"""Reading the registry through an agent's REST API (aiohttp client).

Two reads, as the contract gives them: ``GET /v1/services`` for the service names and
the agent's change index (``X-Index``), then ``GET /v1/services/{service}?passing=true``
for each service's healthy instances not in maintenance; the agent decides what
healthy means (event states, ttl expiry), the renderer does not second-guess it.

Watching is one blocking query on ``/v1/services`` (``?index=N&wait=60s``): the index
covers every change the agent sees, health and maintenance included, so one query
wakes the loop for any of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self

from crdtgossip.apps.lb._model import Instance, parse_instances, safe_name
from crdtgossip.errors import ConfigError, DecodeError, TransportError

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

__all__ = [
    "BLOCKING_WAIT",
    "DAEMON_RETRY",
    "MAX_PARALLEL_REQUESTS",
    "MAX_REPLY_BYTES",
    "ONCE_RETRY",
    "REQUEST_TIMEOUT",
    "AgentClient",
    "RetryPolicy",
    "Snapshot",
]

_log = logging.getLogger("crdtgossip.apps.lb")

#: Seconds a blocking query may wait for a change. The registry wakes it for every
#: change (expiries included), so this only bounds how long a silently broken
#: connection can go unnoticed. Consul defaults to 5 min; consul-template asks for 1 min.
BLOCKING_WAIT = 60.0

#: Seconds allowed for a read that does not block, and added on top of a blocking
#: read's wait: the agent adds up to wait/16 of jitter (as Consul does), 3.75 s at 60 s.
REQUEST_TIMEOUT = 10.0

#: Largest reply read, in bytes. A registry of 10,000 instances answers a few MiB; past
#: this the URL is not pointing at an agent, and reading on would only eat memory.
MAX_REPLY_BYTES = 64 * 1024 * 1024

#: Per-service reads in flight at once: enough to read hundreds of services in a few
#: round trips without opening a connection per service.
MAX_PARALLEL_REQUESTS = 8

#: Bytes read per chunk while enforcing :data:`MAX_REPLY_BYTES`.
_CHUNK = 64 * 1024

#: Lowest HTTP status counted as the agent's own failure, retried like a network error.
_SERVER_ERROR = 500
_NOT_FOUND = 404


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry an agent that cannot be reached.

    Delays double from ``first_delay`` up to ``max_delay``, each drawn between half and
    all of its value, so renderers restarted together do not retry in lockstep.

    Attributes:
        attempts: tries in all before giving up with :class:`TransportError`.
        first_delay: seconds before the second try.
        max_delay: the longest pause between two tries.
    """

    attempts: int
    first_delay: float
    max_delay: float

    def __post_init__(self) -> None:
        if self.attempts < 1 or not 0 <= self.first_delay <= self.max_delay:
            raise ConfigError("RetryPolicy needs attempts >= 1 and 0 <= first <= max delay")

    def delay(self, failures: int) -> float:
        """Seconds to pause after the ``failures``-th failed try in a row (from 1)."""
        ceiling = min(self.max_delay, self.first_delay * 2 ** min(failures - 1, 32))
        return random.uniform(ceiling / 2, ceiling)


#: The running render loop's patience: 12 tries over about two minutes (consul-template
#: retries 12 times, doubling from 250 ms, by default), then exit non-zero and let the
#: supervisor restart it. The live file keeps the last good state meanwhile.
DAEMON_RETRY = RetryPolicy(attempts=12, first_delay=0.25, max_delay=30.0)

#: ``--once``'s patience: a script wants an answer in seconds (4 tries, under 2 s).
ONCE_RETRY = RetryPolicy(attempts=4, first_delay=0.25, max_delay=1.0)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one read of the registry found.

    Attributes:
        index: the agent's ``X-Index`` for the service list.
        services: every service to its healthy instances not in maintenance. A service
            whose name is not safe to render is listed with no instance and not read.
    """

    index: int
    services: Mapping[str, list[Instance]]


class _Retryable(Exception):
    """A failure worth another try (network, timeout, 5xx)."""


class AgentClient:
    """A reader of one agent's REST API; use as ``async with AgentClient(url) as c``.

    Args:
        url: the agent's HTTP address, ``http://127.0.0.1:8500``.
        retry: how to retry an unreachable agent.
        session: an aiohttp session to use (it is not closed); by default the client
            opens one and closes it on exit.

    Raises:
        ~crdtgossip.errors.ConfigError: the URL is not an http or https URL, or aiohttp is not
            installed.
    """

    def __init__(
        self,
        url: str,
        *,
        retry: RetryPolicy = DAEMON_RETRY,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        try:
            from yarl import URL
        except ImportError as exc:  # pragma: no cover - aiohttp (and yarl) are the extra
            raise ConfigError(
                "crdtgossip render needs aiohttp: pip install 'crdtgossip[apps]'"
            ) from exc
        try:
            base = URL(url)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--agent {url!r} is not a URL: {exc}") from exc
        if base.scheme not in ("http", "https") or not base.host:
            raise ConfigError(f"--agent {url!r} must be an http:// or https:// URL with a host")
        self.url = str(base)
        self.retry = retry
        self._base: URL = base
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def snapshot(self, *, index: int = 0, wait: float = BLOCKING_WAIT) -> Snapshot:
        """Read every service's healthy instances, blocking first if ``index`` is given.

        Args:
            index: 0 to read at once; otherwise wait until the agent's index passes it
                (or ``wait`` ends) before reading.
            wait: the longest blocking wait, in seconds.

        Returns:
            The services and the index to block on next.

        Raises:
            ~crdtgossip.errors.TransportError: the agent could not be reached (or answered 5xx) in
                :attr:`retry`'s tries.
            ~crdtgossip.errors.ConfigError: the agent refused the request (4xx): a wrong URL, most
                likely.
            ~crdtgossip.errors.DecodeError: the reply is not the contract's JSON (not a crdtgossip
                agent).
        """
        failures = 0
        while True:
            try:
                return await self._snapshot_once(index, wait)
            except _Retryable as exc:
                failures += 1
                if failures >= self.retry.attempts:
                    raise TransportError(
                        f"agent {self.url} unreachable after {failures} tries: {exc}"
                    ) from exc
                pause = self.retry.delay(failures)
                _log.warning(
                    "agent %s unreachable (%s); try %d of %d in %.1f s",
                    self.url,
                    exc,
                    failures + 1,
                    self.retry.attempts,
                    pause,
                )
                await asyncio.sleep(pause)

    async def _snapshot_once(self, index: int, wait: float) -> Snapshot:
        params = {"index": str(index), "wait": f"{wait:g}s"} if index > 0 else {}
        timeout = REQUEST_TIMEOUT + (wait if index > 0 else 0.0)
        status, reply_index, body = await self._get(("v1", "services"), params, timeout)
        if status == _NOT_FOUND:
            raise ConfigError(
                f"{self.url} has no /v1/services (404): is --agent the agent's HTTP address?"
            )
        listing = body.get("services")
        if not isinstance(listing, dict) or not all(isinstance(name, str) for name in listing):
            raise DecodeError(f'agent {self.url}: /v1/services is not {{"services": {{...}}}}')
        gate = asyncio.Semaphore(MAX_PARALLEL_REQUESTS)

        async def passing(name: str) -> list[Instance] | None:
            async with gate:
                return await self._passing(name)

        names = sorted(listing)
        readable = [name for name in names if safe_name(name)]
        found = await asyncio.gather(*(passing(name) for name in readable))
        services: dict[str, list[Instance]] = {name: [] for name in names}
        for name, instances in zip(readable, found, strict=True):
            if instances is None:
                # Deregistered between the two reads: the next read sees it gone.
                del services[name]
            else:
                services[name] = instances
        return Snapshot(reply_index, services)

    async def _passing(self, service: str) -> list[Instance] | None:
        status, _, body = await self._get(
            ("v1", "services", service), {"passing": "true"}, REQUEST_TIMEOUT
        )
        if status == _NOT_FOUND:
            return None
        return parse_instances(body)

    async def _get(
        self, path: tuple[str, ...], params: Mapping[str, str], timeout: float
    ) -> tuple[int, int, dict[str, object]]:
        """GET a JSON object; returns (status, X-Index, body). 404 is returned, not raised."""
        import aiohttp

        if self._session is None:
            raise ConfigError("AgentClient used outside 'async with'")
        url = self._base.joinpath(*path)
        try:
            async with self._session.get(
                url, params=params, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                raw = await _read_bounded(response)
                status = response.status
                index_header = response.headers.get("X-Index")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retryable(f"GET {url.path}: {_describe(exc)}") from exc
        if status >= _SERVER_ERROR:
            raise _Retryable(f"GET {url.path}: HTTP {status} {_error_text(raw)}")
        if status == _NOT_FOUND:
            return status, 0, {}
        if status >= 300:
            raise ConfigError(
                f"agent {self.url} refused GET {url.path}: HTTP {status} {_error_text(raw)}"
            )
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise DecodeError(f"agent {self.url}: GET {url.path} did not return JSON") from exc
        if not isinstance(body, dict):
            raise DecodeError(f"agent {self.url}: GET {url.path} did not return an object")
        if index_header is None or not index_header.isdigit():
            raise DecodeError(
                f"agent {self.url}: GET {url.path} has no X-Index header: "
                f"is --agent a crdtgossip agent?"
            )
        return status, int(index_header), body


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > MAX_REPLY_BYTES:
            raise DecodeError(f"agent reply larger than {MAX_REPLY_BYTES} bytes")
    return bytes(body)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error_text(raw: bytes) -> str:
    """The ``error`` of a JSON error reply, else the start of the body, for messages."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text: str = body["error"]
    else:
        text = raw[:200].decode("utf-8", "replace")
    return " ".join(text.split())[:200]
