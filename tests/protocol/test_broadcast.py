"""The transmit-limited broadcast queue."""

from __future__ import annotations

import pytest

from crdtgossip.protocol.broadcast import BroadcastQueue, retransmit_limit


@pytest.mark.parametrize(
    ("members", "expected"), [(0, 1), (1, 4), (5, 4), (9, 4), (10, 8), (99, 8), (100, 12)]
)
def test_retransmit_limit_is_mult_times_ceil_log10(members: int, expected: int) -> None:
    # memberlist RetransmitMult 4: 4 * ceil(log10(N + 1)), at least one send.
    assert retransmit_limit(4, members) == expected


def test_items_leave_after_the_limit() -> None:
    queue: BroadcastQueue[None] = BroadcastQueue()
    queue.put(("member", "a"), b"a" * 10)
    for _ in range(3):
        assert queue.take(100, limit=3) == [b"a" * 10]
    assert queue.take(100, limit=3) == []
    assert len(queue) == 0


def test_a_newer_item_supersedes_the_older_of_the_same_name() -> None:
    queue: BroadcastQueue[str] = BroadcastQueue()
    queue.put(("key", "k"), b"old", extra="old")
    queue.take(100, limit=5)
    queue.put(("key", "k"), b"new", extra="new")
    assert len(queue) == 1
    item = queue.get(("key", "k"))
    assert item is not None
    assert item.extra == "new"
    assert item.transmits == 0
    assert queue.take(100, limit=5) == [b"new"]


def test_fresher_items_first_and_only_what_fits() -> None:
    queue: BroadcastQueue[None] = BroadcastQueue()
    queue.put(("m", "a"), b"a" * 50)
    queue.take(100, limit=9)  # a has one transmit
    queue.put(("m", "b"), b"b" * 50)
    queue.put(("m", "c"), b"c" * 30)
    assert queue.take(85, limit=9) == [b"b" * 50, b"c" * 30]
    # All three sent once now: among equals, larger first, then newer first.
    assert queue.take(60, limit=9) == [b"b" * 50]
    assert queue.take(60, limit=9) == [b"a" * 50]


def test_excluded_destinations_are_skipped_without_counting() -> None:
    queue: BroadcastQueue[None] = BroadcastQueue()
    queue.put(("key", "k"), b"delta", exclude=frozenset({"origin"}))
    assert queue.take(100, limit=1, destination="origin") == []
    assert len(queue) == 1
    assert queue.take(100, limit=1, destination="other") == [b"delta"]
    assert len(queue) == 0


def test_min_size_picks_the_large_ones() -> None:
    queue: BroadcastQueue[None] = BroadcastQueue()
    queue.put(("key", "small"), b"s" * 10)
    queue.put(("key", "large"), b"l" * 5000)
    assert queue.take(10_000, limit=9, min_size=1000) == [b"l" * 5000]


def test_overflow_drops_the_most_sent_first() -> None:
    queue: BroadcastQueue[None] = BroadcastQueue(max_items=2)
    queue.put(("m", "a"), b"a")
    queue.take(1, limit=9)
    queue.put(("m", "b"), b"b")
    queue.put(("m", "c"), b"c")
    assert queue.overflow_drops == 1
    assert queue.get(("m", "a")) is None
    assert queue.get(("m", "c")) is not None


def test_a_full_queue_drops_an_eighth_at_once_so_it_does_not_sort_on_every_put() -> None:
    queue: BroadcastQueue[None] = BroadcastQueue(max_items=64)
    for i in range(65):
        queue.put(("key", str(i)), b"x")
    assert len(queue) == 64 - 8
    assert queue.overflow_drops == 9
    assert queue.get(("key", "0")) is None  # the oldest went first
    assert queue.get(("key", "64")) is not None
