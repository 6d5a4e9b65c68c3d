"""Who hears of a :class:`~crdtgossip.Node`'s changes: watchers and listeners.

Watchers (``Node.watch``) are woken per key and read the latest value themselves, so
changes that come faster than they read are coalesced. Listeners are called
synchronously with each change (keys) or event (members); one that raises is logged
and never affects the node or the other listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from crdtgossip.crdts._base import CRDT
from crdtgossip.protocol import Event

__all__ = ["Listeners"]

_log = logging.getLogger("crdtgossip.node")


class Listeners:
    """The watchers and listeners of one node."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._keys: list[Callable[[str, CRDT], None]] = []
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

    def add_key_listener(self, listener: Callable[[str, CRDT], None]) -> Callable[[], None]:
        """Add a key listener; returns the function that removes it."""
        self._keys.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._keys.remove(listener)

        return remove

    def add_member_listener(self, listener: Callable[[Event], None]) -> None:
        self._members.append(listener)

    def key_changed(self, key: str, change: CRDT | None) -> None:
        """Wake the key's watchers and tell the key listeners (when ``change`` is known)."""
        for changed in self._watchers.get(key, ()):
            changed.set()
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
