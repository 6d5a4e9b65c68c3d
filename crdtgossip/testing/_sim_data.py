"""The simulator's data operations: writes (local or quorum) and reads on a node.

One part of :class:`~crdtgossip.testing.simulation.Simulation` (a mixin over the state
it declares); see that class for the whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from crdtgossip.consistency import DEFAULT_TIMEOUT, Consistency, Local
from crdtgossip.crdts import CRDT
from crdtgossip.crdts._base import delta_of, state_of
from crdtgossip.errors import CRDTGossipError
from crdtgossip.protocol import Engine
from crdtgossip.protocol.quorum import QuorumResult
from crdtgossip.testing._sim_convergence import Life, Slot

__all__ = ["DataOps"]

T = TypeVar("T", bound=CRDT)


class DataOps:
    """Writes and reads on simulated nodes (the state is the simulation's)."""

    _now: float
    _quorum_results: dict[tuple[int, int], QuorumResult]

    def _slot(self, i: int) -> Slot:
        raise NotImplementedError

    def _collect(self, i: int) -> None:
        raise NotImplementedError

    def update(self, i: int, key: str, value_type: type[T] | T, fn: Callable[[T], Any]) -> T:
        """Apply a mutation on node ``i`` and spread it, like :meth:`Node.update`.

        Args:
            i: the node.
            key: the data key.
            value_type: the key's CRDT type, or an empty prototype instance.
            fn: ``fn(state) -> delta``: call one mutator and return what it returned.

        Returns:
            The key's live state on node ``i`` after the write (read-only).

        Raises:
            CRDTGossipError: node ``i`` is not running.
            MergeError: the key holds another type, or ``fn`` returned something else.
        """
        engine = self._apply(i, key, value_type, fn)[0]
        state = engine.get(key)
        assert state is not None  # the engine just merged the delta
        return state  # type: ignore[return-value]

    def write(
        self,
        i: int,
        key: str,
        value_type: type[T] | T,
        fn: Callable[[T], Any],
        consistency: Consistency,
    ) -> int:
        """Apply a mutation on node ``i`` and ask members to merge it, as
        :meth:`Node.update` does with a quorum level.

        The write applies and spreads at once, as with :meth:`update`; the quorum
        request then runs on virtual time. Its outcome, once the engine has one, is
        :meth:`quorum_result` ``(i, id)``: success when the level's members merged the
        write in time. A node that crashes meanwhile never reports one.

        Args:
            i: the node.
            key: the data key.
            value_type: the key's CRDT type, or an empty prototype instance.
            fn: ``fn(state) -> delta``: call one mutator and return what it returned.
            consistency: the level; :class:`~crdtgossip.Local` succeeds at once.

        Returns:
            The request id.

        Raises:
            CRDTGossipError: node ``i`` is not running.
            MergeError: as :meth:`update`.
        """
        engine, delta = self._apply(i, key, value_type, fn)
        needed = consistency.required(engine.quorum_members())
        timeout = DEFAULT_TIMEOUT if isinstance(consistency, Local) else consistency.timeout
        request = engine.start_write(key, delta, needed, timeout, self._now)
        self._collect(i)
        return request

    def delete(self, i: int, key: str) -> bool:
        """Delete ``key`` on every member from node ``i``, like :meth:`Node.delete`: the
        writes node ``i`` has seen go, a write it had not seen wins.

        Returns:
            Whether node ``i`` had something to delete.

        Raises:
            CRDTGossipError: node ``i`` is not running.
        """
        slot = self._slot(i)
        if slot.life is not Life.RUNNING:
            raise CRDTGossipError(f"node {i} is {slot.life.name.lower()}: it cannot delete")
        deleted = slot.engine.delete(key, self._now)
        self._collect(i)
        return deleted

    def quorum_result(self, i: int, request: int) -> QuorumResult | None:
        """The outcome of quorum request ``request`` of node ``i``; ``None`` while it runs
        (or when the node went down before it ended)."""
        self._slot(i)
        return self._quorum_results.get((i, request))

    def _apply(
        self, i: int, key: str, value_type: type[T] | T, fn: Callable[[T], Any]
    ) -> tuple[Engine, T]:
        """Apply ``fn``'s delta on running node ``i``; return its engine and the delta."""
        slot = self._slot(i)
        if slot.life is not Life.RUNNING:
            raise CRDTGossipError(f"node {i} is {slot.life.name.lower()}: it cannot write")
        state = self.get(i, key, value_type)
        delta = delta_of(state, fn, slot.engine.clock.stamp)
        slot.engine.commit_local(key, state, delta, self._now)
        self._collect(i)
        return slot.engine, delta

    def get(self, i: int, key: str, value_type: type[T] | T) -> T:
        """The state of ``key`` on node ``i`` (an empty state when absent).

        As :meth:`Node.get`, the node's live state, read-only: ``copy()`` it to keep
        or change it. Works on a node that is down too: it shows the state it had when
        it stopped.

        Raises:
            MergeError: the key holds a state of another type.
        """
        return state_of(key, self._slot(i).engine.get(key), value_type)
