"""A stand-in node with the Node contract the registry codes against.

``update`` runs ``fn`` on the live state and returns it (no copy), ``get`` returns the
live state, and ``on_key_changed`` listeners hear every change with its delta or the
state merged, synchronously. No network: a test moves changes between two of these by
hand (:meth:`ContractNode.deliver`, :meth:`ContractNode.merge_state`), in any order,
duplicated or dropped, as gossip and anti-entropy could.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crdtgossip.crdts import CRDT
from crdtgossip.protocol import Member, Status

Listener = Callable[[str, Any], None]


class ContractNode:
    """Live states per key, change listeners, and an outbox of local deltas."""

    def __init__(self, replica_id: str, peers: tuple[str, ...] = ()) -> None:
        self.node_id = replica_id
        self.peers = peers
        self.replica_id = replica_id
        self.states: dict[str, CRDT] = {}
        self.outbox: list[tuple[str, CRDT]] = []
        self._listeners: list[Listener] = []

    def _state(self, key: str, value_type: Any) -> Any:
        state = self.states.get(key)
        if state is None:
            state = value_type() if isinstance(value_type, type) else value_type.copy()
            self.states[key] = state
        return state

    async def update(
        self, key: str, value_type: Any, fn: Callable[[Any], Any], consistency: Any = None
    ) -> Any:
        state = self._state(key, value_type)
        delta = fn(state)
        self.outbox.append((key, delta.copy()))
        self._tell(key, delta)
        return state

    async def get(self, key: str, value_type: Any, consistency: Any = None) -> Any:
        return self._state(key, value_type)

    def on_key_changed(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def on_member_event(self, listener: Callable[[object], None]) -> None:
        del listener  # the membership never changes here

    def members(self) -> list[Member]:
        """Itself and its peers, all alive."""
        return [
            Member(name, "127.0.0.1:0", Status.ALIVE, 0) for name in (self.node_id, *self.peers)
        ]

    def stats(self) -> dict[str, int]:
        return {}

    # ---- what the network would do -------------------------------------------------------
    def deliver(self, key: str, change: CRDT, value_type: Any) -> None:
        """Merge ``change`` (a delta or a whole state of another node) into ``key``."""
        self._state(key, value_type).merge(change)
        self._tell(key, change)

    def _tell(self, key: str, change: CRDT) -> None:
        for listener in list(self._listeners):
            listener(key, change)
