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
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crdtgossip.apps._client import (
    MAX_REPLY_BYTES,
    AgentError,
    AgentReplyError,
    AgentUnreachable,
    BaseAgentClient,
    agent_path,
)
from crdtgossip.apps.lb._model import Instance, parse_instances, safe_name
from crdtgossip.errors import ConfigError, DecodeError, TransportError

if TYPE_CHECKING:
    import aiohttp

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

#: Per-service reads in flight at once: enough to read hundreds of services in a few
#: round trips without opening a connection per service.
MAX_PARALLEL_REQUESTS = 8

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
        ready: whether the agent has synced with a peer since it started (or runs
            alone by configuration); when False, ``services`` is empty and must not be
            rendered: it is what an agent that has not caught up yet holds.
        not_ready_reason: the agent's words for why it is not ready.
    """

    index: int
    services: Mapping[str, list[Instance]]
    ready: bool = True
    not_ready_reason: str = ""


class _Retryable(Exception):
    """A failure worth another try (network, timeout, 5xx)."""


class AgentClient(BaseAgentClient):
    """A reader of one agent's REST API; use as ``async with AgentClient(url) as c``.

    The session and the reading of replies are shared with the deploy hooks' client
    (both build on one base); this one adds the renderer's policy: 5xx and an
    unreachable agent are retried, 404 means "gone", any other refusal is a wrong URL.

    Args:
        url: the agent's HTTP address, ``http://127.0.0.1:8500``.
        retry: how to retry an unreachable agent.
        session: an aiohttp session to use (it is not closed); by default the client
            opens one and closes it on exit.
        token: the bearer token, sent with every request (the agent needs it for the
            renderer's reports when it protects writes).

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
        token: str | None = None,
    ) -> None:
        super().__init__(url, token=token, timeout=REQUEST_TIMEOUT, session=session)
        self.retry = retry

    @staticmethod
    def _base_url(url: str) -> str:
        # Called once the base has checked that aiohttp (and so yarl, its URL parser)
        # is installed.
        from yarl import URL

        if any(char.isspace() for char in url):
            raise ConfigError(f"--agent {url!r} is not a URL: it holds white space")
        if "://" not in url:
            # "127.0.0.1:7700", as deploy and the agent's own --http take it.
            url = f"http://{url}"
        try:
            base = URL(url)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--agent {url!r} is not a URL: {exc}") from exc
        if base.scheme not in ("http", "https") or not base.host:
            raise ConfigError(
                f"--agent {url!r} must be HOST:PORT or an http:// or https:// URL with a host"
            )
        return str(base)

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
                        f"agent {self.url} unreachable after {failures} tries: {exc} (is "
                        "`crdtgossip agent` running, and is --agent its --http address?)"
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

    async def readiness(self) -> tuple[bool, str]:
        """``GET /v1/ready``: whether the agent may be rendered from, and why not.

        An agent without the endpoint (404: older than readiness reports) counts as
        ready.

        Raises:
            ~crdtgossip.errors.TransportError: the agent could not be reached.
            ~crdtgossip.errors.DecodeError: the reply is not ``{"ready": bool, ...}``.
        """
        reply = await self._get(agent_path("v1", "ready"), {}, REQUEST_TIMEOUT)
        if reply is None:
            return True, ""
        _, body = reply
        ready = body.get("ready")
        if not isinstance(ready, bool):
            raise DecodeError(f'agent {self.url}: /v1/ready is not {{"ready": true|false}}')
        reason = body.get("reason")
        return ready, reason if isinstance(reason, str) else ""

    async def _snapshot_once(self, index: int, wait: float) -> Snapshot:
        ready, reason = await self.readiness()
        if not ready:
            return Snapshot(0, {}, ready=False, not_ready_reason=reason)
        params = {"index": str(index), "wait": f"{wait:g}s"} if index > 0 else {}
        timeout = REQUEST_TIMEOUT + (wait if index > 0 else 0.0)
        reply = await self._get(agent_path("v1", "services"), params, timeout)
        if reply is None:
            raise ConfigError(
                f"{self.url} has no /v1/services (404): is --agent the agent's HTTP address?"
            )
        reply_index, body = reply
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
        path = agent_path("v1", "services", service)
        reply = await self._get(path, {"passing": "true"}, REQUEST_TIMEOUT)
        if reply is None:
            return None
        _, body = reply
        return parse_instances(body)

    async def _get(
        self, path: str, params: Mapping[str, str], timeout: float
    ) -> tuple[int, dict[str, Any]] | None:
        """GET a JSON object: (X-Index, body); None for 404 ("gone", or a wrong URL)."""
        try:
            reply = await self.call("GET", path, params=params, timeout=timeout)
        except AgentUnreachable as exc:
            raise _Retryable(f"GET {path}: {exc.detail}") from exc
        except AgentReplyError:
            raise  # a DecodeError: not an agent, trying again will not help
        except AgentError as exc:
            answer = f"HTTP {exc.status} {exc.detail}"
            if exc.status is not None and exc.status >= _SERVER_ERROR:
                raise _Retryable(f"GET {path}: {answer}") from exc
            if exc.status == _NOT_FOUND:
                return None
            raise ConfigError(f"agent {self.url} refused GET {path}: {answer}") from exc
        if reply.index is None:
            raise DecodeError(
                f"agent {self.url}: GET {path} has no X-Index header: "
                f"is --agent a crdtgossip agent?"
            )
        return reply.index, reply.body
