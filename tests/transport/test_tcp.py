"""Tests of crdtgossip.transport.tcp on real loopback sockets (TLS: test_tcp_tls.py)."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import ssl
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import pytest

from crdtgossip.errors import ConfigError, TransportError
from crdtgossip.transport import TCP_MAX_FRAME, TcpTransport, Transport
from crdtgossip.transport import _tcp_inbound as inbound_module

from .conftest import RECEIVE_TIMEOUT, Inbox
from .tcp_helpers import (
    LOOPBACK,
    eventually,
    hello_frame,
    host_port,
    send_until_received,
    started,
)

# --- plain TCP ---------------------------------------------------------------------------


async def _exchange(bind: str, make_inbox: Callable[[], Inbox]) -> None:
    inbox_a, inbox_b = make_inbox(), make_inbox()
    async with (
        started(TcpTransport(bind, inbox_a)) as a,
        started(TcpTransport(bind, inbox_b)) as b,
    ):
        a.send(b.address, b"ping")
        # The sender is reported by its listening address, not the connection's port.
        assert await inbox_b.get() == (b"ping", a.address)
        b.send(a.address, b"pong")
        assert await inbox_a.get() == (b"pong", b.address)
        assert a.stats()["frames_sent"] == 1
        assert b.stats()["bytes_received"] == 4
        assert a.stats()["connections_opened"] == 1
        assert a.stats()["connections_accepted"] == 1


async def test_ipv4_both_ways(make_inbox: Callable[[], Inbox]) -> None:
    await _exchange(LOOPBACK, make_inbox)


@pytest.mark.usefixtures("ipv6")
async def test_ipv6_both_ways(make_inbox: Callable[[], Inbox]) -> None:
    await _exchange("[::1]:0", make_inbox)


async def test_one_mebibyte_frame_and_order(make_inbox: Callable[[], Inbox]) -> None:
    inbox = make_inbox()
    big = os.urandom(1024 * 1024)
    async with (
        started(TcpTransport(LOOPBACK, make_inbox())) as a,
        started(TcpTransport(LOOPBACK, inbox)) as b,
    ):
        a.send(b.address, big)
        for number in range(50):
            a.send(b.address, number.to_bytes(2, "big"))
        assert await inbox.get() == (big, a.address)
        assert [(await inbox.get())[0] for _ in range(50)] == [
            n.to_bytes(2, "big") for n in range(50)
        ]
        assert a.stats()["connections_opened"] == 1  # all on one pooled connection


async def test_frames_over_max_frame_are_dropped_on_send(make_inbox: Callable[[], Inbox]) -> None:
    inbox = make_inbox()
    async with (
        started(TcpTransport(LOOPBACK, make_inbox(), max_frame=1024)) as a,
        started(TcpTransport(LOOPBACK, inbox)) as b,
    ):
        a.send(b.address, b"x" * 1025)
        a.send(b.address, b"y" * 1024)
        assert await inbox.get() == (b"y" * 1024, a.address)
        assert a.stats()["oversize_drops"] == 1
        assert a.max_datagram == a.max_frame == 1024


async def test_oversized_length_closes_the_connection_and_is_counted(
    make_inbox: Callable[[], Inbox],
) -> None:
    inbox = make_inbox()
    async with (
        started(TcpTransport(LOOPBACK, make_inbox())) as a,
        started(TcpTransport(LOOPBACK, inbox, max_frame=1024)) as b,
    ):
        a.send(b.address, b"z" * 2048)  # a may send it; b must refuse it
        await eventually(lambda: b.stats()["receive_errors"] == 1)
        # a notices the close and reconnects for later frames.
        assert (await send_until_received(a, b.address, inbox)).startswith(b"probe")
        assert a.stats()["connections_opened"] >= 2


async def test_wildcard_listener_is_reported_by_source_ip(
    make_inbox: Callable[[], Inbox],
) -> None:
    inbox = make_inbox()
    async with (
        started(TcpTransport("0.0.0.0:0", make_inbox())) as a,
        started(TcpTransport(LOOPBACK, inbox)) as b,
    ):
        a.send(b.address, b"hi")
        _, sender = await inbox.get()
        assert sender == f"127.0.0.1:{host_port(a.address)[1]}"


async def test_connection_refused_counts_queued_frames(make_inbox: Callable[[], Inbox]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with started(TcpTransport(LOOPBACK, make_inbox())) as a:
        for _ in range(3):
            a.send(f"127.0.0.1:{port}", b"lost")
        await eventually(lambda: a.stats()["send_errors"] == 3)
        assert a.stats()["connect_failures"] == 1
        assert a.stats()["frames_sent"] == 0


async def test_reconnects_after_the_peer_restarts(make_inbox: Callable[[], Inbox]) -> None:
    inbox = make_inbox()
    async with started(TcpTransport(LOOPBACK, make_inbox())) as a:
        b = TcpTransport(LOOPBACK, make_inbox())
        await b.start()
        address = b.address
        a.send(address, b"first")
        await eventually(lambda: b.stats()["frames_received"] == 1)
        await b.close()
        async with started(TcpTransport(address, inbox)):
            assert (await send_until_received(a, address, inbox)).startswith(b"probe")


async def test_idle_connections_are_closed_and_reopened(make_inbox: Callable[[], Inbox]) -> None:
    inbox = make_inbox()
    async with (
        started(TcpTransport(LOOPBACK, make_inbox(), idle_timeout=0.2)) as a,
        started(TcpTransport(LOOPBACK, inbox)) as b,
    ):
        a.send(b.address, b"one")
        await inbox.get()
        await eventually(lambda: a.stats()["idle_closes"] == 1)
        await eventually(lambda: b.stats()["open_connections"] == 0)
        a.send(b.address, b"two")
        assert (await inbox.get())[0] == b"two"
        assert a.stats()["connections_opened"] == 2


async def test_bad_destinations_and_closed_transport_count_errors(
    make_inbox: Callable[[], Inbox],
) -> None:
    transport = TcpTransport(LOOPBACK, make_inbox())
    transport.send("127.0.0.1:9", b"not started")
    await transport.start()
    transport.send("nonsense", b"x")
    transport.send("127.0.0.1:0", b"x")
    await transport.close()
    transport.send("127.0.0.1:9", b"closed")
    await transport.close()  # idempotent
    assert transport.stats()["send_errors"] == 4
    with pytest.raises(TransportError, match="only once"):
        await transport.start()


async def test_address_before_start_raises_and_protocol_fits(
    make_inbox: Callable[[], Inbox],
) -> None:
    transport: Transport = TcpTransport(LOOPBACK, make_inbox())  # mypy checks the fit
    assert transport.max_datagram == TCP_MAX_FRAME
    with pytest.raises(TransportError, match="not started"):
        _ = transport.address


async def test_listen_errors_raise_transport_error(make_inbox: Callable[[], Inbox]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(TransportError, match="cannot listen"):
            await TcpTransport(address, make_inbox()).start()


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    def ignore(data: bytes, sender: str) -> None:
        pass

    with pytest.raises(ConfigError):
        TcpTransport("[::1]", ignore)
    with pytest.raises(ConfigError, match="max_frame"):
        TcpTransport(LOOPBACK, ignore, max_frame=0)
    with pytest.raises(ConfigError, match="idle_timeout"):
        TcpTransport(LOOPBACK, ignore, idle_timeout=0)
    with pytest.raises(ConfigError, match="both"):
        TcpTransport(LOOPBACK, ignore, ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))


# --- hostile input -----------------------------------------------------------------------

# 100 connections x 20 writes: the 2,000 random writes the brief asks the server to
# survive, in batches so that only a bounded number of sockets is open at once.
GARBAGE_CONNECTIONS = 100
GARBAGE_WRITES_PER_CONNECTION = 20
GARBAGE_BATCH = 20


async def _hostile_connection(address: str, rng: random.Random, kind: int) -> None:
    host, port = host_port(address)
    _, writer = await asyncio.open_connection(host, port)
    try:
        if kind == 1:  # a proper hello, then garbage
            writer.write(hello_frame("127.0.0.1:1"))
        elif kind == 2:  # a hello, then a length far over max_frame
            writer.write(hello_frame("127.0.0.1:1") + (2**32 - 1).to_bytes(4, "big"))
        elif kind == 3:  # a hello, then half a frame
            writer.write(hello_frame("127.0.0.1:1") + (100).to_bytes(4, "big") + b"half")
        elif kind == 4:  # a hello naming port 0
            writer.write(hello_frame("127.0.0.1:0"))
        for _ in range(GARBAGE_WRITES_PER_CONNECTION):
            writer.write(rng.randbytes(rng.randrange(0, 200)))
            await writer.drain()
    except OSError:
        pass  # the server may hang up on us at any point: that is allowed
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


async def test_garbage_at_the_port_leaves_the_server_serving(
    make_inbox: Callable[[], Inbox],
) -> None:
    rng = random.Random(2024)
    inbox = make_inbox()
    garbage_frames = 0

    def count(data: bytes, sender: str) -> None:
        # Garbage after a valid hello may parse as frames: they are just opaque
        # bytes to the transport and go up to be rejected by the decoder.
        nonlocal garbage_frames
        if sender == "127.0.0.1:1":
            garbage_frames += 1
        else:
            inbox(data, sender)

    async with (
        started(TcpTransport(LOOPBACK, count, max_frame=4096)) as server,
        started(TcpTransport(LOOPBACK, make_inbox())) as honest,
    ):
        for start in range(0, GARBAGE_CONNECTIONS, GARBAGE_BATCH):
            batch = [
                _hostile_connection(server.address, rng, kind % 5)
                for kind in range(start, start + GARBAGE_BATCH)
            ]
            await asyncio.wait_for(asyncio.gather(*batch), RECEIVE_TIMEOUT)
        stats = server.stats()
        assert stats["connections_accepted"] == GARBAGE_CONNECTIONS
        assert stats["receive_errors"] >= GARBAGE_CONNECTIONS // 2
        await eventually(lambda: server.stats()["open_connections"] == 0)
        honest.send(server.address, b"still serving")
        assert await inbox.get() == (b"still serving", honest.address)


@pytest.mark.parametrize(
    "opening",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\x00\x00\x04XXXX",  # wrong magic
        b"\x00\x00\x00\x04CGT\x09",  # unknown version
        b"\x00\x00\x00\x08CGT\x01\xff\xfe:1",  # not ASCII
        b"\x00\x00\x00\x0cCGT\x01nonsense",  # not an address
    ],
)
async def test_bad_hellos_close_and_count(opening: bytes, make_inbox: Callable[[], Inbox]) -> None:
    async with started(TcpTransport(LOOPBACK, make_inbox())) as server:
        reader, writer = await asyncio.open_connection(*host_port(server.address))
        writer.write(opening)
        # The server hangs up on a bad hello without waiting for us to close.
        assert await asyncio.wait_for(reader.read(), RECEIVE_TIMEOUT) == b""
        writer.close()
        assert server.stats()["receive_errors"] == 1


async def test_silent_connections_are_closed_after_the_hello_timeout(
    monkeypatch: pytest.MonkeyPatch, make_inbox: Callable[[], Inbox]
) -> None:
    monkeypatch.setattr(inbound_module, "TCP_HELLO_TIMEOUT", 0.1)
    async with started(TcpTransport(LOOPBACK, make_inbox())) as server:
        reader, writer = await asyncio.open_connection(*host_port(server.address))
        assert await asyncio.wait_for(reader.read(), RECEIVE_TIMEOUT) == b""
        writer.close()
        assert server.stats()["open_connections"] == 0
        assert server.stats()["hello_timeouts"] == 1


async def test_a_dribbled_hello_gets_one_deadline_in_all(
    monkeypatch: pytest.MonkeyPatch, make_inbox: Callable[[], Inbox]
) -> None:
    # One byte at a time, each well within the deadline: the whole hello is late.
    monkeypatch.setattr(inbound_module, "TCP_HELLO_TIMEOUT", 0.5)
    async with started(TcpTransport(LOOPBACK, make_inbox())) as server:
        reader, writer = await asyncio.open_connection(*host_port(server.address))
        sent = 0
        with suppress(OSError):
            for byte in hello_frame("127.0.0.1:1"):
                if reader.at_eof() or writer.is_closing():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.1)
        await eventually(lambda: server.stats()["hello_timeouts"] == 1)
        assert sent < len(hello_frame("127.0.0.1:1"))
        writer.close()


async def test_a_full_table_evicts_the_oldest_silent_connection(
    monkeypatch: pytest.MonkeyPatch, make_inbox: Callable[[], Inbox]
) -> None:
    monkeypatch.setattr(inbound_module, "TCP_MAX_INBOUND_CONNECTIONS", 2)
    async with started(TcpTransport(LOOPBACK, make_inbox())) as server:
        host, port = host_port(server.address)
        held = [await asyncio.open_connection(host, port) for _ in range(2)]
        await eventually(lambda: server.stats()["connections_accepted"] == 2)
        newest = await asyncio.open_connection(host, port)
        # The oldest is closed to make room; the newcomer is kept.
        with suppress(ConnectionResetError):
            assert await asyncio.wait_for(held[0][0].read(), RECEIVE_TIMEOUT) == b""
        stats = server.stats()
        assert stats["unauthenticated_evictions"] == 1
        assert stats["connections_rejected"] == 0
        assert stats["open_connections"] == 2
        for _, held_writer in [*held, newest]:
            held_writer.close()
