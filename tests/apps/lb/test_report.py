"""The renderer's reports of applied drains (:mod:`crdtgossip.apps.lb._report`), against
the fake agent: what counts as applied, a failed reload, no resend, an old agent."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from crdtgossip.apps.lb import AgentClient, LiveFile, NginxRenderer, RenderLoop, RetryPolicy
from crdtgossip.apps.lb._report import ApplyReporter, applied_drains
from crdtgossip.apps.lb.cli import default_name
from tests.apps.lb.fake_agent import FakeAgent, instance

QUICK = RetryPolicy(attempts=2, first_delay=0.01, max_delay=0.02)


def flag(service: str, name: str, stamp: object, *, enabled: bool = True) -> dict[str, object]:
    return {"service": service, "instance": name, "enabled": enabled, "reason": None, "time": stamp}


def test_only_enabled_flags_of_instances_left_out_are_applied() -> None:
    flags = [
        flag("web", "web-1", 10.0),  # left out: applied
        flag("web", "web-2", 11.0),  # still routed: seen, not applied
        flag("web", "web-3", 12.0, enabled=False),  # undrained
        flag("db", "db-1", 13),  # a service the file has no instance of
        flag("web", "web-4", True),  # malformed stamp
        {"service": "web"},
        "junk",
    ]
    installed = {"web": frozenset({"web-2", "web-5"})}
    assert applied_drains(flags, installed) == {"web": {"web-1": 10.0}, "db": {"db-1": 13.0}}
    assert applied_drains({"not": "a list"}, installed) == {}


async def test_a_failed_reload_applies_no_drain_until_a_reload_works(agent: FakeAgent) -> None:
    agent.maintenance = [flag("web", "web-1", 10.0)]
    installed = {"web": frozenset({"web-2"})}
    clock = iter([100.0, 200.0])
    async with AgentClient(agent.url, retry=QUICK) as client:
        reporter = ApplyReporter(client, "lb-1", clock=lambda: next(clock))
        reporter.installed(reloaded=True)
        assert await reporter.report(installed)
        reporter.installed(reloaded=False)
        assert await reporter.report(installed)
        assert await reporter.report(installed)  # unchanged: not sent again
        reporter.installed(reloaded=True)
        assert await reporter.report(installed)
    sent = agent.reports["lb-1"]
    assert [report["applied"] for report in sent] == [
        {"web": {"web-1": 10.0}},
        {},
        sent[0]["applied"],
    ]
    assert [report["reloaded_at"] for report in sent] == [100.0, 100.0, 200.0]
    assert sent[0]["services"] == {"web": 1}
    assert reporter.sent_total == 3


async def test_the_render_loop_reports_what_its_file_leaves_out(
    agent: FakeAgent, tmp_path: Path
) -> None:
    agent.set("web", [instance("web-2", "10.0.0.2", 80)])
    agent.maintenance = [flag("web", "web-1", 10.0)]
    renderer = NginxRenderer()
    async with AgentClient(agent.url, retry=QUICK) as client:
        loop = RenderLoop(
            client,
            renderer,
            LiveFile(tmp_path / "up.inc", renderer, check="true"),
            reporter=ApplyReporter(client, "lb-1"),
        )
        assert (await loop.render_once()).changed
    (report,) = agent.reports["lb-1"]
    assert report["applied"] == {"web": {"web-1": 10.0}}
    assert report["reloaded_at"] is not None


async def test_an_agent_without_reports_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = FakeAgent()
    await old.start()
    try:
        async with AgentClient(old.url, retry=QUICK) as client:
            # The fake answers 404 for a path it does not know, as an older agent does.
            reporter = ApplyReporter(client, "lb-1")
            client.url = client.url + "/old"
            with caplog.at_level(logging.WARNING, logger="crdtgossip.apps.lb"):
                assert not await reporter.report({})
                assert not await reporter.report({})
    finally:
        await old.stop()
    warnings = [r.getMessage() for r in caplog.records if "no renderer reports" in r.getMessage()]
    assert len(warnings) == 1


def test_the_default_name_is_the_host_and_the_file() -> None:
    assert default_name(Path("/etc/nginx/conf.d/upstreams.inc"), "lb1.example") == (
        "lb1.example-upstreams"
    )
    assert default_name(Path("/x/a b.cfg"), "_odd host!") == "odd-host--a-b"
