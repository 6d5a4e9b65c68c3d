"""The transmit-limited broadcast queue."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


@dataclass
class _Model:
    """The queue's rules written plainly: sort everything on every take."""

    name: tuple[str, str]
    packed: bytes
    exclude: frozenset[str]
    transmits: int
    serial: int


def _model_take(
    items: dict[tuple[str, str], _Model],
    budget: int,
    limit: int,
    destination: str | None,
    overhead: int,
    min_size: int,
) -> list[bytes]:
    chosen, left = [], budget
    for item in sorted(items.values(), key=lambda i: (i.transmits, -len(i.packed), -i.serial)):
        cost = len(item.packed) + overhead
        if cost > left or len(item.packed) < min_size:
            continue
        if destination is not None and destination in item.exclude:
            continue
        chosen.append(item.packed)
        left -= cost
        item.transmits += 1
        if item.transmits >= limit:
            del items[item.name]
        if left <= overhead:
            break
    return chosen


_puts = st.tuples(
    st.just("put"),
    st.sampled_from("abcdefgh"),
    st.integers(1, 60),
    st.frozensets(st.sampled_from("xyz"), max_size=2),
)
_takes = st.tuples(
    st.just("take"),
    st.integers(0, 150),
    st.sampled_from([None, "x", "y"]),
    st.sampled_from([0, 2]),
    st.sampled_from([0, 0, 40]),
)


@given(st.lists(st.one_of(_puts, _takes), max_size=80))
def test_take_sends_what_sorting_the_whole_queue_would(
    ops: list[tuple[object, ...]],
) -> None:
    _check_against_model(ops, limit=3)


# Items of two sizes only, under many names: buckets of many items each, whose
# freshest are sent and moved on together, and superseded or discarded items taken out
# of the middle of a bucket.
_even_puts = st.tuples(
    st.just("put"),
    st.sampled_from("abcdefghijklmnopqrstuvwx"),
    st.sampled_from([2, 3]),
    st.frozensets(st.sampled_from("xyz"), max_size=1),
)
_even_takes = st.tuples(
    st.just("take"),
    st.integers(0, 40),
    st.sampled_from([None, None, "x", "y"]),
    st.just(0),
    st.sampled_from([0, 0, 0, 3]),
)
_discards = st.tuples(st.just("discard"), st.sampled_from("abcdefghijklmnopqrstuvwx"))


@given(st.lists(st.one_of(_even_puts, _even_puts, _even_takes, _discards), max_size=120))
def test_take_of_many_equal_items_sends_what_sorting_the_whole_queue_would(
    ops: list[tuple[object, ...]],
) -> None:
    _check_against_model(ops, limit=4)


def _check_against_model(ops: list[tuple[object, ...]], limit: int) -> None:
    queue: BroadcastQueue[None] = BroadcastQueue(max_items=64)
    model: dict[tuple[str, str], _Model] = {}
    serial = 0
    for op in ops:
        if op[0] == "put":
            _, name, size, exclude = op
            assert isinstance(name, str)
            assert isinstance(size, int)
            assert isinstance(exclude, frozenset)
            packed = name.encode() * size
            queue.put(("member", name), packed, exclude=exclude)
            serial += 1
            model[("member", name)] = _Model(("member", name), packed, exclude, 0, serial)
        elif op[0] == "discard":
            _, name = op
            assert isinstance(name, str)
            queue.discard(("member", name))
            model.pop(("member", name), None)
        else:
            _, budget, destination, overhead, min_size = op
            assert isinstance(budget, int)
            assert isinstance(overhead, int)
            assert isinstance(min_size, int)
            assert destination is None or isinstance(destination, str)
            expected = _model_take(model, budget, limit, destination, overhead, min_size)
            got = queue.take(
                budget,
                limit,
                destination=destination,
                per_item_overhead=overhead,
                min_size=min_size,
            )
            assert got == expected
        assert len(queue) == len(model)
        for name, item in model.items():
            queued = queue.get(name)
            assert queued is not None
            assert (queued.packed, queued.transmits) == (item.packed, item.transmits)


def test_items_lists_the_queue_in_send_order() -> None:
    queue: BroadcastQueue[str] = BroadcastQueue()
    queue.put(("m", "a"), b"a" * 5, extra="a")
    queue.take(100, limit=9)
    queue.put(("m", "b"), b"b" * 3, exclude=("x",))
    queue.put(("m", "c"), b"c" * 4)
    listed = [(i.name[1], i.transmits, tuple(i.exclude)) for i in queue.items()]
    assert listed == [("c", 0, ()), ("b", 0, ("x",)), ("a", 1, ())]
    assert [i.packed for i in queue.items()] == queue.take(100, limit=9)


def test_items_sent_together_keep_their_order_among_those_sent_as_often() -> None:
    queue: BroadcastQueue[None] = BroadcastQueue()
    one = 1  # budget of one item (all items are one byte)
    queue.put(("m", "a"), b"a")
    queue.put(("m", "x"), b"x")
    assert queue.take(one, limit=9) + queue.take(one, limit=9) == [b"x", b"a"]
    assert queue.take(one, limit=9) == [b"x"]  # x: two sends, a: one
    queue.put(("m", "b"), b"b")
    assert queue.take(one, limit=9) == [b"b"]  # b: one send, as a
    assert queue.take(2, limit=9) == [b"b", b"a"]  # two sends each, as x
    # Among equals the newer first: b, then x, then a (a and b went out together,
    # and x, older than b and newer than a, goes between them).
    assert [queue.take(one, limit=9)[0] for _ in range(3)] == [b"b", b"x", b"a"]
