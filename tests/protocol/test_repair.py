"""Repair by difference: after one conversation both sides hold the join, and every
part sent is a part of its sender's state (a join decomposition), for every type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtgossip import EWFlag, GCounter, GSet, LWWMap, LWWRegister, MVRegister, ORSet, PNCounter
from crdtgossip.codec import decode, encode
from crdtgossip.errors import DecodeError, MergeError
from crdtgossip.protocol.messages import (
    Diff,
    RangeNode,
    decode_frame,
    encode_frame,
    encode_message,
)
from crdtgossip.protocol.repair import LEAF_DOTS, opening, respond, root_shift
from crdtgossip.testing import Operation
from crdtgossip.testing import strategies as ops
from tests.crdts.histories import CAUSAL_CASES, replay, steps

# A conversation ends within the depth of the counter tree and a few more steps; a
# longer one is a bug (a ping-pong that never settles).
MAX_STEPS = 64

CASES: list[tuple[str, Callable[[], Any], st.SearchStrategy[Operation[Any]]]] = [
    *CAUSAL_CASES,
    ("EWFlag", EWFlag, ops.ewflag_ops()),
    ("MVRegister", MVRegister, ops.mvregister_ops()),
    ("GSet", GSet, ops.gset_ops()),
    ("LWWMap", LWWMap, ops.lwwmap_ops()),
    ("GCounter", GCounter, ops.gcounter_ops()),
    ("PNCounter", PNCounter, ops.pncounter_ops()),
    ("LWWRegister", LWWRegister, ops.lwwregister_ops()),
]


def converse(first: Any, second: Any, key: str = "k") -> int:
    """Repair ``key`` between two states in place; return the bytes exchanged.

    Every message goes through the wire format, and every patch is checked to be a
    part of its sender's state: merging it into the sender changes nothing.
    """
    in_flight: list[tuple[Any, Any, Diff]] = [(first, second, opening(key, first))]
    exchanged = 0
    for _ in range(MAX_STEPS):
        if not in_flight:
            return exchanged
        sender, receiver, message = in_flight.pop(0)
        frame = encode_frame("peer", [encode_message(message)])
        exchanged += len(frame)
        (received,) = decode_frame(frame, 1 << 24).messages
        assert received == message
        if message.patch:
            unchanged = sender.copy()
            unchanged.merge(decode(message.patch))
            assert unchanged == sender, "a patch holds more than its sender's state"
        outcome = respond(key, receiver, message)
        if outcome.reply is not None:
            in_flight.append((receiver, sender, outcome.reply))
    raise AssertionError("the repair did not settle")


@pytest.mark.parametrize(
    ("factory", "operations"),
    [pytest.param(factory, operations, id=name) for name, factory, operations in CASES],
)
@settings(max_examples=150)
@given(data=st.data())
def test_a_repair_leaves_both_sides_at_their_join(
    factory: Callable[[], Any],
    operations: st.SearchStrategy[Operation[Any]],
    data: st.DataObject,
) -> None:
    history = data.draw(steps(operations))
    first, second, third = replay(factory, history)
    tracked = data.draw(st.booleans())
    if tracked:  # digests kept up to date from before the repair, or built on demand
        first._digest()
        second._digest()
    expected = first.copy()
    expected.merge(second)
    converse(first, second)
    assert first == expected
    assert second == expected
    assert first._digest() == second._digest() == expected._digest()
    # Once equal, a repair costs one opening and one answer, then stops.
    converse(third, third.copy())


def _orset(count: int, replica: str = "a") -> ORSet[int]:
    state: ORSet[int] = ORSet()
    for element in range(count):
        state.add(element, replica)
    return state


def test_one_missing_element_of_a_large_set_costs_well_under_a_kilobyte() -> None:
    ahead = _orset(20_000)
    behind = ahead.copy()
    ahead.add(-1, "b")
    cost = converse(behind, ahead)
    assert behind == ahead
    assert cost < 600, cost
    assert cost < len(encode(ahead)) / 500


@pytest.mark.parametrize("removed", [1, 10, 100])
def test_removes_the_other_side_missed_cost_a_few_ranges_each(removed: int) -> None:
    ahead = _orset(20_000)
    behind = ahead.copy()
    for element in range(0, 20_000, 20_000 // removed)[:removed]:
        ahead.remove(element)
    cost = converse(behind, ahead)
    assert behind == ahead
    # Per remove, a path of child sums (128 bytes a level) and one listed bucket.
    assert cost < 400 + removed * 900, cost


def test_concurrent_removes_on_both_sides_converge() -> None:
    first = _orset(5_000)
    second = first.copy()
    first.remove(10)
    first.remove(4_000)
    second.remove(2_500)
    second.add(-7, "b")
    expected = first.copy()
    expected.merge(second)
    converse(first, second)
    assert first == second == expected
    assert {10, 2_500, 4_000}.isdisjoint(first.value)
    assert -7 in first


def test_counters_answer_with_only_their_slots_ahead() -> None:
    mine, theirs = GCounter(), GCounter()
    for index in range(50):
        mine.increment(f"replica-{index}", 3)
        theirs.increment(f"replica-{index}", 3)
    theirs.increment("replica-7", 1)
    outcome = respond("k", theirs, opening("k", mine))
    assert outcome.reply is not None
    assert decode(outcome.reply.patch).counts == {"replica-7": 4}


def test_root_shift_covers_the_highest_counter() -> None:
    assert root_shift(0) == 6
    assert root_shift(63) == 6
    assert root_shift(64) == 10
    assert root_shift(2**64 - 1) == 66


def test_a_listed_range_is_settled_in_one_step() -> None:
    few = _orset(LEAF_DOTS)
    other = few.copy()
    other.remove(3)
    converse(few, other)
    assert few == other


@pytest.mark.parametrize(
    "message",
    [
        Diff("k", True, b"", b"", ()),  # no context for a causal type
        Diff("k", True, b"not msgpack", b"", ()),
        Diff("k", False, encode(ORSet()), b"\x93\x01", ()),  # a truncated patch
    ],
)
def test_a_malformed_step_raises_decode_error(message: Diff) -> None:
    with pytest.raises(DecodeError):
        respond("k", _orset(3), message)


def test_a_step_of_another_type_raises_merge_error() -> None:
    with pytest.raises(MergeError):
        respond("k", _orset(3), Diff("k", True, encode(EWFlag()), b"", ()))
    with pytest.raises(MergeError):
        respond("k", GSet(), Diff("k", False, b"", encode(GCounter()), ()))


def test_hostile_ranges_cost_nothing_and_change_nothing() -> None:
    state = _orset(1_000)
    before = state.copy()
    context = encode(state._empty_bound(state._context))
    nodes = (
        RangeNode("nobody", 66, 0, bytes(128), None),
        RangeNode("a", 6, 2**58 - 1, None, (2**64 - 1,)),
        RangeNode("a", 62, 3, b"\xff" * 128, None),
        RangeNode("", 10, 0, None, (1, 2, 3)),  # a position range sent to a causal type
    )
    outcome = respond("k", state, Diff("k", False, context, b"", nodes))
    assert state == before
    assert outcome.reply is None or all(node.space != "nobody" for node in outcome.reply.nodes)
