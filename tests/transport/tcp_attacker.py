"""A hostile TCP client for the abuse tests, run as a separate process (stdlib only).

Usage: ``python tcp_attacker.py HOST PORT COUNT MODE BODY_BYTES``

Opens COUNT connections to HOST:PORT at once and on each writes, by MODE:

* ``hello-prefix``: a plain hello, then a 16 MiB length prefix, then up to BODY_BYTES
  of that frame's body;
* ``prefix``: a 16 MiB length prefix as the very first frame, then up to BODY_BYTES;
* ``hello-only``: a plain hello, then an empty frame each second (a keep-alive that
  carries nothing).

Prints ``ready N`` once every connection is open and has written its opening, then goes
on until stdin closes (or HOLD_SECONDS pass), and prints ``closed N``: how many of its
connections the server cut. A separate process, so that the server's memory measured by
the test is the server's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

FRAME = 16 * 1024 * 1024
CHUNK = b"\xaa" * (64 * 1024)
HOLD_SECONDS = 60.0
CUT_GRACE = 3.0
BATCH = 8
BATCH_PAUSE = 0.01
HELLO_ADDRESS = b"127.0.0.1:1"


def _hello() -> bytes:
    payload = b"CGT\x01" + HELLO_ADDRESS
    return len(payload).to_bytes(4, "big") + payload


async def _attack(host: str, port: int, mode: str, body: int, opened: list[int]) -> bool:
    """Run one connection; True if the server cut it."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        opened.append(0)
        return True
    try:
        if mode == "hello-prefix":
            writer.write(_hello() + FRAME.to_bytes(4, "big"))
        elif mode == "prefix":
            writer.write(FRAME.to_bytes(4, "big"))
        else:
            writer.write(_hello())
        await writer.drain()
        opened.append(1)
        sent = 0
        while True:
            if mode == "hello-only":
                writer.write(b"\x00\x00\x00\x00")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(1024), 1.0)
                    if reader.at_eof():
                        return True
            elif sent < body:
                writer.write(CHUNK)
                await writer.drain()
                sent += len(CHUNK)
            else:
                await reader.read()  # hold until the server cuts us
                return True
    except OSError:
        return True
    finally:
        writer.transport.abort()


async def main() -> None:
    host, port, count, mode, body = sys.argv[1:6]
    opened: list[int] = []
    tasks = []
    for number in range(int(count)):
        tasks.append(asyncio.ensure_future(_attack(host, int(port), mode, int(body), opened)))
        if number % BATCH == BATCH - 1:
            # Paced like many hosts joining, rather than one burst that the server's
            # per-host bound would mostly evict before the hellos are read.
            await asyncio.sleep(BATCH_PAUSE)
    while len(opened) < len(tasks) and not all(t.done() for t in tasks):
        await asyncio.sleep(0.02)
    print(f"ready {sum(opened)}", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([stdin_closed], timeout=HOLD_SECONDS)
    # Give cuts the server has made a moment to be noticed here.
    await asyncio.wait(tasks, timeout=CUT_GRACE)
    closed = sum(1 for t in tasks if t.done() and not t.cancelled() and t.result())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"closed {closed}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    os._exit(0)  # do not wait for the thread reading stdin
