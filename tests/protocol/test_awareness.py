"""Lifeguard local health."""

from __future__ import annotations

from crdtgossip.protocol.awareness import Awareness


def test_score_is_clamped_and_scales_timeouts() -> None:
    awareness = Awareness(max_multiplier=8)
    assert awareness.scale(0.5) == 0.5
    awareness.apply(-3)
    assert awareness.score == 0
    awareness.apply(3)
    assert awareness.scale(1.0) == 4.0
    awareness.apply(100)
    assert awareness.score == 7  # memberlist: 0 <= score < max
    assert awareness.scale(1.0) == 8.0
    awareness.apply(-1)
    assert awareness.score == 6
