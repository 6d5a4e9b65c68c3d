"""What a :class:`~crdtgossip.Node` does with what its engine reports, and its log task.

After each call into the engine, quorum results resolve the futures of pending writes
and reads; key events go to the storage writer (merges from the network, persisted in
batches) and to the watchers and listeners; member events to the node's log and the
member listeners. A task logs a summary of refused frames every ``LOG_INTERVAL``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from crdtgossip._driver import Driver
from crdtgossip._listeners import Listeners
from crdtgossip._node_log import LOG_INTERVAL, NodeLog
from crdtgossip._persistence import Persistence
from crdtgossip._quorum_wait import QuorumWaiters
from crdtgossip.protocol import Engine, KeyChanged, Member, Status

__all__ = ["deliver", "node_stats", "run_log"]


def deliver(
    engine: Engine,
    persistence: Persistence | None,
    waiters: QuorumWaiters,
    listeners: Listeners,
    node_log: NodeLog,
) -> None:
    """Take the engine's quorum results and events, and hand each where it belongs."""
    if engine.held_acks and persistence is not None:
        persistence.acks_waiting()
    waiters.resolve(engine.take_quorum_results())
    for event in engine.take_events():
        if isinstance(event, KeyChanged):
            if event.life:  # only the key's record changed, or a tombstone's time ran out
                if persistence is not None:
                    if event.expired:
                        persistence.expired(event.key)
                    else:
                        persistence.merged(event.key, event.payload)
                continue
            if event.deleted:
                if persistence is not None:
                    if event.expired:
                        persistence.expired(event.key)
                    elif not event.local and event.payload:
                        persistence.merged(event.key, event.payload)  # its tombstone
                listeners.key_deleted(event.key)
                continue
            if persistence is not None and not event.local and event.payload:
                persistence.merged(event.key, event.payload)
            listeners.key_changed(event.key, event.change)
        else:
            node_log.member_event(event)
            listeners.member_event(event)


def node_stats(engine: Engine, driver: Driver, persistence: Persistence | None) -> dict[str, int]:
    """The counters of :meth:`crdtgossip.Node.stats`: the engine's, the transports', and
    the keyring's and storage writer's own."""
    stats = dict(engine.stats())
    stats.update(driver.stats())
    stats["drop_unauthenticated"] = driver.auth_drops
    stats["receive_errors"] = driver.receive_errors
    stats["storage_errors"] = 0 if persistence is None else persistence.errors
    stats["keys_dirty"] = 0 if persistence is None else persistence.pending
    return stats


async def run_log(
    node_log: NodeLog,
    node_id: str,
    stats: Callable[[], Mapping[str, int]],
    members: Callable[[], list[Member]],
    running: Callable[[], bool],
) -> None:
    """Every :data:`~crdtgossip._node_log.LOG_INTERVAL`: log the frames refused
    meanwhile and a pending join, while the node runs."""
    while running():
        await asyncio.sleep(LOG_INTERVAL)
        if running():
            alive = sum(m.status is Status.ALIVE and m.node_id != node_id for m in members())
            node_log.check(stats(), alive)
