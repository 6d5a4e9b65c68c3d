"""Helpers shared by the TCP transport tests: bounded polling, started transports, hellos."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

from crdtgossip.transport import TcpTransport
from crdtgossip.transport.tcp import TCP_HELLO_MAGIC, TCP_HELLO_VERSION

from .conftest import Inbox

# Bounds on polling loops that wait for an asynchronous effect (a close noticed, a
# counter moved): POLLS x POLL_INTERVAL is only a guard against hanging.
POLLS = 200
POLL_INTERVAL = 0.05

LOOPBACK = "127.0.0.1:0"


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait, boundedly, until ``condition()`` holds; fail if it never does."""
    for _ in range(POLLS):
        if condition():
            return
        await asyncio.sleep(POLL_INTERVAL)
    raise AssertionError("condition never held")


async def send_until_received(sender: TcpTransport, address: str, inbox: Inbox) -> bytes:
    """Send numbered frames until one arrives; the first few may die with an old
    connection that the sender has not yet noticed is closed (best effort)."""
    for attempt in range(POLLS):
        sender.send(address, b"probe %d" % attempt)
        with suppress(TimeoutError):
            data, _ = await asyncio.wait_for(inbox.queue.get(), POLL_INTERVAL)
            return data
    raise AssertionError("no frame got through")


@asynccontextmanager
async def started(transport: TcpTransport) -> AsyncIterator[TcpTransport]:
    await transport.start()
    try:
        yield transport
    finally:
        await transport.close()


def hello_frame(address: str) -> bytes:
    payload = TCP_HELLO_MAGIC + bytes([TCP_HELLO_VERSION]) + address.encode("ascii")
    return len(payload).to_bytes(4, "big") + payload


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
