"""Quiescence: turning a burst of changes into one render and one reload.

consul-template's ``wait {min, max}`` (consul-template#442, #810): after a change,
wait until nothing has changed for ``minimum`` seconds, but never longer than
``maximum`` seconds after the first change not yet rendered, so a registry that never
settles still gets rendered. :class:`Quiescence` holds only that arithmetic; the render
loop feeds it times and sleeps until :meth:`Quiescence.due`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crdtgossip.errors import ConfigError

__all__ = ["DEFAULT_WAIT", "MAX_WAIT", "Quiescence", "Wait"]

#: The longest either bound may be, in seconds. Minutes of delay are already more than
#: a load balancer should lag behind; a longer value is a unit mistake (``5000``
#: meaning milliseconds), refused rather than obeyed for over an hour.
MAX_WAIT = 3600.0

#: ``--wait`` when none is given: settle for 1 s, at most 4 s after the first change.
#: A drain or a deploy touches several instances within a second; this folds them into
#: one reload and still follows the registry within seconds. consul-template has no
#: default wait; its rule that the maximum defaults to four times the minimum is kept.
DEFAULT_WAIT = "1s:4s"

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}

# consul-template: "If the maximum value is omitted, it is set to 4x the minimum."
_DEFAULT_MAX_FACTOR = 4


@dataclass(frozen=True, slots=True)
class Wait:
    """The two bounds of quiescence, in seconds.

    Attributes:
        minimum: seconds without a change before rendering.
        maximum: seconds after the first unrendered change when rendering happens
            anyway; at least ``minimum``.
    """

    minimum: float
    maximum: float

    def __post_init__(self) -> None:
        if not 0 <= self.minimum <= self.maximum <= MAX_WAIT:
            raise ConfigError(
                f"--wait needs 0 <= MIN <= MAX <= {MAX_WAIT:g}s, got "
                f"{self.minimum:g}s:{self.maximum:g}s"
            )

    @classmethod
    def parse(cls, text: str) -> Wait:
        """Read ``MIN:MAX`` or ``MIN``: numbers of seconds, or with ``ms``, ``s``, ``m``.

        Args:
            text: ``2s:10s``, ``500ms:3s``, ``0:0`` or ``5`` (``5:20``).

        Returns:
            The bounds.

        Raises:
            ~crdtgossip.errors.ConfigError: the text is not of that form or the bounds are out of
                order.

        Example:
            >>> from crdtgossip.apps.lb import Wait
            >>> Wait.parse("500ms:3s")
            Wait(minimum=0.5, maximum=3.0)
            >>> Wait.parse("2")
            Wait(minimum=2.0, maximum=8.0)
        """
        low, sep, high = text.partition(":")
        minimum = _seconds(low, text)
        # MIN alone: MAX is 4 x MIN, clamped so that "--wait 20m" means 20m:60m.
        default_maximum = min(minimum * _DEFAULT_MAX_FACTOR, MAX_WAIT)
        return cls(minimum, _seconds(high, text) if sep else default_maximum)


def _seconds(part: str, whole: str) -> float:
    match = _DURATION.fullmatch(part.strip())
    if match is None:
        raise ConfigError(f"--wait {whole!r} is not MIN:MAX durations such as 2s:10s or 500ms:3s")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class Quiescence:
    """When to render after a run of changes: ``min(last + minimum, first + maximum)``.

    Example:
        >>> from crdtgossip.apps.lb import Quiescence, Wait
        >>> q = Quiescence(Wait(2.0, 5.0))
        >>> q.due() is None
        True
        >>> q.changed(now=100.0); q.changed(now=101.5); q.due()
        103.5
        >>> q.changed(now=104.0); q.due()  # the maximum, counted from the first change
        105.0
    """

    def __init__(self, wait: Wait) -> None:
        self.wait = wait
        self._first: float | None = None
        self._last: float | None = None

    def changed(self, now: float) -> None:
        """Record a change at ``now`` (monotonic seconds)."""
        if self._first is None:
            self._first = now
        self._last = now

    def due(self) -> float | None:
        """The time to render at, or None when no change is waiting."""
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.wait.minimum, self._first + self.wait.maximum)

    def clear(self) -> None:
        """Forget the waiting changes (they were rendered, or undone)."""
        self._first = None
        self._last = None
