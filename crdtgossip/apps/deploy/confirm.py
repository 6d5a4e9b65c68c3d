"""Waiting until the load balancers themselves have applied a drain.

A majority of agents holding the maintenance flag says the registry knows; it does not
say that nginx stopped sending traffic. Each renderer (``crdtgossip render``) reports,
after each install and reload, the stamps of the maintenance flags whose instances its
live file leaves out (:mod:`crdtgossip.apps.registry.renderers`). Those reports are
replicated, so any agent shows every renderer's, whichever agent it renders from.

:func:`confirm_drain` reads the flag's stamp from the agent that took the drain
(``GET /v1/maintenance``), then polls ``GET /v1/renderers`` until every renderer asked
for (or, with none named, every one that has reported) shows that stamp, or a later
one, for the instance. The stamp, not the agent's ``X-Index``, is what is compared:
each agent counts its index on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crdtgossip.apps._client import AgentError, BaseAgentClient, agent_path
from crdtgossip.apps.registry.renderers import confirms

__all__ = [
    "CONFIRM_POLL",
    "DEFAULT_CONFIRM_TIMEOUT",
    "Confirmation",
    "confirm_drain",
    "flag_stamp",
]

#: Seconds ``deploy drain`` waits by default for the majority and then the renderers:
#: a renderer waits for quiet (``--wait``, 2 s to 10 s by default) before it installs,
#: and its reload and report take a moment more; a minute leaves room for a slow check.
DEFAULT_CONFIRM_TIMEOUT = 60.0

#: Seconds between two reads of the reports: a fraction of a renderer's quiet wait, so
#: the drain ends soon after the last confirmation, at a few small reads a second.
CONFIRM_POLL = 0.2


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What confirmed a drain.

    Attributes:
        stamp: the maintenance flag's stamp (its write ``time``).
        renderers: the names of the renderers that applied it, sorted; empty when
            none was asked for and none has ever reported.
    """

    stamp: float
    renderers: tuple[str, ...]


async def flag_stamp(client: BaseAgentClient, service: str, instance: str) -> float:
    """The stamp of the instance's maintenance flag, as the agent holds it.

    Raises:
        AgentError: the agent has no ``/v1/maintenance`` (older than renderer reports),
            or the flag is not enabled there (an undrain came in between).
    """
    reply = await client.call("GET", agent_path("v1", "maintenance"))
    flags = reply.body.get("maintenance")
    for flag in flags if isinstance(flags, list) else ():
        if isinstance(flag, dict) and (flag.get("service"), flag.get("instance")) == (
            service,
            instance,
        ):
            stamp = flag.get("time")
            if flag.get("enabled") is True and isinstance(stamp, int | float):
                return float(stamp)
            break
    raise AgentError(
        f"{service}/{instance} is not in maintenance on {client.url} any more (undrained "
        "in between?): nothing to confirm"
    )


async def confirm_drain(
    client: BaseAgentClient,
    service: str,
    instance: str,
    *,
    renderers: Sequence[str] = (),
    timeout: float = DEFAULT_CONFIRM_TIMEOUT,
    poll: float = CONFIRM_POLL,
) -> Confirmation:
    """Wait until the renderers have left the drained instance out of their files.

    Args:
        client: the agent that took the drain.
        service: the service.
        instance: the drained instance.
        renderers: the renderer names to wait for; empty: every renderer that has
            reported (none reported: nothing to wait for).
        timeout: seconds to wait in all.
        poll: seconds between two reads of the reports.

    Returns:
        The flag's stamp and the renderers that confirmed it.

    Raises:
        AgentError: the flag is not set, or ``timeout`` passed first; the message names
            each renderer that did not confirm (and those that never reported).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    stamp = await flag_stamp(client, service, instance)
    while True:
        reply = await client.call("GET", agent_path("v1", "renderers"))
        found = reply.body.get("renderers")
        reports: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        wanted = sorted(set(renderers)) if renderers else sorted(reports)
        missing = [
            name for name in wanted if not _confirmed(reports.get(name), service, instance, stamp)
        ]
        if not missing:
            return Confirmation(stamp, tuple(wanted))
        if loop.time() >= deadline:
            raise AgentError(_timeout_message(service, instance, timeout, missing, reports))
        await asyncio.sleep(min(poll, max(0.0, deadline - loop.time())))


def _confirmed(report: object, service: str, instance: str, stamp: float) -> bool:
    return isinstance(report, Mapping) and confirms(report, service, instance, stamp)


def _timeout_message(
    service: str, instance: str, timeout: float, missing: Sequence[str], reports: Mapping[str, Any]
) -> str:
    silent = [name for name in missing if name not in reports]
    behind = [name for name in missing if name in reports]
    parts = []
    if behind:
        parts.append(f"renderer(s) {', '.join(behind)} did not apply it")
    if silent:
        parts.append(f"renderer(s) {', '.join(silent)} never reported")
    return (
        f"drain of {service}/{instance} not confirmed by the load balancers within "
        f"{timeout:g} s: {'; '.join(parts)} (the instance is in maintenance and may still "
        "get traffic from them; forget a renderer taken out of service with "
        "DELETE /v1/renderers/NAME)"
    )
