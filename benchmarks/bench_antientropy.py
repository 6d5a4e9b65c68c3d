"""Anti-entropy: bytes of one push-pull exchange between two replicas that differ a little.

Two sans-I/O engines (LAN preset) hold the same 100,000 keys (a ``GCounter`` each), but
10 of them differ: on the second replica those counters also count increments of a
replica id the first never saw. They are handed each other's member table (as
:class:`~crdtgossip.testing.Simulation` forms a cluster), never join (a join exchanges
the full state), and are driven by hand on virtual time: ``tick`` at
``next_wakeup``, every frame delivered at once to the other engine by ``receive``. The
probes before the first anti-entropy exchange are not counted; from the tick that
starts it, every frame both engines emit is (the exchange's member tables, the hash
tree descent, the states, and the probes that happen to fall in the window), until
neither has anything left to send. Then both stores must be equal.

The floor is a full-state exchange: the encoded ``State`` messages (key and encoded
state) one replica would push for all its keys, framed as the engine frames them,
counted in one direction only (a full push-pull sends it both ways, so the ratio is
conservative). The hash tree should make the exchange cost O(differences x log keys):
the target is at most 2% of the full state. Nothing is timed: the figures are bytes.
"""

from __future__ import annotations

import random

from benchmarks._result import BenchResult, Figure
from crdtgossip import GCounter
from crdtgossip.codec import encode
from crdtgossip.config import GossipConfig
from crdtgossip.protocol import Engine, Status
from crdtgossip.protocol.messages import (
    MemberRecord,
    Members,
    State,
    encode_frame,
    encode_message,
)

__all__ = ["Pair", "form", "run"]

#: Keys per replica.
KEYS = 100_000
#: --quick: a smoke test.
QUICK_KEYS = 10_000
#: Keys whose states differ between the two replicas.
DIFFERENT = 10
#: The issue's target: one exchange costs at most this fraction of the full state.
TARGET_FRACTION = 0.02
#: Seeds the engines and the choice of differing keys.
SEED = 2026
#: Virtual seconds to wait for the first anti-entropy exchange (it starts at a random
#: phase within ``push_pull_interval``).
MAX_WAIT_SECONDS = 600.0


class Pair:
    """Two engines wired to each other, with a byte count of every frame."""

    def __init__(self, engines: tuple[Engine, Engine]) -> None:
        self.engines = engines
        self.frames = 0
        self.bytes = 0
        self.now = 0.0

    def pump(self) -> None:
        """Deliver frames at once, both ways, until neither engine has any to send."""
        a, b = self.engines
        while True:
            moved = False
            for source, destination in ((a, b), (b, a)):
                for frame in source.take_outgoing():
                    moved = True
                    self.frames += 1
                    self.bytes += len(frame.data)
                    if frame.address == destination.address:
                        destination.receive(frame.data, source.address, self.now)
            if not moved:
                return

    def push_pulls(self) -> int:
        return sum(engine.stats()["push_pulls"] for engine in self.engines)

    def bytes_out(self) -> int:
        """Bytes both engines have sent, by their own ``stats()``."""
        return sum(engine.stats()["bytes_out"] for engine in self.engines)

    def until_push_pull(self, limit: float) -> int:
        """Tick on virtual time until a tick starts a push-pull, and pump its frames.

        ``frames`` and ``bytes`` count from the tick that started it.

        Returns:
            :meth:`bytes_out` just before that tick.

        Raises:
            RuntimeError: none started by virtual time ``limit``.
        """
        a, b = self.engines
        while self.now < limit:
            self.now = min(a.next_wakeup(), b.next_wakeup())
            before, sent = self.push_pulls(), self.bytes_out()
            self.frames = self.bytes = 0
            for engine in self.engines:
                if engine.next_wakeup() <= self.now:
                    engine.tick(self.now)
            self.pump()
            if self.push_pulls() > before:
                return sent
        raise RuntimeError("no anti-entropy exchange started")


def form(a: Engine, b: Engine) -> None:
    """Hand each engine both member records, as a formed cluster has them (no join)."""
    records = tuple(
        MemberRecord(engine.node_id, engine.address, 0, Status.ALIVE) for engine in (a, b)
    )
    packed = encode_message(Members(records, reply=False, join=False))
    a.receive(encode_frame(b.node_id, [packed]), b.address, 0.0)
    b.receive(encode_frame(a.node_id, [packed]), a.address, 0.0)


def _full_state_bytes(engine: Engine, frame_room: int) -> int:
    """Bytes of frames carrying a State message for every key of ``engine``."""
    total = 0
    batch: list[bytes] = []
    size = 0
    keys = engine.keys()
    for key in keys:
        state = engine.get(key)
        assert state is not None
        packed = encode_message(State(key, encode(state)))
        if batch and size + len(packed) > frame_room:
            total += len(encode_frame(engine.node_id, batch))
            batch, size = [], 0
        batch.append(packed)
        size += len(packed)
    if batch:
        total += len(encode_frame(engine.node_id, batch))
    return total


def _stores_equal(a: Engine, b: Engine) -> bool:
    keys = a.keys()
    if keys != b.keys():
        return False
    for key in keys:
        left, right = a.get(key), b.get(key)
        if left is None or right is None or encode(left) != encode(right):
            return False
    return True


def run(quick: bool) -> BenchResult:
    """Run the anti-entropy benchmark; ``quick`` uses 10,000 keys."""
    keys = QUICK_KEYS if quick else KEYS
    config = GossipConfig.lan()
    result = BenchResult(
        title=f"Anti-entropy: bytes of one push-pull between two {keys:,}-key replicas "
        f"differing in {DIFFERENT} keys, against the full state",
        params={
            "quick": quick,
            "keys": keys,
            "different": DIFFERENT,
            "seed": SEED,
            "push_pull_interval": config.push_pull_interval,
        },
    )
    a = Engine("a", "a:7946", config, random.Random(f"{SEED}-a"), "a.0")
    b = Engine("b", "b:7946", config, random.Random(f"{SEED}-b"), "b.0")
    names = [f"key-{i:06d}" for i in range(keys)]
    differing = set(random.Random(SEED).sample(names, DIFFERENT))
    for i, name in enumerate(names):
        counter = GCounter()
        counter.increment("writer", 1 + i % 7)
        a.restore(name, counter)
        if name in differing:
            counter.increment("other", 1)
        b.restore(name, counter)
    full = _full_state_bytes(a, config.max_reliable_frame)
    form(a, b)
    pair = Pair((a, b))
    pair.pump()
    # Count from the tick that starts the first exchange on.
    pair.until_push_pull(MAX_WAIT_SECONDS)
    exchanges = pair.push_pulls()
    if not _stores_equal(a, b):
        raise RuntimeError("the stores differ after one anti-entropy exchange")
    result.figure(
        Figure(
            "exchange_bytes",
            pair.bytes,
            "bytes",
            note=f"every frame, both ways, of {exchanges} push-pull ({pair.frames} frames)",
        )
    )
    result.figure(
        Figure(
            "full_state_bytes",
            full,
            "bytes",
            note=f"State frames for all {keys:,} keys, one direction",
        )
    )
    result.ratio(
        "exchange_over_full_state",
        "exchange_bytes",
        "full_state_bytes",
        target=TARGET_FRACTION,
        note=f"one push-pull repairing {DIFFERENT} keys / full state; target: at most 2%",
    )
    return result
