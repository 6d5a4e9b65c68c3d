"""Three real agent processes on loopback, talking gossip and HTTP.

Each agent binds port 0 for gossip and HTTP and announces the ports it got, so no port
is guessed. Every wait is bounded; every process is killed at the end, pass or fail.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: The repository root, for the child processes' import path.
ROOT = Path(__file__).resolve().parents[3]

#: How the tests run ``crdtgossip``, start an agent, and run the deploy hooks (through
#: ``python -m crdtgossip.apps.deploy``, which parses the flags of ``crdtgossip deploy``).
CLI_COMMAND = (sys.executable, "-m", "crdtgossip.cli")
AGENT_COMMAND = (*CLI_COMMAND, "agent")
DEPLOY_COMMAND = (sys.executable, "-m", "crdtgossip.apps.deploy", "deploy")

#: Failure guards, not timing expectations: an agent starts in about a second and the
#: local preset declares a silent member dead within several.
START_PATIENCE = 60.0
PATIENCE = 60.0
POLL = 0.1

#: A health event's ttl in these tests, in seconds: short, so expiry is seen quickly.
SHORT_TTL = 1.0


@dataclass
class Agent:
    """A running agent process and what it announced."""

    node_id: str
    process: subprocess.Popen[str]
    gossip: str
    url: str
    log: Path
    #: Every ``name=value`` of the ready line (``riemann-tcp`` ... when asked for).
    announced: dict[str, str] = field(default_factory=dict)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command of this package to its end, in the repository, its output kept."""
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        cwd=ROOT,
        env=_environment(),
        check=False,
    )


@dataclass
class Starting:
    """An agent process started, not yet known to be ready."""

    node_id: str
    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    log: Path


def spawn(
    node_id: str, directory: Path, join: Sequence[str] = (), extra: Sequence[str] = ()
) -> Starting:
    """Start an agent process (``extra``: more flags); :func:`ready` waits for it."""
    log = directory / f"{node_id}.stderr"
    command = [*AGENT_COMMAND, "--node-id", node_id, "--bind", "127.0.0.1:0"]
    command += ["--http", "127.0.0.1:0", "--config", "local", *extra]
    for address in join:
        command += ["--join", address]
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, env=_environment()
        )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:  # ends at the process's end of output
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return Starting(node_id, process, lines, log)


def ready(starting: Starting) -> Agent:
    """Wait (bounded) for an agent's ready line; kill it if it never comes."""
    try:
        line = starting.lines.get(timeout=START_PATIENCE)
    except queue.Empty:
        starting.process.kill()
        starting.process.wait(timeout=10)
        pytest.fail(f"agent {starting.node_id} never got ready: {starting.log.read_text()}")
    assert line.startswith(f"agent {starting.node_id} listening "), line
    words = dict(word.split("=", 1) for word in line.split() if "=" in word)
    return Agent(
        starting.node_id,
        starting.process,
        words["gossip"],
        f"http://{words['http']}",
        starting.log,
        words,
    )


def launch_all(
    directory: Path,
    node_ids: Sequence[str],
    join: Sequence[str],
    into: list[Agent],
    extra: Sequence[str] = (),
) -> None:
    """Start agents side by side; each joins ``join`` (with the flags ``extra``); ready
    ones go into ``into``.

    A process that started is killed at the end even if another never got ready.
    """
    starting = [spawn(node_id, directory, join, extra) for node_id in node_ids]
    try:
        for pending in starting:
            into.append(ready(pending))
    finally:
        known = {agent.process for agent in into}
        for pending in starting:
            if pending.process not in known:
                pending.process.kill()
                pending.process.wait(timeout=10)


def stop_all(agents: Sequence[Agent]) -> None:
    for agent in agents:
        if agent.process.poll() is None:
            agent.process.kill()
        agent.process.wait(timeout=10)


def request(
    method: str, url: str, body: Any = None, *, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    """One HTTP request: (status, JSON reply); error statuses too."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    call = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def eventually(condition: Callable[[], bool], what: str, patience: float = PATIENCE) -> None:
    deadline = time.monotonic() + patience
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(POLL)


def statuses(agent: Agent) -> dict[str, str]:
    _, reply = request("GET", agent.url + "/v1/members")
    return {member["node_id"]: member["status"] for member in reply["members"]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Agent]]:
    directory = tmp_path_factory.mktemp("agents")
    agents: list[Agent] = []
    try:
        launch_all(directory, ["a"], [], agents)
        launch_all(directory, ["b", "c"], [agents[0].gossip], agents)
        names = {"a", "b", "c"}
        eventually(
            lambda: all(
                {n for n, s in statuses(agent).items() if s == "alive"} == names for agent in agents
            ),
            "every agent sees the three alive",
        )
        yield agents
    finally:
        stop_all(agents)


def instances(agent: Agent, service: str) -> list[dict[str, Any]]:
    status, reply = request("GET", f"{agent.url}/v1/services/{service}")
    return list(reply["instances"]) if status == 200 else []


def test_register_through_one_read_through_another(cluster: list[Agent]) -> None:
    a, b, c = cluster
    body = {"address": "10.0.0.1", "port": 8080, "env": "prod", "tags": ["blue"]}
    status, reply = request("PUT", f"{a.url}/v1/services/web/instances/web-1", body)
    assert status == 200, reply
    eventually(lambda: [i["id"] for i in instances(c, "web")] == ["web-1"], "c sees web-1")
    seen = instances(c, "web")[0]
    assert (seen["address"], seen["port"], seen["env"], seen["tags"]) == (
        "10.0.0.1",
        8080,
        "prod",
        ["blue"],
    )
    # The deploy command, as a provisioning tool would run it, then read elsewhere.
    flags = ["--service", "web", "--instance", "web-2", "--address", "10.0.0.2", "--port", "8080"]
    result = _run(*DEPLOY_COMMAND, "register", "--agent", b.url, *flags, "--env", "prod")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("registered web/web-2")
    eventually(lambda: len(instances(a, "web")) == 2, "a sees web-2")


def test_health_event_expires_after_its_ttl(cluster: list[Agent]) -> None:
    a, b, c = cluster
    body = {"address": "10.0.0.3", "port": 9000}
    assert request("PUT", f"{a.url}/v1/services/api/instances/api-1", body)[0] == 200
    eventually(lambda: len(instances(b, "api")) == 1, "b sees api-1")
    event = {"host": "api-1", "service": "api", "state": "ok", "ttl": SHORT_TTL}
    status, reply = request("POST", f"{b.url}/v1/events", event)
    assert status == 200, reply
    assert reply["health"] == "passing"
    # Only the event can make api-1 critical (no event at all reads as passing), so
    # this shows the event reached c and expired there.
    eventually(
        lambda: [i["health"] for i in instances(c, "api")] == ["critical"],
        "c shows api-1 critical once the event's ttl has passed",
    )
    # Every agent shows the same expired event, as Riemann's index re-emits it.
    eventually(
        lambda: all(instances(x, "api")[0]["health"] == "critical" for x in cluster),
        "every agent shows api-1 critical",
    )
    shown = [instances(x, "api")[0]["last_event"] for x in cluster]
    assert shown[0]["state"] == "expired"
    assert shown[0]["expired_state"] == "ok"
    assert shown[0]["time"] == reply["event"]["time"] + SHORT_TTL
    assert shown[1] == shown[0] == shown[2]


def test_release_is_queryable_at_a_past_time(cluster: list[Agent]) -> None:
    a, b, c = cluster
    status, first = request("PUT", f"{a.url}/v1/releases/prod/shop", {"version": "1.0"})
    assert status == 200, first
    t1 = first["release"]["time"]
    eventually(lambda: time.time() > t1 + 0.05, "the clock moves on")
    second = request("PUT", f"{b.url}/v1/releases/prod/shop", {"version": "1.1", "build": "9"})[1]
    t2 = second["release"]["time"]
    assert t2 > t1

    def current(at: str = "") -> Any:
        releases = request("GET", f"{c.url}/v1/releases{at}")[1]["releases"]
        return releases.get("prod", {}).get("shop", {}).get("current", {}).get("version")

    eventually(lambda: current() == "1.1", "c has both releases")
    assert current(f"?at={(t1 + t2) / 2}") == "1.0"
    assert current(f"?at={t1 - 1}") is None
    history = request("GET", f"{c.url}/v1/releases")[1]["releases"]["prod"]["shop"]["history"]
    assert [(r["version"], r["build"]) for r in history] == [("1.1", "9"), ("1.0", None)]


@pytest.mark.parametrize(
    ("method", "path", "raw", "status"),
    [
        ("PUT", "/v1/services/web/instances/x", b"{nope", 400),
        ("PUT", "/v1/services/web/instances/x", b'{"address": "h"}', 400),
        ("PUT", "/v1/services/web/instances/x", b'{"address": "h", "port": "80"}', 400),
        ("PUT", "/v1/services/web/instances/x", b'{"address": "h", "port": 1, "x": 1}', 400),
        ("PUT", "/v1/services/web/instances/x", b"[" + b" " * 70_000 + b"]", 413),
        ("POST", "/v1/events", b'{"host": "nobody", "service": "nothing", "state": "ok"}', 404),
        ("GET", "/v1/services/nothing", None, 404),
        ("GET", "/v1/services?index=x", None, 400),
        ("GET", "/v1/releases?at=then", None, 400),
        ("DELETE", "/v1/members", None, 405),
    ],
)
def test_malformed_requests_get_4xx_json(
    cluster: list[Agent], method: str, path: str, raw: bytes | None, status: int
) -> None:
    got, reply = request(method, cluster[1].url + path, raw=raw)
    assert got == status
    assert isinstance(reply["error"], str)
    assert reply["error"]


def test_killed_agent_is_marked_dead_and_a_leaving_one_left(
    cluster: list[Agent], tmp_path: Path
) -> None:
    a = cluster[0]
    extra: list[Agent] = []
    try:
        launch_all(tmp_path, ["doomed", "leaver"], [a.gossip], extra)
        eventually(
            lambda: statuses(a).get("doomed") == "alive" and statuses(a).get("leaver") == "alive",
            "a sees the two new agents alive",
        )
        extra[0].process.kill()  # SIGKILL: no goodbye
        extra[1].process.send_signal(signal.SIGTERM)  # graceful: says goodbye
        assert extra[1].process.wait(timeout=PATIENCE) == 0, extra[1].log.read_text()
        eventually(lambda: statuses(a).get("leaver") == "left", "a marks the leaver left")
        eventually(lambda: statuses(cluster[2]).get("doomed") == "dead", "c marks doomed dead")
        eventually(lambda: statuses(a).get("doomed") == "dead", "a marks doomed dead")
    finally:
        stop_all(extra)


def _binary_or_skip(name: str) -> None:
    """The real proxy binary; missing is a skip locally and a failure in CI."""
    import shutil

    if shutil.which(name) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed: .ci/run must install it")
        pytest.skip(f"{name} is not installed; CI installs it")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return _run(*CLI_COMMAND, *args)


def test_drain_takes_an_instance_out_of_real_nginx_and_haproxy_configs(
    cluster: list[Agent], tmp_path: Path
) -> None:
    """Register through one agent, drain through another, render from the third: the
    drained instance leaves both configs, and the real binaries accept both."""
    _binary_or_skip("nginx")
    _binary_or_skip("haproxy")
    a, b, c = cluster
    for index in (1, 2, 3):
        body = {"address": f"10.1.0.{index}", "port": 8000 + index, "env": "prod"}
        status, reply = request("PUT", f"{a.url}/v1/services/shop/instances/shop-{index}", body)
        assert status == 200, reply
    eventually(lambda: len(instances(c, "shop")) == 3, "c sees the three shop instances")

    def render(fmt: str) -> str:
        out = tmp_path / f"shop.{fmt}.conf"
        result = _cli("render", "--agent", c.url, "--format", fmt, "--out", str(out), "--once")
        assert result.returncode == 0, f"render {fmt} (checked by the real binary): {result.stderr}"
        return out.read_text()

    for fmt in ("nginx", "haproxy"):
        text = render(fmt)
        assert all(f"10.1.0.{index}:800{index}" in text for index in (1, 2, 3)), text

    drained = _cli("deploy", "drain", "--agent", b.url, "--service", "shop", "--instance", "shop-2")
    assert drained.returncode == 0, drained.stderr
    eventually(
        lambda: [i["id"] for i in _passing(c, "shop")] == ["shop-1", "shop-3"],
        "c no longer passes the drained instance",
    )
    for fmt in ("nginx", "haproxy"):
        text = render(fmt)
        assert "10.1.0.2:8002" not in text, f"the drained instance is still in {fmt}: {text}"
        assert "10.1.0.1:8001" in text
        assert "10.1.0.3:8003" in text


def _passing(agent: Agent, service: str) -> list[dict[str, Any]]:
    status, reply = request("GET", f"{agent.url}/v1/services/{service}?passing=true")
    return list(reply["instances"]) if status == 200 else []
