"""Whether an agent's state may be trusted yet: it has synced with a peer since start.

A restarted agent without its data directory holds nothing until it has caught up
with the cluster; an agent with one holds what it had when it stopped. Either way, a
renderer that trusts it before then installs a load-balancer configuration that is
empty or stale (consul-template#727, #1648 are the same trap). So an agent that was
given peers to join reports *not ready* until it has read every registry key from at
least one other member (a quorum read of two: itself and a peer, which merges the
peer's state), and *ready* for the rest of its life. An agent given no peer runs alone
by configuration and is ready at once.

``GET /v1/ready`` reports it; ``crdtgossip render`` does not render from an agent that
is not ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from crdtgossip.consistency import AtLeast
from crdtgossip.errors import CRDTGossipError

__all__ = ["SYNC_RETRY", "SYNC_TIMEOUT", "Readiness"]

_log = logging.getLogger("crdtgossip.apps.registry")

#: Seconds one sync attempt waits for a peer's answer: a few gossip round trips.
SYNC_TIMEOUT = 2.0

#: Seconds between two sync attempts while no peer answers (all of them down, or the
#: join still under way).
SYNC_RETRY = 0.5

#: Members a sync read needs: this agent and one peer.
_SYNC_MEMBERS = 2


class Readiness:
    """Tracks one agent's readiness; see the module docstring.

    Args:
        alone: the agent was given no peer to join: ready at once.
        read: reads one key at a consistency level (``Node.get`` bound to the key's
            type); raises a :class:`~crdtgossip.errors.CRDTGossipError` when the level
            is not met.
        keys: the keys to read from a peer.
        on_ready: called once, when the agent becomes ready.
    """

    def __init__(
        self,
        *,
        alone: bool,
        read: Callable[[str, AtLeast], Awaitable[object]],
        keys: Iterable[str],
        on_ready: Callable[[], Awaitable[None]],
    ) -> None:
        self._ready = alone
        self._read = read
        self._keys = tuple(keys)
        self._on_ready = on_ready
        self._reason = "" if alone else "has not synced with a peer since it started"
        self.attempts = 0

    @property
    def ready(self) -> bool:
        """Whether the agent may be rendered from."""
        return self._ready

    def report(self) -> dict[str, object]:
        """The body of ``GET /v1/ready``: ``{"ready": bool, "reason": str}``."""
        return {"ready": self._ready, "reason": self._reason}

    async def run(self) -> None:
        """Try to sync with a peer until it works (returns at once when ready)."""
        level = AtLeast(_SYNC_MEMBERS, timeout=SYNC_TIMEOUT)
        while not self._ready:
            self.attempts += 1
            try:
                for key in self._keys:
                    await self._read(key, level)
            except CRDTGossipError as exc:
                self._reason = f"has not synced with a peer since it started ({exc})"
                if self.attempts == 1:  # one line, not one per retry
                    _log.warning(
                        "not synced with a peer yet (%s); not ready, retrying every %g s",
                        exc,
                        SYNC_RETRY,
                    )
                await asyncio.sleep(SYNC_RETRY)
                continue
            self._ready = True
            self._reason = ""
            _log.info("synced with a peer after %d attempt(s): ready", self.attempts)
            await self._on_ready()
