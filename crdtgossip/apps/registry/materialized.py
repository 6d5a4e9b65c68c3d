"""The registry as plain values in memory, following the node's keys change by change.

A :class:`MaterializedView` holds what :class:`~crdtgossip.apps.registry.view.Snapshot`
holds (instances, flags, events, releases, expectations) plus the health counts of
:mod:`.tally`. It never reads a whole registry key to follow it:

1. :meth:`MaterializedView.note` is told of each change of a key (during the node's
   change notification, while the change is valid) and records which leaves it can
   have touched (:class:`~crdtgossip.apps.registry.mirror.LeafMirror`); releases, which
   only grow, are added from the change itself;
2. :meth:`MaterializedView.apply` is later given the key's live state and re-reads just
   those leaves, then recounts just those instances.

Between the two, the recorded leaves are *pending*; a reader settles them first. A key
can also be marked for a full re-read (:meth:`MaterializedView.note_everything`: at
start, or when the node cannot say what changed). No I/O here: the
:class:`~crdtgossip.apps.registry.state.Registry` drives it.

The view also knows which agents are dead or gone (:meth:`MaterializedView.set_agent`,
driven by the node's membership events, and
:meth:`MaterializedView.count_strangers_gone`) and which instances each agent
registered, so an agent's death recounts its own instances and nothing else.
"""

from __future__ import annotations

from typing import Any

from crdtgossip.apps.registry.layout import (
    EVENTS_KEY,
    EXPECTATIONS_KEY,
    INSTANCES_KEY,
    MAINTENANCE_KEY,
    RELEASES_KEY,
)
from crdtgossip.apps.registry.mirror import LeafMirror, Path
from crdtgossip.apps.registry.tally import HealthTally
from crdtgossip.apps.registry.view import ReleaseElement, Snapshot

__all__ = ["MaterializedView"]


class MaterializedView:
    """The registry's plain values, kept incrementally (see the module docstring)."""

    def __init__(self) -> None:
        self._records = LeafMirror(nested_by_service=True)
        self._flags = LeafMirror(nested_by_service=False)
        self._events = LeafMirror(nested_by_service=False)
        self._mirrors = {
            INSTANCES_KEY: self._records,
            MAINTENANCE_KEY: self._flags,
            EVENTS_KEY: self._events,
        }
        # service -> instance -> record: only services with at least one instance.
        self._instances: dict[str, dict[str, Any]] = {}
        self._releases: set[ReleaseElement] = set()
        self._expectations: dict[tuple[str, str], int] = {}
        # Member -> whether it is alive (or suspect); agent -> the instances registered
        # through it; the agents of those that are dead or gone (what the tally reads).
        self._agents: dict[str, bool] = {}
        self._by_agent: dict[str, set[Path]] = {}
        self._dead_agents: set[str] = set()
        self._strangers_gone = False
        self._tally = HealthTally(
            self._records.values, self._flags.values, self._events.values, self._dead_agents
        )
        # key -> leaves to re-read, or None for all of them.
        self._pending: dict[str, set[Path] | None] = {}

    # ---- following changes -----------------------------------------------------------
    def note(self, key: str, change: Any) -> bool:
        """Record a change of ``key`` (a delta, or a state merged into it).

        Returns:
            Whether the view changed already (releases are applied at once); other
            keys change the view only in :meth:`apply`.
        """
        if key == RELEASES_KEY:
            before = len(self._releases)
            self._releases.update(change.value)
            return len(self._releases) != before
        mirror = self._mirrors.get(key)
        if mirror is None:  # expectations: a handful of entries, re-read whole
            self._pending[key] = None
            return False
        pending = self._pending.get(key, set())
        if pending is not None:
            pending.update(mirror.touched(change))
            self._pending[key] = pending
        return False

    def note_everything(self, key: str) -> None:
        """Mark ``key`` for a full re-read at the next :meth:`apply`."""
        self._pending[key] = None

    def pending(self) -> list[str]:
        """The keys with changes noted and not applied yet."""
        return list(self._pending)

    def apply(self, key: str, live: Any, now: float) -> bool:
        """Bring the view up to date with ``live``, the current state of ``key``.

        Args:
            key: a registry key with noted changes.
            live: its current state (read-only: only read here).
            now: the current Unix time (health of recounted instances).

        Returns:
            Whether anything a reader sees changed.
        """
        if key not in self._pending:
            return False
        paths = self._pending.pop(key)
        if key == RELEASES_KEY:
            fresh = set(live.value)
            changed = fresh != self._releases
            self._releases = fresh
            return changed
        if key == EXPECTATIONS_KEY:
            expectations = dict(live.value)
            changed = expectations != self._expectations
            self._expectations = expectations
            return changed
        mirror = self._mirrors[key]
        changes = mirror.refresh(live, mirror.everything(live) if paths is None else paths)
        if key == INSTANCES_KEY:
            self._place(changes)
        for path in changes:
            self._tally.update(path, now)
        return bool(changes)

    def _place(self, changes: dict[Path, Any]) -> None:
        for path, record in changes.items():
            service, instance = path
            found = self._instances.get(service)
            before = None if found is None else found.get(instance)
            self._move_agent(path, before, record)
            if record is not None:
                self._instances.setdefault(service, {})[instance] = record
                continue
            if found is not None:
                found.pop(instance, None)
                if not found:
                    del self._instances[service]

    def _move_agent(self, path: Path, before: Any, after: Any) -> None:
        old = None if before is None else before.get("agent")
        new = None if after is None else after.get("agent")
        if old == new:
            return
        if old is not None:
            paths = self._by_agent.get(old)
            if paths is not None:
                paths.discard(path)
                if not paths:
                    del self._by_agent[old]
                    self._dead_agents.discard(old)
        if new is not None:
            self._by_agent.setdefault(new, set()).add(path)
            if self._gone(new):
                self._dead_agents.add(new)

    def _gone(self, agent: str) -> bool:
        known = self._agents.get(agent)
        return not known if known is not None else self._strangers_gone

    def _reevaluate(self, agent: str, now: float) -> bool:
        paths = self._by_agent.get(agent)
        if paths is None or self._gone(agent) == (agent in self._dead_agents):
            return False
        if agent in self._dead_agents:
            self._dead_agents.discard(agent)
        else:
            self._dead_agents.add(agent)
        for path in paths:
            self._tally.update(path, now)
        return True

    def set_agent(self, agent: str, *, alive: bool, now: float) -> bool:
        """Record that the member ``agent`` is alive (or suspect), or dead or gone, and
        recount the instances registered through it.

        Costs the number of instances registered through ``agent``.

        Returns:
            Whether any health a reader sees changed.
        """
        self._agents[agent] = alive
        return self._reevaluate(agent, now)

    def count_strangers_gone(self, now: float) -> bool:
        """From now on, an agent that is no known member counts as gone.

        Call it once this agent has synced with the cluster: its member table then
        holds every member alive anywhere, so an agent missing from it has failed or
        left (a new member's record can beat the news of its join by a gossip round;
        its instances are critical that long). Costs the agents with instances.

        Returns:
            Whether any health a reader sees changed.
        """
        self._strangers_gone = True
        changed = False
        for agent in list(self._by_agent):
            changed = self._reevaluate(agent, now) or changed
        return changed

    def dead_agents(self) -> frozenset[str]:
        """The agents with instances here that are known dead or gone."""
        return frozenset(self._dead_agents)

    def advance(self, now: float) -> bool:
        """Count the event expiries due by ``now``; whether any count changed."""
        return self._tally.advance(now)

    def next_expiry(self) -> float | None:
        """The soonest pending expiry (see :meth:`HealthTally.next_expiry`)."""
        return self._tally.next_expiry()

    # ---- reading ---------------------------------------------------------------------
    def live_snapshot(self) -> Snapshot:
        """A :class:`Snapshot` over the view's own mappings, without copying them.

        Use it at once and only to read (the views of :mod:`.view` do): it changes as
        the view does.
        """
        return Snapshot(
            instances=self._instances,
            maintenance=self._flags.values,
            events=self._events.values,
            releases=self._releases,
            expectations=self._expectations,
            dead_agents=self._dead_agents,
        )

    def snapshot(self) -> Snapshot:
        """An independent copy of the view as a :class:`Snapshot` (costs its size)."""
        return Snapshot(
            instances={service: dict(found) for service, found in self._instances.items()},
            maintenance=dict(self._flags.values),
            events=dict(self._events.values),
            releases=frozenset(self._releases),
            expectations=dict(self._expectations),
            dead_agents=frozenset(self._dead_agents),
        )

    def health(self) -> dict[str, Any]:
        """``GET /v1/health`` from the counts (call :meth:`advance` first)."""
        return self._tally.summary(self._expectations)

    def release_count(self) -> int:
        """How many releases are recorded."""
        return len(self._releases)
