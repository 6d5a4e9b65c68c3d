"""Hostile input: nothing a peer sends can raise out of the engine, and all is counted."""

from __future__ import annotations

import contextlib
import random

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip.config import GossipConfig
from crdtgossip.crdts import GCounter, ORSet
from crdtgossip.errors import DecodeError
from crdtgossip.protocol import Engine, Status
from crdtgossip.protocol.messages import FRAME_VERSION, Kind, decode_frame

from .cluster import VirtualCluster

CONFIG = GossipConfig.local()
GARBAGE_FRAMES = 10_000


def _engine() -> Engine:
    engine = Engine("victim", "victim:1", CONFIG, random.Random(0), "victim-1")
    engine.update("k", GCounter().increment("victim-1"), 0.0)
    return engine


@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_frame(data, 1 << 20)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


# A message of a real kind with fields of arbitrary type and count: exercises the
# per-kind schema checks, not just the msgpack layer.
near_messages = st.builds(
    lambda kind, fields: [int(kind), *fields],
    st.sampled_from(list(Kind)),
    st.lists(
        st.integers(0, 2**64 - 1)
        | st.text(min_size=1, max_size=8)
        | st.binary(max_size=300)
        | st.booleans()
        | st.none()
        | msgpack_values,
        max_size=4,
    ),
)


@given(st.lists(near_messages | msgpack_values, max_size=6), st.text(max_size=10))
def test_well_formed_msgpack_of_any_shape_raises_only_decode_error(
    messages: list[object], sender: str
) -> None:
    # Valid msgpack, plausible frame layout, arbitrary content: the schema catches it.
    body = msgpack.packb([sender, *messages], use_bin_type=True)
    with contextlib.suppress(DecodeError):
        decode_frame(bytes((FRAME_VERSION,)) + body, 1 << 20)


@given(st.binary(max_size=2048), st.text(min_size=1, max_size=30))
def test_the_engine_never_raises_on_garbage(data: bytes, sender: str) -> None:
    engine = _engine()
    engine.receive(data, sender, 1.0)
    stats = engine.stats()
    assert stats["frames_in"] == 1
    assert engine.get("k") == GCounter().increment("victim-1")


def _valid_frames() -> list[bytes]:
    """Real frames of every kind: a small cluster with data, a crash and a leave."""
    cluster = VirtualCluster(seed=40, config=CONFIG)
    names = cluster.start(4)
    cluster.run(3.0)
    for index, name in enumerate(names):
        engine = cluster.engines[name]
        engine.update("counter", GCounter().increment(engine.replica_id, index + 1), cluster.now)
        engine.update("set", ORSet[str]().add(f"e{index}", engine.replica_id), cluster.now)
        cluster._collect(name)
    cluster.run(20.0)
    cluster.stop(names[3])
    cluster.run(20.0)
    cluster.engines[names[2]].leave(cluster.now)
    cluster._collect(names[2])
    cluster.run(2.0)
    return [s.data for s in cluster.sent]


def test_ten_thousand_random_and_mutated_frames_leave_a_node_working() -> None:
    valid = _valid_frames()
    assert len(valid) > 50
    rng = random.Random(41)
    cluster = VirtualCluster(seed=42, config=CONFIG)
    names = cluster.start(3)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    victim = cluster.engines[names[0]]
    before = victim.stats()

    for i in range(GARBAGE_FRAMES):
        kind = i % 4
        if kind == 0:  # random bytes, sometimes with the right version byte
            data = bytearray(rng.randbytes(rng.randint(0, 1500)))
            if data and rng.random() < 0.5:
                data[0] = FRAME_VERSION
        else:
            data = bytearray(rng.choice(valid))
            if kind == 1:  # flip a few bits
                for _ in range(rng.randint(1, 3)):
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            elif kind == 2:  # truncate
                del data[rng.randrange(1, len(data)) :]
            else:  # overwrite a byte at random
                data[rng.randrange(len(data))] = rng.randrange(256)
        sender = rng.choice([*names, "stranger"])
        victim.receive(bytes(data), cluster.address(sender), cluster.now)
        cluster._collect(names[0])

    after = victim.stats()
    assert after["frames_in"] - before["frames_in"] == GARBAGE_FRAMES
    # Most random frames fail to decode; mutated valid ones often decode but then
    # carry payloads that fail (or merge harmlessly: a flipped bit in a sequence
    # number is a valid, useless ack).
    assert after["decode_errors"] - before["decode_errors"] > GARBAGE_FRAMES // 4
    assert after["drop_malformed"] > before["drop_malformed"]

    # It still works: membership holds and an update spreads.
    cluster.run(10.0)
    assert cluster.run_until(lambda: cluster.sees_all(names), max_seconds=60)
    engine = cluster.engines[names[1]]
    engine.update("after", GCounter().increment(engine.replica_id, 7), cluster.now)
    cluster._collect(names[1])

    def spread() -> bool:
        state = victim.get("after")
        return state is not None and state.value == 7

    assert cluster.run_until(spread, max_seconds=30)
    assert all(m.status is Status.ALIVE for m in victim.members() if m.node_id in names)
