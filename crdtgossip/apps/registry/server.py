"""The HTTP server of the REST API: errors aiohttp answers itself are JSON too.

aiohttp answers a request its parser refuses (an unknown method such as ``FOO``, a
malformed request line or header) before the application sees it, in plain text. The
API promises ``{"error": ...}`` for every failure, so :class:`JsonErrorRunner` serves
the application with a request handler whose error answers are JSON: an unknown
method is a 405, any other unparsable request a 400, each logged in one line.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

__all__ = ["JsonErrorRunner"]

_log = logging.getLogger("crdtgossip.apps.registry")


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, with JSON error answers."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer to a request aiohttp could not hand to the application."""
        if isinstance(exc, BadHttpMethod):
            status = HTTPStatus.METHOD_NOT_ALLOWED
            text = "unknown HTTP method; the API takes GET, PUT, POST and DELETE"
        elif status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            text = "internal error; see the agent's log"
            _log.error("error answering a request from %s", request.remote, exc_info=exc)
        else:
            first = (message or "").strip().splitlines()
            text = f"malformed request: {first[0] if first else HTTPStatus(status).phrase}"
        _log.info("refused a request from %s: %d %s", request.remote, status, text)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already sent; the connection is dropped")
        response = web.json_response({"error": text}, status=status)
        response.force_close()
        return response


class _JsonErrorServer(Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose parser errors are JSON (see above)."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # The application's own server, with only the connection handler changed.
        server.__class__ = _JsonErrorServer
        return server
