"""The apps part of ``crdtgossip demo``: registry, health, nginx rendering, drain, release.

``crdtgossip demo`` (:mod:`crdtgossip.cli`) starts five gossip nodes on loopback and
shows the core (membership, convergence, add-wins). With the ``apps`` extra it then
hands the running nodes to :class:`RegistryDemo`, which puts a
:class:`~crdtgossip.apps.registry.Registry` and its REST API on each node and drives
them over real HTTP, through the apps' public interfaces only: the deploy hooks'
:class:`~crdtgossip.apps.deploy.AgentClient` writes, and its ``GET`` requests (blocking
queries) show what each agent sees; the load balancer's
:class:`~crdtgossip.apps.lb.RenderLoop` renders. Each node has its part, so every step
also shows replication: writes go through ``ams``, reads through ``ber``, renders
through ``cph``, health events through ``dub`` and the release through ``edi``.

Every step that waits for the cluster is bounded (:data:`DEMO_STEP_LIMIT`); a step that
does not happen in time raises :class:`~crdtgossip.errors.CRDTGossipError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from crdtgossip.apps.deploy import AgentClient as DeployClient
from crdtgossip.apps.lb import (
    ONCE_RETRY,
    LiveFile,
    NginxRenderer,
    Renderer,
    RenderLoop,
    Services,
)
from crdtgossip.apps.lb import AgentClient as RenderClient
from crdtgossip.apps.registry import Registry, make_app
from crdtgossip.errors import ConfigError, CRDTGossipError
from crdtgossip.node import Node
from crdtgossip.transport import format_address

__all__ = [
    "DEMO_EVENT_TTL",
    "DEMO_INSTANCES",
    "DEMO_STEP_LIMIT",
    "DemoInstance",
    "RegistryDemo",
    "Screen",
]

#: The longest the demo waits for any one step before giving up: a guard, not a goal
#: (each step takes milliseconds on loopback; the expiry step takes the ttl).
DEMO_STEP_LIMIT = 15.0

#: Seconds the demo's short-lived health event holds: long enough to be seen passing,
#: short enough to expire while the demo runs (riemann-tools report every 10 s).
DEMO_EVENT_TTL = 2.0

#: Longest blocking query the demo sends, in seconds: each wake-up rechecks the step's
#: time limit, so a change that never comes is reported within about this much of it.
DEMO_BLOCKING_WAIT = 1.0

#: Seconds allowed on top of a blocking query's wait for the request itself; the
#: agent adds up to wait/16 of jitter.
HTTP_MARGIN = 2.0

#: The demo's release, recorded twice so the history has an older entry to ask for.
PREVIOUS_VERSION = "1.4.2"
NEW_VERSION = "1.4.3"

#: The environment every demo instance registers in.
DEMO_ENV = "prod"

#: Nodes the demo needs: one per part (writes, reads, renders, events, release).
DEMO_NODES = 5

#: The live file the render writes, inside the demo's temporary directory.
UPSTREAMS_FILE = "upstreams.conf"


@dataclass(frozen=True, slots=True)
class DemoInstance:
    """One instance the demo registers; addresses are from 192.0.2.0/24, the block
    RFC 5737 reserves for documentation, so nothing is ever contacted."""

    service: str
    id: str
    address: str
    port: int


#: Three ``web`` and two ``api`` instances.
DEMO_INSTANCES = (
    DemoInstance("web", "web-1", "192.0.2.11", 8080),
    DemoInstance("web", "web-2", "192.0.2.12", 8080),
    DemoInstance("web", "web-3", "192.0.2.13", 8080),
    DemoInstance("api", "api-1", "192.0.2.21", 9000),
    DemoInstance("api", "api-2", "192.0.2.22", 9000),
)

# The two health events: web-3 warns (default ttl, so it stays a warning all demo long);
# api-2 is ok for DEMO_EVENT_TTL seconds, then counts as critical with no further write.
_WARNING_EVENT: dict[str, Any] = {
    "host": "web-3",
    "service": "web",
    "state": "warning",
    "metric": 0.91,
    "description": "disk 91% full",
}
_SHORT_EVENT: dict[str, Any] = {
    "host": "api-2",
    "service": "api",
    "state": "ok",
    "ttl": DEMO_EVENT_TTL,
    "description": "responding",
}

_Body = dict[str, Any]


class Screen(Protocol):
    """Where the demo prints: a title per step (with elapsed time) and indented lines."""

    def step(self, title: str) -> None:
        """Print a step's title."""
        ...

    def line(self, text: str) -> None:
        """Print one line of detail under the current step."""
        ...


class _Unvalidated:
    """The nginx renderer with no check: what the demo uses when nginx is missing."""

    def __init__(self, inner: Renderer) -> None:
        self._inner = inner

    @property
    def name(self) -> str:
        return self._inner.name

    def render(self, services: Services) -> str:
        return self._inner.render(services)

    def check_command(self, candidate: Path, scratch: Path) -> str | None:
        return None


class _Agent:
    """One node's registry and the HTTP server in front of it."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.name = node.node_id
        self.registry = Registry(node)
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        await self.registry.start()
        self._runner = web.AppRunner(make_app(self.registry), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{format_address(str(host), int(port))}"

    async def stop(self) -> None:
        # The registry first: it releases blocked readers, so the server stops at once.
        try:
            await self.registry.stop()
        finally:
            if self._runner is not None:
                runner, self._runner = self._runner, None
                await runner.cleanup()


class RegistryDemo:
    """A registry with its REST API on each of five running nodes, and the demo steps.

    Use as ``async with RegistryDemo(nodes, screen) as demo``: entering starts the
    registries and HTTP servers on 127.0.0.1 and a temporary directory for the rendered
    file; leaving stops them all and removes the directory (the nodes stay up: they are
    the caller's).

    Args:
        nodes: five started nodes of one cluster.
        screen: where to print.
        step_limit: the longest any step may wait for the cluster, in seconds.

    Raises:
        ConfigError: not exactly five nodes were given.
    """

    def __init__(
        self, nodes: Sequence[Node], screen: Screen, *, step_limit: float = DEMO_STEP_LIMIT
    ) -> None:
        if len(nodes) != DEMO_NODES:
            raise ConfigError(f"the registry demo needs {DEMO_NODES} nodes, not {len(nodes)}")
        self._screen = screen
        self._limit = step_limit
        self._agents = [_Agent(node) for node in nodes]
        self._session: aiohttp.ClientSession | None = None
        self._workdir: Path | None = None
        self._render_loop: RenderLoop | None = None
        self._rendered = ""

    # ---- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> RegistryDemo:
        self._screen.step("A registry and its REST API on every node (aiohttp on 127.0.0.1)")
        try:
            self._workdir = Path(tempfile.mkdtemp(prefix="crdtgossip-demo-"))
            self._session = aiohttp.ClientSession()
            for agent in self._agents:
                await agent.start()
                self._screen.line(f"{agent.name}  {agent.url}")
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every registry and server, close the HTTP session, remove the files.

        Each of these runs even when one before it fails (the first failure is raised).
        """
        async with contextlib.AsyncExitStack() as cleanup:
            # An exit stack unwinds last-in first-out: servers, then session, then files.
            if self._workdir is not None:
                cleanup.callback(shutil.rmtree, self._workdir, ignore_errors=True)
                self._workdir = None
            if self._session is not None:
                cleanup.push_async_callback(self._session.close)
                self._session = None
            for agent in self._agents:
                cleanup.push_async_callback(agent.stop)

    # ---- the steps -------------------------------------------------------------------
    async def run(self) -> None:
        """Register, replicate, push health, render, expire, drain and release.

        Raises:
            CRDTGossipError: an agent refused a request, or a step did not happen within
                the step limit.
        """
        writer, reader, renderer, reporter, releaser = self._agents
        await self._register(writer)
        await self._replicated(reader, others=[renderer, reporter, releaser])
        pushed_at = await self._push_health(reporter)
        await self._await_service(
            renderer,
            "web",
            lambda by_id: by_id["web-3"]["health"] == "warning",
            "the warning event reaching the render node",
        )
        await self._render_first(renderer)
        await self._expire(renderer, pushed_at)
        await self._drain(writer, renderer)
        await self._release(releaser, reader)

    async def _register(self, writer: _Agent) -> None:
        self._screen.step(
            f"deploy register: {len(DEMO_INSTANCES)} instances through {writer.name}'s API"
        )
        deploy = self._deploy(writer)
        for instance in DEMO_INSTANCES:
            await deploy.register(
                instance.service,
                instance.id,
                address=instance.address,
                port=instance.port,
                env=DEMO_ENV,
            )
            self._screen.line(
                f"PUT /v1/services/{instance.service}/instances/{instance.id}  "
                f"{instance.address}:{instance.port} ({DEMO_ENV})"
            )

    async def _replicated(self, reader: _Agent, others: Sequence[_Agent]) -> None:
        expected: dict[str, list[str]] = {}
        for instance in DEMO_INSTANCES:
            expected.setdefault(instance.service, []).append(instance.id)

        def complete(body: _Body) -> bool:
            return body.get("services") == expected

        body, took = await self._await(
            reader, "/v1/services", complete, f"the registrations reaching {reader.name}"
        )
        self._screen.step(f"Read through {reader.name}'s API: replicated in {took:.2f}s")
        for service, ids in sorted(body["services"].items()):
            self._screen.line(f"GET /v1/services  {service}: {', '.join(ids)}")
        # The next steps write through these agents, which need the instances too.
        for agent in others:
            await self._await(
                agent, "/v1/services", complete, f"the registrations reaching {agent.name}"
            )
        self._screen.line(f"every agent lists them: {', '.join(a.name for a in self._agents)}")

    async def _push_health(self, reporter: _Agent) -> float:
        self._screen.step(f"Health events, POST /v1/events to {reporter.name}")
        pushed_at = time.monotonic()
        deploy = self._deploy(reporter)
        for event in (_WARNING_EVENT, _SHORT_EVENT):
            reply = await deploy.request("POST", "/v1/events", event)
            ttl = reply["event"].get("ttl")
            self._screen.line(
                f"{event['host']}: {event['state']} ({event['description']}, ttl {ttl:g} s)"
                f" -> health {reply['health']}"
            )
        self._screen.line("only passing instances not in maintenance go to load balancers")
        return pushed_at

    async def _render_first(self, renderer: _Agent) -> None:
        nginx = shutil.which("nginx")
        self._screen.step(f"Render nginx upstreams through {renderer.name}'s API")
        engine: Renderer = NginxRenderer()
        if nginx is None:
            engine = _Unvalidated(engine)
        path = self._files() / UPSTREAMS_FILE
        client = RenderClient(renderer.url, retry=ONCE_RETRY, session=self._http())
        self._render_loop = RenderLoop(client, engine, LiveFile(path, engine))
        text = await self._render()
        if nginx is None:
            self._screen.line(
                "nginx is not on PATH: the `nginx -t` check was skipped (install nginx to "
                "see each file validated before it goes live)"
            )
        else:
            self._screen.line(f"{nginx} -t accepted it before it went live (atomic rename)")
        self._screen.line(f"written to {path} (removed when the demo ends):")
        for line in text.splitlines()[1:]:  # the first line is the do-not-edit header
            if line:
                self._screen.line(f"  {line}")

    async def _expire(self, renderer: _Agent, pushed_at: float) -> None:
        self._screen.step(
            f"Waiting for api-2's {DEMO_EVENT_TTL:g} s ttl to run out (blocking query on "
            f"{renderer.name})"
        )
        await self._await_service(
            renderer,
            "api",
            lambda by_id: by_id["api-2"]["health"] == "critical",
            "api-2's event expiring",
        )
        self._screen.line(
            f"api-2 is critical {time.monotonic() - pushed_at:.2f}s after its event: no "
            "write needed, each agent applies the ttl itself"
        )
        await self._rerender("re-render")

    async def _drain(self, writer: _Agent, renderer: _Agent) -> None:
        self._screen.step(f"deploy drain web-1 through {writer.name} (maintenance on)")
        started = time.monotonic()
        view = await self._deploy(writer).drain("web", "web-1", reason="upgrade", timeout=5.0)
        self._screen.line(
            f"web-1 maintenance={str(view['maintenance']).lower()}, confirmed by a majority "
            f"of members ({time.monotonic() - started:.2f}s)"
        )
        await self._await_service(
            renderer,
            "web",
            lambda by_id: bool(by_id["web-1"]["maintenance"]),
            f"the drain reaching {renderer.name}",
        )
        await self._rerender("re-render")

    async def _release(self, releaser: _Agent, reader: _Agent) -> None:
        self._screen.step(f"deploy release prod/web through {releaser.name}")
        deploy = self._deploy(releaser)
        previous = await deploy.release(DEMO_ENV, "web", PREVIOUS_VERSION, build="511")
        new = await deploy.release(DEMO_ENV, "web", NEW_VERSION, build="512", commit="9fceb02")
        for record in (previous, new):
            self._screen.line(
                f"PUT /v1/releases/{DEMO_ENV}/web  version {record['version']} "
                f"build {record['build']} at {_clock(record['time'])}"
            )

        def current_is_new(body: _Body) -> bool:
            # Both releases travel as separate deltas and may arrive in either order:
            # wait for the whole history, not just the newest one.
            entry = body.get("releases", {}).get(DEMO_ENV, {}).get("web", {})
            versions = {record.get("version") for record in entry.get("history", [])}
            return bool(
                entry.get("current", {}).get("version") == NEW_VERSION
                and {PREVIOUS_VERSION, NEW_VERSION} <= versions
            )

        body, _ = await self._await(
            reader, "/v1/releases", current_is_new, f"the release reaching {reader.name}"
        )
        entry = body["releases"][DEMO_ENV]["web"]
        history = ", ".join(record["version"] for record in entry["history"])
        self._screen.line(
            f"GET /v1/releases on {reader.name}: prod/web current {entry['current']['version']}"
            f" (history, newest first: {history})"
        )
        # Between the two releases: what ran then, answered from the same history.
        moment = (previous["time"] + new["time"]) / 2
        query = f"/v1/releases?at={moment:.6f}"
        _, then = await self._get(reader, query)
        was = then["releases"][DEMO_ENV]["web"]["current"]["version"]
        self._screen.line(f"GET {query} (between the two): prod/web ran {was}")

    async def kill(self, node_id: str) -> Node:
        """Stop a node's HTTP server and registry, then the node, as a crash would.

        Returns:
            The node, stopped.

        Raises:
            ConfigError: no node of the demo has that id.
        """
        agent = self._agent(node_id)
        await agent.stop()
        await agent.node.stop()
        self._agents.remove(agent)
        return agent.node

    async def show_detection(self, node_id: str) -> None:
        """Show, through every remaining agent's ``GET /v1/members``, that ``node_id`` is dead.

        Raises:
            CRDTGossipError: an agent does not report it dead within the step limit.
        """

        def dead(body: _Body) -> bool:
            return any(
                member["node_id"] == node_id and member["status"] == "dead"
                for member in body.get("members", [])
            )

        for agent in self._agents:
            if agent.node.node_id == node_id:
                continue
            await self._await(agent, "/v1/members", dead, f"{agent.name} reporting {node_id}")
        names = ", ".join(agent.name for agent in self._agents)
        self._screen.line(f"GET /v1/members: {node_id} is dead on {names}")

    # ---- helpers ---------------------------------------------------------------------
    def _agent(self, node_id: str) -> _Agent:
        for agent in self._agents:
            if agent.node.node_id == node_id:
                return agent
        raise ConfigError(f"no demo node {node_id!r}")

    def _deploy(self, agent: _Agent) -> DeployClient:
        # A shared session the client does not own, so nothing needs closing per call.
        return DeployClient(agent.url, timeout=self._limit, session=self._http())

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise CRDTGossipError("demo: RegistryDemo is used outside 'async with'")
        return self._session

    def _files(self) -> Path:
        if self._workdir is None:
            raise CRDTGossipError("demo: RegistryDemo is used outside 'async with'")
        return self._workdir

    async def _render(self) -> str:
        """Render through the render node and install; the file's text."""
        if self._render_loop is None:
            raise CRDTGossipError("demo: the render step has not run")
        result = await self._render_loop.render_once()
        if result.error is not None:
            raise CRDTGossipError(f"demo: {result.error}")
        self._rendered = self._render_loop.live.current() or ""
        return self._rendered

    async def _rerender(self, what: str) -> None:
        before = self._rendered
        after = await self._render()
        diff = [
            line
            for line in difflib.unified_diff(
                before.splitlines(), after.splitlines(), n=0, lineterm=""
            )
            if not line.startswith(("---", "+++", "@@"))
        ]
        if not diff:
            self._screen.line(f"{what}: no change")
            return
        self._screen.line(f"{what}, diff of {UPSTREAMS_FILE}:")
        for line in diff:
            self._screen.line(f"  {line[0]} {line[1:].strip()}")

    async def _get(self, agent: _Agent, path: str, index: int = 0) -> tuple[int, _Body]:
        """GET a JSON object from an agent: its ``X-Index`` and body.

        With ``index`` the request blocks until the agent's index passes it (or
        :data:`DEMO_BLOCKING_WAIT` ends).
        """
        params = {"index": str(index), "wait": f"{DEMO_BLOCKING_WAIT:g}s"} if index else None
        reply = await self._deploy(agent).call(
            "GET", path, params=params, timeout=DEMO_BLOCKING_WAIT + HTTP_MARGIN
        )
        return reply.index or 0, reply.body

    async def _await(
        self, agent: _Agent, path: str, predicate: Callable[[_Body], bool], what: str
    ) -> tuple[_Body, float]:
        """Blocking queries on ``path`` until ``predicate(body)``; the body and seconds."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        index = 0
        while True:
            index, body = await self._get(agent, path, index)
            if predicate(body):
                return body, loop.time() - start
            if loop.time() - start > self._limit:
                raise CRDTGossipError(f"demo: {what} did not happen within {self._limit:g}s")

    async def _await_service(
        self,
        agent: _Agent,
        service: str,
        predicate: Callable[[dict[str, _Body]], bool],
        what: str,
    ) -> None:
        """Like :meth:`_await` on ``/v1/services/{service}``, given instances by id."""

        def holds(body: _Body) -> bool:
            by_id = {instance["id"]: instance for instance in body.get("instances", [])}
            try:
                return predicate(by_id)
            except KeyError:  # an instance not there yet
                return False

        await self._await(agent, f"/v1/services/{service}", holds, what)


def _clock(moment: float) -> str:
    """A Unix time as UTC wall-clock time, to the millisecond."""
    return time.strftime("%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03d}"
