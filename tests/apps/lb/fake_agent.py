"""A fake agent: the two reads of the REST API that the renderer uses, on loopback.

``GET /v1/services`` and ``GET /v1/services/{service}?passing=true``, both with
``X-Index`` and blocking (``?index=N&wait=10s``), as DESIGN.md gives them; the state is
set directly by the test. It records every blocking index it was asked to wait on, so a
test can wait until the render loop has read a change (it then asks to wait past it).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

#: Longest a test waits for the loop to do something: a failure guard, not a goal.
GUARD = 20.0


def instance(
    instance_id: str,
    address: str,
    port: int,
    *,
    health: str = "passing",
    maintenance: bool = False,
) -> dict[str, Any]:
    """An instance as the API returns it."""
    return {
        "id": instance_id,
        "address": address,
        "port": port,
        "env": "prod",
        "tags": ["http"],
        "meta": {"zone": "a"},
        "health": health,
        "maintenance": maintenance,
        "maintenance_reason": None,
    }


class FakeAgent:
    """The fake; ``url`` once started."""

    def __init__(self) -> None:
        self.index = 1
        self.services: dict[str, list[dict[str, Any]]] = {}
        self.blocked_on: list[int] = []
        self.fail_next = 0  # answer this many requests with 503 first
        self.without_index = False  # leave X-Index out (not a crdtgossip agent)
        self._closing = False
        self._changed = asyncio.Event()
        # The maintenance flags it lists, and the renderer reports it was sent.
        self.maintenance: list[dict[str, Any]] = []
        self.reports: dict[str, list[dict[str, Any]]] = {}
        app = web.Application()
        app.router.add_get("/v1/services", self._list)
        app.router.add_get("/v1/services/{service}", self._service)
        app.router.add_get("/v1/maintenance", self._maintenance)
        app.router.add_put("/v1/renderers/{name}", self._report)
        self._server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self._server.make_url("/"))

    async def start(self) -> None:
        await self._server.start_server()

    async def stop(self) -> None:
        """Answer the blocked queries, then close (as an agent shutting down does)."""
        if self._closing:
            return
        self._closing = True
        self._changed.set()
        await self._server.close()

    def set(self, service: str, instances: list[dict[str, Any]]) -> None:
        """Replace a service's instances (one change: the index moves)."""
        self.services[service] = instances
        self._bump()

    def remove(self, service: str) -> None:
        del self.services[service]
        self._bump()

    def _bump(self) -> None:
        self.index += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def read_past(self, index: int) -> None:
        """Wait until a client blocks on ``index`` or later: it has read that state."""
        async with asyncio.timeout(GUARD):
            while not any(seen >= index for seen in self.blocked_on):
                await asyncio.sleep(0.01)

    async def _block(self, request: web.Request) -> web.Response | None:
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"error": "agent busy"}, status=503)
        if "index" not in request.query:
            return None
        index = int(request.query["index"])
        wait = _seconds(request.query.get("wait", "300s"))
        self.blocked_on.append(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while self.index <= index and loop.time() < deadline and not self._closing:
            try:
                async with asyncio.timeout(deadline - loop.time()):
                    await self._changed.wait()
            except TimeoutError:
                break
        return None

    def _reply(self, body: dict[str, Any]) -> web.Response:
        headers = {} if self.without_index else {"X-Index": str(self.index)}
        return web.json_response(body, headers=headers)

    async def _maintenance(self, request: web.Request) -> web.Response:
        return self._reply({"maintenance": list(self.maintenance)})

    async def _report(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.reports.setdefault(request.match_info["name"], []).append(body)
        return self._reply({"renderer": body})

    async def _list(self, request: web.Request) -> web.Response:
        refused = await self._block(request)
        if refused is not None:
            return refused
        return self._reply({"services": dict(self.services)})

    async def _service(self, request: web.Request) -> web.Response:
        refused = await self._block(request)
        if refused is not None:
            return refused
        name = request.match_info["service"]
        if name not in self.services:
            return web.json_response({"error": f"no service {name!r}"}, status=404)
        instances = self.services[name]
        if request.query.get("passing") == "true":
            instances = [
                item
                for item in instances
                if item["health"] == "passing" and not item["maintenance"]
            ]
        return self._reply({"instances": instances})


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)?", text)
    assert match is not None, text
    return float(match.group(1)) * (0.001 if match.group(2) == "ms" else 1.0)
