"""``crdtgossip render``: the subcommand's options, and run() with --once."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from crdtgossip.apps.lb.cli import MAX_TEMPLATE_BYTES, add_render_command, run
from crdtgossip.errors import ConfigError, TransportError
from tests.apps.lb.fake_agent import GUARD, FakeAgent, instance


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="crdtgossip")
    add_render_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["render", *argv])


async def run_in_thread(args: argparse.Namespace) -> int:
    """run() calls asyncio.run, so it gets a thread of its own; the fake agent keeps
    serving on this test's loop."""
    return await asyncio.wait_for(asyncio.to_thread(run, args), GUARD)


def test_options_and_defaults() -> None:
    args = parse("--agent", "http://127.0.0.1:8500", "--format", "nginx", "--out", "/x/u.inc")
    assert args.run is run
    assert (args.agent, args.format, args.out) == (
        "http://127.0.0.1:8500",
        "nginx",
        Path("/x/u.inc"),
    )
    assert (args.template, args.check, args.reload, args.once) == (None, None, None, False)
    assert args.wait == "1s:4s"


def test_the_agent_defaults_to_the_agents_own_default_address(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse("--format", "nginx", "--out", "/x").agent == "127.0.0.1:7700"
    with pytest.raises(SystemExit):
        parse("--help")
    text = capsys.readouterr().out
    assert "7700" in text
    assert "8500" not in text


@pytest.mark.parametrize("missing", ["--format", "--out"])
def test_required_options(missing: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = {"--agent": "http://h:1", "--format": "nginx", "--out": "/x"}
    del argv[missing]
    with pytest.raises(SystemExit) as exit_info:
        parse(*[part for pair in argv.items() for part in pair])
    assert exit_info.value.code == 2
    assert missing in capsys.readouterr().err


def test_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = capsys.readouterr().out
    for option in (
        "--agent",
        "--format",
        "--template",
        "--out",
        "--check",
        "--reload",
        "--wait",
        "--once",
    ):
        assert option in text


async def test_once_renders_installs_and_reloads(agent: FakeAgent, tmp_path: Path) -> None:
    agent.set("web", [instance("web-1", "10.0.0.1", 80)])
    agent.set("idle", [])
    out = tmp_path / "upstreams.inc"
    log = tmp_path / "reloads.log"
    args = parse(
        "--agent",
        agent.url,
        "--format",
        "nginx",
        "--out",
        str(out),
        "--once",
        "--check",
        "grep -q 'upstream idle' {path}",
        "--reload",
        f"echo r >> {log}",
    )
    assert await run_in_thread(args) == 0
    assert "server 10.0.0.1:80;" in out.read_text()
    assert log.read_text() == "r\n"
    # Again, unchanged: no write, no reload.
    assert await run_in_thread(args) == 0
    assert log.read_text() == "r\n"


async def test_once_with_a_template(agent: FakeAgent, tmp_path: Path) -> None:
    agent.set("web", [instance("web-1", "10.0.0.1", 80)])
    template = tmp_path / "t.j2"
    template.write_text("{% for n in services %}{{ n }}\n{% endfor %}")
    out = tmp_path / "out.txt"
    args = parse(
        "--agent",
        agent.url,
        "--format",
        "template",
        "--template",
        str(template),
        "--out",
        str(out),
        "--once",
    )
    assert await run_in_thread(args) == 0
    assert out.read_text() == "web\n"


async def test_once_with_a_refused_check_fails_and_keeps_the_file(
    agent: FakeAgent, tmp_path: Path
) -> None:
    agent.set("web", [instance("web-1", "10.0.0.1", 80)])
    out = tmp_path / "upstreams.inc"
    out.write_text("# old\n")
    args = parse(
        "--agent",
        agent.url,
        "--format",
        "nginx",
        "--out",
        str(out),
        "--once",
        "--check",
        "echo 'emerg: no' >&2; exit 1",
    )
    with pytest.raises(ConfigError, match=r"--check refused .* left unchanged: emerg: no$"):
        await run_in_thread(args)
    assert out.read_text() == "# old\n"


async def test_once_with_an_unreachable_agent_is_a_transport_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = parse(
        "--agent",
        f"http://127.0.0.1:{port}",
        "--format",
        "nginx",
        "--out",
        str(tmp_path / "u.inc"),
        "--once",
    )
    with pytest.raises(TransportError, match=f"agent http://127.0.0.1:{port} unreachable"):
        await run_in_thread(args)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "caddy"], "unknown format 'caddy'"),
        (["--format", "template"], "needs --template FILE"),
        (["--format", "template", "--template", "/no/such.j2"], "--template /no/such.j2"),
        (["--format", "nginx", "--template", "/no/such.j2"], "--template /no/such.j2"),
        (["--format", "nginx", "--wait", "5:1"], "--wait"),
        (["--format", "nginx", "--out", "/no/such/dir/u.inc"], "does not exist"),
        (["--format", "nginx", "--agent", "ftp://x"], "--agent"),
    ],
)
def test_bad_options_are_config_errors(extra: list[str], message: str, tmp_path: Path) -> None:
    argv = {"--agent": "http://127.0.0.1:1", "--out": str(tmp_path / "u.inc"), "--once": None}
    for key, value in zip(extra[::2], extra[1::2], strict=True):
        argv[key] = value
    flat = [part for key, value in argv.items() for part in (key, value) if part is not None]
    with pytest.raises(ConfigError, match=message):
        run(parse(*flat))


def test_an_oversized_template_is_refused(tmp_path: Path) -> None:
    template = tmp_path / "big.j2"
    template.write_bytes(b"x" * (MAX_TEMPLATE_BYTES + 1))
    args = parse(
        "--agent",
        "http://127.0.0.1:1",
        "--format",
        "template",
        "--template",
        str(template),
        "--out",
        str(tmp_path / "u"),
        "--once",
    )
    with pytest.raises(ConfigError, match="larger than"):
        run(args)


async def crdtgossip(*argv: str) -> asyncio.subprocess.Process:
    """The real ``crdtgossip`` command, as a process."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crdtgossip.cli", *argv, stderr=asyncio.subprocess.PIPE
    )


async def test_the_running_command_follows_changes_and_exits_0_on_sigterm(
    agent: FakeAgent, tmp_path: Path
) -> None:
    agent.set("web", [instance("web-1", "10.0.0.1", 80)])
    out = tmp_path / "upstreams.inc"
    process = await crdtgossip(
        "render",
        "--agent",
        agent.url,
        "--format",
        "nginx",
        "--out",
        str(out),
        "--check",
        "true",
        "--wait",
        "0:0",
    )
    try:
        async with asyncio.timeout(GUARD):
            while not out.exists():
                await asyncio.sleep(0.02)
            agent.set("web", [instance("web-2", "10.0.0.2", 80)])
            while "10.0.0.2:80" not in out.read_text():
                await asyncio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), GUARD)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    lines = stderr.decode().splitlines()
    assert len(lines) == 2
    for line in lines:
        # A timestamp, then the line.
        assert re.fullmatch(
            rf"\d{{4}}-\d\d-\d\d [\d:,]+ crdtgossip render: INFO {re.escape(str(out))} installed",
            line,
        ), line


async def test_a_failed_once_is_one_line_on_stderr_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await crdtgossip(
        "render",
        "--agent",
        f"http://127.0.0.1:{port}",
        "--format",
        "nginx",
        "--out",
        str(tmp_path / "u.inc"),
        "--once",
    )
    _, stderr = await asyncio.wait_for(process.communicate(), GUARD)
    assert process.returncode == 1
    (line,) = stderr.decode().splitlines()
    assert line.startswith(f"crdtgossip: error: agent http://127.0.0.1:{port} unreachable after 4")


def test_a_bad_renderer_name_is_refused_before_anything_runs(tmp_path: Path) -> None:
    args = parse("--format", "nginx", "--out", str(tmp_path / "o"), "--name", "bad name!")
    with pytest.raises(ConfigError, match="--name"):
        run(args)
    assert not (tmp_path / "o").exists()


async def test_once_reports_only_when_named_and_no_report_sends_nothing(
    agent: FakeAgent, tmp_path: Path
) -> None:
    agent.set("web", [instance("web-1", "10.0.0.1", 80)])
    common = ("--agent", agent.url, "--format", "nginx", "--check", "true", "--once")
    out = str(tmp_path / "a.inc")
    assert await run_in_thread(parse(*common, "--out", out, "--name", "lb-a")) == 0
    assert [report["services"] for report in agent.reports["lb-a"]] == [{"web": 1}]
    out = str(tmp_path / "b.inc")
    assert await run_in_thread(parse(*common, "--out", out, "--name", "lb-b", "--no-report")) == 0
    # A one-shot run without --name is no standing renderer: it does not report.
    assert await run_in_thread(parse(*common, "--out", str(tmp_path / "c.inc"))) == 0
    assert list(agent.reports) == ["lb-a"]
