"""Deploy hooks: an HTTP client of the registry agent for provisioning tools and CI.

Each hook is one request to an agent's REST API (``docs/apps/registry.rst``):

========== =========================================================================
register   ``PUT /v1/services/{service}/instances/{instance}``
deregister ``DELETE /v1/services/{service}/instances/{instance}``
drain      ``PUT .../maintenance`` with ``enable: true, consistency: "majority"``:
           the agent answers once more than half of the alive members have the
           flag, so no load balancer rendered from a majority still sends traffic;
           with ``confirm``, then waits until the load balancers' renderers report
           the instance left out of their files (:mod:`.confirm`); then an
           optional grace period lets connections in flight finish
undrain    ``PUT .../maintenance`` with ``enable: false``
release    ``PUT /v1/releases/{env}/{service}``
========== =========================================================================

Example::

    async with AgentClient("http://127.0.0.1:7700") as agent:
        await agent.drain("web", "web-1", reason="upgrade", grace=10.0)
        ...  # upgrade
        await agent.undrain("web", "web-1")
"""

from __future__ import annotations

import math
from asyncio import sleep
from collections.abc import Mapping, Sequence
from time import monotonic
from typing import Any
from urllib.parse import urlencode

from crdtgossip.apps._client import (
    DEFAULT_HTTP_TIMEOUT,
    AgentError,
    BaseAgentClient,
    agent_path,
)
from crdtgossip.apps.deploy.confirm import Confirmation, confirm_drain

__all__ = [
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_HTTP_TIMEOUT",
    "HTTP_MARGIN",
    "MAX_GRACE",
    "AgentClient",
    "AgentError",
    "normalize_url",
]

#: Seconds a drain waits for the majority by default: a few gossip rounds on a WAN.
DEFAULT_DRAIN_TIMEOUT = 10.0

#: Seconds added to the majority timeout for the HTTP request itself, so the agent's
#: own 504 (with its message) arrives before the client gives up.
HTTP_MARGIN = 5.0

#: Longest grace period after a drain: an hour. Connection draining in HAProxy and
#: load balancers of cloud providers is usually seconds to minutes (AWS ELB: up to 3600 s).
MAX_GRACE = 3600.0


def normalize_url(url: str) -> str:
    """The agent's base URL: ``http://`` added when no scheme is given, no trailing /.

    Raises:
        AgentError: the URL is empty or not http(s).
    """
    text = url.strip()
    if not text:
        raise AgentError("the agent URL is empty; give one like http://127.0.0.1:7700")
    if "://" not in text:
        text = f"http://{text}"
    if not text.startswith(("http://", "https://")):
        raise AgentError(f"the agent URL must be http:// or https://, not {url!r}")
    return text.rstrip("/")


class AgentClient(BaseAgentClient):
    """A client of one registry agent.

    The session, the token and the failures are handled as in the load balancer's
    client (both build on one base): an agent that cannot be reached raises
    ``AgentUnreachable``, an :class:`AgentError` that is also a
    :class:`~crdtgossip.errors.TransportError`; a success status without a JSON object
    ``AgentReplyError``, also a :class:`~crdtgossip.errors.DecodeError`.

    Args:
        url: the agent's base URL (``http://127.0.0.1:7700``; ``http://`` is assumed).
        token: the bearer token, when the agent protects writes.
        timeout: seconds each request may take (drains add their majority timeout).
        session: an aiohttp session to use; by default the client opens its own, closed
            by :meth:`close` (or leaving ``async with``).

    Raises:
        AgentError: the URL is empty or not http(s).
    """

    #: What confirmed the last :meth:`drain` with ``confirm`` (None otherwise).
    last_confirmation: Confirmation | None = None

    @staticmethod
    def _base_url(url: str) -> str:
        return normalize_url(url)

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one request; return the agent's JSON reply.

        Raises:
            AgentError: the agent answered with an error (its message is kept), or
                could not be reached, or did not answer JSON.
        """
        reply = await self.call(method, path, body, timeout=timeout)
        return reply.body

    # ---- the hooks -------------------------------------------------------------------
    async def register(
        self,
        service: str,
        instance: str,
        *,
        address: str,
        port: int,
        env: str | None = None,
        tags: Sequence[str] = (),
        meta: Mapping[str, str] | None = None,
        ttl: float | None = None,
    ) -> dict[str, Any]:
        """Register (or update) an instance; returns it as the agent shows it."""
        body: dict[str, Any] = {"address": address, "port": port, "tags": list(tags)}
        if env is not None:
            body["env"] = env
        if meta:
            body["meta"] = dict(meta)
        if ttl is not None:
            body["ttl"] = ttl
        reply = await self.request("PUT", self._instance_path(service, instance), body)
        return dict(reply["instance"])

    async def deregister(self, service: str, instance: str) -> None:
        """Deregister an instance (404 from the agent when it is not registered)."""
        await self.request("DELETE", self._instance_path(service, instance))

    async def drain(
        self,
        service: str,
        instance: str,
        *,
        reason: str | None = None,
        timeout: float = DEFAULT_DRAIN_TIMEOUT,
        grace: float = 0.0,
        confirm: bool = False,
        renderers: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Put an instance in maintenance, wait for a majority, then ``grace`` seconds.

        Args:
            service: the service.
            instance: the instance to drain.
            reason: why, shown in the registry.
            timeout: seconds the majority may take; with ``confirm``, the whole wait
                (majority and renderers).
            grace: seconds to wait at the end, for connections in flight.
            confirm: also wait until the renderers have applied the drain
                (:func:`~crdtgossip.apps.deploy.confirm.confirm_drain`); what confirmed
                it is then in :attr:`last_confirmation`.
            renderers: with ``confirm``, the renderers to wait for (empty: every one
                that has reported).

        Returns:
            The instance as the agent shows it.

        Raises:
            AgentError: the agent refused, or the majority did not confirm within
                ``timeout`` (status 504; the flag is still set and spreading), or the
                agent's node cannot coordinate a quorum (501), or (``confirm``) the
                renderers did not all apply it in time (the message names them).
        """
        if not (math.isfinite(grace) and 0 <= grace <= MAX_GRACE):
            raise AgentError(f"grace must be 0 to {MAX_GRACE:g} seconds, not {grace!r}")
        started = monotonic()
        body: dict[str, Any] = {"enable": True, "consistency": "majority", "timeout": timeout}
        if reason is not None:
            body["reason"] = reason
        reply = await self.request(
            "PUT",
            self._instance_path(service, instance) + "/maintenance",
            body,
            timeout=timeout + HTTP_MARGIN,
        )
        self.last_confirmation = None
        if confirm:
            left = max(0.0, timeout - (monotonic() - started))
            self.last_confirmation = await confirm_drain(
                self, service, instance, renderers=renderers, timeout=left
            )
        if grace > 0:
            await sleep(grace)
        return dict(reply["instance"])

    async def undrain(self, service: str, instance: str) -> dict[str, Any]:
        """Take an instance out of maintenance; returns it as the agent shows it."""
        reply = await self.request(
            "PUT", self._instance_path(service, instance) + "/maintenance", {"enable": False}
        )
        return dict(reply["instance"])

    async def release(
        self,
        env: str,
        service: str,
        version: str,
        *,
        build: str | None = None,
        commit: str | None = None,
        **details: str | float | None,
    ) -> dict[str, Any]:
        """Record a release; returns it with the ``time`` the agent gave it.

        Args:
            env: the environment.
            service: the service.
            version: the version released.
            build: the CI build id.
            commit: the source commit.
            details: any of ``instance``, ``url``, ``initiator`` (str), ``started``
                and ``finished`` (Unix seconds); None ones are left out.
        """
        body: dict[str, Any] = {"version": version}
        if build is not None:
            body["build"] = build
        if commit is not None:
            body["commit"] = commit
        body.update((name, value) for name, value in details.items() if value is not None)
        reply = await self.request("PUT", agent_path("v1", "releases", env, service), body)
        return dict(reply["release"])

    async def releases_of(self, env: str, *, at: float | None = None) -> dict[str, Any]:
        """``GET /v1/releases/{env}``: every service of ``env`` (as of ``at``).

        Raises:
            AgentError: no release was ever recorded in ``env`` (404), or as
                :meth:`request`.
        """
        path = agent_path("v1", "releases", env)
        if at is not None:
            path += f"?at={at!r}"
        return await self.request("GET", path)

    async def performance(
        self, env: str, service: str, version: str, metric: str
    ) -> dict[str, Any]:
        """``GET /v1/perf/{env}/{service}``: the percentiles of ``metric`` for
        ``version`` (``count`` 0 when none was recorded)."""
        query = urlencode({"version": version, "metric": metric})
        return await self.request("GET", agent_path("v1", "perf", env, service) + "?" + query)

    @staticmethod
    def _instance_path(service: str, instance: str) -> str:
        return agent_path("v1", "services", service, "instances", instance)
