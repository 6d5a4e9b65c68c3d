"""``crdtgossip deploy audit`` against a whole agent with named tokens."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from crdtgossip.apps.deploy.audit_cli import audit_lines
from crdtgossip.apps.deploy.cli import add_deploy_command, run
from tests.apps.deploy.scoped_agent import CI_TOKEN, VIEWER_TOKEN, scoped_agent

__all__ = ["scoped_agent"]  # the fixture, imported to be found


def parse(line: str) -> argparse.Namespace:
    top = argparse.ArgumentParser(prog="crdtgossip")
    add_deploy_command(top.add_subparsers(dest="command", required=True))
    return top.parse_args(line.split())


def token(tmp_path: Path, name: str, secret: str) -> Path:
    path = tmp_path / name
    path.write_text(secret + "\n")
    return path


def test_audit_shows_each_step_with_its_token(
    scoped_agent: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ci, viewer = token(tmp_path, "ci", CI_TOKEN), token(tmp_path, "viewer", VIEWER_TOKEN)
    release = f"deploy release --agent {scoped_agent} --env prod --service web --version 1.2.4"
    assert run(parse(f"{release} --token {ci} --build 88")) == 0
    assert run(parse(f"{release} --token {viewer}")) == 1
    assert "lacks scope 'deploy'" in capsys.readouterr().err
    assert run(parse(f"deploy audit --agent {scoped_agent} --token {viewer}")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert (
        " ci 200 PUT /v1/releases/prod/web via audited from 127.0.0.1  version=1.2.4" in (lines[0])
    )
    assert " viewer 403 PUT /v1/releases/prod/web via audited" in lines[1]
    both = f"deploy audit --agent {scoped_agent} --token {viewer} --who ci --who viewer"
    assert run(parse(both)) == 0
    assert capsys.readouterr().out.splitlines() == lines  # one timeline of both tokens
    line = f"deploy audit --agent {scoped_agent} --token {viewer} --who ci --json"
    assert run(parse(line)) == 0
    [entry] = json.loads(capsys.readouterr().out)["audit"]
    assert entry["summary"] == "version=1.2.4 build=88"
    assert run(parse(f"deploy audit --agent {scoped_agent} --who ci")) == 1  # reads need read
    assert "401" in capsys.readouterr().err
    assert run(parse(f"deploy audit --agent {scoped_agent} --token {ci} --since 2999-01-01")) == 0
    assert capsys.readouterr().out == "no audit entries\n"


def test_audit_flags_parse() -> None:
    args = parse("deploy audit --since 10 --who ci --from-agent a-1 --limit 5 --json")
    assert (args.since, args.who, args.from_agent, args.limit, args.json) == (
        10.0,
        ["ci"],
        "a-1",
        5,
        True,
    )
    with pytest.raises(SystemExit):
        parse("deploy audit --limit 0")


def test_audit_lines_of_an_entry() -> None:
    entry = {
        "time": 0.0,
        "agent": "a",
        "seq": 1,
        "who": "ci",
        "method": "PUT",
        "path": "/v1/x",
        "status": 200,
        "summary": "",
        "peer": "",
    }
    assert audit_lines([entry]) == "1970-01-01T00:00:00+00:00 ci 200 PUT /v1/x via a from ?"
