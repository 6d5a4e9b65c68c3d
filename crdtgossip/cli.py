"""The ``crdtgossip`` command.

Every failure exits non-zero with one clear line on stderr; ``--help`` works everywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from crdtgossip._version import __version__
from crdtgossip.config import GossipConfig
from crdtgossip.crdts import GCounter, ORSet
from crdtgossip.errors import CRDTGossipError
from crdtgossip.node import Node
from crdtgossip.security import Keyring, encode_key, generate_key

if TYPE_CHECKING:
    from crdtgossip.apps.demo import RegistryDemo

__all__ = ["main"]

#: Demo timers: the local preset, quicker still so the whole demo takes seconds.
DEMO_CONFIG = dataclasses.replace(
    GossipConfig.local(),
    probe_interval=0.2,
    probe_timeout=0.1,
    gossip_interval=0.05,
    push_pull_interval=1.0,
    join_retry_interval=0.3,
)

#: The reference apps' subcommands: (name, module, registering function, help). They
#: need the ``apps`` extra (aiohttp, jinja2); without it the subcommand says so.
APP_COMMANDS = (
    ("agent", "crdtgossip.apps.registry.cli", "add_agent_command", "run a registry agent"),
    ("render", "crdtgossip.apps.lb.cli", "add_render_command", "render load-balancer configs"),
    ("deploy", "crdtgossip.apps.deploy.cli", "add_deploy_command", "deploy hooks for CI"),
)

#: The longest the demo waits for any one step before giving up (a guard, not a goal).
DEMO_STEP_LIMIT = 15.0


class _Screen:
    """Plain terminal output: a title per step, indented detail, elapsed time."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def step(self, title: str) -> None:
        print(f"\n[{time.monotonic() - self.started:5.2f}s] {title}", flush=True)

    def line(self, text: str) -> None:
        print(f"          {text}", flush=True)


async def _until(predicate: object, what: str) -> float:
    """Wait until ``predicate()`` holds; return the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        result = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return loop.time() - start
        if loop.time() - start > DEMO_STEP_LIMIT:
            raise CRDTGossipError(f"demo: {what} did not happen within {DEMO_STEP_LIMIT}s")
        await asyncio.sleep(0.02)


async def _announce(node: Node) -> None:
    """One node's local writes: 10 visits, and its own name in the online set."""
    replica, name = node.replica_id, node.node_id
    await node.update("visits", GCounter, lambda c: c.increment(replica, 10))
    await node.update("online", ORSet, lambda s: s.add(name, replica))


async def _demo() -> None:
    screen = _Screen()
    keyring = Keyring.generate()
    names = ["ams", "ber", "cph", "dub", "edi"]
    screen.step(f"Starting {len(names)} nodes on 127.0.0.1 (UDP+TCP, AES-GCM keyring)")
    first = Node(names[0], "127.0.0.1:0", keyring=keyring, config=DEMO_CONFIG)
    await first.start()
    nodes = [first]
    try:
        for name in names[1:]:
            node = Node(
                name, "127.0.0.1:0", seeds=[first.address], keyring=keyring, config=DEMO_CONFIG
            )
            await node.start()
            nodes.append(node)
        for node in nodes:
            screen.line(f"{node.node_id}  {node.address}  replica {node.replica_id}")

        def everyone_alive() -> bool:
            return all(
                sum(1 for m in node.members() if m.status == "alive") == len(nodes)
                for node in nodes
            )

        took = await _until(everyone_alive, "membership")
        screen.step(f"SWIM membership: every node sees {len(nodes)} alive ({took:.2f}s)")

        screen.step("Each node increments a G-Counter and adds itself to an OR-Set, locally")
        for node in nodes:
            await _announce(node)

        async def converged(expected_total: int, expected: set[str]) -> bool:
            for node in nodes:
                if (await node.get("visits", GCounter)).value != expected_total:
                    return False
                if (await node.get("online", ORSet)).value != expected:
                    return False
            return True

        took = await _until(lambda: converged(10 * len(nodes), set(names)), "convergence")
        screen.step(f"Gossip: all replicas converged ({took:.2f}s)")
        for node in nodes:
            visits = (await node.get("visits", GCounter)).value
            online = sorted((await node.get("online", ORSet)).value)
            screen.line(f"{node.node_id}: visits={visits} online={online}")

        screen.step("Concurrent add and remove of the same element: add wins")
        await nodes[1].update("online", ORSet, lambda s: s.remove("cph"))
        await nodes[2].update("online", ORSet, lambda s: s.add("cph", nodes[2].replica_id))
        took = await _until(lambda: converged(10 * len(nodes), set(names)), "add-wins")
        screen.line(f"'cph' is still online everywhere ({took:.2f}s)")

        async with contextlib.AsyncExitStack() as apps:
            registry_demo = await _start_registry_demo(apps, nodes, screen)
            if registry_demo is not None:
                await registry_demo.run()
            victim = nodes[3]
            screen.step(f"Crashing {victim.node_id} (no goodbye)")
            if registry_demo is not None:
                await registry_demo.kill(victim.node_id)
            else:
                await victim.stop()
            survivors = [node for node in nodes if node is not victim]

            def victim_dead() -> bool:
                return all(
                    any(m.node_id == victim.node_id and m.status == "dead" for m in node.members())
                    for node in survivors
                )

            took = await _until(victim_dead, "failure detection")
            screen.line(f"suspected, then declared dead by every survivor ({took:.2f}s)")
            if registry_demo is not None:
                await registry_demo.show_detection(victim.node_id)

        leaver = nodes[4]
        screen.step(f"{leaver.node_id} leaves gracefully")
        await leaver.leave()

        def leaver_left() -> bool:
            return all(
                any(m.node_id == leaver.node_id and m.status == "left" for m in node.members())
                for node in survivors[:3]
            )

        took = await _until(leaver_left, "graceful leave")
        screen.line(f"marked left, not dead ({took:.2f}s)")
        stats = first.stats()
        screen.step(
            f"{first.node_id} sent {stats['frames_out']} frames ({stats['bytes_out']} bytes), "
            f"dropped {stats['drop_unauthenticated']} unauthenticated"
        )
    finally:
        for node in nodes:
            await node.stop()
    screen.step("Done.")


async def _start_registry_demo(
    stack: contextlib.AsyncExitStack, nodes: list[Node], screen: _Screen
) -> RegistryDemo | None:
    """The apps part of the demo, started on ``nodes``; None without the apps extra.

    Its registries and HTTP servers stop when ``stack`` closes, before the nodes do.
    """
    try:
        from crdtgossip.apps.demo import RegistryDemo
    except ImportError as exc:
        if (exc.name or "").startswith("crdtgossip"):
            raise  # a broken installation, not a missing extra: say so
        missing = exc.name or "the apps extra"
        screen.step(
            f"The registry, nginx rendering, drain and release steps need {missing}: "
            'pip install "crdtgossip[apps]" shows the rest'
        )
        return None
    return await stack.enter_async_context(RegistryDemo(nodes, screen))


def _cmd_demo(_: argparse.Namespace) -> int:
    asyncio.run(_demo())
    return 0


def _cmd_keygen(_: argparse.Namespace) -> int:
    print(encode_key(generate_key()))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crdtgossip",
        description="Convergent replicated data types spread by gossip.",
    )
    parser.add_argument("--version", action="version", version=f"crdtgossip {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo", help="run a local 5-node cluster on loopback and show what it does"
    )
    demo.set_defaults(run=_cmd_demo)
    keygen = commands.add_parser(
        "keygen", help="print a new random 32-byte AES key (base64) for a keyring file"
    )
    keygen.set_defaults(run=_cmd_keygen)
    for name, module_name, register, summary in APP_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = commands.add_parser(name, help=f"{summary} (needs crdtgossip[apps])")
            missing.set_defaults(run=_missing_extra(name, exc))
            continue
        getattr(module, register)(commands)
    return parser


def _missing_extra(name: str, error: ImportError) -> object:
    def run(_: argparse.Namespace) -> int:
        raise CRDTGossipError(
            f"'crdtgossip {name}' needs the reference apps' dependencies ({error.name} is "
            "missing): pip install 'crdtgossip[apps]'"
        )

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except CRDTGossipError as exc:
        print(f"crdtgossip: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("crdtgossip: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
