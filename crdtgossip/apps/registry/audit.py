"""The audit record: who wrote what, when and from where, on every agent.

Every write request an agent answers (PUT, POST, DELETE, PATCH), allowed or refused,
adds one entry to the node key :data:`AUDIT_KEY`, an :class:`~crdtgossip.crdts.ORSet`
of entries that gossip spreads like every registry key, so any agent answers for all:

``time``     the agent's Unix time when it answered
``agent``    the node id of the agent that answered
``seq``      that agent's count of entries (orders entries of one agent within a second)
``who``      the token's name (:mod:`.tokens`), ``anonymous`` without a known token
``method``   the HTTP method; ``path`` the request path
``status``   the HTTP status answered (401 and 403 for refused writes)
``summary``  a short account: the error of a refusal, or the identifying fields of the
             body (``version=1.2.4 build=88``), never the whole body
``peer``     the client's address as the socket saw it (no forwarded-for header is
             trusted)

Retention: each agent keeps its last :data:`MAX_AUDIT_PER_AGENT` entries; past that it
removes its own oldest entry, as observed (an OR-Set remove: only the agent that wrote
an entry removes it, so no concurrent write is lost). An agent that leaves for good
keeps its last entries in the set; the growth is bounded by that count per node id ever
used. Only the entries, not a removed entry's content, are kept after a remove.

``GET /v1/audit`` answers ``{"audit": [entry, ...]}``, oldest first, with the query
parameters ``since`` (a Unix time), ``who`` (a token's name, or several separated by
commas: ``who=ci,alice``), ``agent`` and ``limit`` (the newest N).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from crdtgossip.apps.registry.fields import RegistryError
from crdtgossip.crdts import ORSet
from crdtgossip.errors import CRDTGossipError
from crdtgossip.node import Node

__all__ = [
    "AUDIT_KEY",
    "MAX_AUDIT_PER_AGENT",
    "MAX_SUMMARY",
    "AuditEntry",
    "AuditLog",
    "add_audit_routes",
    "summarize",
]

_log = logging.getLogger(__name__)

#: The node key of the audit record (not one of the registry's view keys: an audit entry
#: changes no service, so it wakes no blocking query).
AUDIT_KEY = "registry/audit"

#: Entries each agent keeps: a day of a CI pipeline's writes (a few hundred) with room;
#: about 250 bytes each, so 1000 agents' worth stays far below ``max_key_bytes``.
MAX_AUDIT_PER_AGENT = 1000

#: Longest ``summary`` and ``path`` kept, in characters: a line of a terminal, enough for
#: the fields that identify a write and for an error message's start.
MAX_SUMMARY = 200

#: Longest value of one field in a summary.
_MAX_FIELD = 48

#: The body fields a summary names, in this order: what identifies a write.
_SUMMARY_FIELDS = (
    "version",
    "build",
    "commit",
    "instance",
    "address",
    "port",
    "env",
    "service",
    "host",
    "state",
    "enable",
    "reason",
    "min_passing",
    "initiator",
)

_QUERY = ("since", "who", "agent", "limit")

#: Largest ``limit`` of a read: every entry of a hundred agents.
_MAX_LIMIT = 100 * MAX_AUDIT_PER_AGENT

Element = tuple[float, str, int, str, str, str, int, str, str]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit entry (the fields are in the module's docstring)."""

    time: float
    agent: str
    seq: int
    who: str
    method: str
    path: str
    status: int
    summary: str
    peer: str

    def element(self) -> Element:
        """The ORSet element that stores the entry."""
        return (
            self.time,
            self.agent,
            self.seq,
            self.who,
            self.method,
            self.path,
            self.status,
            self.summary,
            self.peer,
        )

    @classmethod
    def of(cls, element: Element) -> AuditEntry:
        """The entry an element stores."""
        return cls(*element)

    def record(self) -> dict[str, Any]:
        """The entry as JSON answers show it."""
        return asdict(self)


def summarize(body: bytes) -> str:
    """The identifying fields of a JSON write body, ``k=v`` separated by spaces.

    A body that is not a JSON object summarizes to its size.
    """
    try:
        decoded = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError):
        return f"{len(body)} bytes, not JSON"
    if not isinstance(decoded, dict):
        return f"{len(body)} bytes"
    parts = []
    for name in _SUMMARY_FIELDS:
        value = decoded.get(name)
        if value is not None and not isinstance(value, dict | list):
            parts.append(f"{name}={str(value)[:_MAX_FIELD]}")
    return " ".join(parts)[:MAX_SUMMARY]


class AuditLog:
    """This agent's side of the audit record: add entries, prune its own, read all.

    Args:
        node: the started node holding :data:`AUDIT_KEY`.
        clock: the Unix time of an entry.
        keep: entries this agent keeps (see the module's docstring).
    """

    def __init__(
        self, node: Node, clock: Callable[[], float], *, keep: int = MAX_AUDIT_PER_AGENT
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self._node = node
        self._clock = clock
        self._keep = keep
        self._own: deque[Element] | None = None  # this agent's entries, oldest first

    async def _own_entries(self) -> deque[Element]:
        if self._own is None:  # once: an agent restarted on its data keeps its entries
            state: ORSet[Element] = await self._node.get(AUDIT_KEY, ORSet)
            mine = sorted((e for e in state if e[1] == self._node.node_id), key=lambda e: e[2])
            self._own = deque(mine)
        return self._own

    async def record(
        self, who: str, method: str, path: str, status: int, summary: str, peer: str
    ) -> AuditEntry:
        """Add an entry, then remove this agent's oldest beyond ``keep``.

        Raises:
            CRDTGossipError: the node refused the write (it is not running, or the
                storage failed).
        """
        own = await self._own_entries()
        seq = own[-1][2] + 1 if own else 1
        entry = AuditEntry(
            self._clock(),
            self._node.node_id,
            seq,
            who,
            method,
            path[:MAX_SUMMARY],
            status,
            summary[:MAX_SUMMARY],
            peer,
        )
        element = entry.element()
        replica = self._node.replica_id
        await self._node.update(AUDIT_KEY, ORSet, lambda s: s.add(element, replica))
        own.append(element)
        while len(own) > self._keep:
            await self._node.update(AUDIT_KEY, ORSet, _remove_op(own.popleft()))
        return entry

    async def record_quietly(
        self, who: str, method: str, path: str, status: int, summary: str, peer: str
    ) -> None:
        """:meth:`record`, logging (not raising) a failure: the write it records is
        already answered."""
        try:
            await self.record(who, method, path, status, summary, peer)
        except CRDTGossipError as exc:
            _log.error("could not add the audit entry of %s %s by %s: %s", method, path, who, exc)

    async def entries(
        self,
        *,
        since: float | None = None,
        who: str | Collection[str] | None = None,
        agent: str | None = None,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """The entries of every agent, oldest first, filtered.

        Args:
            since: only entries at or after this Unix time.
            who: only this token name's entries (or these names').
            agent: only the entries this agent answered.
            limit: only the newest ``limit`` (after the filters).
        """
        names = None if who is None else frozenset([who] if isinstance(who, str) else who)
        state: ORSet[Element] = await self._node.get(AUDIT_KEY, ORSet)
        found = [
            AuditEntry.of(element)
            for element in state
            if (since is None or element[0] >= since)
            and (names is None or element[3] in names)
            and (agent is None or element[1] == agent)
        ]
        found.sort(key=lambda e: (e.time, e.agent, e.seq))
        return found if limit is None else found[-limit:]


def _remove_op(element: Element) -> Callable[[ORSet[Element]], ORSet[Element]]:
    return lambda state: state.remove(element)


def _parse_query(query: Mapping[str, str]) -> dict[str, Any]:
    unknown = sorted(set(query) - set(_QUERY))
    if unknown:
        raise RegistryError(
            f"unknown query parameter {unknown[0]!r} of /v1/audit; it takes {', '.join(_QUERY)}"
        )
    since_text = query.get("since")
    since: float | None = None
    if since_text is not None:
        try:
            since = float(since_text)
        except ValueError:
            since = -1.0
        if not since >= 0 or since == float("inf"):
            raise RegistryError(f"since must be a Unix time in seconds, not {since_text[:40]!r}")
    limit_text = query.get("limit")
    limit: int | None = None
    if limit_text is not None:
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= _MAX_LIMIT:
            raise RegistryError(f"limit must be an integer from 1 to {_MAX_LIMIT}")
        limit = int(limit_text)
    who_text = query.get("who")
    who = None if who_text is None else [name for name in who_text.split(",") if name]
    return {"since": since, "who": who, "agent": query.get("agent"), "limit": limit}


def add_audit_routes(app: web.Application, audit_of: Callable[[web.Request], AuditLog]) -> None:
    """Add ``GET /v1/audit`` to ``app``; ``audit_of(request)`` gives the agent's log."""

    async def read(request: web.Request) -> web.Response:
        filters = _parse_query(request.query)
        found = await audit_of(request).entries(**filters)
        return web.json_response({"audit": [entry.record() for entry in found]})

    app.router.add_get("/v1/audit", read)
