"""Telling the registry which drains this renderer's live file applies.

After each install (and reload) the render loop calls :meth:`ApplyReporter.report`
with what the live file routes to. The reporter reads the maintenance flags with their
stamps (``GET /v1/maintenance``), keeps the flags that are enabled *and* whose instance
the live file leaves out, and sends ``PUT /v1/renderers/{name}``
``{applied, services, reloaded_at}`` (see :mod:`crdtgossip.apps.registry.renderers`).
``crdtgossip deploy drain`` waits for those reports.

The flags are read after the live file was rendered, so they may be newer than it;
that is why only instances the file really leaves out are reported: a stamp says
"seen", the file says "applied". A file whose reload failed applies nothing: no drain
is reported until an install reloads.

Reporting never stops rendering: a failed report is logged (once per kind of failure)
and tried again at the next change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from crdtgossip.apps._client import AgentError, BaseAgentClient, agent_path
from crdtgossip.errors import CRDTGossipError

__all__ = ["ApplyReporter", "applied_drains"]

_log = logging.getLogger("crdtgossip.apps.lb")

#: The HTTP status of an agent older than renderer reports.
_NOT_FOUND = 404

Installed = Mapping[str, frozenset[str]]


def applied_drains(flags: object, installed: Installed) -> dict[str, dict[str, float]]:
    """The drains ``installed`` applies: service -> instance -> flag stamp.

    Args:
        flags: the ``maintenance`` list of ``GET /v1/maintenance``.
        installed: service -> the ids of the instances the live file routes to.

    Returns:
        Every enabled flag with a numeric stamp whose instance ``installed`` leaves
        out; malformed entries are skipped.
    """
    applied: dict[str, dict[str, float]] = {}
    if not isinstance(flags, list):
        return applied
    for flag in flags:
        if not isinstance(flag, dict) or flag.get("enabled") is not True:
            continue
        service, instance, stamp = flag.get("service"), flag.get("instance"), flag.get("time")
        if not isinstance(service, str) or not isinstance(instance, str):
            continue
        if isinstance(stamp, bool) or not isinstance(stamp, int | float):
            continue
        if instance in installed.get(service, frozenset()):
            continue
        applied.setdefault(service, {})[instance] = float(stamp)
    return applied


class ApplyReporter:
    """Reports one renderer's applied drains to its agent.

    Args:
        client: the agent (the render loop's own client).
        name: the renderer's name in the registry (``render --name``).
        clock: the Unix time, for ``reloaded_at``.
    """

    def __init__(
        self, client: BaseAgentClient, name: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.name = name
        self._clock = clock
        self._reloaded_at: float | None = None
        self._reload_failed = False
        self._sent: dict[str, Any] | None = None
        self._failing: str | None = None
        #: Reports the agent accepted, over the reporter's life.
        self.sent_total = 0

    def installed(self, *, reloaded: bool) -> None:
        """Note an install of the live file: ``reloaded`` when its reload (if any) ran
        through, False when it failed (the proxy may still run the old file)."""
        if reloaded:
            self._reloaded_at = self._clock()
        self._reload_failed = not reloaded

    async def report(self, installed: Installed) -> bool:
        """Send what ``installed`` (the live file's instances) applies, if it changed.

        Returns:
            Whether the agent holds this report now (sent, or the same as the last).
        """
        try:
            reply = await self.client.call("GET", agent_path("v1", "maintenance"))
            applied = (
                {}
                if self._reload_failed
                else applied_drains(reply.body.get("maintenance"), installed)
            )
            body = {
                "applied": applied,
                "services": {service: len(ids) for service, ids in sorted(installed.items())},
                "reloaded_at": self._reloaded_at,
            }
            if body == self._sent:
                return True
            await self.client.call("PUT", agent_path("v1", "renderers", self.name), body)
        except CRDTGossipError as exc:
            self._sent = None
            self._log_failure(exc)
            return False
        self._sent = body
        self.sent_total += 1
        if self._failing is not None:
            _log.info("renderer %s reports to %s again", self.name, self.client.url)
        self._failing = None
        return True

    def _log_failure(self, exc: CRDTGossipError) -> None:
        old_agent = isinstance(exc, AgentError) and exc.status == _NOT_FOUND
        kind = "old agent" if old_agent else type(exc).__name__
        if kind == self._failing:
            return
        self._failing = kind
        if old_agent:
            _log.warning(
                "agent %s has no renderer reports (older than them): drains through it "
                "cannot be confirmed by renderer %s",
                self.client.url,
                self.name,
            )
        else:
            _log.warning("renderer %s cannot report to %s: %s", self.name, self.client.url, exc)
