"""Plans: the (service, version) changes that bring an environment to a target.

The target is the same environment at an earlier moment (``deploy plan --env prod --at
T``: roll back to what ran then) or another environment (``deploy diff --from staging
--to prod``: promote what staging runs). Both compare two answers of ``GET
/v1/releases/{env}`` (their ``services``) and need no I/O here.

A change names a service, or one instance of it, with the version it runs now
(``from``) and the version it should run (``to``). For an instance released on its own
(a canary), a change is listed only when deploying its service's version would not
already bring it where it should be. ``to`` is None when the target has no release of
that service (or instance): there is nothing to deploy back to, and the deploy tool
decides (leave it, or remove it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Change", "changes_between", "render_changes"]


@dataclass(frozen=True, slots=True)
class Change:
    """One step of a plan.

    Attributes:
        service: the service.
        instance: the one instance to change, or None for the whole service.
        current: the version it runs now, or None when it has no release.
        target: the version it should run, or None when the target has none.
        build: the target release's build, or None.
        commit: the target release's commit, or None.
    """

    service: str
    instance: str | None
    current: str | None
    target: str | None
    build: str | None = None
    commit: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The change as a deploy tool reads it (``from`` and ``to`` for the versions)."""
        return {
            "service": self.service,
            "instance": self.instance,
            "from": self.current,
            "to": self.target,
            "build": self.build,
            "commit": self.commit,
        }

    def line(self) -> str:
        """The change as one line of text."""
        where = self.service if self.instance is None else f"{self.service}/{self.instance}"
        before = self.current if self.current is not None else "(none)"
        after = self.target if self.target is not None else "(no release in the target)"
        details = []
        if self.build is not None:
            details.append(f"build {self.build}")
        if self.commit is not None:
            details.append(f"commit {self.commit}")
        suffix = f" ({', '.join(details)})" if details else ""
        return f"{where}: {before} -> {after}{suffix}"


def _version(record: Mapping[str, Any] | None) -> str | None:
    return None if record is None else str(record["version"])


def _change(
    service: str,
    instance: str | None,
    current: Mapping[str, Any] | None,
    target: Mapping[str, Any] | None,
) -> Change:
    return Change(
        service,
        instance,
        _version(current),
        _version(target),
        None if target is None else target.get("build"),
        None if target is None else target.get("commit"),
    )


def changes_between(
    current: Mapping[str, Mapping[str, Any]], target: Mapping[str, Mapping[str, Any]]
) -> list[Change]:
    """The changes that take ``current`` to ``target``, by service, then instance.

    Args:
        current: what runs now: the ``services`` of a ``GET /v1/releases/{env}`` reply.
        target: what should run: the same of the target (another moment or env).

    Returns:
        The changes (none when both run the same), sorted by service; a service's own
        change comes before its instances'.
    """
    changes: list[Change] = []
    for service in sorted(set(current) | set(target)):
        now, then = current.get(service) or {}, target.get(service) or {}
        now_service, then_service = now.get("current"), then.get("current")
        service_changes = _version(now_service) != _version(then_service)
        if service_changes:
            changes.append(_change(service, None, now_service, then_service))
        now_instances = now.get("instances") or {}
        then_instances = then.get("instances") or {}
        for instance in sorted(set(now_instances) | set(then_instances)):
            was = now_instances.get(instance, now_service)
            wanted = then_instances.get(instance, then_service)
            if _version(was) == _version(wanted):
                continue
            # Deploying the service's version already brings the instance there.
            if service_changes and _version(wanted) == _version(then_service):
                continue
            changes.append(_change(service, instance, was, wanted))
    return changes


def render_changes(changes: list[Change], nothing: str) -> str:
    """The changes as text, one a line; ``nothing`` when there are none."""
    if not changes:
        return nothing
    return "\n".join(change.line() for change in changes)
