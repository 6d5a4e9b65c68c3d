"""crdtgossip: convergent replicated data types and the gossip protocol that spreads them.

The data types live in :mod:`crdtgossip.crdts` and are re-exported here, with the codec
(:func:`encode`, :func:`decode`) and the error hierarchy.
"""

from crdtgossip._version import __version__
from crdtgossip.codec import decode, encode
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

__all__ = [
    "CRDT",
    "CRDTGossipError",
    "ConfigError",
    "DecodeError",
    "EWFlag",
    "EncodeError",
    "GCounter",
    "GSet",
    "KeyringError",
    "LWWMap",
    "LWWRegister",
    "MVRegister",
    "MergeError",
    "ORMap",
    "ORSet",
    "OperationError",
    "PNCounter",
    "QuorumError",
    "StorageError",
    "TransportError",
    "__version__",
    "decode",
    "encode",
]
