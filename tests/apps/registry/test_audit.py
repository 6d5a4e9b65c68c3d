"""The audit record: every write (allowed or refused) with who, what, when and where."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crdtgossip.apps.registry import Registry, make_app
from crdtgossip.apps.registry.audit import (
    AUDIT_KEY,
    MAX_SUMMARY,
    AuditEntry,
    AuditLog,
    summarize,
)
from crdtgossip.apps.registry.tokens import ANONYMOUS, TokenTable, parse_tokens
from crdtgossip.crdts import ORSet
from crdtgossip.node import Node
from tests.apps.registry.conftest import FAST, Client, FakeClock

DEPLOYER = "d" * 20
READER = "r" * 20
TOKENS = f"ci read,deploy {DEPLOYER}\nviewer read {READER}\n"
WEB_1 = "/v1/services/web/instances/web-1"

#: A failure guard for gossip between two nodes on loopback, not a timing expectation.
PATIENCE = 30.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def scoped(registry: Registry) -> AsyncIterator[Client]:
    table = TokenTable(parse_tokens(TOKENS), open_reads=True)
    async with TestClient(TestServer(make_app(registry, tokens=table))) as test_client:
        yield test_client


async def audit(client: Client, query: str = "") -> list[dict[str, object]]:
    response = await client.get("/v1/audit" + query)
    assert response.status == 200, await response.text()
    return list((await response.json())["audit"])


async def test_every_write_is_recorded_with_who_what_when_and_where(
    scoped: Client, clock: FakeClock
) -> None:
    release = json.dumps({"version": "1.2.4", "build": "88", "commit": "abc"})
    response = await scoped.put("/v1/releases/prod/web", data=release, headers=bearer(DEPLOYER))
    assert response.status == 200
    clock.advance(5)
    assert (await scoped.get("/v1/releases/prod/web")).status == 200  # a read: not recorded
    [entry] = await audit(scoped)
    assert entry == {
        "time": clock.now - 5,
        "agent": "agent-1",
        "seq": 1,
        "who": "ci",
        "method": "PUT",
        "path": "/v1/releases/prod/web",
        "status": 200,
        "summary": "version=1.2.4 build=88 commit=abc",
        "peer": "127.0.0.1",
    }


async def test_refused_writes_are_recorded_too(scoped: Client, registry: Registry) -> None:
    body = json.dumps({"address": "10.0.0.1", "port": 80})
    assert (await scoped.put(WEB_1, data=body)).status == 401
    assert (await scoped.put(WEB_1, data=body, headers=bearer(READER))).status == 403
    assert (await scoped.put(WEB_1, data=body, headers=bearer("x" * 20))).status == 401
    url = "/v1/expectations/prod/web"
    assert (await scoped.delete(url, headers=bearer(DEPLOYER))).status == 404
    assert (await registry.snapshot()).instances == {}
    entries = await audit(scoped)
    assert [(e["who"], e["method"], e["status"]) for e in entries] == [
        (ANONYMOUS, "PUT", 401),
        ("viewer", "PUT", 403),
        (ANONYMOUS, "PUT", 401),
        ("ci", "DELETE", 404),
    ]
    assert "lacks scope 'register'" in str(entries[1]["summary"])
    assert "no expectation" in str(entries[3]["summary"])


async def test_the_filters_of_the_audit_read(scoped: Client, clock: FakeClock) -> None:
    url = "/v1/expectations/prod/web"
    for index in range(4):
        who = DEPLOYER if index % 2 == 0 else READER
        await scoped.put(url, data=json.dumps({"min_passing": index}), headers=bearer(who))
        clock.advance(10)
    start = clock.now - 40
    assert [e["seq"] for e in await audit(scoped)] == [1, 2, 3, 4]
    assert [e["seq"] for e in await audit(scoped, f"?since={start + 20}")] == [3, 4]
    assert [e["seq"] for e in await audit(scoped, "?who=ci")] == [1, 3]
    assert [e["seq"] for e in await audit(scoped, "?who=ci&limit=1")] == [3]
    both = [(e["seq"], e["who"]) for e in await audit(scoped, "?who=ci,viewer")]
    assert both == [(1, "ci"), (2, "viewer"), (3, "ci"), (4, "viewer")]
    assert [e["seq"] for e in await audit(scoped, "?who=viewer,nobody")] == [2, 4]
    assert await audit(scoped, "?agent=elsewhere") == []
    assert [e["summary"] for e in await audit(scoped, "?who=ci")] == [
        "min_passing=0",
        "min_passing=2",
    ]
    for query, message in [
        ("?until=5", "unknown query parameter 'until'"),
        ("?since=yesterday", "since must be a Unix time"),
        ("?since=-1", "since must be a Unix time"),
        ("?limit=0", "limit must be"),
    ]:
        response = await scoped.get("/v1/audit" + query)
        assert response.status == 400
        assert message in (await response.json())["error"]


async def test_reading_the_audit_needs_the_read_scope(registry: Registry) -> None:
    table = TokenTable(parse_tokens(TOKENS))
    async with TestClient(TestServer(make_app(registry, tokens=table))) as client:
        assert (await client.get("/v1/audit")).status == 401
        assert (await client.get("/v1/audit", headers=bearer(READER))).status == 200


def test_summarize_names_identifying_fields_only() -> None:
    body = {"address": "10.0.0.1", "port": 80, "meta": {"secret": "x"}, "tags": ["a"]}
    assert summarize(json.dumps(body).encode()) == "address=10.0.0.1 port=80"
    assert summarize(b"") == ""
    assert summarize(b"[1, 2]") == "6 bytes"
    assert summarize(b"\xff{") == "2 bytes, not JSON"
    long = json.dumps({"version": "v" * 500, "reason": "r" * 500}).encode()
    assert len(summarize(long)) <= MAX_SUMMARY


async def test_each_agent_keeps_its_last_entries(node: Node, clock: FakeClock) -> None:
    log = AuditLog(node, clock, keep=3)
    for index in range(5):
        await log.record("ci", "PUT", f"/v1/x/{index}", 200, "", "127.0.0.1")
    assert [e.path for e in await log.entries()] == ["/v1/x/2", "/v1/x/3", "/v1/x/4"]
    state = await node.get(AUDIT_KEY, ORSet)
    assert len(state) == 3
    # A new log on the same node (a restarted agent) goes on from its entries.
    again = AuditLog(node, clock, keep=3)
    entry = await again.record("ci", "PUT", "/v1/x/5", 200, "", "127.0.0.1")
    assert entry.seq == 6
    assert [e.seq for e in await again.entries()] == [4, 5, 6]


async def test_the_audit_record_spreads_to_every_agent(node: Node, clock: FakeClock) -> None:
    other = Node("agent-2", "127.0.0.1:0", seeds=(node.address,), config=FAST, seed=2)
    await other.start()
    try:
        await AuditLog(node, clock).record("ci", "PUT", "/v1/a", 200, "", "10.1.1.1")
        await AuditLog(other, clock).record("ops", "DELETE", "/v1/b", 404, "", "10.2.2.2")
        expected = {("agent-1", "ci", "/v1/a"), ("agent-2", "ops", "/v1/b")}

        async def seen(log: AuditLog) -> set[tuple[str, str, str]]:
            return {(e.agent, e.who, e.path) for e in await log.entries()}

        async def both_see_both() -> None:
            while await seen(AuditLog(node, clock)) != expected or (
                await seen(AuditLog(other, clock)) != expected
            ):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(both_see_both(), PATIENCE)
    finally:
        await other.stop()


def test_an_entry_round_trips_through_its_element() -> None:
    entry = AuditEntry(1.5, "a", 1, "ci", "PUT", "/v1/x", 200, "s", "::1")
    assert AuditEntry.of(entry.element()) == entry
    assert entry.record()["peer"] == "::1"
