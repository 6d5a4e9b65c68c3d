"""What the HTTP server answers before the application: JSON, one log line, no traceback."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from crdtgossip.apps.registry import Registry, make_app
from crdtgossip.apps.registry.server import JsonErrorRunner
from tests.polling import PATIENCE, eventually


@pytest.fixture
async def address(registry: Registry) -> AsyncIterator[tuple[str, int]]:
    runner = JsonErrorRunner(make_app(registry), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield str(host), int(port)
    await runner.cleanup()


async def exchange(address: tuple[str, int], request: bytes) -> tuple[int, bytes]:
    """Send raw bytes; the status and body of the answer."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), PATIENCE)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_an_unknown_method_is_a_json_405(address: tuple[str, int]) -> None:
    status, body = await exchange(address, b"FOO /v1/services HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 405
    assert "unknown HTTP method" in json.loads(body)["error"]


async def test_a_malformed_request_is_a_json_400(address: tuple[str, int]) -> None:
    status, body = await exchange(address, b"GET /v1/services HTTP/1.1\r\nBad Header\r\n\r\n")
    assert status == 400
    assert json.loads(body)["error"].startswith("malformed request")


async def test_a_client_hanging_up_mid_body_logs_one_line_and_no_traceback(
    address: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    _, writer = await asyncio.open_connection(*address)
    writer.write(
        b"PUT /v1/services/web/instances/w1 HTTP/1.1\r\nHost: x\r\n"
        b'Content-Length: 1000\r\n\r\n{"addr'
    )
    await writer.drain()
    await asyncio.sleep(0)
    writer.close()

    def logged() -> bool:
        return any("hung up" in record.getMessage() for record in caplog.records)

    await eventually(logged, "the hang-up is logged")
    assert not any(record.exc_info for record in caplog.records)
