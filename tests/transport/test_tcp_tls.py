"""Tests of crdtgossip.transport.tcp over TLS, on real loopback sockets."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crdtgossip import Keyring
from crdtgossip.transport import TcpTransport

from .conftest import Inbox
from .tcp_helpers import LOOPBACK, eventually, started

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


async def test_tls_with_a_keyring_challenges_inside_the_tls_session(
    tls: TlsFiles, make_inbox: Callable[[], Inbox]
) -> None:
    keyring = Keyring.generate()
    inbox = make_inbox()

    def keyed(on_receive: Callable[[bytes, str], None]) -> TcpTransport:
        return TcpTransport(
            LOOPBACK,
            on_receive,
            tls.server(),
            client_ssl_context=tls.client(),
            authenticator=keyring,
        )

    async with started(keyed(make_inbox())) as a, started(keyed(inbox)) as b:
        a.send(b.address, b"sealed hello over TLS")
        assert await inbox.get() == (b"sealed hello over TLS", a.address)
        assert b.stats()["hello_auth_failures"] == 0
