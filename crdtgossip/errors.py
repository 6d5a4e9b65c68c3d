"""The exception hierarchy of crdtgossip.

Every error the library raises on purpose derives from :class:`CRDTGossipError`, so a
caller can catch the whole family with one ``except`` clause and the specific kinds
where it can act on them.
"""

from __future__ import annotations

__all__ = [
    "CRDTGossipError",
    "ConfigError",
    "DecodeError",
    "EncodeError",
    "KeyringError",
    "MergeError",
    "OperationError",
    "QuorumError",
    "StorageError",
    "TransportError",
]


class CRDTGossipError(Exception):
    """Base class of every error raised by crdtgossip."""


class DecodeError(CRDTGossipError, ValueError):
    """Bytes could not be decoded: malformed, oversized, hostile or of an unknown shape.

    The input is never partially applied: a caller that gets this error has merged
    nothing from it.
    """


class EncodeError(CRDTGossipError, TypeError):
    """A state holds something the codec cannot write: an element of an unsupported
    type, an integer beyond 64 bits, a dict value with non-str keys, or a type that is
    not one of crdtgossip's."""


class MergeError(CRDTGossipError, TypeError):
    """Two states cannot be joined: different types, or nested types that disagree."""


class OperationError(CRDTGossipError, ValueError):
    """A mutator was called with an argument it cannot accept (a negative step, an
    empty replica id, a timestamp that is not an integer)."""


class ConfigError(CRDTGossipError, ValueError):
    """A configuration value is out of its allowed range or inconsistent with another."""


class KeyringError(CRDTGossipError, ValueError):
    """A key is of the wrong size, missing, or cannot be removed (the primary key)."""


class TransportError(CRDTGossipError, OSError):
    """A transport could not bind, connect or send."""


class StorageError(CRDTGossipError):
    """Durable state could not be read or written (corrupt, unreadable or locked)."""


class QuorumError(CRDTGossipError):
    """Too few members answered within the timeout of a consistency level.

    Attributes:
        answered: how many members (this node included) answered in time.
        needed: how many the consistency level required.
    """

    def __init__(self, message: str, *, answered: int, needed: int) -> None:
        super().__init__(message)
        self.answered = answered
        self.needed = needed
