"""TLS for the default transport: the two contexts a TCP link over TLS needs."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from crdtgossip.errors import ConfigError

__all__ = ["TlsConfig"]


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Carry a node's TCP frames over TLS (``Node(..., tls=TlsConfig(...))``).

    UDP datagrams are not covered by TLS: give the node a
    :class:`~crdtgossip.Keyring` as well, to seal every frame whichever way it goes.

    Attributes:
        server: the server-side context (``ssl.PROTOCOL_TLS_SERVER``) for accepted
            connections; set ``verify_mode = ssl.CERT_REQUIRED`` on it for mutual TLS.
        client: the client-side context (``ssl.PROTOCOL_TLS_CLIENT``) for outgoing
            connections; the peer's host is the name checked against its certificate.

    Raises:
        ConfigError: a context is not an :class:`ssl.SSLContext`.
    """

    server: ssl.SSLContext
    client: ssl.SSLContext

    def __post_init__(self) -> None:
        for name in ("server", "client"):
            if not isinstance(getattr(self, name), ssl.SSLContext):
                raise ConfigError(f"TlsConfig.{name} must be an ssl.SSLContext")
