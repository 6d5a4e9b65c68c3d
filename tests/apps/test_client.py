"""The shared agent client: session, token, replies, and how failures are mapped."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from crdtgossip.apps import _client as client_module
from crdtgossip.apps._client import (
    AgentError,
    AgentReplyError,
    AgentUnreachable,
    BaseAgentClient,
    agent_path,
)
from crdtgossip.apps.deploy import AgentClient as DeployClient
from crdtgossip.apps.deploy import AgentError as DeployError
from crdtgossip.apps.lb import AgentClient as RenderClient
from crdtgossip.errors import ConfigError, DecodeError, TransportError

#: The longest a held reply is held: a guard against a hung test, not a timing goal.
GUARD = 20.0


class Fake:
    """An HTTP server with one route per kind of reply; ``url`` once started."""

    def __init__(self) -> None:
        self.release = asyncio.Event()  # set to answer held requests
        app = web.Application()
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_get("/no-index", self._no_index)
        app.router.add_get("/busy", self._busy)
        app.router.add_get("/empty-error", self._empty_error)
        app.router.add_get("/page", self._page)
        app.router.add_get("/text", self._text)
        app.router.add_get("/list", self._list)
        app.router.add_get("/held", self._held)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        seen = {
            "method": request.method,
            "authorization": request.headers.get("Authorization"),
            "query": dict(request.query),
            "body": body,
        }
        return web.json_response(seen, headers={"X-Index": "7"})

    async def _no_index(self, request: web.Request) -> web.Response:
        return web.json_response({"x": 1})

    async def _busy(self, request: web.Request) -> web.Response:
        return web.json_response({"error": "agent\n  busy"}, status=503)

    async def _empty_error(self, request: web.Request) -> web.Response:
        return web.json_response({"detail": "no error key"}, status=400)

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text="<html>  Bad\n gateway </html>", status=502)

    async def _text(self, request: web.Request) -> web.Response:
        return web.Response(text="not json")

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([1, 2])

    async def _held(self, request: web.Request) -> web.Response:
        async with asyncio.timeout(GUARD):
            await self.release.wait()
        return web.json_response({})


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    made = Fake()
    await made.server.start_server()
    try:
        yield made
    finally:
        made.release.set()
        await made.server.close()


def test_agent_path_quotes_each_segment_whole() -> None:
    assert agent_path("v1", "services") == "/v1/services"
    assert agent_path("v1", "services", "a/b c", "x?y") == "/v1/services/a%2Fb%20c/x%3Fy"


async def test_a_reply_has_status_index_and_body(fake: Fake) -> None:
    async with BaseAgentClient(fake.url + "/") as client:
        reply = await client.call("PUT", "/echo", {"enable": True}, params={"index": "3"})
    assert (reply.status, reply.index) == (200, 7)
    assert reply.body == {
        "method": "PUT",
        "authorization": None,
        "query": {"index": "3"},
        "body": {"enable": True},
    }


async def test_the_token_goes_with_every_request(fake: Fake) -> None:
    async with BaseAgentClient(fake.url, token="s3cret") as client:
        reply = await client.call("GET", "/echo")
    assert reply.body["authorization"] == "Bearer s3cret"


async def test_a_reply_without_x_index_has_no_index(fake: Fake) -> None:
    async with BaseAgentClient(fake.url) as client:
        assert (await client.call("GET", "/no-index")).index is None


async def test_an_error_reply_is_an_agent_error_with_its_message(fake: Fake) -> None:
    async with BaseAgentClient(fake.url) as client:
        with pytest.raises(AgentError) as caught:
            await client.call("GET", "/busy")
    assert type(caught.value) is AgentError
    assert caught.value.status == 503
    assert caught.value.detail == "agent busy"
    assert str(caught.value) == f"GET {fake.url}/busy: 503: agent busy"


async def test_an_error_reply_without_an_error_key_shows_the_body(fake: Fake) -> None:
    async with BaseAgentClient(fake.url) as client:
        with pytest.raises(AgentError) as caught:
            await client.call("GET", "/empty-error")
    assert caught.value.detail == '{"detail": "no error key"}'
    assert str(caught.value).endswith(': 400: {"detail": "no error key"}')


async def test_an_error_page_that_is_not_json_shows_its_start(fake: Fake) -> None:
    async with BaseAgentClient(fake.url) as client:
        with pytest.raises(AgentError) as caught:
            await client.call("GET", "/page")
    assert caught.value.status == 502
    detail = caught.value.detail
    assert detail == "<html> Bad gateway </html>"
    assert str(caught.value) == f"GET {fake.url}/page: answered 502 without a JSON object: {detail}"


@pytest.mark.parametrize("path", ["/text", "/list"])
async def test_a_success_without_a_json_object_is_a_decode_error(fake: Fake, path: str) -> None:
    async with BaseAgentClient(fake.url) as client:
        with pytest.raises(AgentReplyError) as caught:
            await client.call("GET", path)
    assert isinstance(caught.value, DecodeError)
    assert isinstance(caught.value, AgentError)
    assert caught.value.status == 200
    assert str(caught.value) == f"GET {fake.url}{path}: answered 200 without a JSON object"


async def test_a_reply_past_the_limit_is_a_decode_error(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_REPLY_BYTES", 16)
    async with BaseAgentClient(fake.url) as client:
        with pytest.raises(AgentReplyError, match="reply larger than 16 bytes"):
            await client.call("GET", "/echo")


async def test_no_answer_in_time_is_unreachable(fake: Fake) -> None:
    async with BaseAgentClient(fake.url) as client:
        with pytest.raises(AgentUnreachable) as caught:
            await client.call("GET", "/held", timeout=0.05)
    assert caught.value.status is None
    assert caught.value.detail == "no answer within 0.05 s"


async def test_a_closed_port_is_unreachable_and_a_transport_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on that port any more: connections are refused.
    async with BaseAgentClient(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(AgentUnreachable) as caught:
            await client.call("GET", "/v1/services")
    assert isinstance(caught.value, TransportError)
    assert caught.value.status is None
    assert caught.value.detail.startswith("ClientConnectorError: ")
    where = f"GET http://127.0.0.1:{port}/v1/services"
    assert str(caught.value) == f"{where}: cannot reach the agent: {caught.value.detail}"


async def test_a_lent_session_stays_open_and_an_own_one_is_closed(fake: Fake) -> None:
    async with aiohttp.ClientSession() as session:
        async with BaseAgentClient(fake.url, session=session) as client:
            await client.call("GET", "/echo")
        assert not session.closed
        own = BaseAgentClient(fake.url)
        await own.call("GET", "/echo")
        opened = own._session
        assert opened is not None
        await own.close()
        assert opened.closed


def test_each_app_checks_its_url_its_own_way() -> None:
    # Both assume http:// when given host:port (issue 16: they used to differ) and
    # send to the URL without a final /; each refuses a bad URL with its own error.
    assert DeployClient("127.0.0.1:7700/").url == "http://127.0.0.1:7700"
    assert RenderClient("http://127.0.0.1:8500/").url == "http://127.0.0.1:8500"
    with pytest.raises(AgentError, match="http"):
        DeployClient("ftp://x")
    assert RenderClient("127.0.0.1:7700").url == "http://127.0.0.1:7700"
    with pytest.raises(ConfigError, match="--agent"):
        RenderClient("ftp://x")
    assert DeployError is AgentError
