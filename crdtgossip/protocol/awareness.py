"""Lifeguard local health: a node unsure of its own health slows down its verdicts.

A node that is itself slow (overloaded CPU, a saturated link) misses acks from healthy
peers and would accuse them. Lifeguard (Dadgar et al., 2018) gives every node a
health *score*: missed acks, missing nacks from indirect probers and having to refute
a suspicion of itself raise it; successful probes lower it. The probe interval and
probe timeout are multiplied by ``score + 1``, so an unhealthy node probes less often
and waits longer before it suspects anyone (memberlist ``awareness.go``).
"""

from __future__ import annotations

__all__ = ["Awareness"]


class Awareness:
    """The local health score, between 0 (healthy) and ``max_multiplier - 1``.

    Args:
        max_multiplier: ``GossipConfig.awareness_max_multiplier``; timeouts grow to at
            most this many times their configured value.
    """

    __slots__ = ("_max_multiplier", "score")

    def __init__(self, max_multiplier: int) -> None:
        self._max_multiplier = max_multiplier
        #: The current score; 0 is healthy.
        self.score = 0

    def apply(self, delta: int) -> None:
        """Move the score by ``delta``, clamped to its range.

        Args:
            delta: positive for bad news (a missed ack, a refutation), negative for
                good news (an ack in time).
        """
        self.score = min(self._max_multiplier - 1, max(0, self.score + delta))

    def scale(self, timeout: float) -> float:
        """Stretch a timeout or interval by the current score.

        Args:
            timeout: seconds.

        Returns:
            ``timeout * (score + 1)``.
        """
        return timeout * (self.score + 1)
