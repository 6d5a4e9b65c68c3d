"""Tests of crdtgossip.transport.udp on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from crdtgossip.errors import ConfigError, TransportError
from crdtgossip.transport import UDP_MAX_DATAGRAM, Transport, UdpTransport

from .conftest import RECEIVE_TIMEOUT, Inbox


@asynccontextmanager
async def started(bind: str, inbox: Inbox) -> AsyncIterator[UdpTransport]:
    transport = UdpTransport(bind, inbox)
    await transport.start()
    try:
        yield transport
    finally:
        await transport.close()


async def _exchange(bind: str, make_inbox: Callable[[], Inbox]) -> None:
    inbox_a, inbox_b = make_inbox(), make_inbox()
    async with started(bind, inbox_a) as a, started(bind, inbox_b) as b:
        a.send(b.address, b"ping")
        assert await inbox_b.get() == (b"ping", a.address)
        b.send(a.address, b"pong")
        assert await inbox_a.get() == (b"pong", b.address)
        assert a.stats()["frames_sent"] == 1
        assert a.stats()["bytes_sent"] == 4
        assert a.stats()["frames_received"] == 1
        assert b.stats()["bytes_received"] == 4


async def test_ipv4_both_ways(make_inbox: Callable[[], Inbox]) -> None:
    await _exchange("127.0.0.1:0", make_inbox)


@pytest.mark.usefixtures("ipv6")
async def test_ipv6_both_ways(make_inbox: Callable[[], Inbox]) -> None:
    await _exchange("[::1]:0", make_inbox)


async def test_address_is_the_bound_port(make_inbox: Callable[[], Inbox]) -> None:
    transport: Transport = UdpTransport("127.0.0.1:0", make_inbox())  # mypy checks the fit
    assert transport.max_datagram == UDP_MAX_DATAGRAM == 1400
    with pytest.raises(TransportError, match="not started"):
        _ = transport.address
    await transport.start()
    try:
        host, _, port = transport.address.rpartition(":")
        assert host == "127.0.0.1"
        assert int(port) > 0
        with pytest.raises(TransportError, match="already started"):
            await transport.start()
    finally:
        await transport.close()
    await transport.close()  # idempotent


@pytest.mark.usefixtures("ipv6")
async def test_dual_stack_socket_reports_ipv4_peers_plainly(
    make_inbox: Callable[[], Inbox],
) -> None:
    inbox_v6, inbox_v4 = make_inbox(), make_inbox()
    async with started("[::]:0", inbox_v6) as dual, started("127.0.0.1:0", inbox_v4) as v4:
        dual_port = dual.address.rpartition(":")[2]
        v4.send(f"127.0.0.1:{dual_port}", b"hello")
        data, sender = await inbox_v6.get()
        assert (data, sender) == (b"hello", v4.address)
        dual.send(sender, b"reply")  # an IPv4 destination from an IPv6 socket
        assert (await inbox_v4.get())[0] == b"reply"


async def test_oversize_frames_are_dropped_and_counted(make_inbox: Callable[[], Inbox]) -> None:
    inbox = make_inbox()
    async with started("127.0.0.1:0", make_inbox()) as a, started("127.0.0.1:0", inbox) as b:
        a.send(b.address, b"x" * (UDP_MAX_DATAGRAM + 1))
        a.send(b.address, b"y" * UDP_MAX_DATAGRAM)
        assert await inbox.get() == (b"y" * UDP_MAX_DATAGRAM, a.address)
        assert a.stats()["oversize_drops"] == 1
        assert a.stats()["frames_sent"] == 1


async def test_oversize_datagrams_received_are_dropped(make_inbox: Callable[[], Inbox]) -> None:
    inbox = make_inbox()
    async with started("127.0.0.1:0", inbox) as receiver:
        host, _, port = receiver.address.rpartition(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"z" * (UDP_MAX_DATAGRAM + 100), (host, int(port)))
            raw.sendto(b"fits", (host, int(port)))
        data, _ = await inbox.get()
        assert data == b"fits"
        assert receiver.stats()["receive_errors"] == 1
        assert receiver.stats()["frames_received"] == 1


async def test_bad_destinations_are_counted_not_raised(make_inbox: Callable[[], Inbox]) -> None:
    async with started("127.0.0.1:0", make_inbox()) as a:
        a.send("nonsense", b"x")
        a.send("127.0.0.1:0", b"x")
        a.send("[::1]:7000", b"x")  # IPv6 from an IPv4 socket
        a.send("256.1.1.1.invalid:7000", b"x")  # a name that does not resolve
        for _ in range(100):  # the lookup runs off the loop; wait for its verdict
            if a.stats()["send_errors"] == 4:
                break
            await asyncio.sleep(0.05)
        assert a.stats()["send_errors"] == 4
        assert a.stats()["frames_sent"] == 0


async def test_host_names_are_looked_up(make_inbox: Callable[[], Inbox]) -> None:
    inbox = make_inbox()
    async with started("127.0.0.1:0", make_inbox()) as a, started("127.0.0.1:0", inbox) as b:
        port = b.address.rpartition(":")[2]
        a.send(f"localhost:{port}", b"by name")
        assert await inbox.get() == (b"by name", a.address)


async def test_send_before_start_or_after_close_is_counted(
    make_inbox: Callable[[], Inbox],
) -> None:
    transport = UdpTransport("127.0.0.1:0", make_inbox())
    transport.send("127.0.0.1:9", b"x")
    await transport.start()
    await transport.close()
    transport.send("127.0.0.1:9", b"x")
    assert transport.stats()["send_errors"] == 2


async def test_raising_callback_does_not_stop_receiving(make_inbox: Callable[[], Inbox]) -> None:
    inbox = make_inbox()

    def fragile(data: bytes, sender: str) -> None:
        if data == b"bad":
            raise RuntimeError("bug in the layer above")
        inbox(data, sender)

    async with started("127.0.0.1:0", make_inbox()) as a:
        receiver = UdpTransport("127.0.0.1:0", fragile)
        await receiver.start()
        try:
            a.send(receiver.address, b"bad")
            a.send(receiver.address, b"good")
            assert (await inbox.get())[0] == b"good"
            assert receiver.stats()["callback_errors"] == 1
        finally:
            await receiver.close()


async def test_bind_errors_raise_transport_error(make_inbox: Callable[[], Inbox]) -> None:
    async with started("127.0.0.1:0", make_inbox()) as taken:
        with pytest.raises(TransportError, match="cannot bind"):
            await asyncio.wait_for(
                UdpTransport(taken.address, make_inbox()).start(), RECEIVE_TIMEOUT
            )
    with pytest.raises(TransportError, match="cannot resolve"):
        await UdpTransport("no-such-host.invalid:0", make_inbox()).start()


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError):
        UdpTransport("127.0.0.1", lambda data, sender: None)
    with pytest.raises(ConfigError, match="max_datagram"):
        UdpTransport("127.0.0.1:0", lambda data, sender: None, max_datagram=70000)
