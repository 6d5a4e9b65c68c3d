"""Tests of crdtgossip.transport.tcp on real loopback sockets, with and without TLS."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import random
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crdtgossip.errors import ConfigError, TransportError
from crdtgossip.transport import TCP_MAX_FRAME, TcpTransport, Transport
from crdtgossip.transport import tcp as tcp_module
from crdtgossip.transport.tcp import TCP_HELLO_MAGIC, TCP_HELLO_VERSION

from .conftest import RECEIVE_TIMEOUT, Inbox

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


def _hello(address: str) -> bytes:
    payload = TCP_HELLO_MAGIC + bytes([TCP_HELLO_VERSION]) + address.encode("ascii")
    return len(payload).to_bytes(4, "big") + payload


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


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
        assert sender == f"127.0.0.1:{_host_port(a.address)[1]}"


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
    host, port = _host_port(address)
    _, writer = await asyncio.open_connection(host, port)
    try:
        if kind == 1:  # a proper hello, then garbage
            writer.write(_hello("127.0.0.1:1"))
        elif kind == 2:  # a hello, then a length far over max_frame
            writer.write(_hello("127.0.0.1:1") + (2**32 - 1).to_bytes(4, "big"))
        elif kind == 3:  # a hello, then half a frame
            writer.write(_hello("127.0.0.1:1") + (100).to_bytes(4, "big") + b"half")
        elif kind == 4:  # a hello naming port 0
            writer.write(_hello("127.0.0.1:0"))
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
        reader, writer = await asyncio.open_connection(*_host_port(server.address))
        writer.write(opening)
        # The server hangs up on a bad hello without waiting for us to close.
        assert await asyncio.wait_for(reader.read(), RECEIVE_TIMEOUT) == b""
        writer.close()
        assert server.stats()["receive_errors"] == 1


async def test_silent_connections_are_closed_after_the_hello_timeout(
    monkeypatch: pytest.MonkeyPatch, make_inbox: Callable[[], Inbox]
) -> None:
    monkeypatch.setattr(tcp_module, "TCP_HELLO_TIMEOUT", 0.1)
    async with started(TcpTransport(LOOPBACK, make_inbox())) as server:
        reader, writer = await asyncio.open_connection(*_host_port(server.address))
        assert await asyncio.wait_for(reader.read(), RECEIVE_TIMEOUT) == b""
        writer.close()
        assert server.stats()["open_connections"] == 0


async def test_connections_over_the_inbound_limit_are_refused(
    monkeypatch: pytest.MonkeyPatch, make_inbox: Callable[[], Inbox]
) -> None:
    monkeypatch.setattr(tcp_module, "TCP_MAX_INBOUND_CONNECTIONS", 2)
    async with started(TcpTransport(LOOPBACK, make_inbox())) as server:
        host, port = _host_port(server.address)
        held = [await asyncio.open_connection(host, port) for _ in range(2)]
        await eventually(lambda: server.stats()["connections_accepted"] == 2)
        reader, writer = await asyncio.open_connection(host, port)
        with suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), RECEIVE_TIMEOUT) == b""
        assert server.stats()["connections_rejected"] == 1
        for _, held_writer in [*held, (reader, writer)]:
            held_writer.close()


# --- TLS ---------------------------------------------------------------------------------


def _write_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """Make a CA and a leaf certificate for localhost, 127.0.0.1 and ::1.

    Returns:
        Paths of the CA certificate, the leaf certificate and the leaf's key (PEM).
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crdtgossip test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "node.pem",
        directory / "node.key",
    )
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


class TlsFiles:
    def __init__(self, directory: Path) -> None:
        self.ca, self.cert, self.key = _write_certificates(directory)

    def server(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context

    def client(self, *, trust: bool = True, present_cert: bool = True) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if trust:
            context.load_verify_locations(self.ca)
        if present_cert:
            context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return TlsFiles(tmp_path)


def _tls_transport(
    tls: TlsFiles, bind: str, on_receive: Callable[[bytes, str], None], **client: bool
) -> TcpTransport:
    return TcpTransport(bind, on_receive, tls.server(), client_ssl_context=tls.client(**client))


async def test_tls_both_ways_with_a_one_mebibyte_frame(
    tls: TlsFiles, make_inbox: Callable[[], Inbox]
) -> None:
    inbox_a, inbox_b = make_inbox(), make_inbox()
    big = os.urandom(1024 * 1024)
    async with (
        started(_tls_transport(tls, LOOPBACK, inbox_a)) as a,
        started(_tls_transport(tls, LOOPBACK, inbox_b)) as b,
    ):
        a.send(b.address, big)
        assert await inbox_b.get() == (big, a.address)
        b.send(a.address, b"pong")
        assert await inbox_a.get() == (b"pong", b.address)


@pytest.mark.usefixtures("ipv6")
async def test_tls_over_ipv6(tls: TlsFiles, make_inbox: Callable[[], Inbox]) -> None:
    inbox = make_inbox()
    async with (
        started(_tls_transport(tls, "[::1]:0", make_inbox())) as a,
        started(_tls_transport(tls, "[::1]:0", inbox)) as b,
    ):
        a.send(b.address, b"v6")
        assert await inbox.get() == (b"v6", a.address)


async def test_tls_refuses_an_untrusted_server_and_plaintext_peers(
    tls: TlsFiles, make_inbox: Callable[[], Inbox]
) -> None:
    inbox = make_inbox()
    async with (
        started(_tls_transport(tls, LOOPBACK, inbox)) as server,
        started(_tls_transport(tls, LOOPBACK, make_inbox(), trust=False)) as untrusting,
        started(TcpTransport(LOOPBACK, make_inbox())) as plaintext,
        started(_tls_transport(tls, LOOPBACK, make_inbox())) as good,
    ):
        untrusting.send(server.address, b"unverified")
        await eventually(lambda: untrusting.stats()["connect_failures"] == 1)
        plaintext.send(server.address, b"in the clear")
        await eventually(lambda: plaintext.stats()["frames_sent"] == 1)
        good.send(server.address, b"verified")
        assert await inbox.get() == (b"verified", good.address)
        assert inbox.empty()
        assert untrusting.stats()["send_errors"] == 1


async def test_mutual_tls_requires_a_client_certificate(
    tls: TlsFiles, make_inbox: Callable[[], Inbox]
) -> None:
    inbox = make_inbox()
    server = TcpTransport(
        LOOPBACK,
        inbox,
        tls.server(require_client_cert=True),
        client_ssl_context=tls.client(),
    )
    async with (
        started(server),
        started(_tls_transport(tls, LOOPBACK, make_inbox(), present_cert=False)) as anonymous,
        started(_tls_transport(tls, LOOPBACK, make_inbox())) as authenticated,
    ):
        anonymous.send(server.address, b"who am I")
        authenticated.send(server.address, b"certified")
        assert await inbox.get() == (b"certified", authenticated.address)
        # TLS 1.3 finishes the client's handshake before the server checks the
        # certificate, so the anonymous frame may be written; it must never arrive.
        await eventually(lambda: server.stats()["open_connections"] == 1)
        assert inbox.empty()
