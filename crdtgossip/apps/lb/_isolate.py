"""Finding the instances that make a render fail, so the rest still goes through.

A registration can pass every check the registry makes and still fail the proxy's own:
a host name that does not resolve (``doesnotexist.invalid``: ``nginx -t`` answers
"host not found in upstream"), or a meta value a template refuses to write unquoted.
Refusing the whole render would freeze the load balancer on the last good file, and
every later drain and undrain with it. Instead the instances not in the last installed
render (the *suspects*: new, or with a new address) are split in halves until the
failing ones are found; they are left out and everything else is rendered.

Each trial is one render and one check (a few milliseconds for ``nginx -t``); ``k``
failing instances among ``n`` suspects take about ``2 k log2 n`` trials, bounded by
:data:`MAX_TRIALS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from crdtgossip.apps.lb._model import Instance, Services
from crdtgossip.errors import ConfigError

__all__ = ["MAX_TRIALS", "InstanceKey", "Isolated", "instance_keys", "isolate", "without"]

#: Most render-and-check trials spent isolating the failing instances of one render.
#: 64 trials find 4 failing instances among 10,000 suspects; a render needing more
#: than that is failing for a reason no single instance explains (then it is refused).
MAX_TRIALS = 64

#: One instance as a render writes it: service, instance id, address, port. A changed
#: address makes a new key, so a re-registration is a suspect again.
InstanceKey = tuple[str, str, str, int]

#: Renders the services and checks the result: None when accepted, else the reason.
Trial = Callable[[Services], Awaitable[str | None]]


def instance_keys(services: Services) -> frozenset[InstanceKey]:
    """Every instance of ``services`` as a key."""
    return frozenset(
        (name, item.id, item.address, item.port)
        for name, items in services.items()
        for item in items
    )


def without(services: Services, left_out: Iterable[InstanceKey]) -> dict[str, list[Instance]]:
    """``services`` with the instances of ``left_out`` removed (every service kept)."""
    gone = frozenset(left_out)
    return {
        name: [item for item in items if (name, item.id, item.address, item.port) not in gone]
        for name, items in services.items()
    }


@dataclass(frozen=True, slots=True)
class Isolated:
    """What :func:`isolate` found.

    Attributes:
        left_out: the instances that fail the render, sorted.
        reason: the refusal of the first failing instance found, for the log.
        trials: renders and checks spent.
    """

    left_out: tuple[InstanceKey, ...]
    reason: str | None
    trials: int


async def isolate(services: Services, trusted: frozenset[InstanceKey], trial: Trial) -> Isolated:
    """Find the suspects whose leaving out makes ``trial`` pass.

    Args:
        services: what was to be rendered (and failed).
        trusted: the instances of the last installed render; the others are suspects.
        trial: render and check.

    Returns:
        The instances to leave out.

    Raises:
        ~crdtgossip.errors.ConfigError: the render fails even with every suspect left out,
            or isolating them took more than :data:`MAX_TRIALS` trials: the fault is not
            in an instance.
    """
    suspects = sorted(instance_keys(services) - trusted)
    trials = 0
    first_reason: str | None = None

    async def refusal(admitted: list[InstanceKey]) -> str | None:
        nonlocal trials
        trials += 1
        if trials > MAX_TRIALS:
            raise ConfigError(f"more than {MAX_TRIALS} trials did not isolate the failure")
        admitted_set = frozenset(admitted)
        return await trial(without(services, [s for s in suspects if s not in admitted_set]))

    async def passes(admitted: list[InstanceKey], alone: bool = False) -> bool:
        nonlocal first_reason
        reason = await refusal(admitted)
        if reason is not None and alone and first_reason is None:
            first_reason = reason
        return reason is None

    if not suspects:
        raise ConfigError("the render fails and no instance is new since the last install")
    if not await passes([]):
        raise ConfigError("the render fails even with every new instance left out")

    async def failing(
        candidates: list[InstanceKey], accepted: list[InstanceKey]
    ) -> list[InstanceKey]:
        if await passes(accepted + candidates, alone=len(candidates) == 1):
            return []
        if len(candidates) == 1:
            return candidates
        half = len(candidates) // 2
        left, right = candidates[:half], candidates[half:]
        bad_left = await failing(left, accepted)
        accepted = accepted + [key for key in left if key not in bad_left]
        return bad_left + await failing(right, accepted)

    left_out = await failing(suspects, [])
    return Isolated(tuple(sorted(left_out)), first_reason, trials)
