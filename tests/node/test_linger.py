"""A leaving node lingers until its stream transport has sent what it holds, boundedly.

Real loopback sockets: the peer is a plain asyncio server that takes no bytes until the
test lets it, so the sender's buffers fill and stay full for as long as the test wants.
"""

from __future__ import annotations

import asyncio

from crdtgossip._driver import Driver
from crdtgossip.config import GossipConfig
from crdtgossip.transport._address import format_sockaddr

#: More than loopback's kernel buffers take (a few MiB each way), so some stays queued.
FRAMES, FRAME = 8, 4 * 1024 * 1024

#: Only a guard against a hang, never a measurement.
PATIENCE = 30.0


class _SlowPeer:
    """Accepts connections, reads nothing until :meth:`open_up`, then reads it all."""

    def __init__(self) -> None:
        self.received = 0
        self.reading = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return format_sockaddr(self.server.sockets[0].getsockname())

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def open_up(self) -> None:
        self.reading.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.reading.wait()
        while chunk := await reader.read(1 << 20):
            self.received += len(chunk)
        writer.close()


async def _driver() -> Driver:
    driver = Driver("lingerer", GossipConfig.local(), None, lambda engine: None)
    await driver.bind("127.0.0.1:0")
    return driver


def _fill(driver: Driver, address: str) -> None:
    """Queue more for ``address`` than the kernel's buffers take."""
    assert driver.tcp is not None
    for _ in range(FRAMES):
        driver.tcp.send(address, b"x" * FRAME)


async def test_linger_waits_until_the_stream_transport_has_sent_everything() -> None:
    peer = _SlowPeer()
    driver = await _driver()
    try:
        async with peer as address:
            _fill(driver, address)
            lingering = asyncio.create_task(driver.linger(0.0, patience=PATIENCE))
            # The peer takes nothing yet: whatever the kernel holds, the rest waits.
            for _ in range(20):
                await asyncio.sleep(0.01)
                assert driver.backlog(address) > 0
                assert driver.backlog() == driver.backlog(address)
            assert not lingering.done()
            peer.open_up()
            await asyncio.wait_for(lingering, PATIENCE)
            assert driver.backlog() == 0
            await driver.close()  # only now: nothing is left for it to drop
            for _ in range(int(PATIENCE / 0.01)):
                if peer.received >= FRAMES * FRAME:
                    break
                await asyncio.sleep(0.01)
            assert peer.received >= FRAMES * FRAME
    finally:
        await driver.close()


async def test_linger_gives_up_after_its_patience() -> None:
    peer = _SlowPeer()
    driver = await _driver()
    try:
        async with peer as address:
            _fill(driver, address)
            await asyncio.wait_for(driver.linger(0.0, patience=0.2), PATIENCE)
            assert driver.backlog(address) > 0  # a peer that takes nothing is not waited for
            peer.open_up()
    finally:
        await driver.close()


async def test_linger_without_a_stream_backlog_only_sleeps() -> None:
    driver = await _driver()
    try:
        assert driver.backlog() == 0
        await asyncio.wait_for(driver.linger(0.05, patience=PATIENCE), PATIENCE)
    finally:
        await driver.close()
