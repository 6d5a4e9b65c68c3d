"""Tests of crdtgossip.transport.memory: the seeded in-process network."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from crdtgossip.errors import ConfigError, TransportError
from crdtgossip.transport import (
    REORDER_HOLDBACK,
    ManualScheduler,
    MemoryNetwork,
    MemoryTransport,
    Transport,
)

from .conftest import Inbox

A, B, C = "10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"

# Frames per statistical test: enough that the observed rates sit within a few percent
# of the configured ones, few enough to run in well under a second.
FRAMES = 5000

Log = list[tuple[float, str, str, bytes]]


def _logging_network(
    seed: int, **faults: object
) -> tuple[MemoryNetwork, ManualScheduler, dict[str, MemoryTransport], Log]:
    """A network on virtual time whose three transports log (time, receiver, sender, data)."""
    scheduler = ManualScheduler()
    network = MemoryNetwork(seed, scheduler=scheduler, **faults)  # type: ignore[arg-type]
    log: Log = []
    transports = {}
    for address in (A, B, C):

        def receive(data: bytes, sender: str, receiver: str = address) -> None:
            log.append((scheduler.now, receiver, sender, data))

        transports[address] = network.transport(address, receive)
    return network, scheduler, transports, log


def _run_traffic(seed: int, **faults: object) -> tuple[Log, dict[str, int]]:
    """Send FRAMES numbered frames round-robin among three nodes, every 1 ms."""
    network, scheduler, transports, log = _logging_network(seed, **faults)
    addresses = [A, B, C]
    for number in range(FRAMES):
        sender = addresses[number % 3]
        receiver = addresses[(number + 1) % 3]
        transports[sender].send(receiver, number.to_bytes(4, "big"))
        scheduler.advance(0.001)
    scheduler.run(max_callbacks=10 * FRAMES)
    assert scheduler.pending == 0
    return log, network.stats()


# --- the Transport protocol on asyncio ---------------------------------------------------


async def test_delivers_both_ways_on_asyncio(make_inbox: Callable[[], Inbox]) -> None:
    network = MemoryNetwork(seed=1)
    inbox_a, inbox_b = make_inbox(), make_inbox()
    transport_a: Transport = network.transport(A, inbox_a)  # mypy checks the fit
    transport_b: Transport = network.transport(B, inbox_b)
    await transport_a.start()
    await transport_b.start()
    transport_a.send(B, b"ping")
    assert await inbox_b.get() == (b"ping", A)
    transport_b.send(A, b"pong")
    assert await inbox_a.get() == (b"pong", B)
    assert transport_a.stats()["frames_sent"] == 1
    assert transport_a.stats()["frames_received"] == 1
    assert transport_b.stats()["bytes_received"] == 4
    await transport_a.close()
    await transport_b.close()


async def test_delay_on_asyncio_still_delivers(make_inbox: Callable[[], Inbox]) -> None:
    network = MemoryNetwork(seed=2, delay=(0.001, 0.005))
    inbox = make_inbox()
    sender = network.transport(A, make_inbox())
    network.transport(B, inbox)
    for number in range(20):
        sender.send(B, bytes([number]))
    received = sorted([(await inbox.get())[0] for _ in range(20)])
    assert received == [bytes([n]) for n in range(20)]


def test_send_does_not_deliver_synchronously() -> None:
    # Even with no delay a frame arrives later, never inside send(): a receive
    # callback that sends must not recurse into another callback.
    _, scheduler, transports, log = _logging_network(seed=3)
    transports[A].send(B, b"x")
    assert log == []
    scheduler.advance(0)
    assert log == [(0.0, B, A, b"x")]


# --- virtual time and determinism --------------------------------------------------------


def test_delay_is_within_the_configured_range() -> None:
    _, scheduler, transports, log = _logging_network(seed=4, delay=(0.05, 0.10))
    for number in range(200):
        transports[A].send(B, bytes([number % 256]))
    scheduler.advance(0.0499)
    assert log == []
    scheduler.advance(0.0502)
    assert len(log) == 200
    times = [entry[0] for entry in log]
    assert min(times) >= 0.05
    assert max(times) <= 0.10
    assert len(set(times)) > 100  # really spread, not one fixed delay


def test_same_seed_replays_exactly() -> None:
    faults: dict[str, object] = {
        "loss": 0.2,
        "delay": (0.0, 0.02),
        "duplicate": 0.1,
        "reorder": 0.1,
    }
    first_log, first_stats = _run_traffic(seed=42, **faults)
    second_log, second_stats = _run_traffic(seed=42, **faults)
    assert first_log == second_log
    assert first_stats == second_stats
    other_log, _ = _run_traffic(seed=43, **faults)
    assert other_log != first_log


def test_loss_rate_matches_configuration() -> None:
    log, stats = _run_traffic(seed=5, loss=0.3)
    assert stats["sent"] == FRAMES
    assert 0.27 * FRAMES <= stats["lost"] <= 0.33 * FRAMES
    assert stats["delivered"] == len(log) == FRAMES - stats["lost"]
    assert stats["duplicated"] == stats["reordered"] == stats["partitioned"] == 0


def test_duplication_rate_matches_configuration() -> None:
    log, stats = _run_traffic(seed=6, duplicate=0.2)
    assert 0.17 * FRAMES <= stats["duplicated"] <= 0.23 * FRAMES
    assert len(log) == stats["delivered"] == FRAMES + stats["duplicated"]
    payloads = [entry[3] for entry in log]
    assert len(set(payloads)) == FRAMES  # every frame arrived, some twice


def test_no_faults_delivers_everything_once_in_order() -> None:
    log, stats = _run_traffic(seed=7)
    assert [entry[3] for entry in log] == [n.to_bytes(4, "big") for n in range(FRAMES)]
    assert stats["delivered"] == FRAMES


def test_reorder_makes_later_frames_overtake() -> None:
    _, scheduler, transports, log = _logging_network(seed=8, reorder=0.2)
    for number in range(1000):
        transports[A].send(B, number.to_bytes(4, "big"))
        scheduler.advance(0.001)
    scheduler.advance(REORDER_HOLDBACK * 2)
    numbers = [int.from_bytes(entry[3], "big") for entry in log]
    assert sorted(numbers) == list(range(1000))
    overtaken = sum(1 for before, after in itertools.pairwise(numbers) if after < before)
    assert overtaken > 50


def test_partition_cuts_both_ways_until_heal() -> None:
    network, scheduler, transports, log = _logging_network(seed=9)
    network.partition([A], [B, C])
    transports[A].send(B, b"a->b")
    transports[B].send(A, b"b->a")
    transports[C].send(A, b"c->a")
    transports[B].send(C, b"b->c")  # same side: passes
    scheduler.advance(1.0)
    assert [entry[3] for entry in log] == [b"b->c"]
    assert network.stats()["partitioned"] == 3
    network.heal()
    transports[A].send(B, b"healed")
    scheduler.advance(1.0)
    assert log[-1] == (1.0, B, A, b"healed")


def test_partition_drops_frames_already_in_flight() -> None:
    network, scheduler, transports, log = _logging_network(seed=10, delay=(0.5, 0.5))
    transports[A].send(B, b"in flight")
    scheduler.advance(0.1)
    network.partition([A], [B])
    scheduler.advance(1.0)
    assert log == []
    assert network.stats()["partitioned"] == 1


def test_frames_to_absent_or_detached_addresses_are_undeliverable() -> None:
    network, scheduler, transports, log = _logging_network(seed=11)
    transports[A].send("10.9.9.9:1", b"nobody")
    transports[B].detach()
    transports[A].send(B, b"gone")
    scheduler.advance(1.0)
    assert log == []
    assert network.stats()["undeliverable"] == 2
    transports[B].attach()
    transports[A].send(B, b"back")
    scheduler.advance(1.0)
    assert log == [(1.0, B, A, b"back")]


# --- per-transport rules ---------------------------------------------------------------


def test_oversize_frames_are_dropped_and_counted() -> None:
    scheduler = ManualScheduler()
    network = MemoryNetwork(seed=12, scheduler=scheduler)
    received: list[bytes] = []
    small = network.transport(A, lambda data, sender: None, max_datagram=1400)
    network.transport(B, lambda data, sender: received.append(data))
    small.send(B, b"x" * 1401)
    small.send(B, b"x" * 1400)
    scheduler.advance(1.0)
    assert received == [b"x" * 1400]
    assert small.stats()["oversize_drops"] == 1
    assert small.stats()["frames_sent"] == 1


def test_detached_transport_counts_sends_as_errors() -> None:
    _, scheduler, transports, log = _logging_network(seed=13)
    transports[A].detach()
    transports[A].send(B, b"x")
    scheduler.advance(1.0)
    assert log == []
    assert transports[A].stats()["send_errors"] == 1


def test_address_taken_is_refused() -> None:
    network = MemoryNetwork(seed=14, scheduler=ManualScheduler())
    first = network.transport(A, lambda data, sender: None)
    with pytest.raises(ConfigError, match="already taken"):
        network.transport(A, lambda data, sender: None)
    first.detach()
    replacement = network.transport(A, lambda data, sender: None)
    assert replacement.attached


async def test_start_after_address_was_retaken_raises() -> None:
    network = MemoryNetwork(seed=15)
    first = network.transport(A, lambda data, sender: None)
    await first.close()
    network.transport(A, lambda data, sender: None)
    with pytest.raises(TransportError, match="already taken"):
        await first.start()


def test_raising_callback_is_counted_and_delivery_goes_on() -> None:
    scheduler = ManualScheduler()
    network = MemoryNetwork(seed=16, scheduler=scheduler)
    received: list[bytes] = []

    def fragile(data: bytes, sender: str) -> None:
        if data == b"bad":
            raise RuntimeError("bug in the layer above")
        received.append(data)

    sender = network.transport(A, lambda data, sender: None)
    receiver = network.transport(B, fragile)
    for payload in (b"one", b"bad", b"two"):
        sender.send(B, payload)
    scheduler.advance(0)
    assert received == [b"one", b"two"]
    assert receiver.stats()["callback_errors"] == 1
    assert receiver.stats()["frames_received"] == 3


@pytest.mark.parametrize(
    "faults",
    [
        {"loss": -0.1},
        {"loss": 1.5},
        {"duplicate": 2},
        {"reorder": float("nan")},
        {"delay": (0.2, 0.1)},
        {"delay": (-1.0, 0.0)},
        {"delay": (0.0, float("inf"))},
    ],
)
def test_bad_fault_settings_are_refused(faults: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        MemoryNetwork(1, **faults)  # type: ignore[arg-type]


@pytest.mark.parametrize("address", ["nonsense", "10.0.0.1:0", "::1:7000"])
def test_bad_transport_addresses_are_refused(address: str) -> None:
    network = MemoryNetwork(1, scheduler=ManualScheduler())
    with pytest.raises(ConfigError):
        network.transport(address, lambda data, sender: None)


def test_manual_scheduler_orders_ties_by_scheduling_order() -> None:
    scheduler = ManualScheduler()
    order: list[int] = []
    for number in range(5):
        scheduler.call_later(1.0, lambda number=number: order.append(number))  # type: ignore[misc]
    scheduler.call_later(0.5, lambda: order.append(-1))
    assert scheduler.next_time() == 0.5
    assert scheduler.advance(2.0) == 6
    assert order == [-1, 0, 1, 2, 3, 4]
    assert scheduler.now == 2.0
    assert scheduler.next_time() is None


def test_manual_scheduler_run_is_bounded() -> None:
    scheduler = ManualScheduler()

    def again() -> None:
        scheduler.call_later(1.0, again)

    scheduler.call_later(0.0, again)
    assert scheduler.run(max_callbacks=10) == 10
    assert scheduler.now == 9.0
    with pytest.raises(ConfigError):
        scheduler.call_later(-1.0, again)
    with pytest.raises(ConfigError):
        scheduler.advance(float("nan"))
