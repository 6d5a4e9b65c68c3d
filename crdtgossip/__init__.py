"""crdtgossip: convergent replicated data types and the gossip protocol that spreads them.

The data types (:mod:`crdtgossip.crdts`), the codec (:func:`encode`, :func:`decode`,
and :func:`register_type` for types of your own),
the gossip :class:`Node` with its configuration, keyring, consistency levels and
storage, and the error hierarchy are all importable from here; Prometheus text of a node's
numbers is :mod:`crdtgossip.metrics`.
"""

from crdtgossip._version import __version__
from crdtgossip.codec import Body, TypeCodec, decode, encode, register_type, unregister_type
from crdtgossip.config import GossipConfig
from crdtgossip.consistency import All, AtLeast, Local, Majority, MajorityPlus
from crdtgossip.crdts import (
    CRDT,
    EWFlag,
    GCounter,
    GSet,
    LWWMap,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    Prunable,
)
from crdtgossip.errors import (
    ConfigError,
    CRDTGossipError,
    DecodeError,
    EncodeError,
    KeyringError,
    MergeError,
    OperationError,
    QuorumError,
    StorageError,
    TransportError,
)
from crdtgossip.node import Node
from crdtgossip.protocol import Member, Status
from crdtgossip.security import Keyring
from crdtgossip.storage import MemoryStorage, SQLiteStorage
from crdtgossip.transport import MemoryNetwork, TlsConfig

__all__ = [
    "CRDT",
    "All",
    "AtLeast",
    "Body",
    "CRDTGossipError",
    "ConfigError",
    "DecodeError",
    "EWFlag",
    "EncodeError",
    "GCounter",
    "GSet",
    "GossipConfig",
    "Keyring",
    "KeyringError",
    "LWWMap",
    "LWWRegister",
    "Local",
    "MVRegister",
    "Majority",
    "MajorityPlus",
    "Member",
    "MemoryNetwork",
    "MemoryStorage",
    "MergeError",
    "Node",
    "ORMap",
    "ORSet",
    "OperationError",
    "PNCounter",
    "Prunable",
    "QuorumError",
    "SQLiteStorage",
    "Status",
    "StorageError",
    "TlsConfig",
    "TransportError",
    "TypeCodec",
    "__version__",
    "decode",
    "encode",
    "register_type",
    "unregister_type",
]
