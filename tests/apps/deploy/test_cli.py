"""``crdtgossip deploy``: the contract's flags, one line out, one line on failure."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from crdtgossip.apps.deploy.cli import add_deploy_command, run
from tests.apps.deploy.conftest import TOKEN


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="crdtgossip")
    add_deploy_command(top.add_subparsers(dest="command", required=True))
    return top


def parse(line: str) -> argparse.Namespace:
    return parser().parse_args(line.split())


def test_the_contract_lines_parse() -> None:
    args = parse(
        "deploy register --agent http://a:1 --service web --instance web-1 --address 10.0.0.1"
        " --port 80 --env prod --tag blue --tag v2"
    )
    assert (args.action, args.agent, args.service, args.instance) == (
        "register",
        "http://a:1",
        "web",
        "web-1",
    )
    assert (args.address, args.port, args.env, args.tag) == ("10.0.0.1", 80, "prod", ["blue", "v2"])
    assert args.run is run
    for action in ("deregister", "drain", "undrain"):
        args = parse(f"deploy {action} --agent http://a:1 --service web --instance web-1")
        assert (args.action, args.service, args.instance, args.run) == (action, "web", "web-1", run)
    args = parse(
        "deploy release --agent http://a:1 --env prod --service web --version 1.2"
        " --build 7 --commit abc"
    )
    assert (args.env, args.service, args.version, args.build, args.commit) == (
        "prod",
        "web",
        "1.2",
        "7",
        "abc",
    )


def test_the_additions_parse() -> None:
    args = parse(
        "deploy register --agent a:1 --service s --instance i --address h --port 1"
        " --meta zone=a --meta note=x=y --ttl 30 --token /etc/t"
    )
    assert (args.meta, args.ttl, args.token) == (
        [("zone", "a"), ("note", "x=y")],
        30.0,
        Path("/etc/t"),
    )
    args = parse(
        "deploy drain --agent a:1 --service s --instance i --reason up --timeout 5 --grace 2"
    )
    assert (args.reason, args.timeout, args.grace) == ("up", 5.0, 2.0)
    args = parse("deploy drain --agent a:1 --service s --instance i")
    assert (args.reason, args.timeout, args.grace) == (None, 60.0, 0.0)
    assert (args.renderer, args.no_confirm) == ([], False)


def test_the_agent_defaults_to_the_agents_own_default_address() -> None:
    assert parse("deploy deregister --service s --instance i").agent == "127.0.0.1:7700"


@pytest.mark.parametrize(
    "line",
    [
        "deploy",
        "deploy launch --agent a:1",
        "deploy register --agent a:1 --service s --instance i --address h",
        "deploy register --agent a:1 --service s --instance i --address h --port 0",
        "deploy register --agent a:1 --service s --instance i --address h --port http",
        "deploy register --agent a:1 --service s --instance i --address h --port 1 --meta novalue",
        "deploy deregister --agent a:1 --instance i",
        "deploy drain --agent a:1 --service s --instance i --grace -1",
        "deploy release --agent a:1 --env prod --service web",
    ],
)
def test_missing_or_bad_flags_exit_2(line: str) -> None:
    with pytest.raises(SystemExit) as caught:
        parse(line)
    assert caught.value.code == 2


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def test_hooks_against_a_running_agent(
    threaded_agent: str, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    auth = f"--agent {threaded_agent} --token {token_file}"
    where = "--service web --instance web-1"
    steps = [
        (
            f"deploy register {auth} {where} --address 10.0.0.1 --port 80 --env prod --tag b",
            "registered web/web-1 at 10.0.0.1:80 (env prod)",
        ),
        (f"deploy undrain {auth} {where}", "undrained web/web-1"),
        (
            f"deploy release {auth} --env prod --service web --version 1.4 --build 12",
            "released web 1.4 in prod at ",
        ),
        (f"deploy deregister {auth} {where}", "deregistered web/web-1"),
    ]
    for line, expected in steps:
        assert run(parse(line)) == 0
        captured = capsys.readouterr()
        assert one_line(captured.out).startswith(expected)
        assert captured.err == ""


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("deploy deregister --agent {url} --token {token} --service web --instance nope", "404"),
        ("deploy undrain --agent {url} --service web --instance nope", "401"),
        (
            "deploy release --agent {url} --token {token} --env prod --service web --version ''",
            "400",
        ),
        ("deploy undrain --agent http://127.0.0.1:1 --service s --instance i", "cannot reach"),
        ("deploy undrain --agent ftp://x --service s --instance i", "http"),
        ("deploy undrain --agent {url} --token /no/such/file --service s --instance i", "token"),
    ],
)
def test_failures_print_one_line_and_exit_1(
    threaded_agent: str,
    token_file: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
    message: str,
) -> None:
    argv = line.format(url=threaded_agent, token=token_file).split()
    argv = [word.replace("''", "") for word in argv]
    assert run(parser().parse_args(argv)) == 1
    captured = capsys.readouterr()
    error = one_line(captured.err)
    assert error.startswith("crdtgossip: error: ")
    assert message in error
    assert captured.out == ""


def test_drain_against_a_single_agent_succeeds(
    threaded_agent: str, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    auth = f"--agent {threaded_agent} --token {token_file}"
    where = "--service web --instance web-1"
    assert run(parse(f"deploy register {auth} {where} --address h --port 1")) == 0
    capsys.readouterr()
    assert run(parse(f"deploy drain {auth} {where} --reason up --grace 0.01")) == 0
    assert one_line(capsys.readouterr().out).startswith("drained web/web-1: a majority has it")


def test_drain_names_the_renderers_that_did_not_confirm(
    threaded_agent: str, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    auth = f"--agent {threaded_agent} --token {token_file}"
    where = "--service web --instance web-1"
    assert run(parse(f"deploy register {auth} {where} --address h --port 1")) == 0
    capsys.readouterr()
    assert run(parse(f"deploy drain {auth} {where} --renderer lb-9 --timeout 0.3")) == 1
    captured = capsys.readouterr()
    error = one_line(captured.err)
    assert "not confirmed by the load balancers" in error
    assert "lb-9 never reported" in error
    assert captured.out == ""
    # Without renderers to wait for, the drain says so.
    assert run(parse(f"deploy drain {auth} {where}")) == 0
    assert "no renderer has reported" in one_line(capsys.readouterr().out)
    assert run(parse(f"deploy drain {auth} {where} --no-confirm --renderer lb-9")) == 0
    assert one_line(capsys.readouterr().out) == "drained web/web-1: a majority has it"
