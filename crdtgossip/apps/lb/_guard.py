"""The drop guard: a render that would take most of a service out at once is refused.

An agent that lost its state, a registry wiped by mistake, a health check that fails
everywhere at once: each looks to the renderer like "these instances are gone", and
rendering it faithfully empties the load balancer. A real deploy drains a few instances
at a time. So a render is compared with the last one installed, and refused when it
drops more than ``max_drop`` (a share, 0 to 1) of a service's instances, or of all
instances together, unless the operator says so (``--allow-drop``, or ``--max-drop 1``).

Losing a single instance is always allowed (draining the only instance of a service is
a normal step of a deploy); the total over all services still counts it, so a render
that empties many one-instance services at once is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from crdtgossip.apps.lb._model import Services
from crdtgossip.apps.lb._select import select
from crdtgossip.errors import ConfigError

__all__ = ["DEFAULT_MAX_DROP", "DropGuard", "rendered_ids"]

#: Default share of a service's instances (and of all instances) one render may drop:
#: half. A rolling deploy drains fewer at once; an emptied registry drops all of them.
DEFAULT_MAX_DROP = 0.5

#: Instances a render may always drop, whatever the share: one, so that draining the
#: only instance of a service is not refused.
_ALWAYS_ALLOWED = 1

#: Instance ids listed in a refusal line before "and N more".
_LISTED = 5


def rendered_ids(services: Services) -> dict[str, frozenset[str]]:
    """Service name to the ids of the instances a renderer writes (after :func:`select`)."""
    return {
        service.name: frozenset(instance.id for instance, _ in service.servers)
        for service in select(services).services
    }


@dataclass(frozen=True, slots=True)
class DropGuard:
    """Refuses renders that drop too much at once.

    Attributes:
        max_drop: the largest share, 0 to 1, of instances one render may drop; 1 turns
            the guard off.
    """

    max_drop: float = DEFAULT_MAX_DROP

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_drop <= 1.0:
            raise ConfigError(f"--max-drop must be between 0 and 1, not {self.max_drop:g}")

    def refusal(
        self, before: Mapping[str, frozenset[str]] | None, after: Mapping[str, frozenset[str]]
    ) -> str | None:
        """Why the render ``after`` may not replace ``before``, or None if it may.

        Args:
            before: the instances of the last render installed, or None when none was
                (the first render after start is not guarded).
            after: the instances of the new render.

        Returns:
            One line naming what would be dropped, or None.
        """
        if before is None or self.max_drop >= 1.0:
            return None
        dropped_total = 0
        total = 0
        worst: str | None = None
        for name in sorted(before):
            ids = before[name]
            dropped = sorted(ids - after.get(name, frozenset()))
            total += len(ids)
            dropped_total += len(dropped)
            if len(dropped) > _ALWAYS_ALLOWED and len(dropped) > self.max_drop * len(ids):
                listed = ", ".join(dropped[:_LISTED])
                more = f" and {len(dropped) - _LISTED} more" if len(dropped) > _LISTED else ""
                worst = worst or (
                    f"{len(dropped)} of the {len(ids)} instances of {name} ({listed}{more})"
                )
        if worst is None and (
            dropped_total > _ALWAYS_ALLOWED and dropped_total > self.max_drop * total
        ):
            worst = f"{dropped_total} of all {total} instances"
        if worst is None:
            return None
        return (
            f"refused a render that would drop {worst} at once (more than "
            f"--max-drop {self.max_drop:g}); the live file is unchanged: give --allow-drop "
            "if this is meant"
        )
