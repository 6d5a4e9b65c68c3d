"""What the engine hands back to its driver: frames to send, members, and events."""

from __future__ import annotations

from dataclasses import dataclass

from crdtgossip.crdts import CRDT
from crdtgossip.protocol.states import Status

__all__ = [
    "Event",
    "KeyChanged",
    "Member",
    "MemberAlive",
    "MemberDead",
    "MemberJoined",
    "MemberLeft",
    "MemberSuspect",
    "Outgoing",
]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One frame for the driver to send.

    Attributes:
        address: the receiver's ``"host:port"``.
        data: the frame, not sealed yet: the runtime seals it with its keyring, which
            adds at most :data:`crdtgossip.protocol.messages.SEAL_OVERHEAD` bytes (the
            datagram budget already leaves room for it).
        reliable: ``True`` when the frame must go by stream (TCP): it is larger than a
            datagram, or it belongs to an anti-entropy exchange, which must not lose
            pieces. ``False``: send it as one datagram (UDP), loss is tolerated.
    """

    address: str
    data: bytes
    reliable: bool


@dataclass(frozen=True, slots=True)
class Member:
    """What this node knows about one member of the cluster (itself included).

    Attributes:
        node_id: the member's unique name.
        address: the ``"host:port"`` it listens on.
        status: alive, suspect, dead or left.
        incarnation: raised only by the member itself, to refute a suspicion or to
            announce itself after a restart; a higher one always wins.
    """

    node_id: str
    address: str
    status: Status
    incarnation: int


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A member appeared, or came back after it was dead or had left."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberAlive:
    """A suspect member refuted the suspicion: it is alive again."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberSuspect:
    """A member missed its probes; it is dead unless it refutes in time."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberDead:
    """A member stayed suspect until its suspicion timeout: it is considered failed."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """A member left the cluster gracefully."""

    member: Member


@dataclass(frozen=True, slots=True)
class KeyChanged:
    """The state of a key changed here: a local update, or one received and merged.

    A received update may already have been known by other means (anti-entropy, a
    joined batch of deltas), so a watcher should compare values before acting, as a
    Consul blocking query's return does not prove a change either (consul#4988).
    """

    key: str
    #: What was merged: a local update's delta, or the delta or state received. It is
    #: the engine's own object, read-only, valid until the next call into the engine;
    #: None when the key was replaced as a whole (a failed local write rolled back).
    change: CRDT | None = None
    #: The encoded form of ``change`` (empty when ``change`` is None), with the key's
    #: life record in front when it has one (:func:`crdtgossip.keylife.unwrap` parts
    #: them; a driver persists the payload as it is).
    payload: bytes = b""
    #: Whether ``change`` is a local update (its driver persisted it before it was
    #: applied) rather than something received from the network.
    local: bool = False
    #: Whether the key was deleted (:meth:`~crdtgossip.protocol.Engine.delete`): its
    #: state is gone here; ``change`` is None.
    deleted: bool = False
    #: Whether the deletion is the key's expiry (``GossipConfig.expire_keys_after``)
    #: rather than a call of ``delete``; ``deleted`` is set too.
    expired: bool = False
    #: Whether only the key's life record changed (a delete or a write seen, nothing
    #: to merge; see :mod:`~crdtgossip.keylife`): ``payload`` is the record
    #: to persist, ``change`` is None, and there is nothing to show a watcher.
    life: bool = False


Event = MemberJoined | MemberAlive | MemberSuspect | MemberDead | MemberLeft | KeyChanged
"""Anything :meth:`crdtgossip.protocol.Engine.take_events` returns."""
