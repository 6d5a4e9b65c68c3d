"""The Transport protocol every transport implements, and the counters they share.

A transport moves opaque frames (already encoded and, with a keyring, sealed) between
addresses. It is datagram-style and best effort: :meth:`Transport.send` never blocks
and never raises because the network failed; it counts the failure instead, and the
gossip protocol above it tolerates loss by design (retransmission, anti-entropy).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

__all__ = ["ReceiveCallback", "Transport", "TransportFactory", "TransportStats"]

_log = logging.getLogger(__name__)

ReceiveCallback = Callable[[bytes, str], None]
"""Called with ``(data, sender_address)`` for every frame received. The sender address
is the ``"host:port"`` the sender listens on, so a reply can be sent to it."""


class Transport(Protocol):
    """What the node needs from a transport.

    The receive callback is given at construction. It runs on the transport's event
    loop (or scheduler); if it raises, the transport logs and counts the error and
    goes on.

    Attributes:
        max_datagram: the largest frame, in bytes, that :meth:`send` will carry;
            larger ones are dropped and counted as ``oversize_drops``.
    """

    max_datagram: int

    @property
    def address(self) -> str:
        """The ``"host:port"`` actually bound (IPv6 as ``"[::1]:7000"``).

        Raises:
            TransportError: the transport is not started.
        """
        ...

    async def start(self) -> None:
        """Bind and begin receiving.

        Raises:
            TransportError: the address cannot be bound or resolved.
        """
        ...

    async def close(self) -> None:
        """Stop receiving and release every socket; idempotent."""
        ...

    def send(self, address: str, data: bytes) -> None:
        """Send one frame to ``address``, best effort; never raises on network errors.

        Frames that cannot be sent (too large, bad address, not started, network
        error) are dropped and counted in :meth:`stats`.

        Args:
            address: the receiver's ``"host:port"``.
            data: the frame.
        """
        ...

    def stats(self) -> dict[str, int]:
        """Counters since construction; keys as in :class:`TransportStats`, plus
        transport-specific ones."""
        ...


TransportFactory = Callable[[str, ReceiveCallback], "Transport"]
"""Makes a node's transport: called with ``(bind, on_receive)`` at every start.

:meth:`MemoryNetwork.transport <crdtgossip.transport.MemoryNetwork.transport>` is one
(``Node("a", bind="a:7000", transport=network.transport)``); so is a transport class
whose constructor takes ``(bind, on_receive)``."""


@dataclass(slots=True)
class TransportStats:
    """Counters every transport keeps.

    Attributes:
        frames_sent: frames handed to the network.
        bytes_sent: bytes of those frames (payload only, without framing).
        frames_received: frames delivered to the receive callback.
        bytes_received: bytes of those frames.
        send_errors: frames dropped on the way out: bad address, not started,
            connection failed, buffer full, or an error reported by the OS.
        oversize_drops: frames dropped on the way out for exceeding ``max_datagram``.
        receive_errors: malformed input dropped on the way in (oversized datagram,
            bad length prefix, bad hello, truncated frame).
        callback_errors: frames whose receive callback raised.
    """

    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    send_errors: int = 0
    oversize_drops: int = 0
    receive_errors: int = 0
    callback_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a plain dict."""
        return asdict(self)


def deliver(on_receive: ReceiveCallback, stats: TransportStats, data: bytes, sender: str) -> None:
    """Hand one received frame to the callback, counting it and containing its errors.

    A bug in the layer above must not take the transport's receive loop down with it:
    the error is logged with its traceback and counted.
    """
    stats.frames_received += 1
    stats.bytes_received += len(data)
    try:
        on_receive(data, sender)
    except Exception:
        stats.callback_errors += 1
        _log.exception("receive callback raised on a frame from %s", sender)
