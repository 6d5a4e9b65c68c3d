"""The agent in process (run_agent) and its command line: options, readiness, failures."""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from riemann_client.client import Client as RiemannClient
from riemann_client.transport import TCPTransport, UDPTransport

from crdtgossip.apps.registry.agent import STATE_FILE, AgentOptions, read_token, run_agent
from crdtgossip.apps.registry.cli import add_agent_command, run
from crdtgossip.errors import ConfigError
from crdtgossip.security import Keyring
from tests.polling import PATIENCE, eventually


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="crdtgossip")
    add_agent_command(top.add_subparsers(dest="command", required=True))
    return top


def test_the_contract_flags_parse() -> None:
    args = parser().parse_args(
        [
            "agent",
            "--node-id",
            "a",
            "--bind",
            "127.0.0.1:7000",
            "--join",
            "10.0.0.1:7000",
            "--join",
            "10.0.0.2:7000",
            "--http",
            "127.0.0.1:8000",
            "--data-dir",
            "/var/lib/x",
            "--keyring",
            "/etc/keys",
            "--config",
            "wan",
            "--token",
            "/etc/token",
        ]
    )
    assert (args.node_id, args.bind, args.join) == (
        "a",
        "127.0.0.1:7000",
        ["10.0.0.1:7000", "10.0.0.2:7000"],
    )
    assert (args.http, args.data_dir, args.keyring) == (
        "127.0.0.1:8000",
        Path("/var/lib/x"),
        Path("/etc/keys"),
    )
    assert (args.config, args.token, args.run) == ("wan", Path("/etc/token"), run)
    defaults = parser().parse_args(["agent", "--node-id", "a", "--bind", "127.0.0.1:0"])
    assert (defaults.join, defaults.http, defaults.config) == ([], "127.0.0.1:7700", "lan")
    assert (defaults.data_dir, defaults.keyring, defaults.token) == (None, None, None)


@pytest.mark.parametrize(
    "argv",
    [
        ["agent"],
        ["agent", "--bind", "127.0.0.1:0"],
        ["agent", "--node-id", "a"],
        ["agent", "--node-id", "a", "--bind", "127.0.0.1:0", "--config", "fast"],
    ],
)
def test_missing_or_bad_flags_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parser().parse_args(argv)
    assert caught.value.code == 2


def agent_args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    return parser().parse_args(
        ["agent", "--node-id", "a", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", *extra]
    )


def failure_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("crdtgossip: error: ")
    assert captured.out == ""
    return lines[0]


def test_a_missing_keyring_file_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(agent_args(tmp_path, "--keyring", str(tmp_path / "none"))) == 1
    assert "keyring" in failure_line(capsys)


def test_an_empty_token_file_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text("\n")
    assert run(agent_args(tmp_path, "--token", str(token))) == 1
    assert "token" in failure_line(capsys)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--http", "nowhere"), ("--bind", "127.0.0.1"), ("--join", "[::1"), ("--http", "[zz]:1")],
)
def test_bad_addresses_fail_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    argv = ["agent", "--node-id", "a", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"]
    argv += [flag, value]
    assert run(parser().parse_args(argv)) == 1
    assert "address" in failure_line(capsys)


def test_an_http_port_in_use_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = parser().parse_args(
            ["agent", "--node-id", "a", "--bind", "127.0.0.1:0", "--http", f"127.0.0.1:{port}"]
        )
        assert run(args) == 1
    assert "HTTP" in failure_line(capsys)


def test_read_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  abc123\n")
    assert read_token(path) == "abc123"
    for bad in (b"two words", b"", b"\xff\xfe", b"x" * 5000):
        path.write_bytes(bad)
        with pytest.raises(ConfigError, match="token file"):
            read_token(path)


# ---- run_agent in process --------------------------------------------------------------
class Running:
    """An agent running in this event loop, and its announced addresses."""

    def __init__(self, task: asyncio.Task[None], stop: asyncio.Event, line: str) -> None:
        self.task, self.stop, self.line = task, stop, line
        words = dict(word.split("=", 1) for word in line.split() if "=" in word)
        self.gossip = words["gossip"]
        self.url = f"http://{words['http']}"


Launch = Callable[[AgentOptions], Awaitable[Running]]


@pytest.fixture
async def start() -> AsyncIterator[Launch]:
    running: list[Running] = []

    async def launch(options: AgentOptions) -> Running:
        lines: list[str] = []
        stop = asyncio.Event()
        task = asyncio.create_task(run_agent(options, stop, announce=lines.append))
        await eventually(lambda: bool(lines) or task.done(), "the agent announces itself")
        if task.done():
            task.result()  # raise what stopped it
        agent = Running(task, stop, lines[0])
        running.append(agent)
        return agent

    yield launch
    for agent in running:
        agent.stop.set()
        await asyncio.wait_for(agent.task, PATIENCE)


async def test_run_agent_serves_and_leaves_when_stopped(start: Launch, tmp_path: Path) -> None:
    keyring = tmp_path / "keyring"
    Keyring.generate().to_file(keyring)
    options = AgentOptions(
        node_id="solo",
        bind="127.0.0.1:0",
        http="127.0.0.1:0",
        config="local",
        keyring=keyring,
        data_dir=tmp_path / "data" / "nested",
    )
    agent = await start(options)
    assert agent.line.startswith("agent solo listening gossip=127.0.0.1:")
    assert (tmp_path / "data" / "nested").is_dir()
    assert STATE_FILE == "state.db"
    async with aiohttp.ClientSession() as session, session.get(agent.url + "/v1/members") as got:
        assert got.status == 200
        members = (await got.json())["members"]
    assert [(m["node_id"], m["address"], m["status"]) for m in members] == [
        ("solo", agent.gossip, "alive")
    ]
    agent.stop.set()
    await asyncio.wait_for(agent.task, PATIENCE)


async def test_run_agent_with_a_token_guards_writes(start: Launch, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    options = AgentOptions(
        node_id="guarded", bind="127.0.0.1:0", http="127.0.0.1:0", config="local", token=token
    )
    agent = await start(options)
    url = agent.url + "/v1/expectations/prod/web"
    async with aiohttp.ClientSession() as session:
        async with session.put(url, json={"min_passing": 1}) as response:
            assert response.status == 401
        headers = {"Authorization": "Bearer t0ken"}
        async with session.put(url, json={"min_passing": 1}, headers=headers) as response:
            assert response.status == 200


async def test_a_node_id_that_is_not_a_name_is_refused() -> None:
    options = AgentOptions(node_id="bad id!", bind="127.0.0.1:0", http="127.0.0.1:0")
    with pytest.raises(ConfigError, match="--node-id"):
        await run_agent(options, asyncio.Event())


async def test_http_beyond_loopback_without_a_token_warns(
    start: Launch, capsys: pytest.CaptureFixture[str]
) -> None:
    await start(AgentOptions(node_id="open", bind="127.0.0.1:0", http="0.0.0.0:0"))
    assert "no --token is set" in capsys.readouterr().err


async def test_http_on_loopback_does_not_warn(
    start: Launch, capsys: pytest.CaptureFixture[str]
) -> None:
    await start(AgentOptions(node_id="closed", bind="127.0.0.1:0", http="127.0.0.1:0"))
    assert "warning" not in capsys.readouterr().err


# ---- Riemann's protocol --------------------------------------------------------------
def test_the_riemann_flags_parse_and_are_off_by_default() -> None:
    defaults = parser().parse_args(["agent", "--node-id", "a", "--bind", "127.0.0.1:0"])
    assert (defaults.riemann_tcp, defaults.riemann_udp) == (None, None)
    options = AgentOptions("a", "127.0.0.1:0")
    assert (options.riemann_tcp, options.riemann_udp) == (None, None)
    flags = ["--riemann-tcp", "127.0.0.1:5555", "--riemann-udp", "[::1]:0"]
    args = parser().parse_args(["agent", "--node-id", "a", "--bind", "127.0.0.1:0", *flags])
    assert (args.riemann_tcp, args.riemann_udp) == ("127.0.0.1:5555", "[::1]:0")


@pytest.mark.parametrize(("flag", "kind"), [("--riemann-tcp", "TCP"), ("--riemann-udp", "UDP")])
def test_a_riemann_port_in_use_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, kind: str
) -> None:
    with socket.socket(type=socket.SOCK_STREAM if kind == "TCP" else socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        if kind == "TCP":
            taken.listen()
        port = taken.getsockname()[1]
        assert run(agent_args(tmp_path, flag, f"127.0.0.1:{port}")) == 1
    assert f"cannot serve Riemann {kind} on 127.0.0.1:{port}" in failure_line(capsys)


def test_a_malformed_riemann_address_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(agent_args(tmp_path, "--riemann-udp", "nowhere")) == 1
    assert "address" in failure_line(capsys)


async def test_run_agent_takes_riemann_events_over_tcp_and_udp(start: Launch) -> None:
    options = AgentOptions(
        node_id="riemann",
        bind="127.0.0.1:0",
        http="127.0.0.1:0",
        config="local",
        riemann_tcp="127.0.0.1:0",
        riemann_udp="127.0.0.1:0",
    )
    agent = await start(options)
    assert agent.line.startswith(f"agent riemann listening gossip={agent.gossip} http=")
    words = dict(word.split("=", 1) for word in agent.line.split() if "=" in word)
    assert list(words) == ["gossip", "http", "riemann-tcp", "riemann-udp"]
    tcp_host, tcp_port = words["riemann-tcp"].rsplit(":", 1)
    udp_host, udp_port = words["riemann-udp"].rsplit(":", 1)
    assert int(tcp_port) > 0
    assert int(udp_port) > 0
    instance = agent.url + "/v1/services/web/instances/web-1"

    def send(transport: object, state: str) -> None:
        with RiemannClient(transport) as client:
            client.event(host="web-1", service="web", state=state, metric_f=2.5)

    async with aiohttp.ClientSession() as session:
        async with session.put(instance, json={"address": "10.0.0.1", "port": 80}) as response:
            assert response.status == 200
        await asyncio.to_thread(send, TCPTransport(tcp_host, int(tcp_port), PATIENCE), "warning")

        async def health(wanted: str) -> bool:
            async with session.get(instance) as response:
                shown = (await response.json())["instance"]
            return bool(shown["health"] == wanted and shown["last_event"]["metric"] == 2.5)

        assert await health("warning")  # TCP answers once the event is recorded
        await asyncio.to_thread(send, UDPTransport(udp_host, int(udp_port)), "critical")
        await eventually(lambda: health("critical"), "the UDP event is recorded")
        async with session.get(agent.url + "/metrics") as response:
            text = await response.text()
    assert 'crdtgossip_riemann_events_accepted_total{transport="tcp"} 1' in text
    assert 'crdtgossip_riemann_events_accepted_total{transport="udp"} 1' in text
    agent.stop.set()
    await asyncio.wait_for(agent.task, PATIENCE)
    with socket.socket() as probe:  # the TCP listener is closed with the agent
        assert probe.connect_ex((tcp_host, int(tcp_port))) != 0


async def test_riemann_beyond_loopback_with_tokens_warns(
    start: Launch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    options = AgentOptions(
        node_id="exposed",
        bind="127.0.0.1:0",
        http="127.0.0.1:0",
        config="local",
        token=token,
        riemann_udp="0.0.0.0:0",
    )
    await start(options)
    err = capsys.readouterr().err
    assert "warning: --riemann-udp 0.0.0.0:0 listens beyond this machine" in err
    assert "(--token and --tokens do not apply to it)" in err


async def test_riemann_on_loopback_does_not_warn(
    start: Launch, capsys: pytest.CaptureFixture[str]
) -> None:
    options = AgentOptions(
        node_id="quiet", bind="127.0.0.1:0", http="127.0.0.1:0", riemann_tcp="127.0.0.1:0"
    )
    await start(options)
    assert "warning" not in capsys.readouterr().err
