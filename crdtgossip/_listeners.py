"""Who hears of a :class:`~crdtgossip.Node`'s changes: watchers and listeners.

Watchers (``Node.watch``, ``Node.watch_prefix``) are woken per key and read the latest
value themselves, so changes that come faster than they read are coalesced: a key
watcher sees the latest value, a prefix watcher each changed key once with its latest
value; a deleted key is yielded as ``None`` (``(key, None)``). Listeners are called
synchronously with each change (keys), delete or event (members); one that raises is
logged and never affects the node or the other listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from crdtgossip.crdts._base import CRDT
from crdtgossip.protocol import Event

__all__ = ["Listeners", "PrefixWatch"]

_log = logging.getLogger("crdtgossip.node")


#: Reads a key's live state (None when absent).
Getter = Callable[[str], CRDT | None]
#: Waits until a key's state is durable, before it is shown.
Durable = Callable[[str], Awaitable[None]]


class PrefixWatch:
    """One prefix watcher: the keys changed since it last read, in order of change."""

    __slots__ = ("changed", "deleted", "pending", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.changed = asyncio.Event()
        # An ordered set: a key changed twice before it is read is yielded once.
        self.pending: dict[str, None] = {}
        # Pending keys deleted since they were read: yielded as (key, None).
        self.deleted: set[str] = set()


class Listeners:
    """The watchers and listeners of one node."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._prefixes: list[PrefixWatch] = []
        self._keys: list[Callable[[str, CRDT], None]] = []
        self._deletes: list[Callable[[str], None]] = []
        self._members: list[Callable[[Event], None]] = []

    def watch(self, key: str) -> asyncio.Event:
        """A new event set at every change of ``key``, until :meth:`unwatch`."""
        changed = asyncio.Event()
        self._watchers.setdefault(key, set()).add(changed)
        return changed

    def unwatch(self, key: str, changed: asyncio.Event) -> None:
        watchers = self._watchers.get(key)
        if watchers is not None:
            watchers.discard(changed)
            if not watchers:
                del self._watchers[key]

    def wake_all(self) -> None:
        """Wake every watcher (the node stopped)."""
        for events in self._watchers.values():
            for event in events:
                event.set()
        for watch in self._prefixes:
            watch.changed.set()

    async def values(
        self, key: str, get: Getter, durable: Durable, running: Callable[[], bool]
    ) -> AsyncGenerator[Any, None]:
        """The ``value`` of ``key`` now (if present) and after every change."""
        changed = self.watch(key)
        try:
            state = get(key)
            present = state is not None
            if state is not None:
                await durable(key)
                yield state.value
            while running():
                await changed.wait()
                changed.clear()
                if not running():
                    return
                state = get(key)
                if state is not None:
                    present = True
                    await durable(key)
                    yield state.value
                elif present:  # deleted (or a first write rolled back): gone
                    present = False
                    yield None
        finally:
            self.unwatch(key, changed)

    async def prefixed(
        self,
        prefix: str,
        keys: Callable[[], list[str]],
        get: Getter,
        durable: Durable,
        running: Callable[[], bool],
    ) -> AsyncGenerator[tuple[str, Any], None]:
        """``(key, value)`` of every key under ``prefix`` now, then of each changed."""
        watch = PrefixWatch(prefix)
        self._prefixes.append(watch)
        try:
            watch.pending.update(dict.fromkeys(k for k in keys() if k.startswith(prefix)))
            while running():
                while watch.pending and running():
                    key = next(iter(watch.pending))
                    del watch.pending[key]
                    deleted = key in watch.deleted
                    watch.deleted.discard(key)
                    state = get(key)
                    if state is not None:
                        await durable(key)
                        yield key, state.value
                    elif deleted:  # gone: deleted here
                        yield key, None
                if not running():
                    return
                await watch.changed.wait()
                watch.changed.clear()
        finally:
            with contextlib.suppress(ValueError):
                self._prefixes.remove(watch)

    def add_key_listener(self, listener: Callable[[str, CRDT], None]) -> Callable[[], None]:
        """Add a key listener; returns the function that removes it."""
        self._keys.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._keys.remove(listener)

        return remove

    def add_delete_listener(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Add a listener of deletes; returns the function that removes it."""
        self._deletes.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._deletes.remove(listener)

        return remove

    def key_deleted(self, key: str) -> None:
        """Wake the key's watchers (they yield None) and tell the delete listeners."""
        for watch in self._prefixes:
            if key.startswith(watch.prefix):
                watch.deleted.add(key)
        self.key_changed(key, None)
        for listener in list(self._deletes):
            try:
                listener(key)
            except Exception:
                _log.exception("crdtgossip: delete listener failed for %r", key)

    def add_member_listener(self, listener: Callable[[Event], None]) -> None:
        self._members.append(listener)

    def key_changed(self, key: str, change: CRDT | None) -> None:
        """Wake the key's watchers and tell the key listeners (when ``change`` is known)."""
        for changed in self._watchers.get(key, ()):
            changed.set()
        for watch in self._prefixes:
            if key.startswith(watch.prefix):
                watch.pending[key] = None
                watch.changed.set()
        if change is None:
            return
        for listener in list(self._keys):
            try:
                listener(key, change)
            except Exception:
                _log.exception("crdtgossip: key listener failed for %r", key)

    def member_event(self, event: Event) -> None:
        for listener in list(self._members):
            try:
                listener(event)
            except Exception:
                _log.exception("crdtgossip: member listener failed")
