"""Blocking queries: the agent's change index and the ``?index=N&wait=10s`` parameters.

The index is a counter **of this agent**: it starts at 1 when the agent starts and goes
up whenever the registry state this agent holds changes (a local write, a change
gossiped in from another member, an event expiring, a membership change). Two agents
have unrelated indexes, and a restarted agent starts again from 1. A watcher that sees
``X-Index`` go *down* has switched agent or the agent restarted: it should start over
from index 0 (as Consul's clients do when its index goes backwards). A request with
an index *above* this agent's answers at once for that reason, instead of blocking.

As with Consul (consul#4988), a reply does not prove a change: the index may move for a
change that does not affect what the watcher reads. Compare before acting.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

from crdtgossip.apps.registry.model import RegistryError

__all__ = [
    "DEFAULT_WAIT",
    "JITTER_DIVISOR",
    "MAX_WAIT",
    "BlockingQuery",
    "ChangeIndex",
    "parse_blocking",
]

#: Longest blocking wait, in seconds: Consul's (10 minutes). Longer waits are cut to it.
MAX_WAIT = 600.0

#: The wait when a query gives ``index`` but no ``wait``: Consul's default, 5 minutes.
DEFAULT_WAIT = 300.0

#: Up to ``wait / JITTER_DIVISOR`` seconds are added at random to each wait, as Consul
#: does, so watchers started together do not all come back at the same moment.
JITTER_DIVISOR = 16

#: Largest index accepted in a query: a signed 64-bit integer, as Consul's.
MAX_INDEX = 2**63 - 1

_WAIT = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass(frozen=True, slots=True)
class BlockingQuery:
    """The blocking parameters of a read.

    Attributes:
        index: return once the agent's index is past this.
        wait: the longest to wait, in seconds (before jitter).
    """

    index: int
    wait: float

    def jittered_wait(self, rng: random.Random | None = None) -> float:
        """``wait`` plus up to ``wait / JITTER_DIVISOR`` at random."""
        draw = (rng or random).uniform(0.0, self.wait / JITTER_DIVISOR)
        return self.wait + draw


def parse_blocking(query: Mapping[str, str]) -> BlockingQuery | None:
    """Read ``index`` and ``wait`` from a query string.

    ``wait`` is a number with an optional unit: ``ms``, ``s`` (the default), ``m`` or
    ``h`` (``10s``, ``1.5m``, ``250ms``); above :data:`MAX_WAIT` it is cut to it. Without
    ``index`` the read does not block (as in Consul), but a malformed ``wait`` is still
    refused.

    Returns:
        The parameters, or None for a read that does not block.

    Raises:
        RegistryError: (400) ``index`` is not a non-negative integer, or ``wait`` (with or
            without ``index``) is not a duration.
    """
    index_text = query.get("index")
    wait_text = query.get("wait")
    wait = DEFAULT_WAIT
    if wait_text is not None:
        # Checked even without index: a malformed wait is a mistake to report, not to
        # ignore (Consul ignores it, and the caller never learns it never blocked).
        match = _WAIT.fullmatch(wait_text)
        if match is None:
            raise RegistryError(
                f"wait must be a duration like '10s', '250ms' or '5m', not {wait_text[:40]!r}"
            )
        wait = min(MAX_WAIT, float(match.group(1)) * _UNITS[match.group(2)])
    if index_text is None:
        return None
    if not index_text.isdigit() or not index_text.isascii() or int(index_text) > MAX_INDEX:
        raise RegistryError(f"index must be a non-negative integer, not {index_text[:40]!r}")
    return BlockingQuery(index=int(index_text), wait=wait)


class ChangeIndex:
    """A counter that goes up on every change, and lets readers wait for the next one.

    Example:
        >>> import asyncio
        >>> from crdtgossip.apps.registry.index import ChangeIndex
        >>> async def main() -> int:
        ...     index = ChangeIndex()
        ...     seen = index.value
        ...     asyncio.get_running_loop().call_later(0.01, index.bump)
        ...     await index.wait_past(seen, timeout=10.0)  # returns early on the bump
        ...     return index.value - seen
        >>> asyncio.run(main())
        1
    """

    def __init__(self) -> None:
        # Consul never hands out index 0: a client's first query (index 0) must return
        # at once, so the first real index is 1.
        self._value = 1
        self._changed = asyncio.Event()
        self._closed = False

    @property
    def value(self) -> int:
        """The current index."""
        return self._value

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def bump(self) -> None:
        """Record a change and wake every waiter."""
        self._value += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self) -> None:
        """Wake every waiter for good: they return at once from now on (shutdown)."""
        self._closed = True
        self._changed.set()

    async def wait_past(self, index: int, timeout: float) -> None:
        """Wait until the index is above ``index``, at most ``timeout`` seconds.

        Returns at once when the index is already past ``index``, when ``index`` is
        above the current index (the watcher's index comes from another agent or an
        earlier life of this one; see the module docstring), or after :meth:`close`.
        """
        if index > self._value:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._value <= index and not self._closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return
