"""One node of the crash test, in its own process (``python -m tests.node.crash_child``).

It runs a :class:`~crdtgossip.Node` with SQLite storage on a fixed loopback port and
reports on stdout, one line each, flushed at once so nothing is lost to a SIGKILL:

* ``ready <replica id>`` once started;
* ``obs <value>`` the G-Counter ``c`` as this node sees it, every few milliseconds;
* ``ack <n>`` (writer only) after its n-th Majority write returned;
* ``fail <answered> <needed>`` (writer only) after a write raised QuorumError.

Commands on stdin: ``pause`` (the writer stops writing), ``quit`` (stop and exit 0).
The whole process exits by itself after :data:`MAX_LIFE` seconds, so a test that dies
never leaves it behind.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading

from crdtgossip import GCounter
from crdtgossip.consistency import Majority
from crdtgossip.errors import QuorumError
from crdtgossip.node import Node
from crdtgossip.storage import SQLiteStorage
from tests.node.conftest import FAST

#: Seconds after which the process exits whatever happens (an orphan guard).
MAX_LIFE = 120.0

#: Seconds between two observations.
OBSERVE_EVERY = 0.005

#: Quorum timeout of the writer's writes.
WRITE_TIMEOUT = 2.0


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "quit")

    threading.Thread(target=read_stdin, daemon=True).start()
    seeds = [s for s in args.seeds.split(",") if s]
    node = Node(
        args.node_id,
        f"127.0.0.1:{args.port}",
        seeds=seeds,
        storage=SQLiteStorage(args.db),
        config=FAST,
    )
    await node.start()
    _say(f"ready {node.replica_id}")
    writing = args.writer
    acked = 0
    deadline = loop.time() + MAX_LIFE
    try:
        while loop.time() < deadline:
            while not commands.empty():
                command = commands.get_nowait()
                if command == "pause":
                    writing = False
                    _say("paused")
                elif command == "quit":
                    return
            if writing:
                try:
                    await node.update(
                        "c",
                        GCounter,
                        lambda c: c.increment(node.replica_id),
                        consistency=Majority(timeout=WRITE_TIMEOUT),
                    )
                except QuorumError as exc:
                    _say(f"fail {exc.answered} {exc.needed}")
                else:
                    acked += 1
                    _say(f"ack {acked}")
            _say(f"obs {(await node.get('c', GCounter)).value}")
            await asyncio.sleep(OBSERVE_EVERY)
    finally:
        await node.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seeds", default="")
    parser.add_argument("--db", required=True)
    parser.add_argument("--writer", action="store_true")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
