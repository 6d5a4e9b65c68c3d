"""A pooled outgoing TCP connection to one peer, or the attempt to make it.

:class:`~crdtgossip.transport.tcp.TcpTransport` keeps one per destination address:
frames wait in :attr:`Outbound.pending` while the connection is being made, then go
into the writer's buffer; :attr:`Outbound.unsent` is what a close would drop.
"""

from __future__ import annotations

import asyncio

__all__ = ["Outbound"]


class Outbound:
    """The state of one pooled connection (the transport runs it)."""

    __slots__ = (
        "address",
        "flushed",
        "host",
        "last_used",
        "pending",
        "pending_bytes",
        "port",
        "progress_at",
        "writer",
        "written",
    )

    def __init__(self, address: str, host: str, port: int, now: float) -> None:
        self.address = address
        self.host = host
        self.port = port
        self.writer: asyncio.StreamWriter | None = None
        self.pending: list[tuple[bytes, int]] = []  # (framed bytes, payload length)
        self.pending_bytes = 0
        self.last_used = now
        self.written = 0  # bytes handed to the writer
        self.flushed = 0  # of which the socket had taken, at the last check
        self.progress_at = now

    @property
    def unsent(self) -> int:
        """Bytes queued (while connecting) or in the writer's buffer: not yet taken by
        the kernel."""
        if self.writer is None:
            return self.pending_bytes
        return self.writer.transport.get_write_buffer_size()
