"""Transports: how frames move between nodes.

:class:`Transport` is the protocol the node needs; :class:`UdpTransport` carries small
frames (at most 1400 bytes), :class:`TcpTransport` large ones (optionally over TLS), and
:class:`MemoryNetwork` connects in-process transports with seeded loss, delay,
duplication, reordering and partitions, on asyncio or on virtual time.
"""

from crdtgossip.transport._address import format_address, parse_address
from crdtgossip.transport._base import (
    ReceiveCallback,
    Transport,
    TransportFactory,
    TransportStats,
)
from crdtgossip.transport._tls import TlsConfig
from crdtgossip.transport.memory import (
    MEMORY_MAX_DATAGRAM,
    REORDER_HOLDBACK,
    AsyncioScheduler,
    ManualScheduler,
    MemoryNetwork,
    MemoryTransport,
    Scheduler,
)
from crdtgossip.transport.tcp import TCP_MAX_FRAME, TcpTransport
from crdtgossip.transport.udp import UDP_MAX_DATAGRAM, UdpTransport

__all__ = [
    "MEMORY_MAX_DATAGRAM",
    "REORDER_HOLDBACK",
    "TCP_MAX_FRAME",
    "UDP_MAX_DATAGRAM",
    "AsyncioScheduler",
    "ManualScheduler",
    "MemoryNetwork",
    "MemoryTransport",
    "ReceiveCallback",
    "Scheduler",
    "TcpTransport",
    "TlsConfig",
    "Transport",
    "TransportFactory",
    "TransportStats",
    "UdpTransport",
    "format_address",
    "parse_address",
]
