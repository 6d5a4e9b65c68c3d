"""The messages of the rollback check: a restarted node asks its peers for its own marks.

A durable node that restarts under its stored replica id asks a few live members, with
:class:`MarksQuery`, for the *marks* they hold of that replica (its counter slots and
highest dots, see :mod:`crdtgossip.crdts._marks`); each answers with one or more
:class:`MarksReport` parts listing the keys where it holds any. The node compares them
with its own (see :mod:`~crdtgossip.protocol.rollback`).

Each message class here has its wire form in :func:`to_wire` and its checked decoder in
:data:`DECODERS`; :mod:`~crdtgossip.protocol.messages` frames them, with the same limits
as every other message: ids and keys bounded, marks unsigned 64-bit ints, at most
:data:`~crdtgossip.crdts._marks.MAX_MARKS` of them per key, parts numbered within
their bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from crdtgossip.crdts._marks import MAX_MARKS
from crdtgossip.protocol.wire import Kind, array, boolean, fail, key, node_id, uint

__all__ = ["DECODERS", "MAX_REPORT_PARTS", "MarksQuery", "MarksReport", "RollbackMessage"]

MAX_REPORT_PARTS: Final = 1 << 16
"""Most parts one report may have (a bound on what a querier keeps track of)."""


@dataclass(frozen=True, slots=True)
class MarksQuery:
    """Which marks of ``replica`` do you hold? ``token`` is echoed in the report."""

    replica: str
    token: int


@dataclass(frozen=True, slots=True)
class MarksReport:
    """Part ``part`` (numbered from 0) of the answer to a :class:`MarksQuery`.

    The answerer goes through its keys a slice per tick, so it sends each part as it
    fills and does not know their count in advance: the final part says ``last``. An
    answer without entries is one part, ``last``, with none.

    Attributes:
        replica: the replica asked about.
        token: the query's token.
        part: this part's number, below :data:`MAX_REPORT_PARTS`.
        last: whether this is the answer's final part.
        entries: ``(key, marks)`` for each key of this part where the sender holds a
            non-zero mark of ``replica``.
    """

    replica: str
    token: int
    part: int
    last: bool
    entries: tuple[tuple[str, tuple[int, ...]], ...]


RollbackMessage: TypeAlias = MarksQuery | MarksReport


def to_wire(message: RollbackMessage) -> list[object]:
    """The msgpack-ready array of one rollback-check message."""
    match message:
        case MarksQuery(replica, token):
            return [Kind.MARKS_QUERY, replica, token]
        case MarksReport(replica, token, part, last, entries):
            rows = [[name, list(marks)] for name, marks in entries]
            return [Kind.MARKS_REPORT, replica, token, part, last, rows]
    raise TypeError(f"not a rollback message: {message!r}")  # pragma: no cover


def _query(fields: list[object]) -> MarksQuery:
    return MarksQuery(node_id(fields[0], "replica id"), uint(fields[1], "token"))


def _report(fields: list[object]) -> MarksReport:
    replica = node_id(fields[0], "replica id")
    token = uint(fields[1], "token")
    part = uint(fields[2], "part")
    if part >= MAX_REPORT_PARTS:
        raise fail(f"a report has at most {MAX_REPORT_PARTS} parts")
    last = boolean(fields[3], "last part")
    entries = []
    for item in array(fields[4], None, "report entries"):
        row = array(item, 2, "report entry")
        marks = array(row[1], None, "marks")
        if not 1 <= len(marks) <= MAX_MARKS:
            raise fail(f"a key has 1 to {MAX_MARKS} marks")
        entries.append((key(row[0]), tuple(uint(mark, "mark") for mark in marks)))
    return MarksReport(replica, token, part, last, tuple(entries))


#: Per kind: the number of fields after the kind, and how to build the message from
#: them (already of that count).
DECODERS: dict[Kind, tuple[int, Callable[[list[object]], RollbackMessage]]] = {
    Kind.MARKS_QUERY: (2, _query),
    Kind.MARKS_REPORT: (5, _report),
}
