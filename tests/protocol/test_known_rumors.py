"""Alive rumors the receiver already knows are left out while a frame is decoded
(``decode_frame``'s ``known_alive``): the engine must behave exactly as if each had
been decoded and offered to its member table, which would have ignored it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtgossip.config import GossipConfig
from crdtgossip.protocol import Engine
from crdtgossip.protocol import engine as engine_module
from crdtgossip.protocol.membership import FormedTable
from crdtgossip.protocol.messages import (
    Alive,
    Dead,
    Frame,
    Left,
    MemberRecord,
    Message,
    Ping,
    Suspect,
    decode_frame,
    encode_frame,
    encode_message,
)
from crdtgossip.protocol.states import Status

CONFIG = GossipConfig.local()
IDS = ("me", "a", "b", "c")


@contextmanager
def _nothing_left_out() -> Iterator[None]:
    """Engines receive as before the skip: every rumor decoded and dispatched."""

    def decode_everything(data: bytes, max_frame: int, **_: object) -> Frame:
        return decode_frame(data, max_frame)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_module, "decode_frame", decode_everything)
        yield


def _engine(formed: FormedTable | None = None) -> Engine:
    engine = Engine("me", "me:1", CONFIG, random.Random(7), "me-1")
    if formed is not None:
        engine.adopt_formed(formed, 0.0)  # rows shared, not in alive_incarnations
    return engine


def _observe(engine: Engine) -> tuple[object, ...]:
    outgoing = [(f.address, f.data, f.reliable) for f in engine.take_outgoing()]
    return (
        outgoing,
        engine.take_events(),
        engine.members(),
        engine.stats(),
        engine.incarnation,
        engine.next_wakeup(),
    )


def _frame(sender: str, messages: list[Message]) -> bytes:
    return encode_frame(sender, [encode_message(m) for m in messages])


# Rumors about a few members, the receiver among them, at a few incarnations and
# addresses, so that each is sometimes news, sometimes old news, sometimes about self.
_incarnations = st.sampled_from((0, 1, 2, 3, 253, 254, 255, 256))  # the levels end at 254
_rumor = st.one_of(
    st.builds(Alive, st.sampled_from(IDS), st.sampled_from(("x:1", "x:2", "me:1")), _incarnations),
    st.builds(Suspect, st.sampled_from(IDS), _incarnations, st.sampled_from(IDS)),
    st.builds(Dead, st.sampled_from(IDS), _incarnations, st.sampled_from(IDS)),
    st.builds(Left, st.sampled_from(IDS), _incarnations),
    st.builds(Ping, st.integers(0, 9), st.sampled_from(IDS)),
)
_frames = st.lists(
    st.tuples(st.sampled_from(IDS), st.lists(_rumor, max_size=12), st.booleans()),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(_frames, st.booleans())
def test_an_engine_behaves_as_if_known_rumors_had_been_dispatched(
    frames: list[tuple[str, list[Message], bool]], formed: bool
) -> None:
    table = None
    if formed:
        rows = [MemberRecord(i, f"{i}:1", 0 if i == "me" else 1, Status.ALIVE) for i in IDS[:3]]
        table = FormedTable(rows)
    fast, reference = _engine(table), _engine(table)
    now = 0.0
    for sender, messages, tick in frames:
        data = _frame(sender, messages)
        fast.receive(data, f"{sender}:1", now)
        with _nothing_left_out():
            reference.receive(data, f"{sender}:1", now)
        if tick:
            now += 0.3
            fast.tick(now)
            reference.tick(now)
        assert _observe(fast) == _observe(reference)


def test_the_property_exercises_the_skip() -> None:
    # The same kind of input as above, fixed: the fast engine leaves rumors out, and
    # still counts them as messages received, as the reference does.
    fast, reference = _engine(), _engine()
    frames = [
        _frame("a", [Alive("a", "a:1", 1), Alive("b", "b:1", 0)]),
        _frame("b", [Alive("a", "a:1", 0), Alive("a", "x:2", 1), Alive("b", "b:1", 0)]),
        _frame("c", [Alive("me", "me:1", 0), Alive("me", "x:1", 0), Alive("a", "a:1", 1)]),
    ]
    left_out = 0
    for data in frames:
        left_out += decode_frame(
            data, CONFIG.max_reliable_frame, known_alive=fast._membership.alive_index
        ).known
        fast.receive(data, "peer:1", 0.0)
        with _nothing_left_out():
            reference.receive(data, "peer:1", 0.0)
        assert _observe(fast) == _observe(reference)
    assert left_out == 4  # a at 0 and 1 (twice), b at 0; never "me"
    assert fast.stats()["messages_in"] == 8
    # The rumor of "me" elsewhere at its incarnation was refuted, not left out.
    assert fast.incarnation == 1
