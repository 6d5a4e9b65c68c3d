"""AgentClient against the fake agent: reads, blocking, retries, clear failures."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from crdtgossip.apps.lb import AgentClient, Instance, RetryPolicy
from crdtgossip.errors import ConfigError, DecodeError, TransportError
from tests.apps.lb.fake_agent import GUARD, FakeAgent, instance

QUICK = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.02)


async def test_snapshot_reads_passing_instances_of_every_service(agent: FakeAgent) -> None:
    agent.set(
        "web",
        [
            instance("web-1", "10.0.0.1", 80),
            instance("web-2", "10.0.0.2", 80, health="critical"),
            instance("web-3", "10.0.0.3", 80, maintenance=True),
            instance("web-4", "10.0.0.4", 80, health="warning"),
        ],
    )
    agent.set("idle", [])
    async with AgentClient(agent.url, retry=QUICK) as client:
        snapshot = await client.snapshot()
    assert snapshot.index == agent.index
    assert list(snapshot.services) == ["idle", "web"]
    assert snapshot.services["idle"] == []
    assert [i.id for i in snapshot.services["web"]] == ["web-1"]
    assert isinstance(snapshot.services["web"][0], Instance)


async def test_unsafe_service_names_are_listed_but_not_read(agent: FakeAgent) -> None:
    agent.set("a/b", [instance("x", "10.0.0.1", 80)])
    async with AgentClient(agent.url, retry=QUICK) as client:
        snapshot = await client.snapshot()
    assert snapshot.services == {"a/b": []}


async def test_a_blocking_snapshot_returns_on_the_next_change(agent: FakeAgent) -> None:
    agent.set("web", [])
    async with AgentClient(agent.url, retry=QUICK) as client:
        first = await client.snapshot()
        waiting = asyncio.ensure_future(client.snapshot(index=first.index, wait=60))
        await agent.read_past(first.index)
        assert not waiting.done()
        agent.set("web", [instance("web-1", "10.0.0.1", 80)])
        second = await asyncio.wait_for(waiting, GUARD)
    assert second.index > first.index
    assert [i.id for i in second.services["web"]] == ["web-1"]


async def test_5xx_is_retried(agent: FakeAgent, caplog: pytest.LogCaptureFixture) -> None:
    agent.set("web", [])
    agent.fail_next = 2
    with caplog.at_level(logging.WARNING, "crdtgossip.apps.lb"):
        async with AgentClient(agent.url, retry=QUICK) as client:
            snapshot = await client.snapshot()
    assert "web" in snapshot.services
    assert sum("HTTP 503 agent busy" in r.message for r in caplog.records) == 2


async def test_an_agent_that_stays_down_is_a_transport_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on that port any more: connections are refused.
    async with AgentClient(f"http://127.0.0.1:{port}", retry=QUICK) as client:
        with pytest.raises(TransportError, match=r"unreachable after 3 tries: GET /v1/ready"):
            await client.snapshot()


async def test_a_wrong_url_is_a_config_error(agent: FakeAgent) -> None:
    async with AgentClient(agent.url + "not-the-api/", retry=QUICK) as client:
        with pytest.raises(ConfigError, match=r"has no /v1/services \(404\)"):
            await client.snapshot()


async def test_a_reply_without_x_index_is_not_an_agent(agent: FakeAgent) -> None:
    agent.without_index = True
    async with AgentClient(agent.url, retry=QUICK) as client:
        with pytest.raises(DecodeError, match="no X-Index header"):
            await client.snapshot()


def test_an_agent_without_a_scheme_is_http() -> None:
    assert AgentClient("127.0.0.1:7700").url == "http://127.0.0.1:7700"


@pytest.mark.parametrize("url", ["ftp://h/", "http://", "not a url"])
def test_a_bad_agent_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="--agent"):
        AgentClient(url)


def test_retry_delays_double_up_to_the_maximum() -> None:
    policy = RetryPolicy(attempts=10, first_delay=1.0, max_delay=4.0)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (9, 4.0)]:
        for _ in range(20):
            assert ceiling / 2 <= policy.delay(failures) <= ceiling
    with pytest.raises(ConfigError):
        RetryPolicy(attempts=0, first_delay=1.0, max_delay=2.0)
