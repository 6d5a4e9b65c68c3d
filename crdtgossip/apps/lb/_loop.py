"""The render loop: watch the agent, render, wait for quiet, install.

One blocking query is always in flight, so changes keep being read while the loop
waits for quiescence or runs a check. Every reply is rendered and compared: a reply
does not prove a change (consul#4988), the text does. A text equal to the live file
is no change; a text the check refused is not tried again until the output moves on.
The first render after start does not wait: the starting state is not a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from crdtgossip.apps.lb._client import BLOCKING_WAIT, AgentClient, Snapshot
from crdtgossip.apps.lb._install import InstallResult, LiveFile
from crdtgossip.apps.lb._protocol import Renderer
from crdtgossip.apps.lb._quiescence import DEFAULT_WAIT, Quiescence, Wait
from crdtgossip.errors import ConfigError

__all__ = ["IDLE_POLL_FLOOR", "RenderLoop"]

_log = logging.getLogger("crdtgossip.apps.lb")

#: Seconds between two blocking queries when the last one came back early without a
#: new index: an agent that ignores ``wait`` (or a proxy in front of it that cuts long
#: requests) would otherwise be polled in a tight loop.
IDLE_POLL_FLOOR = 1.0


class RenderLoop:
    """Keeps one file rendered from one agent.

    Args:
        client: the agent to read (already entered: ``async with``).
        renderer: what to render.
        live: the file to keep current, with its check and reload commands.
        wait: quiescence bounds (``--wait``).
        blocking_wait: seconds each blocking query may wait for a change.
    """

    def __init__(
        self,
        client: AgentClient,
        renderer: Renderer,
        live: LiveFile,
        *,
        wait: Wait | None = None,
        blocking_wait: float = BLOCKING_WAIT,
    ) -> None:
        self.client = client
        self.renderer = renderer
        self.live = live
        self.wait = wait if wait is not None else Wait.parse(DEFAULT_WAIT)
        self.blocking_wait = blocking_wait
        self._last_render_error: str | None = None

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
        snapshot = await self.client.snapshot()
        result = await self.live.install(self.renderer.render(snapshot.services))
        if result.changed:
            _log.info("%s installed", self.live.path)
        return result

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
                    # A reply that came back early with no newer index (an agent that
                    # ignores wait, or a restarted one) paces the next query.
                    stalled = snapshot.index <= index and took < IDLE_POLL_FLOOR
                    pause = IDLE_POLL_FLOOR - took if stalled else 0.0
                    index = snapshot.index
                    text = self._render(snapshot)
                    if text is None or text == pending:
                        pass
                    elif text in (self.live.current(), refused):
                        pending = None
                        quiet.clear()
                    else:
                        pending = text
                        quiet.changed(loop.time())
                    install_now, first = first, False
                due = quiet.due()
                if pending is not None and (
                    install_now or (due is not None and due <= loop.time())
                ):
                    candidate, pending = pending, None
                    quiet.clear()
                    result = await self.live.install(candidate)
                    refused = candidate if result.error is not None and not result.changed else None
                    _report(self.live, result)
                install_now = False
        finally:
            for task in (watch, stopping):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _watch(self, index: int, pause: float) -> tuple[Snapshot, float]:
        """The next snapshot after ``index``, and how long its query took."""
        if pause > 0:
            await asyncio.sleep(pause)
        loop = asyncio.get_running_loop()
        started = loop.time()
        snapshot = await self.client.snapshot(index=index, wait=self.blocking_wait)
        return snapshot, loop.time() - started

    def _render(self, snapshot: Snapshot) -> str | None:
        """Render, or log why not (once per distinct reason) and return None."""
        try:
            text = self.renderer.render(snapshot.services)
        except ConfigError as exc:
            if str(exc) != self._last_render_error:
                _log.error("render failed, %s left unchanged: %s", self.live.path, exc)
            self._last_render_error = str(exc)
            return None
        self._last_render_error = None
        return text


def _report(live: LiveFile, result: InstallResult) -> None:
    if result.error is not None:
        _log.error("%s", result.error)
    elif result.changed:
        _log.info("%s installed%s", live.path, " and reloaded" if live.reload else "")
