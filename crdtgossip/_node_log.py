"""What a :class:`~crdtgossip.Node` logs about its cluster, through :mod:`logging`.

The engine is sans-I/O and never logs: it reports membership changes as events and
refused input as counters. The node turns them into log lines on the
``crdtgossip.node`` logger:

* joins: this node joining the cluster (INFO), every member joining or coming back
  (INFO), and a join that has had no answer from any seed yet (WARNING, repeated while
  it lasts);
* member state changes: alive again (INFO), suspect, dead (WARNING), left (INFO);
* refused frames, summed per :data:`LOG_INTERVAL` by reason (WARNING): frames under no
  installed key (``unauthenticated``), TCP hellos that did not authenticate,
  malformed frames, rumours out of range, and every other ``drop_<reason>`` of the
  engine.

Every line a peer can cause goes through one :class:`~crdtgossip._ratelimit.LogLimiter`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Final

from crdtgossip._ratelimit import LogLimiter
from crdtgossip.protocol import (
    Event,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberSuspect,
)

__all__ = ["LOG_INTERVAL", "REFUSAL_COUNTERS", "NodeLog"]

_log = logging.getLogger("crdtgossip.node")

LOG_INTERVAL: Final = 10.0
"""Seconds between two summaries of refused frames (and checks of a pending join): a
flood of bad frames is one line per interval, whatever its rate."""

REFUSAL_COUNTERS: Final = {
    "drop_unauthenticated": "unauthenticated",
    "tcp_hello_auth_failures": "unauthenticated TCP hello",
    "decode_errors": "malformed",
    "drop_malformed": "malformed message",
    "drop_out_of_range": "out of range",
    "drop_bad_payload": "bad payload",
    "drop_type_mismatch": "type mismatch",
    "drop_merge_failed": "merge failed",
    "drop_wrong_target": "wrong target",
    "drop_from_self": "from self",
    "drop_relay_limit": "over the relay limit",
    "drop_stale_reply": "stale reply",
    "udp_receive_errors": "bad datagram",
    "tcp_receive_errors": "bad TCP frame",
    "transport_receive_errors": "bad frame",
}
"""The :meth:`Node.stats` counters of input refused, and the reason each is logged as."""


class NodeLog:
    """The log lines of one node.

    Args:
        node_id: named in every line.
        seeds: the addresses the node joins through (none: it starts a cluster).
        limiter: the rate limiter of the lines peers can cause.
    """

    def __init__(self, node_id: str, seeds: Sequence[str], limiter: LogLimiter | None = None):
        self._node_id = node_id
        self._seeds = list(seeds)
        self._limiter = limiter if limiter is not None else LogLimiter()
        self._joined = not self._seeds
        self._seen: dict[str, int] = {}

    def started(self, stats: Mapping[str, int]) -> None:
        """The node (re)started: counters count from here; the join is pending."""
        self._joined = not self._seeds
        self._seen = {name: stats.get(name, 0) for name in REFUSAL_COUNTERS}

    def member_event(self, event: Event) -> None:
        """Log one membership event of the engine."""
        limiter = self._limiter
        match event:
            case MemberJoined(member):
                if not self._joined:
                    self._joined = True
                    _log.info(
                        "crdtgossip: %s joined the cluster (first answer from %s)",
                        self._node_id,
                        member.node_id,
                    )
                limiter.log(
                    _log,
                    logging.INFO,
                    "member",
                    "crdtgossip: %s sees %s join at %s (incarnation %d)",
                    self._node_id,
                    member.node_id,
                    member.address,
                    member.incarnation,
                )
            case MemberAlive(member):
                limiter.log(
                    _log,
                    logging.INFO,
                    "member",
                    "crdtgossip: %s sees %s alive again (incarnation %d)",
                    self._node_id,
                    member.node_id,
                    member.incarnation,
                )
            case MemberSuspect(member) | MemberDead(member):
                state = "suspect" if isinstance(event, MemberSuspect) else "dead"
                limiter.log(
                    _log,
                    logging.WARNING,
                    "member",
                    "crdtgossip: %s sees %s at %s %s",
                    self._node_id,
                    member.node_id,
                    member.address,
                    state,
                )
            case MemberLeft(member):
                limiter.log(
                    _log,
                    logging.INFO,
                    "member",
                    "crdtgossip: %s sees %s leave",
                    self._node_id,
                    member.node_id,
                )
            case _:
                pass

    def check(self, stats: Mapping[str, int], others_alive: int) -> None:
        """The periodic summary: frames refused since the last one, a pending join.

        Args:
            stats: :meth:`Node.stats` now.
            others_alive: members other than this node seen alive now.
        """
        refused: dict[str, int] = {}
        for name, reason in REFUSAL_COUNTERS.items():
            now = stats.get(name, 0)
            grown = now - self._seen.get(name, 0)
            self._seen[name] = now
            if grown > 0:
                refused[reason] = refused.get(reason, 0) + grown
        if refused:
            self._limiter.log(
                _log,
                logging.WARNING,
                "refused",
                "crdtgossip: %s refused %d frames since the last summary: %s",
                self._node_id,
                sum(refused.values()),
                ", ".join(f"{reason} {count}" for reason, count in sorted(refused.items())),
            )
        if others_alive:
            self._joined = True
        elif not self._joined:
            self._limiter.log(
                _log,
                logging.WARNING,
                "join",
                "crdtgossip: %s has not joined yet: no answer from its seeds %s (retrying)",
                self._node_id,
                ", ".join(self._seeds),
            )
