"""Fixtures shared by the transport tests: an inbox that collects frames, IPv6 probing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

# Generous bound on waiting for one frame on loopback: only a guard against a hang,
# never a measurement.
RECEIVE_TIMEOUT = 10.0


class Inbox:
    """A receive callback that queues ``(data, sender)`` pairs for the test to await."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()

    def __call__(self, data: bytes, sender: str) -> None:
        self.queue.put_nowait((data, sender))

    async def get(self) -> tuple[bytes, str]:
        return await asyncio.wait_for(self.queue.get(), RECEIVE_TIMEOUT)

    def empty(self) -> bool:
        return self.queue.empty()


def _ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = _ipv6_loopback_works()


@pytest.fixture
def make_inbox() -> Callable[[], Inbox]:
    return Inbox


@pytest.fixture
def ipv6() -> None:
    """Skip the test when this machine cannot bind the IPv6 loopback address."""
    if not IPV6:
        pytest.skip("IPv6 loopback (::1) is not available on this machine")
