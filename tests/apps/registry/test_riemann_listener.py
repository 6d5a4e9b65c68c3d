"""The Riemann listener in process, on a real registry, spoken to by the real riemann-client.

riemann-client is blocking, so each call runs in a thread (``asyncio.to_thread``) while
the listener serves in this event loop. Raw sockets stand in only for what no client
would send: oversized, cut or garbage frames, and more connections than allowed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from riemann_client import riemann_pb2
from riemann_client.client import Client as RiemannClient
from riemann_client.transport import RiemannError, TCPTransport, UDPTransport

from crdtgossip._ratelimit import DEFAULT_BURST
from crdtgossip.apps.registry import Registry, make_app
from crdtgossip.apps.registry.audit import AuditLog
from crdtgossip.apps.registry.riemann_listener import (
    AUDIT_METHOD,
    AUDIT_WHO,
    MAX_CONNECTIONS,
    MAX_FRAME_BYTES,
    UDP_RECEIVE_BUFFER,
    RiemannListener,
)
from crdtgossip.errors import TransportError
from tests.apps.registry import test_agents as processes
from tests.apps.registry.conftest import START_TIME, Client
from tests.polling import PATIENCE, eventually

WEB_1 = {"address": "10.0.0.1", "port": 8080, "env": "prod"}


@pytest.fixture
async def listener(registry: Registry) -> AsyncIterator[RiemannListener]:
    made = RiemannListener(registry.push_event)
    await made.start_tcp("127.0.0.1:0")
    await made.start_udp("127.0.0.1:0")
    yield made
    await made.stop()


@pytest.fixture
async def rest(registry: Registry, listener: RiemannListener) -> AsyncIterator[Client]:
    app = make_app(registry, riemann=listener.counters)
    async with TestClient(TestServer(app)) as test_client:
        for name, body in (("web-1", WEB_1), ("web-2", {**WEB_1, "ttl": 90})):
            response = await test_client.put(f"/v1/services/web/instances/{name}", json=body)
            assert response.status == 200, await response.text()
        yield test_client


def _host_port(address: str | None) -> tuple[str, int]:
    assert address is not None
    host, port = address.rsplit(":", 1)
    return host, int(port)


def send_tcp(address: str | None, *events: dict[str, Any]) -> Any:
    """Send events in one message with riemann-client over TCP; its answer."""
    host, port = _host_port(address)
    with RiemannClient(TCPTransport(host, port, timeout=PATIENCE)) as client:
        return client.events(*events)


def query_tcp(address: str | None, query: str) -> Any:
    host, port = _host_port(address)
    with RiemannClient(TCPTransport(host, port, timeout=PATIENCE)) as client:
        return client.query(query)


def send_udp(address: str | None, *events: dict[str, Any]) -> None:
    host, port = _host_port(address)
    with RiemannClient(UDPTransport(host, port)) as client:
        client.events(*events)


async def instance(rest: Client, name: str) -> dict[str, Any]:
    response = await rest.get(f"/v1/services/web/instances/{name}")
    assert response.status == 200
    return dict((await response.json())["instance"])


async def raw_connection(
    listener: RiemannListener,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = _host_port(listener.tcp_address)
    return await asyncio.open_connection(host, port)


async def read_answer(reader: asyncio.StreamReader) -> Any:
    async with asyncio.timeout(PATIENCE):
        (length,) = struct.unpack("!I", await reader.readexactly(4))
        answer = riemann_pb2.Msg()
        answer.ParseFromString(await reader.readexactly(length))
    return answer


def framed(payload: bytes) -> bytes:
    return struct.pack("!I", len(payload)) + payload


def event_message(**fields: Any) -> bytes:
    message = riemann_pb2.Msg()
    message.events.add(**fields)
    return message.SerializeToString()


# ---- events through riemann-client ------------------------------------------------------
async def test_an_event_over_tcp_is_the_instances_health(
    rest: Client, listener: RiemannListener
) -> None:
    event = {
        "host": "web-1",
        "service": "web",
        "state": "critical",
        "metric_f": 0.25,
        "ttl": 30,
        "description": "disk full",
        "tags": ["disk"],
        "attributes": {"mount": "/var"},
    }
    answer = await asyncio.to_thread(send_tcp, listener.tcp_address, event)
    assert answer.ok
    shown = await instance(rest, "web-1")
    assert shown["health"] == "critical"
    assert shown["last_event"] == {
        "host": "web-1",
        "service": "web",
        "state": "critical",
        "metric": 0.25,
        "time": START_TIME,  # none sent: the agent's now
        "ttl": 30.0,
        "tags": ["disk"],
        "description": "disk full",
    }
    counters = listener.counters
    assert (counters.messages["tcp"], counters.events_accepted["tcp"]) == (1, 1)
    assert counters.attributes_ignored == 1


async def test_an_event_without_ttl_takes_the_instances_as_a_post_does(
    rest: Client, listener: RiemannListener
) -> None:
    events = [
        {"host": "web-2", "service": "web", "state": "ok"},
        {"host": "web-1", "service": "web", "state": "warning", "time": int(START_TIME) - 5},
    ]
    assert (await asyncio.to_thread(send_tcp, listener.tcp_address, *events)).ok
    assert (await instance(rest, "web-2"))["last_event"]["ttl"] == 90.0
    web_1 = await instance(rest, "web-1")
    assert (web_1["health"], web_1["last_event"]["ttl"]) == ("warning", 60.0)
    assert web_1["last_event"]["time"] == START_TIME - 5


async def test_an_unknown_instance_is_an_error_for_the_client(
    rest: Client, listener: RiemannListener
) -> None:
    event = {"host": "web-9", "service": "web", "state": "ok"}
    with pytest.raises(RiemannError, match="event 0: no instance 'web-9' of service 'web'"):
        await asyncio.to_thread(send_tcp, listener.tcp_address, event)
    assert listener.counters.events_refused == {("tcp", "unknown_instance"): 1}
    assert listener.counters.events_accepted["tcp"] == 0


async def test_the_first_refused_event_stops_its_message(
    rest: Client, listener: RiemannListener
) -> None:
    events = [
        {"host": "web-1", "service": "web", "state": "warning"},
        {"host": "web-1", "service": "web", "state": "awesome"},
        {"host": "web-2", "service": "web", "state": "critical"},
    ]
    with pytest.raises(RiemannError, match="event 1: state must be one of") as refused:
        await asyncio.to_thread(send_tcp, listener.tcp_address, *events)
    assert "the 1 event(s) before it were recorded" in str(refused.value)
    assert (await instance(rest, "web-1"))["health"] == "warning"  # event 0 was recorded
    assert (await instance(rest, "web-2"))["last_event"] is None  # event 2 was not
    assert listener.counters.events_refused == {("tcp", "invalid"): 1, ("tcp", "not_tried"): 1}


async def test_a_query_is_refused(rest: Client, listener: RiemannListener) -> None:
    with pytest.raises(RiemannError, match="queries are not supported"):
        await asyncio.to_thread(query_tcp, listener.tcp_address, "true")
    assert listener.counters.messages_refused == {("tcp", "query"): 1}


async def test_events_over_udp_and_a_garbage_datagram_ignored(
    rest: Client, listener: RiemannListener
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"\xffgarbage", _host_port(listener.udp_address))
    await eventually(
        lambda: listener.counters.frames_malformed["udp"] == 1, "the garbage is counted"
    )
    event = {"host": "web-1", "service": "web", "state": "critical", "metric_d": 3.5}
    await asyncio.to_thread(send_udp, listener.udp_address, event)

    async def critical() -> bool:
        return (await instance(rest, "web-1"))["health"] == "critical"

    await eventually(critical, "the UDP event is web-1's health")
    assert (await instance(rest, "web-1"))["last_event"]["metric"] == 3.5
    assert listener.counters.events_accepted == {"udp": 1}
    assert listener.counters.messages == {"udp": 1}  # the garbage is no message


async def test_metrics_show_the_listeners_counters(rest: Client, listener: RiemannListener) -> None:
    assert (
        await asyncio.to_thread(
            send_tcp, listener.tcp_address, {"host": "web-1", "service": "web", "state": "ok"}
        )
    ).ok
    with pytest.raises(RiemannError):
        await asyncio.to_thread(send_tcp, listener.tcp_address, {"service": "web", "state": "ok"})
    lines = (await (await rest.get("/metrics")).text()).splitlines()
    assert "# TYPE crdtgossip_riemann_events_accepted_total counter" in lines
    assert 'crdtgossip_riemann_events_accepted_total{transport="tcp"} 1' in lines
    assert 'crdtgossip_riemann_messages_total{transport="tcp"} 2' in lines
    refused = 'crdtgossip_riemann_events_refused_total{transport="tcp",reason="unknown_instance"} 1'
    assert refused in lines  # riemann-client sends the machine's name as the host
    assert "crdtgossip_riemann_connections_refused_total 0" in lines
    assert "# TYPE crdtgossip_riemann_connections gauge" in lines


async def test_metrics_without_a_listener_have_no_riemann_family(client: Client) -> None:
    text = await (await client.get("/metrics")).text()
    assert "crdtgossip_riemann_" not in text


# ---- frames no client sends --------------------------------------------------------------
async def test_an_oversized_frame_is_answered_and_closed(
    rest: Client, listener: RiemannListener
) -> None:
    reader, writer = await raw_connection(listener)
    try:
        writer.write(struct.pack("!I", MAX_FRAME_BYTES + 1) + b"\x00" * 1000)
        answer = await read_answer(reader)
        assert not answer.ok
        assert answer.error == (
            f"a message of {MAX_FRAME_BYTES + 1} bytes is over the limit of {MAX_FRAME_BYTES} bytes"
        )
        async with asyncio.timeout(PATIENCE):
            assert await reader.read() == b""  # closed
    finally:
        writer.close()
    assert listener.counters.frames_oversized == 1
    # A frame of exactly the limit is read (and here refused as no Msg, not as too big).
    reader, writer = await raw_connection(listener)
    try:
        writer.write(struct.pack("!I", MAX_FRAME_BYTES) + b"\xff" * MAX_FRAME_BYTES)
        answer = await read_answer(reader)
        assert "is not a Riemann Msg" in answer.error
    finally:
        writer.close()
    assert listener.counters.frames_oversized == 1


async def test_a_malformed_frame_is_answered_and_the_connection_goes_on(
    rest: Client, listener: RiemannListener
) -> None:
    reader, writer = await raw_connection(listener)
    try:
        writer.write(framed(b"\x32\x05ab"))
        answer = await read_answer(reader)
        assert not answer.ok
        assert answer.error.startswith("the message is not a Riemann Msg: ")
        writer.write(framed(event_message(host="web-1", service="web", state="warning")))
        assert (await read_answer(reader)).ok
    finally:
        writer.close()
    assert listener.counters.frames_malformed == {"tcp": 1}
    assert (await instance(rest, "web-1"))["health"] == "warning"


async def test_a_client_hanging_up_mid_frame_is_one_log_line(
    rest: Client, listener: RiemannListener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="crdtgossip")
    _, writer = await raw_connection(listener)
    await eventually(lambda: listener.counters.connections_open == 1, "the connection is served")
    writer.write(struct.pack("!I", 100) + b"\x32" * 10)
    await writer.drain()
    writer.close()
    await eventually(lambda: listener.counters.connections_open == 0, "the listener lets it go")
    lines = [record for record in caplog.records if "hung up mid-frame" in record.getMessage()]
    assert len(lines) == 1
    assert "(10 of 100 bytes)" in lines[0].getMessage()
    assert not [record for record in caplog.records if record.exc_info]
    event = {"host": "web-1", "service": "web", "state": "ok"}
    assert (await asyncio.to_thread(send_tcp, listener.tcp_address, event)).ok


async def test_a_client_repeating_a_mistake_does_not_flood_the_log(
    rest: Client, listener: RiemannListener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="crdtgossip")
    unknown = {"host": "web-9", "service": "web", "state": "ok"}

    def send_many() -> int:
        refused = 0
        host, port = _host_port(listener.tcp_address)
        with RiemannClient(TCPTransport(host, port, timeout=PATIENCE)) as client:
            for _ in range(3 * DEFAULT_BURST):
                with pytest.raises(RiemannError):
                    client.events(unknown)
                refused += 1
        return refused

    assert await asyncio.to_thread(send_many) == 3 * DEFAULT_BURST
    assert listener.counters.events_refused == {("tcp", "unknown_instance"): 3 * DEFAULT_BURST}
    lines = [r for r in caplog.records if "refused: event 0" in r.getMessage()]
    assert len(lines) == DEFAULT_BURST  # the rest held back within the interval


async def test_connections_beyond_the_limit_are_closed_at_once(
    rest: Client, listener: RiemannListener
) -> None:
    assert MAX_CONNECTIONS == 64
    held = [await raw_connection(listener) for _ in range(MAX_CONNECTIONS)]
    try:
        await eventually(
            lambda: listener.counters.connections_open == MAX_CONNECTIONS, "all 64 are served"
        )
        reader, writer = await raw_connection(listener)
        async with asyncio.timeout(PATIENCE):
            try:
                closed = await reader.read() == b""
            except ConnectionResetError:
                closed = True
        writer.close()
        assert closed
        assert listener.counters.connections_refused == 1
        with pytest.raises((OSError, struct.error)):  # riemann-client: no answer comes
            await asyncio.to_thread(
                send_tcp, listener.tcp_address, {"host": "web-1", "service": "web", "state": "ok"}
            )
        # The held connections still work.
        held[0][1].write(framed(event_message(host="web-1", service="web", state="warning")))
        assert (await read_answer(held[0][0])).ok
    finally:
        for _, held_writer in held:
            held_writer.close()
    await eventually(lambda: listener.counters.connections_open == 0, "the 64 are let go")
    event = {"host": "web-1", "service": "web", "state": "critical"}
    assert (await asyncio.to_thread(send_tcp, listener.tcp_address, event)).ok


async def test_an_idle_connection_is_closed(registry: Registry) -> None:
    listener = RiemannListener(registry.push_event, idle_timeout=0.05)
    await listener.start_tcp("127.0.0.1:0")
    try:
        reader, writer = await raw_connection(listener)
        async with asyncio.timeout(PATIENCE):
            assert await reader.read() == b""
        writer.close()
        await eventually(lambda: listener.counters.connections_open == 0, "it is let go")
    finally:
        await listener.stop()


async def test_stop_closes_open_connections(registry: Registry) -> None:
    listener = RiemannListener(registry.push_event)
    await listener.start_tcp("127.0.0.1:0")
    reader, writer = await raw_connection(listener)
    await eventually(lambda: listener.counters.connections_open == 1, "the connection is served")
    async with asyncio.timeout(PATIENCE):
        await listener.stop()
        assert await reader.read() == b""
    writer.close()
    assert listener.counters.connections_open == 0


async def test_an_address_in_use_is_a_transport_error(
    registry: Registry, listener: RiemannListener
) -> None:
    other = RiemannListener(registry.push_event)
    with pytest.raises(TransportError, match=r"cannot serve Riemann TCP on 127\.0\.0\.1:"):
        await other.start_tcp(str(listener.tcp_address))
    with pytest.raises(TransportError, match=r"cannot serve Riemann UDP on 127\.0\.0\.1:"):
        await other.start_udp(str(listener.udp_address))
    await other.stop()


# ---- three agent processes ---------------------------------------------------------------
def test_riemann_client_events_are_instance_health_on_every_agent(tmp_path: Path) -> None:
    """riemann-client posts to one agent's Riemann listener; all three agents show it."""
    agents: list[processes.Agent] = []
    riemann = ["--riemann-tcp", "127.0.0.1:0", "--riemann-udp", "127.0.0.1:0"]
    try:
        processes.launch_all(tmp_path, ["ra"], [], agents, extra=riemann)
        processes.launch_all(tmp_path, ["rb", "rc"], [agents[0].gossip], agents)
        names = {"ra", "rb", "rc"}
        processes.eventually(
            lambda: all(
                {n for n, s in processes.statuses(x).items() if s == "alive"} == names
                for x in agents
            ),
            "every agent sees the three alive",
        )
        a, b = agents[:2]
        assert "riemann-tcp" not in b.announced
        body = {"address": "10.0.0.7", "port": 8080, "env": "prod"}
        status, reply = processes.request("PUT", f"{b.url}/v1/services/web/instances/web-1", body)
        assert status == 200, reply
        processes.eventually(lambda: processes.instances(a, "web") != [], "a sees web-1")
        event = {
            "host": "web-1",
            "service": "web",
            "state": "warning",
            "metric_f": 0.5,
            "ttl": 600,
            "description": "slow disk",
        }
        assert send_tcp(a.announced["riemann-tcp"], event).ok

        def shown(agent: processes.Agent) -> dict[str, Any]:
            return dict(processes.instances(agent, "web")[0])

        processes.eventually(
            lambda: all(shown(x)["health"] == "warning" for x in agents),
            "every agent shows web-1 warning",
        )
        events = [shown(x)["last_event"] for x in agents]
        assert events[0] == events[1] == events[2]
        assert (events[0]["metric"], events[0]["ttl"], events[0]["description"]) == (
            0.5,
            600.0,
            "slow disk",
        )
        with pytest.raises(RiemannError, match="no instance 'web-2'"):
            send_tcp(a.announced["riemann-tcp"], {**event, "host": "web-2"})
        send_udp(a.announced["riemann-udp"], {**event, "state": "critical"})
        processes.eventually(
            lambda: all(shown(x)["health"] == "critical" for x in agents),
            "every agent shows the UDP event's critical",
        )

        def riemann_audit(agent: processes.Agent) -> list[tuple[str, int]]:
            status, reply = processes.request("GET", f"{agent.url}/v1/audit?who={AUDIT_WHO}")
            assert status == 200, reply
            return [(e["path"], e["status"]) for e in reply["audit"]]

        # The three messages, audited by the agent that took them, seen on another.
        processes.eventually(
            lambda: riemann_audit(b) == [("tcp", 200), ("tcp", 404), ("udp", 200)],
            "agent b holds the audit entries of a's Riemann messages",
        )
    finally:
        processes.stop_all(agents)


# ---- the audit record ----------------------------------------------------------------
@pytest.fixture
async def audited(registry: Registry) -> AsyncIterator[tuple[RiemannListener, AuditLog]]:
    audit = AuditLog(registry.node, registry.now)
    made = RiemannListener(registry.push_event, audit=audit)
    await made.start_tcp("127.0.0.1:0")
    await made.start_udp("127.0.0.1:0")
    yield made, audit
    await made.stop()


async def test_each_message_is_one_audit_entry(
    rest: Client, audited: tuple[RiemannListener, AuditLog]
) -> None:
    listener, audit = audited
    ok = {"host": "web-1", "service": "web", "state": "ok"}
    unknown = {"host": "web-9", "service": "web", "state": "ok"}
    await asyncio.to_thread(send_tcp, listener.tcp_address, ok, {**ok, "host": "web-2"})
    with pytest.raises(RiemannError):
        await asyncio.to_thread(send_tcp, listener.tcp_address, unknown)
    with pytest.raises(RiemannError):
        await asyncio.to_thread(query_tcp, listener.tcp_address, "true")
    entries = await audit.entries(who=AUDIT_WHO)
    assert [(e.method, e.path, e.status) for e in entries] == [
        (AUDIT_METHOD, "tcp", 200),
        (AUDIT_METHOD, "tcp", 404),
        (AUDIT_METHOD, "tcp", 400),
    ]
    assert entries[0].summary == "2 event(s): web/web-1 ok, web/web-2 ok"
    assert "no instance 'web-9'" in entries[1].summary
    assert entries[2].summary == "queries are not supported"
    assert all(e.peer.startswith("127.0.0.1:") for e in entries)


async def test_udp_messages_are_audited_and_garbage_is_not(
    rest: Client, audited: tuple[RiemannListener, AuditLog]
) -> None:
    listener, audit = audited
    host, port = _host_port(listener.udp_address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for _ in range(20):
            raw.sendto(b"\xff\x00garbage", (host, port))
    await asyncio.to_thread(
        send_udp, listener.udp_address, {"host": "web-1", "service": "web", "state": "warning"}
    )
    await eventually(lambda: listener.counters.events_accepted["udp"] == 1, "the event is taken")
    entries = await audit.entries(who=AUDIT_WHO)
    assert [(e.path, e.status, e.summary) for e in entries] == [
        ("udp", 200, "1 event(s): web/web-1 warning")
    ]
    assert listener.counters.frames_malformed["udp"] == 20


async def test_udp_events_past_the_backlog_are_dropped_and_counted() -> None:
    gate = asyncio.Event()
    recorded: list[Any] = []

    async def slow_push(body: Any) -> None:
        await gate.wait()
        recorded.append(body)

    listener = RiemannListener(slow_push, udp_backlog=5)
    await listener.start_udp("127.0.0.1:0")
    try:
        host, port = _host_port(listener.udp_address)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            for n in range(10):
                raw.sendto(
                    event_message(host="web-1", service="web", state="ok", time=n), (host, port)
                )
        await eventually(lambda: listener.counters.messages["udp"] == 10, "all ten decoded")
        dropped = listener.counters.messages_refused[("udp", "backlog")]
        assert dropped in (4, 5)  # five wait; one more if the worker took one already
        gate.set()
        await eventually(lambda: len(recorded) == 10 - dropped, "the rest recorded")
        assert listener.counters.events_refused[("udp", "message_refused")] == dropped
    finally:
        await listener.stop()


async def test_the_udp_socket_asks_for_a_large_receive_buffer(registry: Registry) -> None:
    """A burst waits in the kernel's buffer while the loop records events."""
    limits = Path("/proc/sys/net/core/rmem_max"), Path("/proc/sys/net/core/rmem_default")
    if not all(path.exists() for path in limits):
        pytest.skip("no /proc/sys/net/core here")
    rmem_max, rmem_default = (int(path.read_text()) for path in limits)
    if rmem_max <= rmem_default:
        pytest.skip("net.core.rmem_max allows no buffer larger than the default")
    listener = RiemannListener(registry.push_event)
    await listener.start_udp("127.0.0.1:0")
    try:
        assert listener._udp is not None
        udp_socket = listener._udp.get_extra_info("socket")
        size = udp_socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        # Linux doubles what it grants, for its bookkeeping.
        assert size >= min(UDP_RECEIVE_BUFFER, rmem_max) > rmem_default
    finally:
        await listener.stop()
