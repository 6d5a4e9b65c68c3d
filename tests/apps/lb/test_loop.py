"""The render loop against the fake agent: quiescence, no-op renders, refused checks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from crdtgossip.apps.lb import (
    AgentClient,
    HAProxyRenderer,
    LiveFile,
    NginxRenderer,
    RenderLoop,
    RenderOptions,
    RetryPolicy,
    TemplateRenderer,
    Wait,
)
from crdtgossip.apps.lb._protocol import Renderer
from crdtgossip.errors import TransportError
from tests.apps.lb.fake_agent import GUARD, FakeAgent, instance
from tests.apps.lb.test_haproxy import MAIN_CONFIG, haproxy_c
from tests.apps.lb.test_nginx import full_config, nginx_t

QUICK = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.02)
# A candidate holding this address is refused by the tests' --check.
REFUSED_ADDRESS = "10.9.9.9"
# Installs at once: whatever the loop does with a reply is done before it asks again.
AT_ONCE = Wait(0.0, 0.0)


def web(*numbers: int, address: str = "10.0.0") -> list[dict[str, object]]:
    return [instance(f"web-{n}", f"{address}.{n}", 8080) for n in numbers]


class Harness:
    """A running RenderLoop on ``out`` and a count of its reloads."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.out = directory / "upstreams.inc"
        self.log = directory / "reloads.log"
        self.task: asyncio.Task[None] | None = None
        self.stop = asyncio.Event()

    @property
    def reloads(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0

    async def start(
        self,
        client: AgentClient,
        *,
        wait: Wait,
        renderer: Renderer | None = None,
        check: str | None = f"! grep -q {REFUSED_ADDRESS} {{path}}",
    ) -> None:
        renderer = renderer if renderer is not None else NginxRenderer()
        live = LiveFile(self.out, renderer, check=check, reload=f"echo reload >> {self.log}")
        render_loop = RenderLoop(client, renderer, live, wait=wait)
        self.task = asyncio.ensure_future(render_loop.run(self.stop))

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(GUARD):
            while not condition():
                assert self.task is not None
                if self.task.done():
                    self.task.result()
                    raise AssertionError("the loop ended")
                await asyncio.sleep(0.01)

    async def finish(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, GUARD)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    running = Harness(tmp_path)
    try:
        yield running
    finally:
        running.stop.set()
        if running.task is not None and not running.task.done():
            running.task.cancel()


@pytest.fixture
async def client(agent: FakeAgent) -> AsyncIterator[AgentClient]:
    async with AgentClient(agent.url, retry=QUICK) as opened:
        yield opened


async def test_a_burst_of_five_changes_gives_one_reload(
    agent: FakeAgent, client: AgentClient, harness: Harness
) -> None:
    agent.set("web", web(1))
    # A minimum far above one round trip, so every change of the burst falls inside it.
    await harness.start(client, wait=Wait(1.5, 60.0))
    await harness.until(lambda: harness.reloads == 1)  # the first render does not wait
    assert "10.0.0.1:8080" in harness.out.read_text()

    for last in range(2, 7):
        agent.set("web", web(*range(1, last + 1)))
        await agent.read_past(agent.index)  # the loop has read and rendered this state
    assert harness.reloads == 1  # still quiet: nothing installed mid-burst

    await harness.until(lambda: harness.reloads >= 2)
    assert harness.reloads == 2
    assert "10.0.0.6:8080" in harness.out.read_text()
    await harness.finish()


async def test_unchanged_output_writes_nothing_and_does_not_reload(
    agent: FakeAgent, client: AgentClient, harness: Harness
) -> None:
    agent.set("web", web(1, 2))
    async with AgentClient(agent.url, retry=QUICK) as reader:
        current = NginxRenderer().render((await reader.snapshot()).services)
    harness.out.write_text(current)
    before = harness.out.stat()

    await harness.start(client, wait=AT_ONCE)
    await agent.read_past(agent.index)
    # Changes the agent's index but not the passing instances, so not the text.
    agent.set("web", [*web(1, 2), instance("web-3", "10.0.0.3", 8080, health="critical")])
    await agent.read_past(agent.index)
    agent.set("web", [*web(1, 2), instance("web-3", "10.0.0.3", 8080, maintenance=True)])
    await agent.read_past(agent.index)

    assert harness.reloads == 0
    after = harness.out.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    await harness.finish()


async def test_an_instance_the_check_refuses_is_left_out_and_counted(
    agent: FakeAgent,
    client: AgentClient,
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "crdtgossip.apps.lb")
    agent.set("web", web(1))
    await harness.start(client, wait=AT_ONCE)
    await harness.until(lambda: harness.reloads == 1)
    good = harness.out.read_text()

    agent.set("web", [*web(1), instance("web-9", REFUSED_ADDRESS, 8080)])
    await agent.read_past(agent.index)
    assert harness.out.read_text() == good
    assert harness.reloads == 1
    refusals = [r.message for r in caplog.records if r.message.startswith("left out")]
    assert len(refusals) == 1
    assert "web/web-9 (10.9.9.9:8080)" in refusals[0]
    assert "--check refused the new config (exit 1)" in refusals[0]
    # The same refused text again (the index moved for an unrelated reason): not retried.
    agent.set("idle", [])
    agent.set("idle", [])
    agent.remove("idle")
    await agent.read_past(agent.index)
    assert sum(r.message.startswith("left out") for r in caplog.records) == 1

    # The bad instance stays registered; every other change still goes through.
    agent.set("web", [*web(1, 2), instance("web-9", REFUSED_ADDRESS, 8080)])
    await harness.until(lambda: harness.reloads == 2)
    assert "10.0.0.2:8080" in harness.out.read_text()
    assert REFUSED_ADDRESS not in harness.out.read_text()
    assert not [p for p in harness.directory.iterdir() if p.name.endswith(".tmp")]
    await harness.finish()


async def test_a_check_that_refuses_everything_keeps_the_old_file(
    agent: FakeAgent,
    client: AgentClient,
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO, "crdtgossip.apps.lb")
    agent.set("web", web(1))
    flag = tmp_path / "refuse"
    await harness.start(client, wait=AT_ONCE, check=f"! test -e {flag}")
    await harness.until(lambda: harness.reloads == 1)
    good = harness.out.read_text()
    flag.write_text("")
    agent.set("web", web(1, 2))
    await agent.read_past(agent.index)
    assert harness.out.read_text() == good
    refusals = [r.message for r in caplog.records if "refused the new" in r.message]
    assert refusals == [
        f"--check refused the new config (exit 1), {harness.out} left unchanged: no output"
    ]
    await harness.finish()


async def test_a_service_with_no_healthy_instance_gives_a_config_nginx_accepts(
    agent: FakeAgent, client: AgentClient, harness: Harness, nginx: str
) -> None:
    agent.set("web", web(1))
    agent.set("api", [instance("api-1", "10.0.1.1", 9000)])
    # check=None: the renderer's own check, the real nginx -t.
    await harness.start(client, wait=AT_ONCE, check=None)
    await harness.until(lambda: harness.reloads == 1)

    agent.set("api", [instance("api-1", "10.0.1.1", 9000, maintenance=True)])
    await harness.until(lambda: harness.reloads == 2)
    text = harness.out.read_text()
    assert "server 127.0.0.1:65535 down;" in text
    result = nginx_t(nginx, full_config(harness.directory, harness.out, ["web", "api"]))
    assert result.returncode == 0, result.stderr
    await harness.finish()


async def test_a_service_with_no_healthy_instance_gives_a_config_haproxy_accepts(
    agent: FakeAgent, client: AgentClient, harness: Harness, haproxy: str
) -> None:
    agent.set("web", [instance("web-1", "10.0.0.1", 80, health="critical")])
    agent.set("api", [])
    agent.set("idle", [])
    await harness.start(client, wait=AT_ONCE, renderer=HAProxyRenderer(), check=None)
    await harness.until(lambda: harness.reloads == 1)
    assert "server" not in harness.out.read_text().replace("no server", "")
    main = harness.directory / "haproxy.cfg"
    main.write_text(MAIN_CONFIG)
    result = haproxy_c(haproxy, main, harness.out)
    assert result.returncode == 0, result.stdout + result.stderr
    await harness.finish()


async def test_a_template_error_is_logged_once_and_the_loop_goes_on(
    agent: FakeAgent,
    client: AgentClient,
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "crdtgossip.apps.lb")
    renderer = TemplateRenderer(RenderOptions(template="{{ services.web[0].endpoint }}\n"))
    agent.set("api", [])
    await harness.start(client, wait=AT_ONCE, renderer=renderer, check=None)
    await agent.read_past(agent.index)
    agent.set("other", [])
    await agent.read_past(agent.index)
    failures = [r.message for r in caplog.records if "render failed" in r.message]
    assert len(failures) == 1
    assert "has no attribute 'web'" in failures[0]
    assert not harness.out.exists()

    agent.set("web", web(7))
    await harness.until(lambda: harness.reloads == 1)
    assert harness.out.read_text() == "10.0.0.7:8080\n"
    await harness.finish()


async def test_an_agent_that_goes_away_ends_the_loop_with_a_transport_error(
    agent: FakeAgent, client: AgentClient, harness: Harness
) -> None:
    agent.set("web", web(1))
    await harness.start(client, wait=AT_ONCE)
    await harness.until(lambda: harness.reloads == 1)
    good = harness.out.read_text()
    await agent.stop()
    assert harness.task is not None
    with pytest.raises(TransportError, match="unreachable after 3 tries"):
        await asyncio.wait_for(harness.task, GUARD)
    assert harness.out.read_text() == good


async def test_stop_ends_a_loop_blocked_on_the_agent(
    agent: FakeAgent, client: AgentClient, harness: Harness
) -> None:
    agent.set("web", web(1))
    await harness.start(client, wait=AT_ONCE)
    await harness.until(lambda: harness.reloads == 1)
    await agent.read_past(agent.index)
    await harness.finish()
    assert harness.task is not None
    assert harness.task.done()
