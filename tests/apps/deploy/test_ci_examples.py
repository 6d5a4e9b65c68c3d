"""The CI examples of docs/apps/ci.rst, run as the CI runs them, against a real agent.

Every shell step of the GitHub Actions workflow and of the Jenkinsfile runs in order,
in a shell, with the variables the CI sets; ``make``, ``pip`` and the deploy script are
no-ops and ``crdtgossip`` runs this checkout. Then the releases and the audit record
they left are read back.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

from tests.apps.deploy.scoped_agent import CI_TOKEN, VIEWER_TOKEN, scoped_agent

__all__ = ["scoped_agent"]  # the fixture, imported to be found

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "docs" / "apps" / "ci"

#: A failure guard for one CI step, not a timing expectation.
STEP_PATIENCE = 60.0

_RUN = re.compile(r"^(?P<indent> *)(?:- )?run: ?(?P<rest>.*)$")


def workflow_steps(text: str) -> list[str]:
    """The ``run:`` scripts of a GitHub Actions workflow, in order."""
    lines = text.splitlines()
    steps: list[str] = []
    for index, line in enumerate(lines):
        match = _RUN.match(line)
        if match is None:
            continue
        if match["rest"].strip() != "|":
            steps.append(match["rest"])
            continue
        indent = len(match["indent"])
        body: list[str] = []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        steps.append(textwrap.dedent("\n".join(body)))
    return steps


def jenkins_steps(text: str) -> list[str]:
    """The ``sh`` scripts of a Jenkinsfile, in order (``'...'`` and ``'''...'''``)."""
    found = re.finditer(r"\bsh '''\n(?P<block>.*?)'''|\bsh '(?P<line>[^'\n]*)'", text, re.DOTALL)
    return [textwrap.dedent(m["block"]) if m["block"] is not None else m["line"] for m in found]


def workspace(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A job's working directory, and an environment whose PATH has the stand-ins."""
    bin_dir, work = tmp_path / "bin", tmp_path / "work"
    (work / "scripts").mkdir(parents=True)
    bin_dir.mkdir()
    shims = {
        "crdtgossip": f'#!/bin/sh\nexec "{sys.executable}" -m crdtgossip.cli "$@"\n',
        "make": "#!/bin/sh\nexit 0\n",
        "pip": "#!/bin/sh\nexit 0\n",
    }
    for name, script in shims.items():
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    deploy = work / "scripts" / "deploy.sh"
    deploy.write_text("#!/bin/sh\nexit 0\n")
    deploy.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
    }
    return work, env


def run_step(shell: list[str], script: str, work: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [*shell, script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_PATIENCE,
        check=False,
    )
    assert done.returncode == 0, f"step failed:\n{script}\n{done.stdout}\n{done.stderr}"


def read(url: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    with urllib.request.urlopen(request, timeout=STEP_PATIENCE) as response:
        return dict(json.load(response))


def check_records(agent: str, version: str, build: str, url: str, initiator: str) -> None:
    """What the three steps leave: the build in ``ci``, start and finish in ``prod``."""
    built = read(f"{agent}/v1/releases/ci/web")["current"]
    assert (built["version"], built["build"], built["url"]) == (version, build, url)
    assert built["initiator"] == initiator
    assert built["finished"] is not None
    history = read(f"{agent}/v1/releases/prod/web")["history"]
    finish, start = history
    assert start["version"] == finish["version"] == version
    assert start["finished"] is None
    assert finish["started"] == start["started"] is not None
    assert finish["finished"] >= finish["started"]
    audit = read(f"{agent}/v1/audit?who=ci")["audit"]
    assert [(e["method"], e["path"], e["status"]) for e in audit] == [
        ("PUT", "/v1/releases/ci/web", 200),
        ("PUT", "/v1/releases/prod/web", 200),
        ("PUT", "/v1/releases/prod/web", 200),
    ]


def test_the_github_actions_example(scoped_agent: str, tmp_path: Path) -> None:
    steps = workflow_steps((EXAMPLES / "github-actions.yml").read_text())
    assert sum("crdtgossip deploy release" in step for step in steps) == 3
    work, env = workspace(tmp_path)
    github_env = tmp_path / "github_env"
    github_env.touch()
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    env |= {
        "CRDTGOSSIP_AGENT": scoped_agent,  # the workflow's env, as GitHub expands it
        "SERVICE": "web",
        "DEPLOY_ENV": "prod",
        "VERSION": "v1.2.4",
        "CRDTGOSSIP_TOKEN": CI_TOKEN,
        "GITHUB_ENV": str(github_env),
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/web",
        "GITHUB_RUN_ID": "9001",
        "GITHUB_RUN_NUMBER": "88",
        "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
        "GITHUB_ACTOR": "alice",
    }
    for step in steps:
        # GitHub runs a step with `bash -e`, then adds $GITHUB_ENV's lines for the next.
        run_step(["bash", "-e", "-c"], step, work, env)
        for line in github_env.read_text().splitlines():
            name, _, value = line.partition("=")
            env[name] = value
    url = "https://github.com/acme/web/actions/runs/9001"
    check_records(scoped_agent, "v1.2.4", "88", url, "alice")


def test_the_jenkins_example(scoped_agent: str, tmp_path: Path) -> None:
    steps = jenkins_steps((EXAMPLES / "Jenkinsfile").read_text())
    assert sum("crdtgossip deploy release" in step for step in steps) == 3
    work, env = workspace(tmp_path)
    token = tmp_path / "secret-file"
    token.write_text(CI_TOKEN + "\n")
    env |= {
        "CRDTGOSSIP_AGENT": scoped_agent,  # the pipeline's environment block
        "SERVICE": "web",
        "DEPLOY_ENV": "prod",
        "VERSION": "v2.0.0",
        "CRDTGOSSIP_TOKEN_FILE": str(token),  # withCredentials
        "BUILD_NUMBER": "42",
        "GIT_COMMIT": "fedcba9876543210fedcba9876543210fedcba98",
        "BUILD_URL": "https://jenkins.example/job/web/42/",
    }
    for step in steps:
        run_step(["sh", "-xe", "-c"], step, work, env)  # how Jenkins runs an sh step
    check_records(scoped_agent, "v2.0.0", "42", "https://jenkins.example/job/web/42/", "jenkins")


def test_the_step_readers() -> None:
    workflow = "steps:\n  - run: one\n  - name: x\n    run: |\n      a\n\n      b\n  - run: two\n"
    assert workflow_steps(workflow) == ["one", "a\n\nb", "two"]
    jenkinsfile = "sh 'one'\n  sh '''\n    a\n    b\n  '''\nsh \"x\"\n"
    assert jenkins_steps(jenkinsfile) == ["one", "a\nb\n"]
