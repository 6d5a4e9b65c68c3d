"""Waiting for a condition in async tests on real sockets, without timing assertions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

#: The most a condition may take before a test fails. A guard against hanging, not a
#: timing assertion: conditions normally hold within a second.
PATIENCE = 30.0

#: Seconds between two checks of the condition.
POLL_INTERVAL = 0.02


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, patience: float = PATIENCE
) -> None:
    """Poll ``condition`` until it holds; fail the test with ``what`` if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(POLL_INTERVAL)
