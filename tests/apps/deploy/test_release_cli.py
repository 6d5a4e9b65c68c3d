"""``deploy plan|diff|compare`` and the release flags, against a running agent.

The scenario of the docs: three releases across staging and prod, the third with a
regression; the compare gate fails it; ``deploy plan --at`` before the third brings
prod back.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from crdtgossip.apps.deploy.cli import run
from crdtgossip.apps.deploy.release_cli import EXIT_REGRESSION, parse_moment, parse_share
from tests.apps.deploy.conftest import TOKEN
from tests.apps.deploy.test_cli import parse


def test_times_and_shares_parse() -> None:
    assert parse_moment("1700000000.5") == 1700000000.5
    assert parse_moment("2023-11-14T22:13:20") == 1700000000.0
    assert parse_moment("2023-11-14T23:13:20+01:00") == 1700000000.0
    assert parse_share("10%") == pytest.approx(0.1)
    assert parse_share("0.25") == 0.25
    for bad in ("soon", "-5", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_moment(bad)
    for bad in ("ten", "-1%", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_share(bad)


def send(url: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url + path,
        method=method,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        found: dict[str, Any] = json.load(reply)
        return found


def latencies(url: str, instance: str, values: list[float]) -> None:
    for value in values:
        event = {"host": instance, "service": "web", "state": "ok", "metric": value}
        send(url, "POST", "/v1/events", {**event, "tags": ["metric:latency"]})


def test_the_release_scenario(
    threaded_agent: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    auth = f"--agent {threaded_agent} --token {token}"

    def cli(line: str) -> tuple[int, str]:
        status = run(parse(f"deploy {line.replace('AUTH', auth)}"))
        return status, capsys.readouterr().out

    for env, instance in (("staging", "web-s"), ("prod", "web-1")):
        assert (
            cli(
                f"register AUTH --service web --instance {instance} --address h --port 1"
                f" --env {env}"
            )[0]
            == 0
        )
    steady = [10.0 + number % 5 for number in range(50)]
    # 1 and 2: 1.2.3 to staging, then to prod, with its build and who shipped it.
    assert cli("release AUTH --env staging --service web --version 1.2.3 --build 41")[0] == 0
    status, out = cli(
        "release AUTH --env prod --service web --version 1.2.3 --build 41 --commit abc"
        " --url https://ci.example/41 --initiator ci --started 1700000000 --finished 1700000060"
    )
    assert status == 0
    assert out.startswith("released web 1.2.3 in prod at ")
    latencies(threaded_agent, "web-1", steady)
    before_third = time.time()
    # 3: 1.2.4 to prod, 50% slower.
    assert cli("release AUTH --env prod --service web --version 1.2.4 --build 42")[0] == 0
    latencies(threaded_agent, "web-1", [value * 1.5 for value in steady])

    gate = (
        "compare AUTH --env prod --service web --baseline 1.2.3 --candidate 1.2.4"
        " --metric latency --max-regression 10%"
    )
    status, out = cli(gate)
    assert status == EXIT_REGRESSION, out
    assert "REGRESSION" in out
    assert "p99 regression" in out
    status, out = cli(gate.replace("10%", "60%"))
    assert status == 0, out

    status, out = cli(f"plan AUTH --env prod --at {before_third} --json")
    assert status == 0
    plan = json.loads(out)
    assert plan["changes"] == [
        {
            "service": "web",
            "instance": None,
            "from": "1.2.4",
            "to": "1.2.3",
            "build": "41",
            "commit": "abc",
        }
    ]
    status, out = cli(f"plan AUTH --env prod --at {before_third}")
    assert out.strip() == "web: 1.2.4 -> 1.2.3 (build 41, commit abc)"

    status, out = cli("diff AUTH --from staging --to prod")
    assert (status, out.strip()) == (0, "web: 1.2.4 -> 1.2.3 (build 41)")
    # Bring prod back as the plan says: the diff is empty and prod's plan is too.
    assert cli("release AUTH --env prod --service web --version 1.2.3 --build 41")[0] == 0
    status, out = cli("diff AUTH --from staging --to prod --json")
    assert json.loads(out)["changes"] == []
    status, out = cli(f"plan AUTH --env prod --at {before_third}")
    assert out.strip() == f"prod runs what it ran at {before_third:.3f}"


def test_compare_without_data_fails_the_gate(
    threaded_agent: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = (
        f"deploy compare --agent {threaded_agent} --env prod --service web --baseline 1"
        " --candidate 2 --json"
    )
    assert run(parse(line)) == EXIT_REGRESSION
    found = json.loads(capsys.readouterr().out)
    assert found["passed"] is False
    assert found["verdicts"]["p50"] == "no data"


def test_a_plan_for_an_unknown_env_is_one_error_line(
    threaded_agent: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(parse(f"deploy plan --agent {threaded_agent} --env nowhere --at 5")) == 1
    captured = capsys.readouterr()
    assert "no release was ever recorded in env 'nowhere'" in captured.err
    assert len(captured.err.splitlines()) == 1
