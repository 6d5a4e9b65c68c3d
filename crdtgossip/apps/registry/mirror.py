"""A plain-value mirror of an ORMap's LWW leaves, kept up to date one change at a time.

The registry keeps three maps whose leaves are LWW registers, each leaf addressed by
``(service, instance)``: ``registry/instances`` nests them (service -> instance ->
record), ``registry/maintenance`` and ``registry/events`` key them by the pair. A
:class:`LeafMirror` holds each leaf's plain value and, told of a change of the map,
works out which leaves the change can have touched and re-reads only those:

* the leaves the change carries (its entries: a registration, an event ...);
* the leaves it can have removed or rolled back: a remove carries no entries, only a
  causal context covering the dots of what it removed. The mirror keeps an index from
  every live dot to its leaf, so the covered dots name the leaves, at a cost of the
  smaller of the change's context and the dots indexed for each replica it names.

So following a change costs what the change holds, not what the map holds. A whole
state merged (anti-entropy, start) touches every leaf and costs the map's size once.

A leaf re-read keeps its value when its winning write is the same, known by the
write's ``(timestamp, replica)``, as LWW itself orders writes; only a changed leaf is
copied out (one record) and reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from crdtgossip.apps.registry._live import context_of, leaf, nested, nested_keys
from crdtgossip.crdts import Dot, LWWRegister, ORMap

__all__ = ["LeafMirror", "Path"]

#: A leaf's address: ``(service, instance)``.
Path = tuple[str, str]


class LeafMirror:
    """The leaves of one map as plain values (see the module docstring).

    Args:
        nested_by_service: True for ``service -> instance -> register`` (the
            instances map), False for ``(service, instance) -> register``.

    Attributes:
        values: ``(service, instance)`` -> the leaf's value (a plain copy, read-only
            for callers).
    """

    def __init__(self, *, nested_by_service: bool) -> None:
        self._nested = nested_by_service
        self.values: dict[Path, Any] = {}
        self._stamps: dict[Path, tuple[int, str]] = {}
        self._dots: dict[Path, tuple[Dot, ...]] = {}
        # replica -> counter -> the leaf whose live dot (replica, counter) is.
        self._owner: dict[str, dict[int, Path]] = {}

    # ---- what a change touches -------------------------------------------------------
    def touched(self, change: ORMap[Any]) -> set[Path]:
        """The leaves ``change`` (a delta or a state merged into the map) can have changed.

        Call it while ``change`` is valid (during the change notification): the result
        is computed from ``change`` and this mirror's index only.
        """
        found = set(self._paths_of(change))
        context = context_of(change)
        for replica, counters in self._owner.items():
            if not context.knows(replica):
                continue
            if context.size(replica) <= len(counters):
                for counter in context.dots_of(replica):
                    path = counters.get(counter)
                    if path is not None:
                        found.add(path)
            else:
                found.update(
                    path for counter, path in counters.items() if context.covers(replica, counter)
                )
        return found

    def everything(self, live: ORMap[Any]) -> set[Path]:
        """Every leaf mirrored or present in ``live``: what a full re-read covers."""
        found = set(self.values)
        found.update(self._paths_of(live))
        return found

    def _paths_of(self, ormap: ORMap[Any]) -> Iterator[Path]:
        if not self._nested:
            yield from nested_keys(ormap)
            return
        for service in nested_keys(ormap):
            instances = nested(ormap, service)
            if instances is not None:
                for instance in nested_keys(instances):
                    yield (service, instance)

    # ---- re-reading ------------------------------------------------------------------
    def refresh(self, live: ORMap[Any], paths: Iterable[Path]) -> dict[Path, Any]:
        """Re-read ``paths`` from ``live`` (the map's current state, read-only).

        Returns:
            The leaves whose value changed: path -> the new value, or None for a leaf
            that is gone.
        """
        changed: dict[Path, Any] = {}
        for path in paths:
            self._unindex(path)
            found = self._read(live, path)
            if found is None:
                if path in self.values:
                    del self.values[path]
                    del self._stamps[path]
                    changed[path] = None
                continue
            register, dots = found
            self._index(path, dots)
            stamp = (register.timestamp, register.replica)
            if self._stamps.get(path) != stamp:
                self._stamps[path] = stamp
                self.values[path] = changed[path] = register.value
        return changed

    def _read(
        self, live: ORMap[Any], path: Path
    ) -> tuple[LWWRegister[Any], tuple[Dot, ...]] | None:
        if not self._nested:
            return leaf(live, path)
        instances = nested(live, path[0])
        return None if instances is None else leaf(instances, path[1])

    def _index(self, path: Path, dots: tuple[Dot, ...]) -> None:
        self._dots[path] = dots
        for replica, counter in dots:
            self._owner.setdefault(replica, {})[counter] = path

    def _unindex(self, path: Path) -> None:
        for replica, counter in self._dots.pop(path, ()):
            counters = self._owner.get(replica)
            if counters is not None and counters.get(counter) == path:
                del counters[counter]
                if not counters:
                    del self._owner[replica]
