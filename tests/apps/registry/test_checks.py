"""Active checks (:mod:`crdtgossip.apps.registry.checks`): real HTTP and TCP servers on
loopback and real commands, each run giving one event the registry accepts."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from crdtgossip.apps.registry import Registry
from crdtgossip.apps.registry.agent import AgentOptions, run_agent
from crdtgossip.apps.registry.checks import (
    MAX_OUTPUT_BYTES,
    Check,
    CheckRunner,
    check_ttl,
    load_checks,
    parse_checks,
    run_check,
    state_of_exit,
    state_of_status,
)
from crdtgossip.apps.registry.model import InstanceRecord, parse_event, parse_instance
from crdtgossip.apps.registry.view import instance_view
from crdtgossip.errors import ConfigError
from tests.polling import eventually

NOW = 1_704_067_200.0


def test_the_state_tables() -> None:
    assert [state_of_status(s) for s in (200, 204, 301, 429, 500, 404)] == [
        "ok",
        "ok",
        "critical",
        "warning",
        "critical",
        "critical",
    ]
    assert [state_of_exit(c) for c in (0, 1, 2, -9)] == ["ok", "warning", "critical", "critical"]


def test_a_bad_check_is_refused() -> None:
    with pytest.raises(ConfigError):
        Check("web", "web-1", "command", "not a tuple")
    with pytest.raises(ConfigError):
        Check("web", "web-1", "http", "http://x/", interval=0.0)
    with pytest.raises(ConfigError):
        Check("web", "web-1", "udp", "x:1")  # type: ignore[arg-type]
    check = Check("web", "web-1", "tcp", "x:1", interval=10.0, timeout=2.0)
    assert check_ttl(check) == 30.0
    assert check_ttl(Check("web", "web-1", "tcp", "x:1", interval=1.0, timeout=5.0)) == 6.0


@pytest.fixture
async def http_url() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        status = int(request.match_info["status"])
        return web.Response(status=status, text="\x1b[31m" + "y" * (2 * MAX_OUTPUT_BYTES))

    app = web.Application()
    app.router.add_get("/{status}", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


def accepted(event: dict[str, object]) -> str:
    """The event's state, once the registry's own parser has accepted it."""
    return parse_event(event, NOW + 1).state


@pytest.mark.parametrize(("status", "state"), [(200, "ok"), (429, "warning"), (503, "critical")])
async def test_http_checks(http_url: str, status: int, state: str) -> None:
    event = await run_check(Check("web", "web-1", "http", f"{http_url}/{status}"), lambda: NOW)
    assert accepted(event) == state
    description = str(event["description"])
    assert description.startswith(f"HTTP {status}: ?[31m")
    assert len(description) <= MAX_OUTPUT_BYTES
    assert (event["host"], event["service"], event["tags"]) == ("web-1", "web", ["check:http"])


async def test_tcp_checks(unused_tcp_port: int) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        up = await run_check(Check("db", "db-1", "tcp", f"127.0.0.1:{port}"), lambda: NOW)
    finally:
        server.close()
        await server.wait_closed()
    assert accepted(up) == "ok"
    down = await run_check(Check("db", "db-1", "tcp", f"127.0.0.1:{unused_tcp_port}"), lambda: NOW)
    assert accepted(down) == "critical"
    assert "failed" in str(down["description"])


async def test_command_checks_with_exit_status_output_cap_and_timeout(tmp_path: Path) -> None:
    noisy = (sys.executable, "-c", "print('z' * 100000); raise SystemExit(1)")
    event = await run_check(Check("web", "web-1", "command", noisy), lambda: NOW)
    assert accepted(event) == "warning"
    assert str(event["description"]).startswith("exit 1: zzz")
    assert len(str(event["description"])) <= MAX_OUTPUT_BYTES
    slow = Check(
        "web",
        "web-1",
        "command",
        (sys.executable, "-c", "import time; time.sleep(30)"),
        timeout=0.2,
    )
    event = await run_check(slow, lambda: NOW)
    assert accepted(event) == "critical"
    assert "timed out after 0.2 s" in str(event["description"])
    missing = Check("web", "web-1", "command", (str(tmp_path / "no-such-check"),))
    assert accepted(await run_check(missing, lambda: NOW)) == "critical"


async def test_the_runner_reports_each_run_as_the_instances_health(
    registry: Registry, tmp_path: Path
) -> None:
    record: InstanceRecord = parse_instance({"address": "10.0.0.1", "port": 80})
    await registry.register("web", "web-1", record)
    flag = tmp_path / "healthy"
    flag.write_text("")
    probe = (
        sys.executable,
        "-c",
        f"import os, sys; sys.exit(0 if os.path.exists({str(flag)!r}) else 2)",
    )
    checks = [
        Check("web", "web-1", "command", probe, interval=0.05, timeout=5.0),
        Check("web", "nope", "command", probe, interval=0.05, timeout=5.0),
    ]
    runner = CheckRunner(checks, registry.push_event, clock=registry.now)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))

    async def health() -> str:
        shown = instance_view(await registry.current(), "web", "web-1", registry.now())
        return str(shown["health"])

    async def critical() -> bool:
        return await health() == "critical"

    try:
        await eventually(lambda: runner.reported > 0, "a check event was accepted")
        assert await health() == "passing"
        flag.unlink()
        await eventually(critical, "the failing check turned it critical")
    finally:
        stop.set()
        await task


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ([], "checks"),
        ({"checks": [{"service": "web", "instance": "web-1"}]}, "exactly one of"),
        ({"checks": [{"service": "web", "instance": "w", "tcp": "x:1", "http": "u"}]}, "one of"),
        ({"checks": [{"service": "web", "instance": "w", "command": "ls"}]}, "argv"),
        ({"checks": [{"service": "web", "instance": "bad id", "tcp": "x:1"}]}, "check 1"),
        (
            {"checks": [{"service": "web", "instance": "w", "tcp": "x:1", "interval": "1s"}]},
            "seconds",
        ),
        ({"checks": [{"service": "web", "instance": "w", "tcp": "x:1", "timeout": 0}]}, "at least"),
        ({"checks": [{"service": "web", "instance": "w", "tcp": "x:1", "every": 1}]}, "object of"),
    ],
)
def test_a_bad_checks_file_names_what_is_wrong(document: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_checks(document)


async def test_the_agent_runs_the_checks_of_its_checks_file(tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    checks = tmp_path / "checks.json"
    entry = {"service": "db", "instance": "db-1", "tcp": f"127.0.0.1:{port}", "interval": 0.05}
    checks.write_text(json.dumps({"checks": [entry]}))
    assert load_checks(checks)[0].target == f"127.0.0.1:{port}"
    options = AgentOptions(
        node_id="checker", bind="127.0.0.1:0", http="127.0.0.1:0", config="local", checks=checks
    )
    lines: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(options, stop, announce=lines.append))
    try:
        await eventually(lambda: bool(lines) or task.done(), "the agent announces itself")
        url = "http://" + lines[0].split("http=")[1].strip()
        async with aiohttp.ClientSession() as session:
            body = {"address": "127.0.0.1", "port": port}
            async with session.put(f"{url}/v1/services/db/instances/db-1", json=body) as reply:
                assert reply.status == 200

            async def health() -> tuple[str, str | None]:
                async with session.get(f"{url}/v1/services/db/instances/db-1") as reply:
                    shown = (await reply.json())["instance"]
                last = shown["last_event"]
                return shown["health"], None if last is None else last["description"]

            async def checked(state: str) -> bool:
                found, description = await health()
                return found == state and description is not None

            await eventually(lambda: checked("passing"), "the tcp check's event arrived")
            server.close()
            await server.wait_closed()
            await eventually(lambda: checked("critical"), "the closed port turned it critical")
    finally:
        server.close()
        stop.set()
        await asyncio.wait_for(task, 30)
