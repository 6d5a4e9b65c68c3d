"""One small rate limiter for log lines a peer could otherwise flood.

A member flapping between suspect and alive, or a stream of frames under a wrong key,
must not turn a node's log into the attack's amplifier. :class:`LogLimiter` lets
``burst`` lines of one kind through per ``interval`` seconds and counts the rest; the
next line let through says how many were held back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

__all__ = ["DEFAULT_BURST", "DEFAULT_INTERVAL", "LogLimiter"]

DEFAULT_BURST: Final = 10
"""Lines of one kind let through per window: enough for a small cluster's churn (a
rolling restart of ten members) to be logged in full."""

DEFAULT_INTERVAL: Final = 60.0
"""The window, in seconds: at most ``DEFAULT_BURST`` lines of a kind a minute."""

#: Bound on the kinds tracked at once: a kind per peer cannot grow without limit
#: (the oldest window is forgotten first).
MAX_KINDS: Final = 1024


class LogLimiter:
    """Let at most ``burst`` log lines of each kind through per ``interval`` seconds.

    Args:
        burst: lines of one kind per window (at least 1).
        interval: the window, in seconds.
        clock: monotonic seconds; :func:`time.monotonic` by default.

    Example:
        >>> now = [0.0]
        >>> limiter = LogLimiter(burst=2, interval=10.0, clock=lambda: now[0])
        >>> [limiter.allow("suspect") for _ in range(4)]
        [0, 0, None, None]
        >>> now[0] = 10.0
        >>> limiter.allow("suspect")  # a new window: 2 lines were held back
        2
    """

    def __init__(
        self,
        burst: int = DEFAULT_BURST,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = max(1, burst)
        self._interval = interval
        self._clock = clock
        # kind -> [window start, lines let through in it, lines held back]
        self._windows: dict[str, list[float]] = {}

    def allow(self, kind: str) -> int | None:
        """Whether a line of ``kind`` may be logged now.

        Returns:
            None: hold it back (counted). Otherwise how many lines of that kind were
            held back since the last one let through (0 usually), to say so in it.
        """
        now = self._clock()
        window = self._windows.get(kind)
        if window is None or now - window[0] >= self._interval:
            held = 0 if window is None else int(window[2])
            if window is None and len(self._windows) >= MAX_KINDS:
                del self._windows[next(iter(self._windows))]
            self._windows.pop(kind, None)
            self._windows[kind] = [now, 1, 0]
            return held
        if window[1] < self._burst:
            window[1] += 1
            held, window[2] = int(window[2]), 0
            return held
        window[2] += 1
        return None

    def log(self, logger: logging.Logger, level: int, kind: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` at ``level`` unless lines of ``kind`` are over their rate.

        Returns:
            Whether the line was logged.
        """
        if not logger.isEnabledFor(level):
            return False
        held = self.allow(kind)
        if held is None:
            return False
        if held:
            logger.log(level, msg + " (%d similar lines held back)", *args, held)
        else:
            logger.log(level, msg, *args)
        return True
