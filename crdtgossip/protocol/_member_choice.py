"""Whom a member table picks: random members, and the next member to probe.

Both cost O(1) or O(k) however large the table (a 10,000-member table is asked on every
gossip round and probe): random draws over the sorted ids, and a probe round that is an
incremental Fisher-Yates shuffle of the ids known when it began (SWIM's shuffled
round-robin, so every member is probed within a bounded time).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from crdtgossip.protocol.member_table import MemberState
from crdtgossip.protocol.states import Status

__all__ = ["MemberChoice"]

_LIVE = (Status.ALIVE, Status.SUSPECT)


class MemberChoice:
    """The choosing half of :class:`~crdtgossip.protocol.membership.Membership`."""

    local_id: str
    _rng: random.Random
    _counts: dict[Status, int]
    _sorted_ids: list[str]
    _ids_shared: bool
    _probe_ids: list[str]
    _probe_left: int
    _probe_moved: dict[int, int]
    _probe_joined: list[str]

    def get(self, node_id: str) -> MemberState | None:
        raise NotImplementedError

    def _row(self, node_id: str) -> MemberState:
        raise NotImplementedError

    def live_members(self) -> list[MemberState]:
        """Every member alive or suspect, this node left out, in node id order.

        Returns:
            The rows (read them; never change them). O(N): for the acknowledged
            delivery of local writes, which sends to each of them anyway.
        """
        row = self._row
        live = set(_LIVE)
        return [
            member
            for member in map(row, self._sorted_ids)
            if member.status in live and member.node_id != self.local_id
        ]

    def random_members(
        self, count: int, statuses: Iterable[Status], exclude: Iterable[str] = ()
    ) -> list[MemberState]:
        """Up to ``count`` distinct random members in the given states.

        Args:
            count: how many.
            statuses: acceptable states.
            exclude: node ids to leave out (this node is always left out).

        Returns:
            The chosen rows, in random order (read them; never change them).
        """
        wanted = set(statuses)
        skip = {self.local_id, *exclude}
        available = sum(self._counts[status] for status in wanted)
        if not available:
            return []  # what the scan below would find, without scanning
        ids = self._sorted_ids
        row = self._row
        if count * 4 < available:
            # Most members qualify: draw at random and skip the misses, O(count).
            chosen: dict[str, MemberState] = {}
            for _attempt in range(count * 8):
                member = row(ids[self._rng.randrange(len(ids))])
                if member.node_id not in skip and member.status in wanted:
                    chosen[member.node_id] = member
                    if len(chosen) == count:
                        return list(chosen.values())
        candidates = [
            member
            for member in map(row, ids)
            if member.node_id not in skip and member.status in wanted
        ]
        return self._rng.sample(candidates, min(count, len(candidates)))

    def next_probe_target(self) -> MemberState | None:
        """The next member to probe: shuffled round-robin over live members.

        Every live member is probed once per round; the order is reshuffled each round
        (SWIM), so a failed member is found within two rounds at worst. A member that
        joins during a round takes a random place among those not yet probed. Each
        call costs O(1) amortized, however large the table: a round draws from the ids
        known when it began, one at a time, instead of shuffling a copy of them.

        Returns:
            The member, or ``None`` when there is nobody else alive or suspect.
        """
        for _attempt in range(2):
            while self._probe_left or self._probe_joined:
                node_id = self._draw_probe()
                if node_id == self.local_id:
                    continue
                member = self.get(node_id)
                if member is not None and member.status in _LIVE:
                    return member
            # A new round, over the ids known now; the list is shared from here on.
            self._probe_ids = self._sorted_ids
            self._ids_shared = True
            self._probe_left = len(self._probe_ids)
            self._probe_moved = {}
        return None

    def _draw_probe(self) -> str:
        """Draw the next id of the probe round, uniformly among those not yet drawn."""
        joined = self._probe_joined
        left = self._probe_left
        pick = self._rng.randrange(left + len(joined))
        if pick >= left:
            index = pick - left
            node_id = joined[index]
            joined[index] = joined[-1]
            joined.pop()
            return node_id
        # Fisher-Yates on a virtual copy: take position ``pick`` and move the last
        # undrawn position's id into it.
        moved = self._probe_moved
        last = left - 1
        position = moved.get(pick, pick)
        tail = moved.pop(last, last)
        if pick != last:
            moved[pick] = tail
        self._probe_left = last
        return self._probe_ids[position]
