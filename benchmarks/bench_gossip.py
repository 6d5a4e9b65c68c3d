"""Gossip: load per node of real clusters on loopback, and the wire cost of one delta.

Two measurements, every figure from the same run:

* *cluster load*: N real :class:`crdtgossip.Node` objects (N = 5, 20, 50) in one
  process, on UDP and TCP loopback, every frame sealed with a shared keyring, with
  :meth:`GossipConfig.local` timers. Once every node sees N alive members and the
  broadcast queues have drained, the transports' counters are read across an *idle*
  window (probes, acks and anti-entropy only) and across a window in which every node
  makes one update per second to a shared :class:`GCounter` (staggered, so updates do
  not come in bursts). Figures are per node per second: frames (datagrams plus TCP
  frames), protocol messages (several share a frame) and bytes, sealed, as handed to
  the sockets (no IP, UDP or TCP headers). Process CPU time is reported too: all N
  nodes share one interpreter, so it shows what one node costs.
* *one-add delta*: two sans-I/O engines that both hold a 100,000-element
  :class:`ORSet`; one adds a single element, and the sealed frame that carries the
  delta to the other (frame header, sender id, message, AES-GCM nonce, key id and
  tag included) is set beside the encoded size of the full state it would otherwise
  have to ship. Driving engines directly gives the exact frame, free of timing.

Ratios: the update window's load over the idle window's at the same N (what one
update per node per second costs on top of failure detection); the idle load per node
at N = 20 and 50 over N = 5 (SWIM promises failure detection at a per-node cost that
does not grow with N); the bytes each node sends per update made in the cluster, at
N = 20 and 50 over N = 5 (every node must receive every update, so the load per node
grows with the cluster's update rate, but the cost per update should grow only with
the retransmit limit, log10 N); and the one-add frame over the full state and over
issue 3's 200-byte budget.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

import crdtgossip
from benchmarks._result import BenchResult, Figure
from crdtgossip import GCounter, ORSet
from crdtgossip.config import GossipConfig
from crdtgossip.node import Node
from crdtgossip.protocol import Engine, Outgoing
from crdtgossip.protocol.messages import DeltaInterval, State, decode_frame
from crdtgossip.security import Keyring, generate_key

__all__ = ["run"]

#: Cluster sizes (issue 3: "messages and bytes per node per second at N = 5, 20, 50").
CLUSTER_SIZES = (5, 20, 50)
QUICK_CLUSTER_SIZES = (5,)
#: Seconds of the idle window: one push-pull interval of the local preset (15 s), so
#: up to 32 members every node starts exactly one anti-entropy exchange in it (the
#: interval has no jitter once running); above 32 the interval doubles and about half
#: the nodes' exchanges fall in it.
IDLE_WINDOW_SECONDS = GossipConfig.local().push_pull_interval
#: Seconds of the update window: ten probe intervals and a hundred gossip rounds of the
#: local preset, ten updates per node.
UPDATE_WINDOW_SECONDS = 10.0
#: --quick: windows long enough to see a few probes and updates (a smoke test).
QUICK_WINDOW_SECONDS = 1.0
#: Seconds the updaters run before the update window opens, so the broadcast queues
#: hold their steady-state load when counting starts.
WARMUP_SECONDS = 2.0
QUICK_WARMUP_SECONDS = 0.5
#: Seconds of quiet after membership converged and the queues drained, before the
#: idle window: the last join rumours and their acks settle.
SETTLE_SECONDS = 1.0
#: Bound on the wait for every node to see N alive members: generous (50 nodes join
#: in a few seconds on one core), a failure guard, not a measurement.
CONVERGE_TIMEOUT = 60.0
#: Bound on the wait for the join's broadcasts to leave the queues. Not fatal: an item
#: that excludes every member it could go to stays queued until superseded.
QUEUE_DRAIN_TIMEOUT = 10.0
#: Bound on the wait for every node to hold every update once the updaters stop.
DATA_CONVERGE_TIMEOUT = 30.0
#: How often the waits above look at the cluster.
POLL_SECONDS = 0.05
#: Updates per node per second in the update window (issue 3).
UPDATES_PER_SECOND = 1.0
#: Elements of the ORSet that one element is added to (issue 3).
ORSET_ELEMENTS = 100_000
QUICK_ORSET_ELEMENTS = 10_000
#: Issue 3's budget for the frame carrying a one-add delta, sealing included.
ONE_ADD_BUDGET = 200
#: Virtual seconds the two-engine exchange may take to join and to drain the delta;
#: a failure guard: with the local preset both finish within about a second.
ENGINE_HORIZON = 30.0
#: Virtual seconds the two engines run after the join, and after the add: twenty
#: gossip rounds of the local preset, far more than its retransmit limit of 2 needs.
QUIET_AFTER_JOIN = 2.0
#: Tolerance of the ratios over the update window. Fifty nodes share one event loop,
#: and how many updates a queued delta has absorbed before each gossip round depends on
#: that loop's pace: three runs on one busy two-core machine gave 15,600 to 29,400
#: bytes per node per second at N = 50 (14,300 to 14,900 at N = 20). Idle-window
#: ratios are steadier (within 3% over the same runs) and keep the default.
UPDATE_TOLERANCE = 1.0
#: Cluster label of the benchmark's keyrings (authenticated with every frame).
LABEL = b"crdtgossip-bench"
#: The key every node counts its updates under.
COUNTER_KEY = "load"
#: Transport counters summed into the window figures.
_COUNTERS = (
    "udp_frames_sent",
    "udp_bytes_sent",
    "tcp_frames_sent",
    "tcp_bytes_sent",
    "messages_out",
    "push_pulls",
)


@dataclass(frozen=True)
class _Sizes:
    clusters: tuple[int, ...]
    idle_window: float
    update_window: float
    warmup: float
    orset_elements: int


@dataclass(frozen=True)
class _Window:
    """What a cluster did in one window, per node per second."""

    frames: float
    messages: float
    bytes: float
    udp_bytes: float
    tcp_bytes: float
    tcp_bytes_per_push_pull: float
    cpu_ms: float


def run(quick: bool) -> BenchResult:
    """Run the gossip benchmark; ``quick`` uses N = 5 only and short windows."""
    sizes = (
        _Sizes(
            QUICK_CLUSTER_SIZES,
            QUICK_WINDOW_SECONDS,
            QUICK_WINDOW_SECONDS,
            QUICK_WARMUP_SECONDS,
            QUICK_ORSET_ELEMENTS,
        )
        if quick
        else _Sizes(
            CLUSTER_SIZES,
            IDLE_WINDOW_SECONDS,
            UPDATE_WINDOW_SECONDS,
            WARMUP_SECONDS,
            ORSET_ELEMENTS,
        )
    )
    result = BenchResult(
        title="Gossip load per node on loopback, and the wire cost of a one-add delta",
        params={
            "quick": quick,
            "clusters": ",".join(str(n) for n in sizes.clusters),
            "idle_window_seconds": sizes.idle_window,
            "update_window_seconds": sizes.update_window,
            "warmup_seconds": sizes.warmup,
            "updates_per_node_per_second": UPDATES_PER_SECOND,
            "config": "local",
            "orset_elements": sizes.orset_elements,
            "clock": "wall",
        },
    )
    loads = {n: asyncio.run(_measure_cluster(n, sizes, result)) for n in sizes.clusters}
    _record_loads(result, loads)
    _one_add_delta(result, sizes.orset_elements)
    result.notes.append(
        "bytes are sealed frames as handed to the sockets; on the wire each datagram adds "
        "28 bytes of IPv4 and UDP headers, each TCP frame a 4-byte length prefix"
    )
    interval = GossipConfig.local().push_pull_interval
    idle_share = (
        "the idle window lasts one interval, so it holds one exchange per node up to 32 "
        "members and about half the nodes' above"
        if sizes.idle_window >= interval
        else "the short idle window samples it"
    )
    result.notes.append(
        f"each node starts an anti-entropy exchange every {interval:g} s (local preset; "
        f"twice that above 32 members): {idle_share}; the update window's TCP share is "
        "sampled"
    )
    return result


# ---- cluster load ---------------------------------------------------------------------
async def _measure_cluster(n: int, sizes: _Sizes, result: BenchResult) -> dict[str, _Window]:
    """Start ``n`` nodes, wait for membership, measure both windows, stop them."""
    key = generate_key()
    config = GossipConfig.local()
    nodes: list[Node] = []
    try:
        first = Node("n00", keyring=Keyring([key], label=LABEL), config=config, seed=0)
        await first.start()
        nodes.append(first)
        for index in range(1, n):
            node = Node(
                f"n{index:02d}",
                seeds=[first.address],
                keyring=Keyring([key], label=LABEL),
                config=config,
                seed=index,
            )
            await node.start()
            nodes.append(node)
        started = time.monotonic()
        await _wait_for(lambda: _membership_converged(nodes), CONVERGE_TIMEOUT, f"N={n} join")
        try:
            await _wait_for(lambda: _queues_empty(nodes), QUEUE_DRAIN_TIMEOUT, f"N={n} queues")
        except RuntimeError as exc:
            result.notes.append(f"{exc}: measured anyway")
        result.figure(
            Figure(
                f"N={n}: membership converged",
                time.monotonic() - started,
                "s",
                note="after the last start: every node sees N alive and queues drained",
            )
        )
        await asyncio.sleep(SETTLE_SECONDS)
        idle = await _window(nodes, sizes.idle_window)
        updaters = [
            asyncio.create_task(_updater(node, index / n)) for index, node in enumerate(nodes)
        ]
        try:
            await asyncio.sleep(sizes.warmup)
            busy = await _window(nodes, sizes.update_window)
        finally:
            for task in updaters:
                task.cancel()
            await asyncio.gather(*updaters, return_exceptions=True)
        stopped = time.monotonic()
        await _wait_for(lambda: _data_converged(nodes), DATA_CONVERGE_TIMEOUT, f"N={n} data")
        result.figure(
            Figure(
                f"N={n}: updates converged",
                time.monotonic() - stopped,
                "s",
                note="after the updaters stopped: every node holds every increment",
            )
        )
        return {"idle": idle, "update": busy}
    finally:
        # All at once: a node's stop may wait a few seconds for its TCP connections.
        await asyncio.gather(*(node.stop() for node in nodes))


async def _wait_for(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll ``condition`` until true; a bounded wait that fails loudly."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not reached within {timeout:g} s")
        await asyncio.sleep(POLL_SECONDS)


async def _membership_converged(nodes: list[Node]) -> bool:
    n = len(nodes)
    return all(node.stats()["members_alive"] == n for node in nodes)


async def _queues_empty(nodes: list[Node]) -> bool:
    return all(node.stats()["queue_length"] == 0 for node in nodes)


async def _data_converged(nodes: list[Node]) -> bool:
    values = {(await node.get(COUNTER_KEY, GCounter)).value for node in nodes}
    return len(values) == 1


async def _updater(node: Node, phase: float) -> None:
    """One increment of the shared counter per second, starting ``phase`` s late."""
    period = 1.0 / UPDATES_PER_SECOND
    loop = asyncio.get_running_loop()
    next_at = loop.time() + phase * period
    while True:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        await node.update(COUNTER_KEY, GCounter, lambda c: c.increment(node.replica_id))
        next_at += period


def _snapshot(nodes: Iterable[Node]) -> dict[str, float]:
    totals: dict[str, float] = dict.fromkeys(_COUNTERS, 0.0)
    for node in nodes:
        stats = node.stats()
        for name in _COUNTERS:
            totals[name] += stats[name]
    totals["cpu"] = time.process_time()
    totals["wall"] = time.monotonic()
    return totals


async def _window(nodes: list[Node], seconds: float) -> _Window:
    """Count what ``nodes`` send during ``seconds``, per node per second."""
    before = _snapshot(nodes)
    await asyncio.sleep(seconds)
    after = _snapshot(nodes)
    diff = {name: after[name] - before[name] for name in before}
    scale = 1.0 / (len(nodes) * diff["wall"])
    return _Window(
        frames=(diff["udp_frames_sent"] + diff["tcp_frames_sent"]) * scale,
        messages=diff["messages_out"] * scale,
        bytes=(diff["udp_bytes_sent"] + diff["tcp_bytes_sent"]) * scale,
        udp_bytes=diff["udp_bytes_sent"] * scale,
        tcp_bytes=diff["tcp_bytes_sent"] * scale,
        # Both sides' TCP bytes over the exchanges started: what one anti-entropy round
        # costs, free of how many happened to fall in the window.
        tcp_bytes_per_push_pull=diff["tcp_bytes_sent"] / max(1.0, diff["push_pulls"]),
        cpu_ms=diff["cpu"] * 1000.0 * scale,
    )


def _record_loads(result: BenchResult, loads: Mapping[int, Mapping[str, _Window]]) -> None:
    for n, windows in loads.items():
        for phase, window in windows.items():
            what = "no updates" if phase == "idle" else "1 update/node/s"
            prefix = f"N={n} {phase}"
            result.figure(Figure(f"{prefix}: frames", window.frames, "1/node/s", note=what))
            result.figure(
                Figure(
                    f"{prefix}: messages",
                    window.messages,
                    "1/node/s",
                    note="protocol messages; several share a frame",
                )
            )
            result.figure(
                Figure(f"{prefix}: bytes", window.bytes, "bytes/node/s", note="sealed, UDP + TCP")
            )
            result.figure(
                Figure(
                    f"{prefix}: UDP bytes",
                    window.udp_bytes,
                    "bytes/node/s",
                    note="probes, acks, gossip rounds",
                )
            )
            result.figure(
                Figure(
                    f"{prefix}: TCP bytes",
                    window.tcp_bytes,
                    "bytes/node/s",
                    note="anti-entropy (sampled: see notes)",
                )
            )
            result.figure(
                Figure(
                    f"{prefix}: CPU",
                    window.cpu_ms,
                    "ms/node/s",
                    note="process CPU time shared by the N nodes",
                )
            )
    for n, windows in loads.items():
        # Every node must receive every update made anywhere: per node, the updates'
        # share of the load is best read per update made in the cluster.
        marginal = (windows["update"].bytes - windows["idle"].bytes) / (n * UPDATES_PER_SECOND)
        result.figure(
            Figure(
                f"N={n}: bytes per update",
                marginal,
                "bytes/node/update",
                note="(update - idle) bytes per node, per update made in the cluster",
            )
        )
        if windows["idle"].tcp_bytes_per_push_pull > 0:
            result.figure(
                Figure(
                    f"N={n}: anti-entropy round",
                    windows["idle"].tcp_bytes_per_push_pull,
                    "bytes",
                    note="idle TCP bytes per exchange started, both directions",
                )
            )
        else:
            result.notes.append(f"N={n}: no anti-entropy exchange fell in the idle window")
        for unit_name in ("bytes", "messages"):
            result.ratio(
                f"N={n}: update / idle {unit_name}",
                f"N={n} update: {unit_name}",
                f"N={n} idle: {unit_name}",
                tolerance=UPDATE_TOLERANCE,
                note="what one update per node per second adds",
            )
    smallest = min(loads)
    for n in loads:
        if n == smallest:
            continue
        result.ratio(
            f"idle UDP bytes per node: N={n} / N={smallest}",
            f"N={n} idle: UDP bytes",
            f"N={smallest} idle: UDP bytes",
            note="SWIM: failure detection costs each node the same at any N",
        )
        rounds = (f"N={n}: anti-entropy round", f"N={smallest}: anti-entropy round")
        if all(any(f.name == name for f in result.figures) for name in rounds):
            result.ratio(
                f"anti-entropy round: N={n} / N={smallest}",
                *rounds,
                note="member tables grow with N; equal data costs the root's description",
            )
        result.ratio(
            f"bytes per update: N={n} / N={smallest}",
            f"N={n}: bytes per update",
            f"N={smallest}: bytes per update",
            tolerance=UPDATE_TOLERANCE,
            note="retransmits grow with log10 N; the rest should not grow",
        )


# ---- one-add delta --------------------------------------------------------------------
@dataclass
class _Pair:
    """Two engines wired to each other in virtual time, every frame sealed."""

    a: Engine
    b: Engine
    keyring: Keyring
    now: float = 0.0

    def step(self, record: Callable[[Engine, Outgoing, bytes], None]) -> None:
        """Deliver every pending frame (sealed and opened), then tick at the next timer."""
        for _ in range(1000):  # replies beget replies; bounded all the same
            moved = False
            for sender, receiver in ((self.a, self.b), (self.b, self.a)):
                for frame in sender.take_outgoing():
                    sealed = self.keyring.seal(frame.data)
                    record(sender, frame, sealed)
                    if frame.address == receiver.address:
                        receiver.receive(self.keyring.open(sealed), sender.address, self.now)
                        moved = True
            if not moved:
                break
        self.now = max(self.now, min(self.a.next_wakeup(), self.b.next_wakeup()))
        self.a.tick(self.now)
        self.b.tick(self.now)


def _one_add_delta(result: BenchResult, elements: int) -> None:
    config = GossipConfig.local()
    keyring = Keyring([generate_key()], label=LABEL)
    # Replica ids shaped like Node's (node id plus 64 random bits in hex).
    a = Engine("node-a", "127.0.0.1:7001", config, random.Random(1), "node-a.5f3c9a0e12b4d687")
    b = Engine("node-b", "127.0.0.1:7002", config, random.Random(2), "node-b.0c41e9b7a2d35f18")
    full: ORSet[int] = ORSet()
    for element in range(elements):
        full.add(element, a.replica_id)
    a.update("set", full, 0.0)
    b.join([a.address], 0.0)
    pair = _Pair(a, b, keyring)

    state_bytes = 0

    def count_state(sender: Engine, frame: Outgoing, sealed: bytes) -> None:
        nonlocal state_bytes
        if sender is a and _carries(frame, State):
            state_bytes += len(sealed)

    while not _settled(pair, elements):
        _bounded(pair)
        pair.step(count_state)

    state = a.get("set")
    assert isinstance(state, ORSet)
    delta = state.add(elements, a.replica_id)
    a.update("set", delta, pair.now)
    carrying: list[tuple[int, tuple[str, ...]]] = []

    def count_delta(sender: Engine, frame: Outgoing, sealed: bytes) -> None:
        if sender is a and _carries(frame, DeltaInterval):
            messages = decode_frame(frame.data, len(frame.data)).messages
            carrying.append((len(sealed), tuple(type(m).__name__ for m in messages)))

    added_at = pair.now
    while pair.now < added_at + QUIET_AFTER_JOIN:
        _bounded(pair)
        pair.step(count_delta)
    received = b.get("set")
    if not (carrying and received is not None and elements in received.value):
        raise RuntimeError("the one-add delta did not reach the other engine")
    alone = [size for size, kinds in carrying if kinds == ("DeltaInterval",)]
    if not alone:
        raise RuntimeError(f"no frame carried the delta alone: {carrying}")
    first_size, first_kinds = carrying[0]
    encoded = len(crdtgossip.encode(full))
    result.figure(
        Figure(
            "one-add frame",
            min(alone),
            "bytes",
            note="sealed gossip datagram carrying only the delta",
        )
    )
    result.figure(
        Figure(
            "one-add, first transmit",
            first_size,
            "bytes",
            note="sealed frame: " + " + ".join(first_kinds),
        )
    )
    result.figure(
        Figure(
            "one-add, all transmits",
            sum(size for size, _ in carrying),
            "bytes",
            note=f"{len(carrying)} transmits to the one peer (acknowledged delivery)",
        )
    )
    result.figure(Figure("one-add delta, encoded", len(crdtgossip.encode(delta)), "bytes"))
    result.figure(Figure("full state, encoded", encoded, "bytes", note=f"{elements:,} elements"))
    result.figure(
        Figure(
            "full state, sealed frames",
            state_bytes,
            "bytes",
            note="what a join sent: State messages over TCP",
        )
    )
    result.figure(
        Figure("budget: one-add frame", ONE_ADD_BUDGET, "bytes", note="issue 3; a constant")
    )
    result.ratio(
        "one-add frame / full state",
        "one-add frame",
        "full state, encoded",
        note="what delta-state gossip saves over shipping the state",
    )
    result.ratio(
        "one-add frame / budget",
        "one-add frame",
        "budget: one-add frame",
        target=1.0,
        note="issue 3: at most 200 bytes, envelope and AES-GCM included",
    )


def _carries(frame: Outgoing, kind: type[DeltaInterval] | type[State]) -> bool:
    decoded = decode_frame(frame.data, len(frame.data))
    return any(isinstance(message, kind) for message in decoded.messages)


def _settled(pair: _Pair, elements: int) -> bool:
    """Both engines see each other and hold the whole set, and the join's gossip is out.

    Queues need not empty: with two members, a delta relayed by ``b`` excludes ``a``,
    its only possible target, and waits in the queue until superseded.
    """
    held = pair.b.get("set")
    return (
        held is not None
        and len(held.value) == elements
        and all(e.stats()["members_alive"] == 2 for e in (pair.a, pair.b))
        and pair.now >= QUIET_AFTER_JOIN
    )


def _bounded(pair: _Pair) -> None:
    if pair.now > ENGINE_HORIZON:
        raise RuntimeError(f"two engines did not settle within {ENGINE_HORIZON:g} virtual s")
