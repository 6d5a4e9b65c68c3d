"""Tests of what a Node logs: joins, failed joins, member states, refused frames."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from crdtgossip import Keyring, MemoryNetwork, Node
from crdtgossip._node_log import NodeLog
from crdtgossip._ratelimit import LogLimiter
from crdtgossip.protocol import Member, MemberSuspect, Status
from crdtgossip.transport import parse_address
from tests.node.conftest import FAST, statuses
from tests.polling import eventually

#: The summary interval in these tests: short, so a summary comes within the test.
FAST_LOG_INTERVAL = 0.05

LOGGER = "crdtgossip.node"


@pytest.fixture(autouse=True)
def fast_summaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("crdtgossip._node_log.LOG_INTERVAL", FAST_LOG_INTERVAL)


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


async def test_joins_and_member_states_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    network = MemoryNetwork(seed=3)
    first = Node("a", "a:7000", config=FAST, transport=network.transport)
    second = Node("b", "b:7000", ["a:7000"], config=FAST, transport=network.transport)
    async with first, second:
        await eventually(lambda: statuses(first).get("b") == "alive", "a sees b")
        network.partition(["a:7000"], ["b:7000"])
        await eventually(lambda: statuses(first)["b"] == "dead", "a marks b dead")
        network.heal()
        await eventually(lambda: statuses(first)["b"] == "alive", "b is back")
        await second.leave()
        await eventually(lambda: statuses(first)["b"] == "left", "b left")
    text = "\n".join(_messages(caplog))
    assert "b joined the cluster" in text
    assert "a sees b join at b:7000" in text
    assert "a sees b at b:7000 suspect" in text
    assert "a sees b at b:7000 dead" in text
    assert "a sees b leave" in text


async def test_a_join_no_seed_answers_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    network = MemoryNetwork(seed=3)
    async with Node("lonely", "x:7000", ["nobody:7000"], config=FAST, transport=network.transport):
        await eventually(
            lambda: any("has not joined yet" in line for line in _messages(caplog)),
            "the pending join is logged",
        )
    assert "nobody:7000" in "\n".join(_messages(caplog))


async def test_refused_frames_are_summed_by_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    node = Node("a", "127.0.0.1:0", keyring=Keyring.generate(), config=FAST)
    async with node:
        host, port = parse_address(node.address)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(200):  # a flood of frames under no key of the node's
                sender.sendto(b"\x01not sealed under any installed key", (host, port))
        await eventually(
            lambda: any("refused" in line for line in _messages(caplog)), "a summary is logged"
        )
        await asyncio.sleep(FAST_LOG_INTERVAL * 3)
    summaries = [line for line in _messages(caplog) if "refused" in line]
    assert "unauthenticated" in summaries[0]
    # 200 frames, a handful of summaries at most: one line per interval, not per frame.
    assert sum(int(line.split("refused ")[1].split()[0]) for line in summaries) == 200
    assert len(summaries) < 10


def test_member_lines_a_flapping_peer_causes_are_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    log = NodeLog("a", [], LogLimiter(burst=5, interval=3600.0))
    member = Member("b", "b:7000", Status.SUSPECT, 1)
    for _ in range(1000):
        log.member_event(MemberSuspect(member))
    assert len(_messages(caplog)) == 5
