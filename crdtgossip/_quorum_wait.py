"""How a :class:`~crdtgossip.Node` waits for the engine's quorum results.

The engine coordinates quorum writes and reads and hands back a
:class:`~crdtgossip.protocol.quorum.QuorumResult` per request; each waiting ``update``
or ``get`` awaits a future that :meth:`QuorumWaiters.resolve` sets from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from crdtgossip.errors import CRDTGossipError, QuorumError
from crdtgossip.protocol.quorum import QuorumResult

__all__ = ["QuorumWaiters"]


class QuorumWaiters:
    """The futures of one node's quorum requests in flight.

    Args:
        node_id: for error messages.
        pump: sends what the engine produced and delivers results already reached.
    """

    def __init__(self, node_id: str, pump: Callable[[], None]) -> None:
        self._node_id = node_id
        self._pump = pump
        self._waiters: dict[int, asyncio.Future[QuorumResult]] = {}

    async def wait(self, request: int, what: str, running: bool) -> None:
        """Wait for the result of ``request``; raise if it failed.

        Raises:
            CRDTGossipError: the node is not running, or stopped meanwhile.
            QuorumError: too few members answered in time.
        """
        if not running:
            raise CRDTGossipError(f"node {self._node_id!r} stopped before the {what} completed")
        waiter: asyncio.Future[QuorumResult] = asyncio.get_running_loop().create_future()
        self._waiters[request] = waiter
        self._pump()  # sends the requests, delivers a result already reached, sets the timer
        try:
            result = await waiter
        finally:
            self._waiters.pop(request, None)
        if not result.ok:
            raise QuorumError(
                f"{what}: {result.answered} of the {result.needed} members needed answered in time",
                answered=result.answered,
                needed=result.needed,
            )

    def resolve(self, results: Iterable[QuorumResult]) -> None:
        """Hand each result to the request waiting for it."""
        for result in results:
            waiter = self._waiters.get(result.request_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(result)

    def fail_all(self) -> None:
        """Fail every request in flight: the node stopped."""
        stopped = CRDTGossipError(f"node {self._node_id!r} stopped")
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(stopped)
        self._waiters.clear()
