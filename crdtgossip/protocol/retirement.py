"""Which replica ids are retired: their node is alive under another replica id.

A node that starts without its state takes a fresh replica id
(:func:`~crdtgossip.protocol.rollback.fresh_replica_id`: its node id, a dot and 16
hexadecimal digits; the simulator's are its node id, a dot and the node's generation)
and never writes as the old one again; a node restarted with its storage keeps its id.
So a replica id of that form, *node id, a dot, 1 to 16 lower-case hexadecimal digits*,
is *retired* for certain once its node is alive under another id: the first rule of
the pruning protocol (``docs/concepts/pruning.rst``, "Which replicas are retired").
Member rows carry each member's current id
(:meth:`~crdtgossip.protocol.membership.Membership.replica_of`).

A replica id of another form (one a test or an application chose) has no known node,
and is never retired (an application driving an :class:`~crdtgossip.protocol.Engine`
itself must not give an id of that form to anything but that node's own life); neither
is the id of a member that is suspect, dead or left (it may come back with its store),
nor one whose node's current id is not known yet.

This module only answers the question; nothing is pruned yet (see the pruning page).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["owner", "retired"]

_FRESH: Final = re.compile(r"(.+)\.[0-9a-f]{1,16}", re.ASCII)


def owner(replica: str) -> str | None:
    """The node id in a replica id of a node's life (the part before its last dot,
    when 1 to 16 lower-case hexadecimal digits follow); ``None`` for any other."""
    match = _FRESH.fullmatch(replica)
    return None if match is None else match.group(1)


def retired(named: Iterable[str], alive: Mapping[str, str]) -> set[str]:
    """The replica ids among ``named`` whose node is alive under another id.

    Args:
        named: replica ids some state or record names.
        alive: node id -> current replica id of every member alive now whose id is
            known (this node included).
    """
    found: set[str] = set()
    for replica in named:
        node = owner(replica)
        if node is None:
            continue
        current = alive.get(node)
        if current is not None and current != replica:
            found.add(replica)
    return found
