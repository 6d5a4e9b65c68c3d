"""A peer process of the consistency benchmark (see benchmarks/bench_consistency.py).

Run as ``python -m benchmarks._peer node NAME SEED KEY_B64 JOIN`` or ``python -m
benchmarks._peer echo``. Either prints the ``"host:port"`` it bound on one line once
ready, then answers each ``stats`` line on stdin with one JSON line (a node's
:meth:`~crdtgossip.Node.stats`; ``{}`` for the echo) and stops when stdin closes.

* ``node``: a :class:`crdtgossip.Node` with :meth:`GossipConfig.local` timers and a
  keyring of the one key given in base64, joining the member at ``JOIN``.
* ``echo``: an asyncio UDP endpoint that sends every datagram back where it came from.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from typing import cast

from crdtgossip import Keyring
from crdtgossip.config import GossipConfig
from crdtgossip.node import Node

__all__ = ["LABEL", "Echo", "main"]

#: Cluster label of the benchmark's keyrings; the same as bench_consistency's.
LABEL = b"crdtgossip-bench"
#: The stdin line asking for a JSON line of counters.
STATS = "stats"


class Echo(asyncio.DatagramProtocol):
    """Sends every datagram back where it came from."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)


async def _serve(stats: dict[str, int] | None, node: Node | None) -> None:
    """Answer ``stats`` lines on stdin until it closes."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        if line.strip() == STATS:
            counters = node.stats() if node is not None else (stats or {})
            print(json.dumps(counters), flush=True)


async def _node(name: str, seed: int, key: bytes, join: str) -> None:
    node = Node(
        name,
        seeds=[join],
        keyring=Keyring([key], label=LABEL),
        config=GossipConfig.local(),
        seed=seed,
    )
    try:
        await node.start()
        print(node.address, flush=True)
        await _serve(None, node)
    finally:
        await node.stop()


async def _echo() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    try:
        host, port = transport.get_extra_info("sockname")[:2]
        print(f"{host}:{port}", flush=True)
        await _serve({}, None)
    finally:
        transport.close()


def main(argv: list[str]) -> None:
    """Run the peer ``argv`` names (the arguments after the program)."""
    if argv[:1] == ["echo"] and len(argv) == 1:
        asyncio.run(_echo())
    elif argv[:1] == ["node"] and len(argv) == 5:
        asyncio.run(_node(argv[1], int(argv[2]), base64.b64decode(argv[3]), argv[4]))
    else:
        raise SystemExit("usage: python -m benchmarks._peer (echo | node NAME SEED KEY_B64 JOIN)")


if __name__ == "__main__":
    main(sys.argv[1:])
