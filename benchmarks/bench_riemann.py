"""Health events into one agent: REST against Riemann's protocol, with the real client.

One agent process, started as the ``crdtgossip agent`` command does, on 127.0.0.1 with
``--config local``, ``--riemann-tcp`` and ``--riemann-udp``, no keyring and no data
directory; :data:`INSTANCES` instances (100 with ``--quick``) registered through REST.
Then the same number of events (:data:`EVENTS`, each for the next instance in turn,
state ``ok``, a metric) goes in four ways, one after the other:

* ``rest``: sequential ``POST /v1/events`` from one aiohttp session, each awaited;
* ``tcp``: ``riemann-client``'s ``Client`` over ``TCPTransport``, one event a message,
  each waiting for the agent's ack (as ``riemann-client`` always does over TCP);
* ``tcp batched``: ``QueuedClient`` over TCP, :data:`BATCH` events a message (the
  batch ``riemann-client``'s auto-flushing client sends at most);
* ``udp``: ``Client`` over ``UDPTransport``, one event a datagram, no answer, in
  bursts of :data:`UDP_BURST`, each awaited on the agent's ``/metrics`` (UDP has no
  flow control: the sender supplies it); then all the events at once, as fast as the
  client sends, and the share the agent took (the rest are dropped past the
  listener's backlog, and counted).

Reported: events per second of each, and each Riemann way over REST (higher is
better; a ratio of the same run). The client runs in this process's threads (it is
blocking), the agent in its own process: two cores for both.

Bounds: each way stops after :data:`WAY_BOUND_SECONDS` (the figure is then of the
events sent by then, with a note); every request has a timeout; the agent is stopped
with SIGTERM and killed if it has not exited soon after.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from benchmarks._result import BenchResult, Figure
from benchmarks.bench_registry import REQUEST_TIMEOUT, _Agent, _start, _stop

__all__ = ["run"]

#: Instances the events are about (the registry's size in the issues: 10^4).
INSTANCES = 10_000
QUICK_INSTANCES = 100
#: Events per way (quick: :data:`QUICK_EVENTS`).
EVENTS = 5_000
QUICK_EVENTS = 200
#: Events per message of the batched way.
BATCH = 100
#: Each way stops after this long.
WAY_BOUND_SECONDS = 120.0
QUICK_WAY_BOUND_SECONDS = 20.0
#: Datagrams per burst of the paced UDP way (under the listener's backlog of 256).
UDP_BURST = 100
#: How long the count of events taken may stand still before a UDP wait gives up.
UDP_SETTLE_SECONDS = 2.0
#: How often /metrics is read while waiting.
POLL_SECONDS = 0.005
SERVICE = "bench"
#: The counter of events the listener recorded, in /metrics.
ACCEPTED_METRIC = "crdtgossip_riemann_events_accepted_total"


def run(quick: bool) -> BenchResult:
    """Run the benchmark; ``quick`` sends 200 events each way."""
    events = QUICK_EVENTS if quick else EVENTS
    instances = QUICK_INSTANCES if quick else INSTANCES
    bound = QUICK_WAY_BOUND_SECONDS if quick else WAY_BOUND_SECONDS
    result = BenchResult(
        title="Health events into one agent: REST and Riemann's protocol (riemann-client)",
        params={
            "quick": quick,
            "events": events,
            "instances": instances,
            "batch": BATCH,
            "way_bound_seconds": bound,
            "config": "local",
            "storage": "none",
        },
    )
    asyncio.run(_measure(result, events, instances, bound))
    for way in ("tcp", "tcp batched", "udp"):
        if any(f.name == f"events per second, {way}" for f in result.figures):
            result.ratio(
                f"{way} / rest",
                f"events per second, {way}",
                "events per second, rest",
                higher_is_better=True,
                note="events per second through Riemann's protocol over REST's",
            )
    return result


async def _measure(result: BenchResult, events: int, instances: int, bound: float) -> None:
    processes: list[asyncio.subprocess.Process] = []
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    try:
        extra = ("--riemann-tcp", "127.0.0.1:0", "--riemann-udp", "127.0.0.1:0")
        agent = await _start(processes, "agent0", [], extra)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for i in range(instances):
                url = f"{agent.url}/v1/services/{SERVICE}/instances/{_instance(i)}"
                body = {"address": "127.0.0.1", "port": 1024 + i}
                async with session.put(url, json=body) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"PUT {url}: HTTP {response.status}")
            sent, seconds = await _rest(session, agent, events, instances, bound)
            _report(result, "rest", sent, events, seconds, "sequential POST /v1/events")
            host, port = _host_port(agent, "riemann-tcp")
            sent, seconds = await asyncio.to_thread(_tcp, host, port, events, instances, 1, bound)
            _report(result, "tcp", sent, events, seconds, "riemann-client, one event a message")
            sent, seconds = await asyncio.to_thread(
                _tcp, host, port, events, instances, BATCH, bound
            )
            _report(
                result,
                "tcp batched",
                sent,
                events,
                seconds,
                f"riemann-client QueuedClient, {BATCH} events a message",
            )
            await _udp(result, session, agent, events, instances, bound)
    finally:
        await _stop(processes)


def _report(
    result: BenchResult, way: str, sent: int, asked: int, seconds: float, note: str
) -> None:
    if sent < asked:
        result.notes.append(f"{way}: stopped with {sent:,} of {asked:,} events sent")
    result.figure(Figure(f"events per second, {way}", sent / seconds, "events/s", note=note))


def _host_port(agent: _Agent, name: str) -> tuple[str, int]:
    host, _, port = agent.listening[name].rpartition(":")
    return host.strip("[]"), int(port)


def _instance(i: int) -> str:
    return f"i{i:05d}"


def _event(n: int, instances: int) -> dict[str, object]:
    """The n-th event: for each of the instances in turn."""
    return {
        "host": _instance(n % instances),
        "service": SERVICE,
        "state": "ok",
        "metric_f": float(n % 1000),
        "ttl": 60.0,
    }


async def _rest(
    session: aiohttp.ClientSession, agent: _Agent, events: int, instances: int, bound: float
) -> tuple[int, float]:
    start = time.perf_counter()
    sent = 0
    for n in range(events):
        body = _event(n, instances)
        body["metric"] = body.pop("metric_f")
        async with session.post(f"{agent.url}/v1/events", json=body) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"POST /v1/events: HTTP {response.status}")
        sent += 1
        if time.perf_counter() - start > bound:
            break
    return sent, time.perf_counter() - start


def _tcp(
    host: str, port: int, events: int, instances: int, batch: int, bound: float
) -> tuple[int, float]:
    """Send over TCP with riemann-client, ``batch`` events a message (1: Client)."""
    from riemann_client.client import Client, QueuedClient  # type: ignore[import-untyped]
    from riemann_client.transport import TCPTransport  # type: ignore[import-untyped]

    transport = TCPTransport(host, port, timeout=REQUEST_TIMEOUT)
    start = time.perf_counter()
    sent = 0
    if batch == 1:
        with Client(transport) as client:
            for n in range(events):
                client.event(**_event(n, instances))
                sent += 1
                if time.perf_counter() - start > bound:
                    break
    else:
        with QueuedClient(transport) as client:
            for n in range(events):
                client.event(**_event(n, instances))
                sent += 1
                if sent % batch == 0:
                    client.flush()
                    if time.perf_counter() - start > bound:
                        break
            client.flush()
    return sent, time.perf_counter() - start


async def _udp(
    result: BenchResult,
    session: aiohttp.ClientSession,
    agent: _Agent,
    events: int,
    instances: int,
    bound: float,
) -> None:
    """UDP twice: paced (bursts the listener's backlog holds) and as a blast."""
    from riemann_client.client import Client
    from riemann_client.transport import UDPTransport

    host, port = _host_port(agent, "riemann-udp")
    with Client(UDPTransport(host, port)) as client:
        # Paced: a burst, then wait until the agent has taken it (UDP has no flow
        # control, so the sender supplies it), which measures the listener's rate.
        taken = await _accepted(session, agent)
        first = taken
        start = time.perf_counter()
        sent = 0
        while sent < events and time.perf_counter() - start < bound:
            burst = min(UDP_BURST, events - sent)
            for n in range(sent, sent + burst):
                client.event(**_event(n, instances))
            sent += burst
            taken = await _until_taken(session, agent, first + sent)
            if taken < first + sent:
                result.notes.append(
                    f"udp paced: the agent took {taken - first:,} of {sent:,} datagrams"
                )
                break
        seconds = time.perf_counter() - start
        result.figure(
            Figure(
                "events per second, udp",
                (taken - first) / seconds,
                "events/s",
                note=f"riemann-client over UDP in bursts of {UDP_BURST}, each awaited",
            )
        )
        # Blast: every event at once, as fast as the client sends; what was taken.
        first = await _accepted(session, agent)
        for n in range(events):
            client.event(**_event(n, instances))
        taken = await _until_taken(session, agent, first + events)
    result.figure(
        Figure(
            "udp blast, share taken",
            100 * (taken - first) / events,
            "%",
            note=f"{events:,} datagrams at once; any others were lost in the socket's buffer or "
            "past the listener's backlog (counted)",
        )
    )


async def _until_taken(session: aiohttp.ClientSession, agent: _Agent, target: int) -> int:
    """The agent's count of events taken, once it reaches ``target`` or stops moving."""
    taken = await _accepted(session, agent)
    still = time.perf_counter()
    while taken < target and time.perf_counter() - still < UDP_SETTLE_SECONDS:
        await asyncio.sleep(POLL_SECONDS)
        now = await _accepted(session, agent)
        if now != taken:
            taken, still = now, time.perf_counter()
    return taken


async def _accepted(session: aiohttp.ClientSession, agent: _Agent) -> int:
    async with session.get(f"{agent.url}/metrics") as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(ACCEPTED_METRIC) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)
