"""The membership messages: SWIM's probes and rumors, and the member table of a push-pull.

Each message class here has its wire form in :func:`to_wire` and its checked decoder in
:data:`DECODERS`; :mod:`~crdtgossip.protocol.messages` frames them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from crdtgossip.protocol.states import STATUS_CODES, Status
from crdtgossip.protocol.wire import Kind, address, array, boolean, fail, node_id, uint

__all__ = [
    "ALIVE_CACHE_SIZE",
    "DECODERS",
    "MEMBER_SLOTS_SIZE",
    "RECORD_CACHE_SIZE",
    "Ack",
    "Alive",
    "AliveIndex",
    "Dead",
    "IdClaim",
    "IdInUse",
    "Left",
    "MemberMessage",
    "MemberRecord",
    "Members",
    "Nack",
    "Ping",
    "PingReq",
    "Suspect",
    "alive_rumor",
    "decode_alive",
    "lookup_alive",
    "lookup_record",
    "member_record",
    "member_slot",
    "record_row",
    "to_wire",
]


@dataclass(frozen=True, slots=True)
class Ping:
    """Are you alive? Answered by an :class:`Ack` with the same ``seq``.

    Attributes:
        seq: chosen by the prober, matched against the ack.
        target: the node id the prober means, so a node that took over the address of
            another does not answer for it.
    """

    seq: int
    target: str


@dataclass(frozen=True, slots=True)
class PingReq:
    """Please ping ``target`` for me and forward its ack (SWIM's indirect probe).

    Attributes:
        seq: the requester's sequence number, echoed in the forwarded ack or nack.
        target: the node id to ping.
        target_address: where to ping it.
    """

    seq: int
    target: str
    target_address: str


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to a ping (direct, or forwarded by an indirect prober)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Nack:
    """An indirect prober could not reach the target in time (Lifeguard).

    It tells the requester that the prober itself is reachable, so a missing nack
    points at the requester's own health rather than at the target.
    """

    seq: int


@dataclass(frozen=True, slots=True)
class Alive:
    """Member ``node_id`` is alive at ``address`` with ``incarnation``."""

    node_id: str
    address: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class Suspect:
    """``accuser`` suspects member ``node_id`` at ``incarnation``."""

    node_id: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class Dead:
    """``accuser`` declares member ``node_id`` dead at ``incarnation``."""

    node_id: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class Left:
    """Member ``node_id`` leaves the cluster gracefully at ``incarnation``."""

    node_id: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class IdClaim:
    """To the live holder of ``node_id``: a process at ``address`` joins with that id."""

    node_id: str
    address: str


@dataclass(frozen=True, slots=True)
class IdInUse:
    """To a joiner: ``node_id`` is the id of a live member listening at ``holder``."""

    node_id: str
    holder: str


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One row of a member table exchanged by push-pull.

    Attributes:
        node_id: the member's name.
        address: where it listens.
        incarnation: its incarnation.
        status: what the sender believes of it.
        replica: the member's replica id at that incarnation, as far as the sender
            knows; empty if it does not (or is a peer of a release before this field,
            whose rows have only the four fields before it).
    """

    node_id: str
    address: str
    incarnation: int
    status: Status
    replica: str = ""


@dataclass(frozen=True, slots=True)
class Members:
    """The sender's whole member table (the membership half of a push-pull).

    Attributes:
        records: every member the sender knows, itself included.
        reply: the receiver should answer with its own table.
        join: the sender is joining: the receiver also sends its full data state and
            asks for the sender's.
    """

    records: tuple[MemberRecord, ...]
    reply: bool
    join: bool


MemberMessage: TypeAlias = (
    Ping | PingReq | Ack | Nack | Alive | Suspect | Dead | Left | Members | IdClaim | IdInUse
)


def to_wire(message: MemberMessage) -> list[object]:
    """The msgpack-ready array of one membership message."""
    match message:
        case Ping(seq, target):
            return [Kind.PING, seq, target]
        case PingReq(seq, target, target_address):
            return [Kind.PING_REQ, seq, target, target_address]
        case Ack(seq):
            return [Kind.ACK, seq]
        case Nack(seq):
            return [Kind.NACK, seq]
        case Alive(member, member_address, incarnation):
            return [Kind.ALIVE, member, member_address, incarnation]
        case Suspect(member, incarnation, accuser):
            return [Kind.SUSPECT, member, incarnation, accuser]
        case Dead(member, incarnation, accuser):
            return [Kind.DEAD, member, incarnation, accuser]
        case Left(member, incarnation):
            return [Kind.LEFT, member, incarnation]
        case Members(records, reply, join):
            return [Kind.MEMBERS, reply, join, [record_row(r) for r in records]]
        case IdClaim(member, member_address):
            return [Kind.ID_CLAIM, member, member_address]
        case IdInUse(member, holder):
            return [Kind.ID_IN_USE, member, holder]
    raise TypeError(f"not a membership message: {message!r}")  # pragma: no cover


def record_row(record: MemberRecord) -> list[object]:
    """The wire row of one member record: node id, address, incarnation, status code,
    and the replica id if known (an unknown one is left out, as an older peer sends
    the row, never sent empty)."""
    row: list[object] = [
        record.node_id,
        record.address,
        record.incarnation,
        STATUS_CODES[record.status],
    ]
    if record.replica:
        row.append(record.replica)
    return row


_STATUS_BY_CODE = {code: status for status, code in STATUS_CODES.items()}

RECORD_CACHE_SIZE: Final = 1 << 16
"""Most member records kept for reuse (see :func:`member_record`)."""

# Member records by their wire rows (node id, address, incarnation, status code, and
# the replica id if known, as a tuple): every push-pull ships the sender's whole
# table, N records built on one side and decoded on the other, and a simulator's N
# tables hold about the same N rows, so one immutable record per distinct row serves
# every table that ships it and every decode of it.
_records: dict[tuple[object, ...], MemberRecord] = {}

#: The record kept for a wire row given as a tuple, if any (the cache's own ``get``,
#: for the loops over whole tables). A caller must check that the incarnation and the
#: status code are ints (a bool can be equal to one; a replica id, a str, is one by
#: its equality); the lookup raises ``TypeError`` if an item of the tuple is
#: unhashable.
lookup_record: Final = _records.get


def member_record(
    member: str, member_address: str, incarnation: int, status: Status, replica: str = ""
) -> MemberRecord:
    """The record of one row of a member table (an equal one built before, if kept).

    Args:
        member: the node id, checked.
        member_address: its address, checked.
        incarnation: its incarnation, checked.
        status: its status.
        replica: its replica id, checked, or empty if unknown.
    """
    row: tuple[object, ...] = (member, member_address, incarnation, STATUS_CODES[status])
    if replica:
        row += (replica,)
    record = _records.get(row)
    if record is None:
        # Interned: the rows of every table in the process that learns the id share
        # one copy, and comparing them is comparing identities.
        record = MemberRecord(
            member, member_address, incarnation, status, sys.intern(replica) if replica else ""
        )
        if len(_records) >= RECORD_CACHE_SIZE:
            _records.clear()
        _records[row] = record
    return record


def _member_record(value: object) -> MemberRecord:
    row = array(value, None, "member record")
    if len(row) == 5:
        # Known: never empty (an unknown one is left out), bounded as the engine
        # bounds its own replica id.
        replica = node_id(row[4], "replica id")
    elif len(row) == 4:
        replica = ""  # a row of an older peer, or of a member whose id is unknown
    else:
        raise fail(f"member record must have 4 or 5 items, not {len(row)}")
    member, member_address, incarnation, code = row[:4]
    status = _STATUS_BY_CODE.get(uint(code, "status"))
    if status is None:
        raise fail("unknown member status")
    return member_record(
        node_id(member), address(member_address), uint(incarnation, "inc"), status, replica
    )


def _member_records(rows: list[object]) -> tuple[MemberRecord, ...]:
    """The records of a member table's rows, checked (:func:`_member_record` of each)."""
    # A push-pull ships N rows, most of them decoded before somewhere in the process:
    # those are found by their row, checked by equality with one that passed.
    records: list[MemberRecord] = []
    append = records.append
    try:
        for row in rows:
            if type(row) is list and 3 < len(row) < 6:
                record = lookup_record(tuple(row))
                if record is not None and type(row[2]) is int and type(row[3]) is int:
                    append(record)
                    continue
            append(_member_record(row))
    except TypeError:
        # An unhashable field (a malformed row): the careful path says what is wrong.
        return tuple(map(_member_record, rows))
    return tuple(records)


ALIVE_CACHE_SIZE: Final = 1 << 16
"""Most decoded :class:`Alive` rumors kept for reuse (see :func:`decode_alive`)."""

# Decoded alive rumors by their message arrays (as tuples: kind, node id, address,
# incarnation): a rumor reaches each member several times (retransmit_mult * log10 N
# copies spread over the cluster), and a simulator's N engines in one process all
# decode the same rumors, so a join of N nodes decodes about 10 N² alive rumors of
# only N distinct values. The messages are immutable, so one object serves every
# decode of the same fields.
_alive_cache: dict[tuple[object, ...], Alive] = {}
_ALIVE_CODE: Final = Kind.ALIVE.value


#: The :class:`Alive` rumor decoded earlier from a message array equal to a tuple,
#: if one is kept (the cache's own ``get``, for the decoder's loop: no call of ours
#: per message). A caller must still check that the kind and the incarnation are
#: ints (a bool or a float can be equal to one; the strs are strs by their equality),
#: and the lookup raises ``TypeError`` if an item of the tuple is unhashable.
lookup_alive: Final = _alive_cache.get


def alive_rumor(member: str, member_address: str, incarnation: int) -> Alive:
    """The :class:`Alive` rumor of these fields, already checked (an equal one decoded
    or built before, if kept)."""
    key = (_ALIVE_CODE, member, member_address, incarnation)
    alive = _alive_cache.get(key)
    if alive is None:
        alive = Alive(member, member_address, incarnation)
        if len(_alive_cache) >= ALIVE_CACHE_SIZE:
            _alive_cache.clear()
        _alive_cache[key] = alive
    return alive


def decode_alive(member: object, member_address: object, incarnation: object) -> Alive:
    """The :class:`Alive` rumor of these fields, checked (an earlier equal one, if kept).

    Raises:
        DecodeError: a field is of the wrong type or out of its bounds.
    """
    # Fields of exactly these types and equal values passed the checks before (the
    # type test keeps a bool, equal to 0 or 1, from matching an int's entry).
    if type(member) is str and type(member_address) is str and type(incarnation) is int:
        cached = _alive_cache.get((_ALIVE_CODE, member, member_address, incarnation))
        if cached is not None:
            return cached
    alive = Alive(node_id(member), address(member_address), uint(incarnation, "incarnation"))
    if len(_alive_cache) >= ALIVE_CACHE_SIZE:
        _alive_cache.clear()
    _alive_cache[(_ALIVE_CODE, alive.node_id, alive.address, alive.incarnation)] = alive
    return alive


MEMBER_SLOTS_SIZE: Final = 1 << 16
"""Most member ids given a slot in the process (see :class:`AliveIndex`); the ids seen
after that go without one, which costs the decoder a little time, nothing else."""

# The slot of each member id, for every AliveIndex in the process: given once, never
# taken back (the indexes' bytes are read by it), so the table is bounded instead.
_slots: dict[str, int] = {}

#: The slot of a member id, if it has one (the table's own ``get``, for the decoder's
#: loop; raises ``TypeError`` for an unhashable key).
member_slot: Final = _slots.get

_MAX_LEVEL: Final = 255


class AliveIndex:
    """The members a member table knows alive, and at which incarnation, kept by
    :class:`~crdtgossip.protocol.membership.Membership` for its own rows in two forms:
    one its own checks read, one :func:`~crdtgossip.protocol.messages.decode_frame`
    reads for every alive rumor received.

    Attributes:
        incarnations: the incarnation of each own row that is alive, -1 for the other
            own rows (the local one always among them). Read it; change it through
            :meth:`note` and :meth:`forget` only.
        levels: one byte per member slot (:data:`member_slot`): the incarnation plus
            one, at most 255, of a member in ``incarnations`` at 0 or above, else 0
            (and the bytes past its end, 0). An alive rumor of an incarnation below
            its member's level is no news. This is what the decoder reads: a
            simulator's N tables are each read on every frame they receive, and a
            dict of N ids is N cache lines apart where these are N bytes.
    """

    __slots__ = ("incarnations", "levels")

    def __init__(self) -> None:
        self.incarnations: dict[str, int] = {}
        self.levels = bytearray()

    def note(self, node_id: str, incarnation: int) -> None:
        """Say that own row ``node_id`` is alive at ``incarnation`` (-1: it is not, or
        it is the local one)."""
        self.incarnations[node_id] = incarnation
        slot = _slots.get(node_id)
        if slot is None:
            if incarnation < 0 or len(_slots) >= MEMBER_SLOTS_SIZE:
                return  # level 0, as the bytes past the end say
            slot = _slots[node_id] = len(_slots)
        levels = self.levels
        if slot >= len(levels):
            if incarnation < 0:
                return
            levels.extend(bytes(slot + 1 - len(levels)))
        levels[slot] = min(incarnation + 1, _MAX_LEVEL)

    def forget(self, node_id: str) -> None:
        """Drop own row ``node_id``."""
        del self.incarnations[node_id]
        slot = _slots.get(node_id)
        if slot is not None and slot < len(self.levels):
            self.levels[slot] = 0


def _decode_members(fields: list[object]) -> Members:
    reply, join, rows = fields
    records = _member_records(array(rows, None, "member table"))
    return Members(records, boolean(reply, "reply"), boolean(join, "join"))


#: Per kind: the number of fields after the kind, and how to build the message from
#: them (already of that count).
DECODERS: dict[Kind, tuple[int, Callable[[list[object]], MemberMessage]]] = {
    Kind.PING: (2, lambda f: Ping(uint(f[0], "seq"), node_id(f[1]))),
    Kind.PING_REQ: (3, lambda f: PingReq(uint(f[0], "seq"), node_id(f[1]), address(f[2]))),
    Kind.ACK: (1, lambda f: Ack(uint(f[0], "seq"))),
    Kind.NACK: (1, lambda f: Nack(uint(f[0], "seq"))),
    Kind.ALIVE: (3, lambda f: decode_alive(f[0], f[1], f[2])),
    Kind.SUSPECT: (
        3,
        lambda f: Suspect(node_id(f[0]), uint(f[1], "incarnation"), node_id(f[2])),
    ),
    Kind.DEAD: (3, lambda f: Dead(node_id(f[0]), uint(f[1], "incarnation"), node_id(f[2]))),
    Kind.LEFT: (2, lambda f: Left(node_id(f[0]), uint(f[1], "incarnation"))),
    Kind.MEMBERS: (3, _decode_members),
    Kind.ID_CLAIM: (2, lambda f: IdClaim(node_id(f[0]), address(f[1]))),
    Kind.ID_IN_USE: (2, lambda f: IdInUse(node_id(f[0]), address(f[1]))),
}
