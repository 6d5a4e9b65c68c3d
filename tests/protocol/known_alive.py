"""The rule of ``Membership.known_alive`` read off the rows, for tests to hold the
table's own bookkeeping (``_alive_at`` and the decoder's ``alive_index``) to."""

from __future__ import annotations

from crdtgossip.protocol import member_messages
from crdtgossip.protocol.membership import Membership
from crdtgossip.protocol.messages import Alive
from crdtgossip.protocol.states import Status


def check_known_alive(table: Membership, strangers: tuple[str, ...] = ("nobody",)) -> None:
    """Assert that ``table.known_alive`` says, for rumors at, below and above every
    known member's incarnation (and of strangers), what the rows say: alive at that
    incarnation or a newer one, and not the local node."""
    assert set(table._alive_at) == set(table._members)
    # What the decoder reads: each own row's level (0 past the end of the bytes), and
    # 0 for every other member.
    levels = table.alive_index.levels
    for node_id, slot in member_messages._slots.items():
        level = levels[slot] if slot < len(levels) else 0
        incarnation = table._alive_at.get(node_id, -1)
        assert level == min(incarnation + 1, 255), (node_id, incarnation, level)
    for node_id in (*table._sorted_ids, *strangers):
        row = table.get(node_id)
        incarnation = 0 if row is None else row.incarnation
        for offset in (-1, 0, 1):
            if incarnation + offset < 0:
                continue
            rumor = Alive(node_id, f"{node_id}:1", incarnation + offset)
            expected = (
                row is not None
                and row.status is Status.ALIVE
                and rumor.incarnation <= row.incarnation
                and node_id != table.local_id
            )
            assert table.known_alive(rumor) is expected, (node_id, offset, row)
