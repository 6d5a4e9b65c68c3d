"""The sans-I/O gossip protocol: SWIM membership, delta dissemination, anti-entropy.

:class:`Engine` is the whole protocol as one object fed bytes, time and local updates,
returning frames to send, timers and events; see :mod:`crdtgossip.protocol.engine`.
"""

from crdtgossip.protocol.engine import DROP_REASONS, Engine
from crdtgossip.protocol.events import (
    Event,
    KeyChanged,
    Member,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberSuspect,
    Outgoing,
)
from crdtgossip.protocol.messages import SEAL_OVERHEAD
from crdtgossip.protocol.states import Status

__all__ = [
    "DROP_REASONS",
    "SEAL_OVERHEAD",
    "Engine",
    "Event",
    "KeyChanged",
    "Member",
    "MemberAlive",
    "MemberDead",
    "MemberJoined",
    "MemberLeft",
    "MemberSuspect",
    "Outgoing",
    "Status",
]
