"""The registry app at scale: N instances registered through REST on one of 3 agents.

For each N (10^2, 10^3, 10^4; 10^5 too when the environment variable
:data:`LARGE_ENV` is ``1``), a fresh cluster of three agent processes, each started as
the ``crdtgossip agent`` command does (``crdtgossip.cli.main``) on 127.0.0.1 with
``--config local``, no keyring and no data directory. The first agent is the seed;
the other two join it; the run waits until each lists three alive members. Then this
process, with one aiohttp session, registers N instances of one service on the first
agent with sequential ``PUT /v1/services/{service}/instances/{instance}`` requests,
each timed alone on the wall clock, from the request to the end of its reply.

Reported per N:

* the median PUT latency of the first and of the last :data:`WINDOW` PUTs (or of
  the first and last half, below 2 x WINDOW), and their ratio (issue 12: at most 2x);
* PUTs per second, N over the time from the first request to the last reply (issue
  12: at least 300 on the 2-core machine);
* seconds from the last reply until each other agent's ``GET /v1/services`` lists
  all N instances (issue 12: within 5 s), polled every :data:`POLL_SECONDS`;
* then each agent's CPU over :data:`IDLE_SECONDS` with no requests, from
  ``/proc/<pid>/stat`` (user + system ticks), as a share of one core (issue 12:
  under 5%).

Bounds: registering one size stops after :data:`SIZE_BOUND_SECONDS` (the result says
how many were registered by then, and the later figures are of those); waiting for the
other agents stops after :data:`LIST_BOUND_SECONDS` (the figure is then missing and a
note says how many they listed); every request has a timeout. The agents are stopped
with SIGTERM (they leave the cluster), and killed if they have not exited soon after.
Full runs write ``registry_put.png`` (median PUT latency against instances already
registered) into ``docs/_static/benchmarks/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._plot import line, write_plots
from benchmarks._result import BenchResult, Figure
from benchmarks.bench_growth import _exponent

__all__ = ["run"]

#: Instances per run (issue 12: 10^2 ... 10^4, 10^5 if it fits the machine).
SIZES = (100, 1_000, 10_000)
#: Added to SIZES when LARGE_ENV is "1": at today's rates it is hours, and even at the
#: issue's 300 PUTs/s more than five minutes per agent cluster.
LARGE_SIZE = 100_000
LARGE_ENV = "CRDTGOSSIP_BENCH_REGISTRY_LARGE"
QUICK_SIZES = (20,)
#: Agents per cluster (issue 12: 3 agent processes).
AGENTS = 3
#: PUTs in the first and last latency windows (issue 12: the first and last 200).
WINDOW = 200
#: Issue 12's targets.
PUT_GROWTH_TARGET = 2.0
#: Tolerance of the last / first ratio: medians of single HTTP requests on a shared
#: machine with three agent processes and this client on two cores.
PUT_GROWTH_TOLERANCE = 1.0
#: Registering one size stops after this long (the brief: 8 minutes per size).
SIZE_BOUND_SECONDS = 480.0
QUICK_SIZE_BOUND_SECONDS = 30.0
#: How long to wait for the other agents to list every instance after the last PUT.
LIST_BOUND_SECONDS = 120.0
QUICK_LIST_BOUND_SECONDS = 30.0
#: How often that wait asks them.
POLL_SECONDS = 0.1
#: Seconds of no requests over which each agent's CPU is read (issue 12: over 10 s).
IDLE_SECONDS = 10.0
QUICK_IDLE_SECONDS = 1.0
#: Failure guards: an agent's start up to its ready line, its exit after SIGTERM,
#: the membership of the three, one HTTP request.
START_TIMEOUT = 30.0
EXIT_TIMEOUT = 10.0
MEMBERSHIP_TIMEOUT = 30.0
REQUEST_TIMEOUT = 60.0
#: The service every instance belongs to.
SERVICE = "bench"
#: What runs an agent: the ``crdtgossip`` command's own entry point, from this tree.
CLI = "from crdtgossip.cli import main; raise SystemExit(main())"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Points of the latency curve in the plot, per N.
PLOT_BINS = 20


@dataclass
class _Agent:
    process: asyncio.subprocess.Process
    gossip: str
    http: str
    #: Every ``name=value`` word of the ready line (``riemann-tcp`` and so on).
    listening: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://{self.http}"


def run(quick: bool) -> BenchResult:
    """Run the registry benchmark; ``quick`` registers 20 instances, briefly idle."""
    large = os.environ.get(LARGE_ENV) == "1"
    sizes = QUICK_SIZES if quick else SIZES + ((LARGE_SIZE,) if large else ())
    result = BenchResult(
        title=f"Registry: N instances PUT through REST on one of {AGENTS} agent processes",
        params={
            "quick": quick,
            "sizes": ",".join(str(n) for n in sizes),
            "agents": AGENTS,
            "window": WINDOW,
            "size_bound_seconds": QUICK_SIZE_BOUND_SECONDS if quick else SIZE_BOUND_SECONDS,
            "list_bound_seconds": QUICK_LIST_BOUND_SECONDS if quick else LIST_BOUND_SECONDS,
            "idle_seconds": QUICK_IDLE_SECONDS if quick else IDLE_SECONDS,
            "config": "local",
            "storage": "none",
            "clock": "wall",
        },
    )
    curves: dict[int, dict[int, float]] = {}
    for n in sizes:
        asyncio.run(_one_size(result, curves, n, quick))
    result.notes.append(
        f"{os.cpu_count()} CPUs for {AGENTS} agents and the client; agents without a keyring "
        "or data directory, sequential PUTs from one aiohttp session"
    )
    if quick:
        result.notes.append("quick run: plots not written")
    else:
        write_plots(result, [("registry_put.png", lambda axes: _draw(axes, curves))])
    return result


async def _one_size(
    result: BenchResult, curves: dict[int, dict[int, float]], n: int, quick: bool
) -> None:
    tag = _exponent(n)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with _cluster() as agents, aiohttp.ClientSession(timeout=timeout) as session:
        await _wait_for_members(session, agents)
        bound = QUICK_SIZE_BOUND_SECONDS if quick else SIZE_BOUND_SECONDS
        latencies, elapsed = await _register(session, agents[0], n, bound)
        done = len(latencies)
        listed_at = time.perf_counter()
        if done < n:
            result.notes.append(
                f"N={n:,}: stopped after {bound:.0f} s with {done:,} instances registered; "
                "the figures below are of those"
            )
        window = min(WINDOW, done // 2)
        first = statistics.median(latencies[:window]) / 1e6
        last = statistics.median(latencies[-window:]) / 1e6
        result.figure(Figure(f"registered {tag}", done, "count", note=f"of {n:,} asked"))
        result.figure(Figure(f"PUT median, first {window} {tag}", first, "ms", note="sequential"))
        result.figure(Figure(f"PUT median, last {window} {tag}", last, "ms", note="sequential"))
        result.figure(
            Figure(
                f"PUTs per second {tag}",
                done / elapsed,
                "PUTs/s",
                note="first request to last reply; issue 12: at least 300 at 10^4",
            )
        )
        result.ratio(
            f"PUT median, last / first {window}, {tag}",
            f"PUT median, last {window} {tag}",
            f"PUT median, first {window} {tag}",
            target=PUT_GROWTH_TARGET,
            tolerance=PUT_GROWTH_TOLERANCE,
            note="1 = a PUT costs the same however many instances are registered",
        )
        curves[n] = _binned(latencies)
        list_bound = QUICK_LIST_BOUND_SECONDS if quick else LIST_BOUND_SECONDS
        for index, agent in enumerate(agents[1:], start=1):
            seconds, seen = await _until_listed(session, agent, done, listed_at, list_bound)
            name = f"listed by agent {index} after the last PUT {tag}"
            if seconds is None:
                result.notes.append(
                    f"N={n:,}: agent {index} listed {seen:,} of {done:,} after {list_bound:.0f} s"
                )
            else:
                result.figure(Figure(name, seconds, "s", note="issue 12: within 5 s at 10^4"))
        idle = QUICK_IDLE_SECONDS if quick else IDLE_SECONDS
        shares = await _idle_cpu([agent.process.pid for agent in agents], idle)
        for index, share in enumerate(shares):
            result.figure(
                Figure(
                    f"idle CPU, agent {index} {tag}",
                    share * 100,
                    "% of a core",
                    note=f"over {idle:g} s with no requests; issue 12: under 5%",
                )
            )


@contextlib.asynccontextmanager
async def _cluster() -> AsyncIterator[list[_Agent]]:
    """Three agent processes, the first the seed; all stopped on exit."""
    processes: list[asyncio.subprocess.Process] = []
    try:
        agents: list[_Agent] = []
        for index in range(AGENTS):
            join = ["--join", agents[0].gossip] if agents else []
            agents.append(await _start(processes, f"agent{index}", join))
        yield agents
    finally:
        await _stop(processes)


async def _start(
    processes: list[asyncio.subprocess.Process],
    node_id: str,
    join: list[str],
    extra: tuple[str, ...] = (),
) -> _Agent:
    """Start one agent (``extra``: more flags) and read its ready line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLI,
        "agent",
        "--node-id",
        node_id,
        "--bind",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--config",
        "local",
        *join,
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        cwd=PROJECT_ROOT,
    )
    processes.append(process)
    assert process.stdout is not None
    ready = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
    # "agent ID listening gossip=HOST:PORT http=HOST:PORT"
    fields = dict(part.split("=", 1) for part in ready.decode().split() if "=" in part)
    if "gossip" not in fields or "http" not in fields:
        raise RuntimeError(f"agent {node_id} did not start: {ready.decode().strip()!r}")
    return _Agent(process, fields["gossip"], fields["http"], fields)


async def _stop(processes: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM every agent (they leave the cluster), then kill those still running."""
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            await asyncio.wait_for(process.wait(), EXIT_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _wait_for_members(session: aiohttp.ClientSession, agents: list[_Agent]) -> None:
    deadline = time.monotonic() + MEMBERSHIP_TIMEOUT
    while True:
        counts = []
        for agent in agents:
            async with session.get(f"{agent.url}/v1/members") as response:
                members = (await response.json())["members"]
            counts.append(sum(member["status"] == "alive" for member in members))
        if all(count == AGENTS for count in counts):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {AGENTS} agents did not all see each other: {counts}")
        await asyncio.sleep(POLL_SECONDS)


async def _register(
    session: aiohttp.ClientSession, agent: _Agent, n: int, bound: float
) -> tuple[list[int], float]:
    """PUT up to n instances one after the other, within ``bound`` seconds.

    Returns:
        The nanoseconds of each PUT, and the seconds from the first to the last reply.
    """
    latencies: list[int] = []
    start = time.perf_counter_ns()
    deadline = start + int(bound * 1e9)
    for i in range(n):
        body = {"address": "127.0.0.1", "port": 1024 + i % 60_000, "tags": ["bench"]}
        url = f"{agent.url}/v1/services/{SERVICE}/instances/i{i:06d}"
        begin = time.perf_counter_ns()
        async with session.put(url, json=body) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"PUT {url}: HTTP {response.status}")
        end = time.perf_counter_ns()
        latencies.append(end - begin)
        if end > deadline:
            break
    return latencies, (time.perf_counter_ns() - start) / 1e9


async def _until_listed(
    session: aiohttp.ClientSession, agent: _Agent, count: int, since: float, bound: float
) -> tuple[float | None, int]:
    """Seconds from ``since`` until ``agent`` lists ``count`` instances (None: not in time).

    Returns:
        The seconds (or None), and how many the agent listed last.
    """
    seen = 0
    while True:
        async with session.get(f"{agent.url}/v1/services") as response:
            services: dict[str, Any] = (await response.json())["services"]
        seen = len(services.get(SERVICE, []))
        now = time.perf_counter()
        if seen >= count:
            return now - since, seen
        if now - since > bound:
            return None, seen
        await asyncio.sleep(POLL_SECONDS)


async def _idle_cpu(pids: list[int], seconds: float) -> list[float]:
    """Each process's CPU over ``seconds`` as a share of one core, from /proc."""
    before = [_cpu_ticks(pid) for pid in pids]
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    after = [_cpu_ticks(pid) for pid in pids]
    wall = time.perf_counter() - start
    ticks = os.sysconf("SC_CLK_TCK")
    return [(b - a) / ticks / wall for a, b in zip(before, after, strict=True)]


def _cpu_ticks(pid: int) -> int:
    """User + system clock ticks of ``pid`` (fields 14 and 15 of /proc/<pid>/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return utime + stime


def _binned(latencies: list[int]) -> dict[int, float]:
    """Median latency (ms) of PLOT_BINS equal runs of PUTs, by instances registered before."""
    size = max(1, len(latencies) // PLOT_BINS)
    return {
        start + size // 2: statistics.median(latencies[start : start + size]) / 1e6
        for start in range(0, len(latencies) - size + 1, size)
    }


def _draw(axes: Any, curves: dict[int, dict[int, float]]) -> None:
    for n, points in sorted(curves.items()):
        line(axes, points, f"N = {n:,}", "o-")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("instances registered before the PUT")
    axes.set_ylabel(f"median PUT latency (ms), runs of 1/{PLOT_BINS} of N")
    axes.set_title(f"Registry PUT latency on one of {AGENTS} agents")
