"""Tests of crdtgossip.transport._tcp_frames: the frame decoder, its limit and its budget."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip.transport._tcp_frames import (
    BudgetExceeded,
    FrameDecoder,
    FrameTooLarge,
    ReadBudget,
    frame,
)


def decode_all(decoder: FrameDecoder, stream: bytes, cuts: list[int]) -> list[bytes]:
    """Feed ``stream`` to ``decoder`` in pieces cut at ``cuts``; return the frames."""
    frames: list[bytes] = []
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        view = memoryview(stream)[start:end]
        offset = 0
        while offset < len(view):
            offset += decoder.feed(view[offset:])
            payload = decoder.take()
            if payload is not None:
                frames.append(payload)
    return frames


@given(
    st.lists(st.binary(max_size=300), max_size=20),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_any_cutting_of_the_stream_gives_the_frames_back(
    payloads: list[bytes], cuts: list[int]
) -> None:
    budget = ReadBudget(1000)
    decoder = FrameDecoder(300, budget)
    stream = b"".join(frame(p) for p in payloads)
    assert decode_all(decoder, stream, cuts) == payloads
    assert not decoder.in_frame
    assert budget.used == 0  # every byte charged was given back


def test_a_prefix_over_the_limit_is_refused_before_any_body() -> None:
    decoder = FrameDecoder(1024, None)
    with pytest.raises(FrameTooLarge) as caught:
        decoder.feed(memoryview((16 * 1024 * 1024).to_bytes(4, "big")))
    assert (caught.value.length, caught.value.limit) == (16 * 1024 * 1024, 1024)


def test_the_body_is_held_as_it_arrives_not_as_declared() -> None:
    budget = ReadBudget(100)
    decoder = FrameDecoder(16 * 1024 * 1024, budget)
    assert decoder.feed(memoryview((16 * 1024 * 1024).to_bytes(4, "big") + b"x" * 60)) == 64
    assert (decoder.length, decoder.buffered, budget.used) == (16 * 1024 * 1024, 64, 60)
    with pytest.raises(BudgetExceeded):
        decoder.feed(memoryview(b"y" * 41))
    assert budget.used == 60  # nothing reserved by the refused feed
    decoder.discard()
    assert budget.used == 0
    assert not decoder.in_frame


def test_feed_stops_after_one_frame_so_limits_can_change() -> None:
    decoder = FrameDecoder(4, None)
    stream = memoryview(frame(b"tiny") + frame(b"much larger"))
    consumed = decoder.feed(stream)
    assert consumed == 8
    assert decoder.take() == b"tiny"
    assert decoder.take() is None
    decoder.limit = 100  # authenticated: the next frame may be larger
    decoder.feed(stream[consumed:])
    assert decoder.take() == b"much larger"


def test_an_empty_frame_is_a_frame() -> None:
    decoder = FrameDecoder(10, None)
    assert decoder.feed(memoryview(frame(b""))) == 4
    assert decoder.take() == b""
