"""Release records: what ran where and when, per environment, service and instance.

Every release is one element of the grow-only set ``registry/releases``. An element is
a tuple whose first six positions never change meaning::

    (env, service, time, version, build, commit)                       # legacy shape
    (env, service, time, version, build, commit,
     instance, url, initiator, started, finished)                      # full shape

``time`` is Unix seconds on the agent that recorded the release; it orders releases,
the same way on every agent, and answers "what was current at T". ``started`` and
``finished`` are what the deploy tool reports (they may differ from ``time``, and are
shown, not used for ordering). A release that names no ``instance`` is a release of the
whole service; one that names an instance (a canary, one host) is that instance's only.
A request with none of the later fields is stored in the legacy shape, byte for byte
what earlier versions wrote, so agents of both versions read each other's releases.

What counts as current at time T (only releases with ``time <= T`` count):

* for a service: its latest whole-service release; when it has none, its latest
  release of any instance;
* for an instance: the later of its own latest release and the service's latest
  whole-service release (a service-wide deploy replaces a canary).

Pure functions of the set of elements: no node, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FullReleaseElement",
    "LegacyReleaseElement",
    "Release",
    "ReleaseElement",
    "ServiceReleases",
    "release_element",
    "service_releases",
]

#: The shape earlier versions wrote: (env, service, time, version, build, commit).
LegacyReleaseElement = tuple[str, str, float, str, str | None, str | None]

#: The full shape: the legacy six, then instance, url, initiator, started, finished.
FullReleaseElement = tuple[
    str,
    str,
    float,
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    float | None,
    float | None,
]

#: A release as kept in the replicated set (see the module docstring).
ReleaseElement = LegacyReleaseElement | FullReleaseElement

_LEGACY_LENGTH = 6
_FULL_LENGTH = 11


@dataclass(frozen=True, slots=True)
class Release:
    """One release, read from its element.

    Attributes:
        env: the environment.
        service: the service.
        time: Unix seconds when the agent recorded it (the order of releases).
        version: the version released.
        build: the CI build id, or None.
        commit: the source commit, or None.
        instance: the instance released, or None for the whole service.
        url: a link to the build or deploy job, or None.
        initiator: who or what started it, or None.
        started: when the deploy started (as the tool reports it), or None.
        finished: when it finished (as the tool reports it), or None.
    """

    env: str
    service: str
    time: float
    version: str
    build: str | None = None
    commit: str | None = None
    instance: str | None = None
    url: str | None = None
    initiator: str | None = None
    started: float | None = None
    finished: float | None = None

    @classmethod
    def of(cls, element: object) -> Release | None:
        """The release an element holds, or None for an element of neither shape.

        The set is replicated from every peer: an element this version cannot read is
        left out of every answer rather than failing it.
        """
        if not isinstance(element, tuple) or len(element) not in (_LEGACY_LENGTH, _FULL_LENGTH):
            return None
        padded = element + (None,) * (_FULL_LENGTH - len(element))
        env, service, time, version, build, commit, instance, url, who, started, finished = padded
        texts = (build, commit, instance, url, who)
        if not (isinstance(env, str) and isinstance(service, str) and isinstance(version, str)):
            return None
        if not all(text is None or isinstance(text, str) for text in texts):
            return None
        moments = (time, started, finished)
        if not all(
            moment is None or (isinstance(moment, int | float) and not isinstance(moment, bool))
            for moment in moments
        ):
            return None
        if time is None:
            return None
        return cls(
            env,
            service,
            float(time),
            version,
            build,
            commit,
            instance,
            url,
            who,
            None if started is None else float(started),
            None if finished is None else float(finished),
        )

    def record(self) -> dict[str, Any]:
        """The release as the API shows it (without env and service)."""
        return {
            "version": self.version,
            "build": self.build,
            "commit": self.commit,
            "time": self.time,
            "instance": self.instance,
            "url": self.url,
            "initiator": self.initiator,
            "started": self.started,
            "finished": self.finished,
        }

    def order(self) -> tuple[Any, ...]:
        """Time first; the rest only breaks exact ties, the same way on every agent."""
        return (
            self.time,
            self.version,
            self.build or "",
            self.commit or "",
            self.instance or "",
            self.url or "",
            self.initiator or "",
            self.started or 0.0,
            self.finished or 0.0,
        )


def release_element(release: Release) -> ReleaseElement:
    """The element that stores ``release``: the legacy shape when it fits."""
    legacy: LegacyReleaseElement = (
        release.env,
        release.service,
        release.time,
        release.version,
        release.build,
        release.commit,
    )
    extra = (release.instance, release.url, release.initiator, release.started, release.finished)
    if all(part is None for part in extra):
        return legacy
    return (*legacy, *extra)


@dataclass(slots=True)
class ServiceReleases:
    """The releases of one service in one environment, newest first.

    Attributes:
        history: every release counted, newest first.
        instance: set when the history is one instance's (:meth:`of_instance`).
    """

    history: list[Release]
    instance: str | None = None

    def current(self) -> Release | None:
        """The service's current release, or the instance's (see the module docstring)."""
        if self.instance is not None:
            return self.history[0] if self.history else None
        for release in self.history:
            if release.instance is None:
                return release
        return self.history[0] if self.history else None

    def instances(self) -> dict[str, Release]:
        """Instance -> its current release, for every instance released on its own."""
        found: dict[str, Release] = {}
        # Oldest first, so a later whole-service release replaces every instance's.
        for release in reversed(self.history):
            if release.instance is None:
                for instance in found:
                    found[instance] = release
            else:
                found[release.instance] = release
        return dict(sorted(found.items()))

    def of_instance(self, instance: str) -> ServiceReleases:
        """The releases that concern ``instance``: its own and the whole service's."""
        return ServiceReleases(
            [release for release in self.history if release.instance in (None, instance)],
            instance,
        )

    def names(self, instance: str) -> bool:
        """Whether a release of ``instance`` on its own is in the history."""
        return any(release.instance == instance for release in self.history)

    def view(self, limit: int | None = None) -> dict[str, Any]:
        """``{"current", "history", "instances"}`` as the API shows it."""
        current = self.current()
        history = self.history if limit is None else self.history[:limit]
        return {
            "current": None if current is None else current.record(),
            "history": [release.record() for release in history],
            "instances": {
                instance: release.record() for instance, release in self.instances().items()
            },
        }


def service_releases(
    elements: Set[Any] | Iterable[Any],
    at: float | None = None,
    *,
    env: str | None = None,
    service: str | None = None,
) -> dict[str, dict[str, ServiceReleases]]:
    """env -> service -> its releases up to ``at``, sorted by env and service.

    Args:
        elements: the elements of ``registry/releases``.
        at: a Unix time: count only releases recorded at or before it; None for all.
        env: keep only this environment.
        service: keep only this service.
    """
    chosen: list[Release] = []
    for element in elements:
        release = Release.of(element)
        if release is None or (at is not None and release.time > at):
            continue
        if (env is not None and release.env != env) or (
            service is not None and release.service != service
        ):
            continue
        chosen.append(release)
    chosen.sort(key=Release.order, reverse=True)
    grouped: dict[str, dict[str, ServiceReleases]] = {}
    for release in chosen:
        by_service = grouped.setdefault(release.env, {})
        by_service.setdefault(release.service, ServiceReleases([])).history.append(release)
    return {
        name: {svc: by_service[svc] for svc in sorted(by_service)}
        for name, by_service in sorted(grouped.items())
    }
