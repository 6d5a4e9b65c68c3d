"""The render loop: watch the agent, render, wait for quiet, install.

One blocking query is always in flight, so changes keep being read while the loop
waits for quiescence or runs a check. Every reply is rendered and compared: a reply
does not prove a change (consul#4988), the text does. A text equal to the live file
is no change; a text the check refused is not tried again until the output moves on.
The first render after start does not wait: the starting state is not a burst.

Three guards stand between the registry and the live file:

* an agent that is not ready (has not synced with a peer since it started) is not
  rendered from at all: its state is what it had before catching up, often nothing;
* a render that drops too much at once is refused (:class:`DropGuard`);
* a render the check refuses is retried with the failing instances left out
  (:func:`isolate`), so one bad registration costs its own line, never every later
  change: they are logged and counted in :attr:`RenderLoop.left_out_total`.

With a reporter (:mod:`._report`), the loop tells the registry after each install,
and after each read that changed nothing, which drains the live file applies, so that
``deploy drain`` can wait for the load balancers themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from crdtgossip.apps.lb._client import BLOCKING_WAIT, AgentClient, Snapshot
from crdtgossip.apps.lb._guard import DropGuard, rendered_ids
from crdtgossip.apps.lb._install import InstallResult, LiveFile
from crdtgossip.apps.lb._isolate import InstanceKey, instance_keys, isolate, without
from crdtgossip.apps.lb._model import Services
from crdtgossip.apps.lb._protocol import Renderer
from crdtgossip.apps.lb._quiescence import DEFAULT_WAIT, Quiescence, Wait
from crdtgossip.apps.lb._report import ApplyReporter
from crdtgossip.errors import ConfigError

__all__ = ["IDLE_POLL_FLOOR", "ONCE_READY_WAIT", "READY_POLL", "RenderLoop"]

_log = logging.getLogger("crdtgossip.apps.lb")

#: Seconds between two blocking queries when the last one came back early without a
#: new index: an agent that ignores ``wait`` (or a proxy in front of it that cuts long
#: requests) would otherwise be polled in a tight loop.
IDLE_POLL_FLOOR = 1.0

#: Seconds between two readiness polls of an agent that is not ready: it becomes ready
#: at its first exchange with a peer, a gossip round or two after it starts.
READY_POLL = 0.25

#: Seconds ``--once`` waits for an agent to become ready before failing: long enough
#: for an agent started just before it to sync with a peer (``lan`` push-pull).
ONCE_READY_WAIT = 30.0

# Marks a render that raised: never equal to a rendered text or to the live file.
_RENDER_FAILED = "\0render failed: "


class RenderLoop:
    """Keeps one file rendered from one agent.

    Args:
        client: the agent to read (already entered: ``async with``).
        renderer: what to render.
        live: the file to keep current, with its check and reload commands.
        wait: quiescence bounds (``--wait``).
        blocking_wait: seconds each blocking query may wait for a change.
        guard: the drop guard (``--max-drop``); ``DropGuard(1.0)`` turns it off.
        reporter: reports the drains the live file applies (``--name``); None
            reports nothing.

    Attributes:
        left_out: the instances the last install left out because they failed the
            render or its check (service, id, address, port).
        left_out_total: how many instances were left out so, over the loop's life.
    """

    def __init__(
        self,
        client: AgentClient,
        renderer: Renderer,
        live: LiveFile,
        *,
        wait: Wait | None = None,
        blocking_wait: float = BLOCKING_WAIT,
        guard: DropGuard | None = None,
        reporter: ApplyReporter | None = None,
    ) -> None:
        self.client = client
        self.renderer = renderer
        self.live = live
        self.wait = wait if wait is not None else Wait.parse(DEFAULT_WAIT)
        self.blocking_wait = blocking_wait
        self.guard = guard if guard is not None else DropGuard()
        self.reporter = reporter
        self.left_out: tuple[InstanceKey, ...] = ()
        self.left_out_total = 0
        self._not_ready_logged = False
        self._installed: dict[str, frozenset[str]] | None = None
        self._trusted: frozenset[InstanceKey] = frozenset()

    async def render_once(self) -> InstallResult:
        """Read the registry now, render, and install if the text changed (``--once``).

        Returns:
            What the install did; ``error`` is set when the check refused the file or the
            reload failed.

        Raises:
            ~crdtgossip.errors.ConfigError: the renderer failed, or its check cannot run.
            ~crdtgossip.errors.TransportError: the agent could not be reached.
            ~crdtgossip.errors.DecodeError: the agent's reply is not the contract's JSON.
            ~crdtgossip.errors.StorageError: the file could not be written.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ONCE_READY_WAIT
        snapshot = await self.client.snapshot()
        while not snapshot.ready:
            if loop.time() >= deadline:
                raise ConfigError(
                    f"agent {self.client.url} is not ready after {ONCE_READY_WAIT:g} s "
                    f"({snapshot.not_ready_reason or 'not synced'}); {self.live.path} "
                    "left unchanged"
                )
            await asyncio.sleep(READY_POLL)
            snapshot = await self.client.snapshot()
        result = await self.install(snapshot.services)
        if result.changed:
            _log.info("%s installed", self.live.path)
        await self.report()
        return result

    async def install(self, services: Services) -> InstallResult:
        """Guard, render, check and install ``services``; isolate what fails.

        Returns:
            What the install did; ``error`` says what was refused, if anything.

        Raises:
            ~crdtgossip.errors.ConfigError: the renderer's check cannot run.
            ~crdtgossip.errors.StorageError: the file could not be written.
        """
        refused = self.guard.refusal(self._installed, rendered_ids(services))
        if refused is not None:
            return InstallResult(changed=False, error=refused)
        try:
            text: str | None = self.renderer.render(services)
        except ConfigError as exc:
            text, failure = None, f"render failed, {self.live.path} left unchanged: {exc}"
        if text is not None:
            result = await self.live.install(text)
            if result.error is None or result.changed:
                self._accept(services, (), result)
                return result
            failure = result.error
        try:
            found = await isolate(services, self._trusted, self._trial)
        except ConfigError as exc:
            # No instance explains it (the template, the check itself): refused whole.
            _log.debug("no instance isolated: %s", exc)
            return InstallResult(changed=False, error=failure)
        kept = without(services, found.left_out)
        refused = self.guard.refusal(self._installed, rendered_ids(kept))
        if refused is not None:
            return InstallResult(changed=False, error=refused)
        result = await self.live.install(self.renderer.render(kept))
        if result.error is None or result.changed:
            self._accept(kept, found.left_out, result)
            names = ", ".join(f"{s}/{i} ({a}:{p})" for s, i, a, p in found.left_out)
            _log.warning(
                "left out %d instance(s) the render or its check refused: %s; first refusal: %s",
                len(found.left_out),
                names,
                found.reason,
            )
        return result

    async def _trial(self, services: Services) -> str | None:
        """Render and check ``services`` without installing: None if accepted."""
        try:
            text = self.renderer.render(services)
        except ConfigError as exc:
            return str(exc)
        return await self.live.validate(text)

    def _accept(
        self,
        services: Services,
        left_out: tuple[InstanceKey, ...],
        result: InstallResult | None = None,
    ) -> None:
        if self.reporter is not None and result is not None and result.changed:
            self.reporter.installed(reloaded=result.error is None)
        self._installed = rendered_ids(services)
        self._trusted = instance_keys(services)
        self.left_out = left_out
        self.left_out_total += len(left_out)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Render until ``stop`` is set; see the module docstring.

        A refused check or a failed reload is logged and the loop goes on; the live
        file then holds the last accepted text.

        Args:
            stop: set it to end the loop; a change still waiting for quiet is dropped.

        Raises:
            ~crdtgossip.errors.TransportError: the agent stayed unreachable through the client's
                retries.
            ~crdtgossip.errors.ConfigError: the renderer's check cannot run (its binary is missing).
            ~crdtgossip.errors.DecodeError: the agent's reply is not the contract's JSON.
            ~crdtgossip.errors.StorageError: the file could not be written.
        """
        loop = asyncio.get_running_loop()
        stop = stop if stop is not None else asyncio.Event()
        stopping = asyncio.ensure_future(stop.wait())
        quiet = Quiescence(self.wait)
        pending: str | None = None  # rendered, changed, waiting for quiescence
        pending_services: Services = {}
        refused: str | None = None  # the last text the check refused
        index = 0
        pause = 0.0
        first = True  # the first render installs at once
        install_now = False
        watch: asyncio.Task[tuple[Snapshot, float]] | None = None
        try:
            while True:
                if watch is None:
                    watch = asyncio.ensure_future(self._watch(index, pause))
                due = quiet.due()
                timeout = None if due is None else max(0.0, due - loop.time())
                done, _ = await asyncio.wait(
                    {watch, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if stopping in done:
                    return
                if watch in done:
                    snapshot, took = watch.result()
                    watch = None
                    if not snapshot.ready:
                        self._report_not_ready(snapshot)
                        index, pause = 0, READY_POLL
                        continue
                    self._not_ready_logged = False
                    # A reply that came back early with no newer index (an agent that
                    # ignores wait, or a restarted one) paces the next query.
                    stalled = snapshot.index <= index and took < IDLE_POLL_FLOOR
                    pause = IDLE_POLL_FLOOR - took if stalled else 0.0
                    index = snapshot.index
                    text = self._render(snapshot)
                    if text == pending:
                        pass
                    elif text in (self.live.current(), refused):
                        if text != refused:
                            # Already live: what the guard compares the next render with.
                            self._accept(snapshot.services, ())
                        pending = None
                        quiet.clear()
                    else:
                        pending, pending_services = text, snapshot.services
                        quiet.changed(loop.time())
                    install_now, first = first, False
                    if not install_now:
                        await self.report()
                due = quiet.due()
                if pending is not None and (
                    install_now or (due is not None and due <= loop.time())
                ):
                    candidate, pending = pending, None
                    quiet.clear()
                    result = await self.install(pending_services)
                    # A text refused, or installed only with instances left out, is not
                    # tried again until the output moves on.
                    refused = candidate if result.error is not None or self.left_out else None
                    _report(self.live, result)
                    await self.report()
                install_now = False
        finally:
            for task in (watch, stopping):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def report(self) -> bool:
        """Report the live file's applied drains to the agent (when there is a
        reporter and the loop has installed or adopted a file).

        Returns:
            Whether the agent holds the current report (False without a reporter).
        """
        if self.reporter is None or self._installed is None:
            return False
        return await self.reporter.report(self._installed)

    async def _watch(self, index: int, pause: float) -> tuple[Snapshot, float]:
        """The next snapshot after ``index``, and how long its query took."""
        if pause > 0:
            await asyncio.sleep(pause)
        loop = asyncio.get_running_loop()
        started = loop.time()
        snapshot = await self.client.snapshot(index=index, wait=self.blocking_wait)
        return snapshot, loop.time() - started

    def _render(self, snapshot: Snapshot) -> str:
        """The text to compare; a failed render gives a marker with its reason, so
        that :meth:`install` still isolates the instances that make it fail."""
        try:
            return self.renderer.render(snapshot.services)
        except ConfigError as exc:
            return _RENDER_FAILED + str(exc)

    def _report_not_ready(self, snapshot: Snapshot) -> None:
        if not self._not_ready_logged:
            _log.warning(
                "agent %s is not ready (%s): not rendering from it, %s left unchanged",
                self.client.url,
                snapshot.not_ready_reason or "not synced with a peer yet",
                self.live.path,
            )
        self._not_ready_logged = True


def _report(live: LiveFile, result: InstallResult) -> None:
    if result.error is not None:
        _log.error("%s", result.error)
    elif result.changed:
        _log.info("%s installed%s", live.path, " and reloaded" if live.reload else "")
