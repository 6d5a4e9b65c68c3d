"""A running node survives garbage on its UDP and TCP ports, counts it, and converges."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Awaitable, Callable

from crdtgossip import GCounter
from crdtgossip.node import Node
from crdtgossip.transport import TcpTransport, parse_address
from tests.node.conftest import statuses
from tests.polling import eventually

Factory = Callable[..., Awaitable[list[Node]]]

FRAMES = 10_000  # garbage frames in all, split between UDP and TCP


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    choice = rng.randrange(6)
    if choice == 0 and data:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif choice == 1 and data:
        del data[rng.randrange(len(data)) :]
    elif choice == 2:
        data += rng.randbytes(rng.randrange(1, 16))
    elif choice == 3 and data:
        data[rng.randrange(len(data))] = rng.randrange(256)
    elif choice == 4:
        return rng.randbytes(rng.randrange(0, 1400))
    else:
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randrange(1, 8))
    return bytes(data)


async def test_garbage_frames_are_dropped_and_counted(cluster_factory: Factory) -> None:
    nodes = await cluster_factory(3)
    target = nodes[0]
    captured: list[bytes] = []
    original = target._driver._on_frame

    def recording(data: bytes, sender: str) -> None:
        if len(captured) < 200:
            captured.append(data)
        original(data, sender)

    assert target._driver.udp is not None
    target._driver.udp._on_receive = recording  # type: ignore[attr-defined]
    await eventually(
        lambda: all(
            set(statuses(n).values()) == {"alive"} and len(statuses(n)) == 3 for n in nodes
        ),
        "the cluster forms",
    )
    for node in nodes:
        await node.update("c", GCounter, lambda c, n=node: c.increment(n.replica_id))
    await eventually(lambda: len(captured) >= 20, "some real frames were captured")
    before = target.stats()

    rng = random.Random(20261128)
    host, port = parse_address(target.address)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    received: list[bytes] = []
    sender = TcpTransport("127.0.0.1:0", lambda data, peer: received.append(data))
    await sender.start()
    try:
        for index in range(FRAMES):
            frame = mutate(rng, rng.choice(captured))
            if index % 2:
                udp.sendto(frame[:1400], (host, port))
            else:
                sender.send(target.address, frame)
            if index % 20 == 0:
                # Pace the flood so the kernel's socket buffers do not overflow (that
                # would test the kernel, not the node).
                await asyncio.sleep(0.002)

        def tcp_arrived() -> int:
            # Empty frames are counted but never delivered (they cannot be a message).
            stats = target.stats()
            return sum(stats[k] - before[k] for k in ("tcp_frames_received", "tcp_empty_frames"))

        await eventually(lambda: tcp_arrived() >= FRAMES // 2, "every TCP garbage frame arrived")
    finally:
        udp.close()
        await sender.close()

    after = target.stats()
    assert target.running
    garbage_seen = (after["frames_in"] - before["frames_in"]) + (
        after["udp_receive_errors"] - before["udp_receive_errors"]
    )
    assert garbage_seen > FRAMES // 4, "the garbage reached the engine"
    dropped = sum(
        after[k] - before[k] for k in after if k.startswith("drop_") or k == "decode_errors"
    )
    assert dropped > FRAMES // 4, "garbage frames were counted as drops"
    assert after["receive_errors"] == 0, "no frame made the engine raise"

    # Still converging: a new update reaches everyone.
    await nodes[1].update("after", GCounter, lambda c: c.increment(nodes[1].replica_id, 7))

    async def converged() -> bool:
        values = [(await n.get("after", GCounter)).value for n in nodes]
        return values == [7, 7, 7]

    await eventually(converged, "the cluster still converges after the garbage")
    assert all(set(statuses(n).values()) == {"alive"} for n in nodes)
