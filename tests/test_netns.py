"""Five real agents on five hosts of their own: a partition cut by a link, then healed.

Each agent runs in its own Linux network namespace with its own address; the hosts
share two bridges, {n1, n2, n3} on one and {n4, n5} on the other, joined by one veth
"trunk". Setting the trunk down splits the cluster into those two sides, exactly as a
failed switch uplink would; setting it up heals it.

All addresses (10.213.0.0/24) and both bridges live inside namespaces this test
creates (the bridges in a "switch" namespace of their own), so the host's network is
never touched and no packet leaves them. Every name carries the test's pid and a random
suffix, so parallel runs do not clash. Deleting the namespaces removes every link.

The test needs root and ``ip`` (iproute2); without them it is skipped, except in CI
(``CI=true``), where a missing capability fails it: CI runs as root with iproute2.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

#: The repository root, for the child processes' import path.
ROOT = Path(__file__).resolve().parents[1]

#: The script that performs HTTP requests from inside a namespace.
CLIENT = Path(__file__).resolve().with_name("netns_client.py")

#: The hosts' subnet: private (RFC 1918), and only ever configured inside the test's
#: own namespaces. Host ``nX`` gets ``10.213.0.X``.
SUBNET = "10.213.0"
PREFIX_LENGTH = 24

#: Every agent's gossip port: each host has its own network stack, so they can share it
#: (memberlist's and Serf's default port).
GOSSIP_PORT = 7946

#: The hosts, by node id; the index is the last byte of the address.
NODES = ("n1", "n2", "n3", "n4", "n5")

#: The two sides of the partition: which bridge each host is plugged into.
LEFT = ("n1", "n2", "n3")
RIGHT = ("n4", "n5")

#: Failure guards, not timing expectations. An agent starts in a second or two; the
#: local preset declares a silent member dead 3 to 18 s after it falls silent (suspicion
#: timeout between SuspicionMult x probe interval and 6 times that), and a healed side
#: is reconnected at the latest one reconnect interval (15 s) later. The whole test
#: takes 20 to 55 s.
START_PATIENCE = 30.0
PATIENCE = 45.0
POLL = 0.2

#: The longest one ``ip`` command or one HTTP round trip may take: they take
#: milliseconds; this only stops a hung tool from hanging the test run.
COMMAND_TIMEOUT = 15.0

#: Seconds a process gets to exit after SIGTERM before SIGKILL, and to be reaped after.
STOP_GRACE = 3.0


def _unavailable(reason: str) -> NoReturn:
    """Skip for a missing capability; in CI, where it must be there, fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"network namespaces unavailable in CI: {reason}")
    pytest.skip(f"network namespaces unavailable: {reason} (CI runs this test as root)")


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )


def _ip_or_fail(*args: str) -> None:
    result = _ip(*args)
    if result.returncode != 0:
        pytest.fail(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _ip_or_unavailable(*args: str) -> None:
    """An ``ip`` command whose failure means the kernel or the user lacks a capability
    (namespaces, bridges, veth pairs), not that the test is wrong."""
    result = _ip(*args)
    if result.returncode != 0:
        _unavailable(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _lines(stream: Any, into: queue.Queue[str | None]) -> None:
    """Copy a process's output lines into a queue; None marks its end."""
    for line in stream:
        into.put(line)
    into.put(None)


def _next_line(
    lines: queue.Queue[str | None],
    what: str,
    patience: float,
    detail: Callable[[], str] = str,
) -> str:
    """The process's next line, within ``patience`` s; a failure shows ``detail()``."""
    try:
        line = lines.get(timeout=patience)
    except queue.Empty:
        pytest.fail(f"{what}: no answer within {patience} s {detail()}")
    if line is None:
        pytest.fail(f"{what}: the process ended {detail()}")
    return line


@dataclass
class Host:
    """One namespace, with its agent and the client that talks to the agent."""

    node_id: str
    namespace: str
    address: str
    agent: subprocess.Popen[str] | None = None
    agent_lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    client: subprocess.Popen[str] | None = None
    client_lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    url: str = ""
    log: Path = Path()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One HTTP request to this host's agent, from inside its namespace."""
        assert self.client is not None
        assert self.client.stdin is not None
        self.client.stdin.write(
            json.dumps({"method": method, "url": self.url + path, "body": body})
        )
        self.client.stdin.write("\n")
        self.client.stdin.flush()
        answer = json.loads(
            _next_line(self.client_lines, f"{method} {path} on {self.node_id}", COMMAND_TIMEOUT)
        )
        if answer["status"] == 0:
            pytest.fail(f"{method} {path} on {self.node_id}: {answer['error']}: {self.stderr()}")
        return int(answer["status"]), answer["reply"]

    def stderr(self) -> str:
        return self.log.read_text() if self.log.is_file() else ""

    def statuses(self) -> dict[str, str]:
        status, reply = self.request("GET", "/v1/members")
        assert status == 200, reply
        return {member["node_id"]: member["status"] for member in reply["members"]}

    def instance_ids(self, service: str) -> list[str]:
        status, reply = self.request("GET", f"/v1/services/{service}")
        return sorted(i["id"] for i in reply["instances"]) if status == 200 else []


class Lab:
    """The namespaces, links and processes of one test; :meth:`close` removes them all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # pid + random suffix: unique across parallel runs and leftovers of killed ones.
        self.prefix = f"cgt-{os.getpid()}-{secrets.token_hex(3)}"
        self.switch = f"{self.prefix}-sw"
        self.namespaces: list[str] = []
        self.readers: list[threading.Thread] = []
        self.hosts = {
            node_id: Host(node_id, f"{self.prefix}-{node_id}", f"{SUBNET}.{index}")
            for index, node_id in enumerate(NODES, start=1)
        }

    def _add_namespace(self, name: str) -> None:
        _ip_or_unavailable("netns", "add", name)
        self.namespaces.append(name)  # recorded at once, so close() removes it
        _ip_or_fail("-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        """Create the switch with its two bridges and trunk, and plug in every host."""
        self._add_namespace(self.switch)
        sw = ("-n", self.switch)
        for bridge in ("br-left", "br-right"):
            _ip_or_unavailable(*sw, "link", "add", bridge, "type", "bridge")
            _ip_or_fail(*sw, "link", "set", bridge, "up")
        _ip_or_unavailable(*sw, "link", "add", "trunk-l", "type", "veth", "peer", "name", "trunk-r")
        _ip_or_fail(*sw, "link", "set", "trunk-l", "master", "br-left", "up")
        _ip_or_fail(*sw, "link", "set", "trunk-r", "master", "br-right", "up")
        for host in self.hosts.values():
            self._add_namespace(host.namespace)
            port = f"p-{host.node_id}"
            bridge = "br-left" if host.node_id in LEFT else "br-right"
            peer = ("peer", "name", "eth0", "netns", host.namespace)
            _ip_or_unavailable(*sw, "link", "add", port, "type", "veth", *peer)
            _ip_or_fail(*sw, "link", "set", port, "master", bridge, "up")
            inside = ("-n", host.namespace)
            _ip_or_fail(*inside, "addr", "add", f"{host.address}/{PREFIX_LENGTH}", "dev", "eth0")
            _ip_or_fail(*inside, "link", "set", "eth0", "up")

    def set_trunk(self, state: str) -> None:
        """Set both ends of the trunk ``up`` or ``down``: heal or cut the partition."""
        for end in ("trunk-l", "trunk-r"):
            _ip_or_fail("-n", self.switch, "link", "set", end, state)

    def _start_reader(self, process: subprocess.Popen[str]) -> queue.Queue[str | None]:
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True)
        reader.start()
        self.readers.append(reader)
        return lines

    def _exec(self, host: Host, *command: str) -> list[str]:
        # ip netns exec replaces itself with the command: the pid is the command's own.
        return ["ip", "netns", "exec", host.namespace, sys.executable, *command]

    def start_agent(self, host: Host, join: Sequence[str]) -> None:
        """Start the agent of ``host`` (and its client); :meth:`ready` waits for it."""
        command = ["-m", "crdtgossip.cli", "agent", "--node-id", host.node_id]
        command += ["--bind", f"{host.address}:{GOSSIP_PORT}", "--http", "127.0.0.1:0"]
        command += ["--config", "local"]
        for address in join:
            command += ["--join", address]
        host.log = self.directory / f"{host.node_id}.stderr"
        with host.log.open("w") as stderr:
            host.agent = subprocess.Popen(
                self._exec(host, *command),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=ROOT,
                env=_environment(),
            )
        host.agent_lines = self._start_reader(host.agent)
        host.client = subprocess.Popen(
            self._exec(host, str(CLIENT)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=_environment(),
        )
        host.client_lines = self._start_reader(host.client)

    def ready(self, host: Host) -> None:
        """Wait (bounded) for the agent's ready line and note its REST API address."""
        what = f"agent {host.node_id} ready line"
        line = _next_line(host.agent_lines, what, START_PATIENCE, host.stderr)
        assert line.startswith(f"agent {host.node_id} listening "), line
        words = dict(word.split("=", 1) for word in line.split() if "=" in word)
        assert words["gossip"] == f"{host.address}:{GOSSIP_PORT}", line
        host.url = f"http://{words['http']}"

    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL), then delete every namespace."""
        processes = [
            process
            for host in self.hosts.values()
            for process in (host.agent, host.client)
            if process is not None
        ]
        for process in processes:
            if process.stdin is not None:  # a client ends at the end of its input
                with contextlib.suppress(OSError):
                    process.stdin.close()
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process in processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_GRACE)
        # The readers end at their process's end of output; only then close the pipes.
        for reader in self.readers:
            reader.join(timeout=STOP_GRACE)
        for process in processes:
            if process.stdout is not None:
                process.stdout.close()
        for name in reversed(self.namespaces):
            # Anything still inside is ours (the namespace is); a namespace whose
            # processes live on would outlast its deletion.
            for pid in _ip("netns", "pids", name).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", name)
        self.namespaces.clear()


def _require_netns() -> None:
    if not sys.platform.startswith("linux"):
        _unavailable("network namespaces are Linux only")
    if os.geteuid() != 0:
        _unavailable("creating network namespaces needs root")
    if shutil.which("ip") is None:
        _unavailable("the ip command (iproute2) is not installed")
    if _ip("netns", "list").returncode != 0:
        _unavailable("'ip netns' does not work here")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    _require_netns()
    made = Lab(tmp_path)
    try:
        made.build()
        yield made
    finally:
        made.close()


def eventually(condition: Callable[[], bool], what: str, patience: float = PATIENCE) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` if it never does."""
    deadline = time.monotonic() + patience
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(POLL)


def _alive(host: Host) -> set[str]:
    return {node_id for node_id, status in host.statuses().items() if status == "alive"}


def _sees_dead(host: Host, others: Sequence[str]) -> bool:
    statuses = host.statuses()
    return all(statuses.get(node_id) == "dead" for node_id in others)


@pytest.mark.slow
def test_partition_by_link_down_then_heal_converges(lab: Lab) -> None:
    """Cut {n1, n2, n3} from {n4, n5}, write on both sides, heal: all converge."""
    hosts = lab.hosts
    everyone = list(hosts.values())
    first = hosts["n1"]
    seed = f"{first.address}:{GOSSIP_PORT}"
    lab.start_agent(first, [])
    lab.ready(first)
    for host in everyone[1:]:
        lab.start_agent(host, [seed])
    for host in everyone[1:]:
        lab.ready(host)
    eventually(
        lambda: all(_alive(host) == set(NODES) for host in everyone),
        "every agent sees the five alive",
    )

    lab.set_trunk("down")
    left = [hosts[node_id] for node_id in LEFT]
    right = [hosts[node_id] for node_id in RIGHT]
    eventually(
        lambda: (
            all(_sees_dead(host, RIGHT) for host in left)
            and all(_sees_dead(host, LEFT) for host in right)
        ),
        "each side declares the other side dead",
    )
    status, reply = hosts["n1"].request(
        "PUT", "/v1/services/web/instances/web-left", {"address": "10.213.0.1", "port": 8080}
    )
    assert status == 200, reply
    status, reply = hosts["n5"].request(
        "PUT", "/v1/services/web/instances/web-right", {"address": "10.213.0.5", "port": 8080}
    )
    assert status == 200, reply
    # Exact lists: a write that crossed the cut would make these never hold.
    eventually(
        lambda: (
            all(host.instance_ids("web") == ["web-left"] for host in left)
            and all(host.instance_ids("web") == ["web-right"] for host in right)
        ),
        "each side sees its own write and only that",
    )
    assert all(_sees_dead(host, RIGHT) for host in left), "the cut leaked"
    assert all(_sees_dead(host, LEFT) for host in right), "the cut leaked"

    lab.set_trunk("up")
    eventually(
        lambda: all(host.instance_ids("web") == ["web-left", "web-right"] for host in everyone),
        "every agent sees both writes after the heal",
    )
    eventually(
        lambda: all(_alive(host) == set(NODES) for host in everyone),
        "every agent sees the five alive again",
    )
    for host in everyone:
        assert host.agent is not None
        assert host.agent.poll() is None, f"agent {host.node_id} exited: {host.stderr()}"
