"""Consistency levels for :meth:`crdtgossip.Node.update` and :meth:`crdtgossip.Node.get`.

A write always applies locally at once; the level says how many members (this node
included) must have merged it before ``update`` returns. A read asks that many members
for their state and returns the join of the replies with the local state.

The member count ``N`` a level is computed from is the coordinating node's view when
the request starts: the members it sees alive or suspect, itself included
(:meth:`crdtgossip.protocol.Engine.quorum_members`). The page
``docs/concepts/consistency.rst`` says what membership changes do to it.

``Majority`` write followed by ``Majority`` read gives read-your-writes: any two
majorities of the same membership share at least one member, and that member's reply
carries the write into the join.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from crdtgossip.errors import ConfigError

__all__ = ["All", "AtLeast", "Consistency", "Local", "Majority", "MajorityPlus"]

#: The default timeout of the quorum levels, in seconds: a few LAN gossip rounds.
DEFAULT_TIMEOUT = 2.0


def _check_timeout(timeout: object) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ConfigError(f"timeout must be a number of seconds, not {timeout!r}")
    if not 0 < timeout <= 3600 or math.isnan(timeout):
        raise ConfigError(f"timeout must be in (0, 3600] seconds, not {timeout!r}")


@dataclass(frozen=True, slots=True)
class Local:
    """Only this node: a write returns once merged here; a read returns local state."""

    def required(self, members: int) -> int:
        """How many members (this node included) must take part, out of ``members``."""
        return 1


@dataclass(frozen=True, slots=True)
class AtLeast:
    """At least ``n`` members, this node included, within ``timeout`` seconds."""

    n: int
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"AtLeast needs n >= 1 members, not {self.n!r}")
        _check_timeout(self.timeout)

    def required(self, members: int) -> int:
        """``n`` (a level asking for more members than exist cannot be met)."""
        return self.n


@dataclass(frozen=True, slots=True)
class Majority:
    """More than half of the members alive or suspect (this node included), within
    ``timeout`` seconds."""

    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        _check_timeout(self.timeout)

    def required(self, members: int) -> int:
        """``members // 2 + 1``."""
        return members // 2 + 1


@dataclass(frozen=True, slots=True)
class MajorityPlus:
    """A majority and ``n`` more members, capped at all of them (Akka's
    ``WriteMajorityPlus``), within ``timeout`` seconds.

    More margin than :class:`Majority` against members lost right after the write,
    without the all-or-nothing of :class:`All`. ``MajorityPlus(0)`` is ``Majority()``.

    Raises:
        ConfigError: ``n`` is not an int >= 0, or the timeout is out of range.
    """

    n: int
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0:
            raise ConfigError(f"MajorityPlus needs n >= 0 more members, not {self.n!r}")
        _check_timeout(self.timeout)

    def required(self, members: int) -> int:
        """``min(members // 2 + 1 + n, members)``."""
        return min(members // 2 + 1 + self.n, members)


@dataclass(frozen=True, slots=True)
class All:
    """Every member alive or suspect (this node included), within ``timeout`` seconds."""

    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        _check_timeout(self.timeout)

    def required(self, members: int) -> int:
        """``members``."""
        return members


Consistency = Local | AtLeast | Majority | MajorityPlus | All
