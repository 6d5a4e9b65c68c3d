"""The suspicion timer: how long a suspect member has to refute before it is dead.

Lifeguard's refinement of SWIM, with memberlist's numbers (``suspicion.go``,
``util.go``): the timeout starts at a maximum and shrinks towards a minimum as other
members independently confirm the suspicion. One node's lonely suspicion (perhaps its
own network is the problem) thus waits long, while a suspicion shared by several
members ends quickly.

* minimum = ``suspicion_mult * max(1, log10 N) * probe_interval``: long enough for the
  suspect's refutation to spread through a cluster of N members;
* maximum = ``suspicion_max_timeout_mult * minimum``;
* after ``n`` confirmations from distinct members, with ``k = suspicion_mult - 2``
  wanted, the timeout is ``max - (ln(n + 1) / ln(k + 1)) * (max - min)``, never below
  the minimum, counted from when the suspicion started.
"""

from __future__ import annotations

import math

__all__ = ["Suspicion", "confirmations_wanted", "remaining_timeout", "suspicion_min_timeout"]


def suspicion_min_timeout(suspicion_mult: int, members: int, probe_interval: float) -> float:
    """The shortest suspicion timeout, in seconds.

    Args:
        suspicion_mult: ``GossipConfig.suspicion_mult``.
        members: the number of members in the cluster (at least 1 is assumed).
        probe_interval: ``GossipConfig.probe_interval`` in seconds.

    Returns:
        ``suspicion_mult * max(1, log10(members)) * probe_interval``.
    """
    node_scale = max(1.0, math.log10(max(1, members)))
    return suspicion_mult * node_scale * probe_interval


def confirmations_wanted(suspicion_mult: int, members: int) -> int:
    """How many independent confirmations drive the timeout to its minimum.

    Args:
        suspicion_mult: ``GossipConfig.suspicion_mult``.
        members: the number of members in the cluster.

    Returns:
        ``suspicion_mult - 2``, or 0 when the cluster is too small to have that many
        members besides the suspect and the accuser (then the minimum applies at
        once: nobody else could confirm).
    """
    wanted = suspicion_mult - 2
    if members - 2 < wanted:
        return 0
    return max(0, wanted)


def remaining_timeout(confirmations: int, wanted: int, minimum: float, maximum: float) -> float:
    """The total suspicion timeout after ``confirmations``, counted from its start.

    Args:
        confirmations: distinct members that confirmed, besides the first accuser.
        wanted: :func:`confirmations_wanted`; below 1 the minimum applies.
        minimum: the shortest timeout in seconds.
        maximum: the longest timeout in seconds.

    Returns:
        The timeout in seconds, between ``minimum`` and ``maximum``.
    """
    if wanted < 1:
        return minimum
    fraction = math.log(confirmations + 1) / math.log(wanted + 1)
    return max(minimum, maximum - fraction * (maximum - minimum))


class Suspicion:
    """The suspicion of one member, held by one node.

    Args:
        accuser: the member whose suspicion started it; it cannot also confirm.
        wanted: :func:`confirmations_wanted`.
        minimum: the shortest timeout in seconds.
        maximum: the longest timeout in seconds.
        start: when the suspicion started, in the driver's seconds.
    """

    __slots__ = ("_accusers", "_wanted", "deadline", "maximum", "minimum", "start")

    def __init__(
        self, accuser: str, wanted: int, minimum: float, maximum: float, start: float
    ) -> None:
        # The first accuser alone until another confirms: most suspicions get no
        # confirmation, and every member holds each suspicion, so a set each (about
        # 200 bytes) would cost a simulator of N nodes 200 N bytes per suspect.
        self._accusers: str | set[str] = accuser
        self._wanted = wanted
        self.minimum = minimum
        self.maximum = maximum
        self.start = start
        #: When the member is to be declared dead if nobody refutes.
        self.deadline = start + remaining_timeout(0, wanted, minimum, maximum)

    @property
    def confirmations(self) -> int:
        """Distinct members that confirmed the suspicion, besides the first accuser."""
        accusers = self._accusers
        return 0 if isinstance(accusers, str) else len(accusers) - 1

    def confirm(self, accuser: str) -> bool:
        """Count a suspicion of the same member by ``accuser``.

        Args:
            accuser: the member that suspects too.

        Returns:
            ``True`` if it was new information (a new accuser while more were
            wanted), which is worth passing on; ``False`` for a repeat or when the
            timeout is already at its minimum.
        """
        accusers = self._accusers
        if isinstance(accusers, str):
            if self._wanted < 1 or accuser == accusers:
                return False
            self._accusers = {accusers, accuser}
        else:
            if self.confirmations >= self._wanted or accuser in accusers:
                return False
            accusers.add(accuser)
        timeout = remaining_timeout(self.confirmations, self._wanted, self.minimum, self.maximum)
        self.deadline = self.start + timeout
        return True
