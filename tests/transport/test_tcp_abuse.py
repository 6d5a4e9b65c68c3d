"""Tests of crdtgossip.transport.tcp under abuse, on real loopback sockets: connections
that never authenticate, hold slots, dribble bytes or never read (issue 18, items 2, 8).

Hostile clients that need many connections run in a separate process
(``tcp_attacker.py``) so that the memory measured here is the server's own.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest

from crdtgossip import Keyring
from crdtgossip.transport import TcpTransport
from crdtgossip.transport import _tcp_inbound as inbound_module
from crdtgossip.transport import tcp as tcp_module
from crdtgossip.transport._tcp_frames import frame
from crdtgossip.transport._tcp_hello import TCP_CHALLENGE_SIZE, make_hello

from .conftest import RECEIVE_TIMEOUT, Inbox
from .tcp_helpers import LOOPBACK, eventually, hello_frame, host_port, started

ATTACKER = Path(__file__).with_name("tcp_attacker.py")

# Guard against a hung attacker process: generous, never a measurement.
ATTACKER_TIMEOUT = 60.0

MIB = 1024 * 1024

# The goal: 200 unauthenticated connections add less than 50 MB to a node.
MEMORY_BOUND = 50 * 1000 * 1000


class Attacker:
    """A running ``tcp_attacker.py`` process."""

    def __init__(self, process: asyncio.subprocess.Process, opened: int) -> None:
        self.process = process
        self.opened = opened

    async def stop(self) -> int:
        """Close its stdin; return how many of its connections the server cut."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        line = await asyncio.wait_for(self.process.stdout.readline(), ATTACKER_TIMEOUT)
        await asyncio.wait_for(self.process.wait(), ATTACKER_TIMEOUT)
        return int(line.split()[1])


@asynccontextmanager
async def attacking(address: str, count: int, mode: str, body: int = 0) -> AsyncIterator[Attacker]:
    host, port = host_port(address)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ATTACKER),
        host,
        str(port),
        str(count),
        mode,
        str(body),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), ATTACKER_TIMEOUT)
        assert line.startswith(b"ready"), line
        yield Attacker(process, int(line.split()[1]))
    finally:
        if process.returncode is None:
            with suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def rss_bytes() -> int:
    """Resident memory of this process, from /proc/self/statm (0 where absent)."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


async def raw_connection(
    address: str,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*host_port(address))


async def cut_by_server(reader: asyncio.StreamReader) -> bool:
    """Read until the server closes; True if it did (EOF or reset) in time."""
    try:
        while await asyncio.wait_for(reader.read(4096), RECEIVE_TIMEOUT):
            pass
    except ConnectionResetError:
        pass
    return True


def refused(server: TcpTransport) -> int:
    """Connections the server cut before they authenticated, for whatever reason."""
    stats = server.stats()
    return (
        stats["hello_auth_failures"]
        + stats["unauthenticated_oversize"]
        + stats["unauthenticated_evictions"]
        + stats["hello_timeouts"]
    )


# --- unauthenticated memory ------------------------------------------------------------


async def test_200_connections_announcing_16_mib_cost_little_and_a_member_gets_through() -> None:
    keyring = Keyring.generate()
    inbox = Inbox()
    big = os.urandom(MIB)
    tracemalloc.start()
    try:
        async with (
            started(TcpTransport(LOOPBACK, inbox, authenticator=keyring)) as server,
            started(TcpTransport(LOOPBACK, Inbox(), authenticator=keyring)) as member,
        ):
            baseline = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            rss_before = rss_bytes()
            # Half say hello then announce 16 MiB, half announce it as their first
            # frame; each then tries to send 2 MiB of it: 400 MB if it were kept.
            async with (
                attacking(server.address, 100, "hello-prefix", 2 * MIB) as first,
                attacking(server.address, 100, "prefix", 2 * MIB) as second,
            ):
                member.send(server.address, big)
                assert await inbox.get() == (big, member.address)
                await eventually(lambda: refused(server) == 200)
                assert await first.stop() == first.opened == 100
                assert await second.stop() == second.opened == 100
            peak = tracemalloc.get_traced_memory()[1] - baseline
            rss_growth = rss_bytes() - rss_before
            stats = server.stats()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"peak {peak} bytes traced, RSS grew {rss_growth}"
    # Plain hellos where a seal is due, 16 MiB prefixes closed unread, and (as the
    # burst arrives faster than hellos are read) the oldest unauthenticated evicted.
    assert stats["hello_auth_failures"] >= 1
    assert stats["unauthenticated_oversize"] >= 1
    assert stats["frames_received"] == 1
    assert stats["unauthenticated_bytes"] == 0


async def test_an_unauthenticated_large_prefix_is_closed_without_reading_the_body() -> None:
    keyring = Keyring.generate()
    async with started(TcpTransport(LOOPBACK, Inbox(), authenticator=keyring)) as server:
        reader, writer = await raw_connection(server.address)
        assert len(await reader.readexactly(TCP_CHALLENGE_SIZE)) == TCP_CHALLENGE_SIZE
        writer.write((16 * MIB).to_bytes(4, "big"))  # and never a byte of the body
        assert await cut_by_server(reader)
        writer.close()
        stats = server.stats()
        assert stats["unauthenticated_oversize"] == 1
        assert stats["receive_errors"] == 1
        assert stats["open_connections"] == 0


async def test_without_a_keyring_bodies_share_one_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # No key tells an attacker from a peer, so every partial frame is rationed.
    monkeypatch.setattr(inbound_module, "TCP_MAX_UNAUTHENTICATED_BUFFER", 8 * MIB)
    # Those that got their share then stall: cut them soon, so the test ends soon.
    monkeypatch.setattr(inbound_module, "TCP_FRAME_TIMEOUT", 1.0)
    monkeypatch.setattr(inbound_module, "TCP_MIN_FRAME_RATE", 64 * MIB)
    tracemalloc.start()
    try:
        async with started(TcpTransport(LOOPBACK, Inbox())) as server:
            baseline = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            async with attacking(server.address, 200, "hello-prefix", 2 * MIB) as attacker:
                await eventually(
                    lambda: (
                        refused(server)
                        + server.stats()["buffer_overflows"]
                        + server.stats()["frame_timeouts"]
                        == 200
                    )
                )
                assert await attacker.stop() == 200
            peak = tracemalloc.get_traced_memory()[1] - baseline
            stats = server.stats()
    finally:
        tracemalloc.stop()
    # Without the budget the bodies would have held 400 MB.
    assert peak < MEMORY_BOUND, f"peak {peak} bytes traced"
    assert stats["buffer_overflows"] >= 1
    assert stats["unauthenticated_bytes"] == 0


# --- slots -----------------------------------------------------------------------------


@pytest.mark.parametrize("keyed", [False, True], ids=["no-keyring", "keyring"])
async def test_1100_hello_only_connections_do_not_lock_out_a_new_member(keyed: bool) -> None:
    keyring = Keyring.generate() if keyed else None
    inbox = Inbox()
    async with (
        started(TcpTransport(LOOPBACK, inbox, authenticator=keyring)) as server,
        started(TcpTransport(LOOPBACK, Inbox(), authenticator=keyring)) as member,
        attacking(server.address, 1100, "hello-only") as attacker,
    ):
        assert attacker.opened == 1100
        await eventually(lambda: server.stats()["connections_accepted"] >= 1100)
        member.send(server.address, b"let me in")
        assert await inbox.get() == (b"let me in", member.address)
        stats = server.stats()
        if keyed:  # plain hellos never pass, so they hold nothing
            assert refused(server) == 1100
        else:  # plain hellos pass; the table stays full and evicts the idlest
            evicted = stats["idle_evictions"] + stats["unauthenticated_evictions"]
            # Which rule evicts (unauthenticated first, else idlest) depends on how far
            # each hello got when the member came: only their sum is certain.
            assert evicted >= 1100 + 1 - inbound_module.TCP_MAX_INBOUND_CONNECTIONS
        assert stats["open_connections"] <= inbound_module.TCP_MAX_INBOUND_CONNECTIONS + 1
        await attacker.stop()


async def test_one_host_cannot_fill_the_unauthenticated_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inbound_module, "TCP_MAX_UNAUTHENTICATED_PER_HOST", 3)
    async with started(TcpTransport(LOOPBACK, Inbox())) as server:
        silent = [await raw_connection(server.address) for _ in range(5)]
        await eventually(lambda: server.stats()["connections_accepted"] == 5)
        stats = server.stats()
        assert stats["unauthenticated_evictions"] == 2
        assert stats["unauthenticated_connections"] == 3
        # The oldest two were the ones cut.
        for reader, _ in silent[:2]:
            assert await cut_by_server(reader)
        for _, writer in silent:
            writer.close()


# --- idle, slow and hostile peers --------------------------------------------------------


async def test_a_connection_sending_only_empty_frames_is_closed_as_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tcp_module, "TCP_INBOUND_IDLE_GRACE", 0.0)
    async with started(TcpTransport(LOOPBACK, Inbox(), idle_timeout=0.5)) as server:
        reader, writer = await raw_connection(server.address)
        writer.write(hello_frame("127.0.0.1:1"))
        with suppress(OSError):
            for _ in range(100):  # bounded: 10 s of keep-alives at most
                if reader.at_eof() or server.stats()["inbound_idle_closes"]:
                    break
                writer.write(frame(b""))
                await writer.drain()
                await asyncio.sleep(0.1)
        assert server.stats()["inbound_idle_closes"] == 1
        assert server.stats()["empty_frames"] >= 2
        assert server.stats()["frames_received"] == 0
        writer.close()


async def test_a_stalled_frame_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbound_module, "TCP_FRAME_TIMEOUT", 0.2)
    async with started(TcpTransport(LOOPBACK, Inbox())) as server:
        reader, writer = await raw_connection(server.address)
        writer.write(hello_frame("127.0.0.1:1") + (1000).to_bytes(4, "big") + b"slow")
        assert await cut_by_server(reader)
        stats = server.stats()
        assert stats["frame_timeouts"] == 1
        assert stats["unauthenticated_bytes"] == 0  # its partial frame was given back
        writer.close()


async def test_a_wrong_key_or_a_replayed_hello_is_refused_and_counted() -> None:
    keyring = Keyring.generate()
    inbox = Inbox()
    async with (
        started(TcpTransport(LOOPBACK, inbox, authenticator=keyring)) as server,
        started(TcpTransport(LOOPBACK, Inbox(), authenticator=Keyring.generate())) as stranger,
        started(TcpTransport(LOOPBACK, Inbox(), authenticator=keyring)) as friend,
    ):
        stranger.send(server.address, b"from another key")
        await eventually(lambda: server.stats()["hello_auth_failures"] == 1)
        # A hello sealed under the right key, but for another connection's challenge.
        reader, writer = await raw_connection(server.address)
        await reader.readexactly(TCP_CHALLENGE_SIZE)
        recorded = make_hello(friend.address, keyring, bytes(TCP_CHALLENGE_SIZE))
        writer.write(frame(recorded) + frame(b"replayed"))
        assert await cut_by_server(reader)
        writer.close()
        assert server.stats()["hello_auth_failures"] == 2
        friend.send(server.address, b"from a friend")
        assert await inbox.get() == (b"from a friend", friend.address)
        assert inbox.empty()
        assert server.stats()["frames_received"] == 1


# --- a peer that never reads (item 8) ----------------------------------------------------


async def test_a_peer_that_never_reads_delays_no_one_else_and_is_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tcp_module, "TCP_WRITE_TIMEOUT", 1.0)
    inbox = Inbox()
    with socket.socket() as stuck:  # accepts (in the kernel) and never reads a byte
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.bind(("127.0.0.1", 0))
        stuck.listen()
        stuck_address = f"127.0.0.1:{stuck.getsockname()[1]}"
        async with (
            started(TcpTransport(LOOPBACK, Inbox(), idle_timeout=30.0)) as sender,
            started(TcpTransport(LOOPBACK, inbox)) as healthy,
        ):
            chunk = os.urandom(MIB)
            for _ in range(32):  # more than the kernel buffers on both ends hold
                sender.send(stuck_address, chunk)
            for number in range(10):
                sender.send(healthy.address, b"healthy %d" % number)
            received = [(await inbox.get())[0] for _ in range(10)]
            assert received == [b"healthy %d" % n for n in range(10)]
            # Delivered while the stuck peer still holds its connection, unread.
            assert sender.stats()["write_timeouts"] == 0
            await eventually(lambda: sender.stats()["write_timeouts"] == 1)
            opened = sender.stats()["connections_opened"]
            sender.send(stuck_address, b"after the cut")  # a new connection is tried
            await eventually(lambda: sender.stats()["connections_opened"] == opened + 1)
