"""A member that gossips an outdated accusation is sent the refutation it missed."""

from __future__ import annotations

import random

from crdtgossip.config import GossipConfig
from crdtgossip.protocol import Engine, Status
from crdtgossip.protocol.messages import (
    Alive,
    Dead,
    Suspect,
    decode_frame,
    encode_frame,
    encode_message,
)

CONFIG = GossipConfig.local()


def _engine() -> Engine:
    """Engine ``a`` knowing ``b`` and ``c``; ``c`` refuted up to incarnation 5."""
    a = Engine("a", "a:1", CONFIG, random.Random(1), "a-1")
    frame = encode_frame(
        "c",
        [
            encode_message(Alive("b", "b:1", 0)),
            encode_message(Alive("c", "c:1", 5)),
        ],
    )
    a.receive(frame, "c:1", 0.0)
    a.take_outgoing()
    return a


def _sent_to(engine: Engine, address: str) -> list[object]:
    return [
        message
        for frame in engine.take_outgoing()
        if frame.address == address
        for message in decode_frame(frame.data, 1 << 20).messages
    ]


def test_an_outdated_suspicion_is_answered_with_the_newer_alive() -> None:
    a = _engine()
    stale = encode_frame("b", [encode_message(Suspect("c", 3, "b"))])
    a.receive(stale, "b:1", 1.0)
    assert Alive("c", "c:1", 5) in _sent_to(a, "b:1")
    assert a.stats()["stale_accusations_corrected"] == 1
    # The rumor changed nothing here: c is still alive at 5.
    assert [m.status for m in a.members() if m.node_id == "c"] == [Status.ALIVE]


def test_an_outdated_death_is_answered_too_once_per_probe_interval() -> None:
    a = _engine()
    stale = encode_frame("b", [encode_message(Dead("c", 4, "b"))])
    a.receive(stale, "b:1", 1.0)
    a.receive(stale, "b:1", 1.0 + CONFIG.probe_interval / 2)
    assert _sent_to(a, "b:1").count(Alive("c", "c:1", 5)) == 1
    a.receive(stale, "b:1", 1.0 + CONFIG.probe_interval * 1.5)
    assert Alive("c", "c:1", 5) in _sent_to(a, "b:1")
    assert a.stats()["stale_accusations_corrected"] == 2


def test_current_accusations_get_no_answer() -> None:
    a = _engine()
    current = encode_frame("b", [encode_message(Suspect("c", 5, "b"))])
    a.receive(current, "b:1", 1.0)
    assert not any(isinstance(m, Alive) for m in _sent_to(a, "b:1"))
    assert a.stats()["stale_accusations_corrected"] == 0
    assert [m.status for m in a.members() if m.node_id == "c"] == [Status.SUSPECT]


def test_answers_older_than_a_probe_interval_are_forgotten() -> None:
    # Kept, they would hold back nothing: a simulator of N nodes at 10% loss grew
    # some N of them per node (N² in all).
    a = _engine()
    a.receive(encode_frame("b", [encode_message(Dead("c", 4, "b"))]), "b:1", 1.0)
    assert list(a._corrections) == [("b", "c")]
    later = 1.0 + CONFIG.probe_interval * 1.5
    a.receive(encode_frame("x", [encode_message(Suspect("c", 3, "x"))]), "x:1", later)
    assert list(a._corrections) == [("x", "c")]
