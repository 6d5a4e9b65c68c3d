"""The one HTTP client of a registry agent's REST API that the apps share.

:class:`BaseAgentClient` holds what every client of the API needs: the aiohttp session
(its own, or one the caller lends), the bearer token, a timeout per request, a bounded
read of the reply, JSON decoding, the ``X-Index`` of blocking queries, and the mapping
of failures onto :class:`AgentError` (``status``: the HTTP status, None when there was
no answer) and the library's hierarchy:

* no answer, or none in time: :class:`AgentUnreachable`, also a ``TransportError``;
* a reply of 400 or more: :class:`AgentError`, its ``detail`` the agent's ``error``;
* a reply below 400 that is not a JSON object, or one too large:
  :class:`AgentReplyError`, also a ``DecodeError``.

The deploy hooks (:class:`crdtgossip.apps.deploy.AgentClient`) and the load-balancer
renderer (:class:`crdtgossip.apps.lb.AgentClient`) are its two subclasses; each adds its
calls and its own policy (the renderer retries 5xx and reads 404 as "gone").

Importing this module needs only the standard library: aiohttp (the ``apps`` extra) is
imported when a client is built.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

from crdtgossip.errors import ConfigError, CRDTGossipError, DecodeError, TransportError

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "DEFAULT_AGENT_HTTP",
    "DEFAULT_HTTP_TIMEOUT",
    "MAX_REPLY_BYTES",
    "AgentError",
    "AgentReplyError",
    "AgentUnreachable",
    "BaseAgentClient",
    "Reply",
    "agent_path",
]

#: The agent's default REST address (``crdtgossip agent --http``), which ``render`` and
#: ``deploy`` use when given no ``--agent``: loopback only, so nothing off the machine
#: can write to the registry unless the operator says so.
DEFAULT_AGENT_HTTP = "127.0.0.1:7700"

#: Seconds any one request may take unless the caller gives its own timeout.
DEFAULT_HTTP_TIMEOUT = 30.0

#: Largest reply read, in bytes. A registry of 10,000 instances answers a few MiB; past
#: this the URL is not pointing at an agent, and reading on would only eat memory.
MAX_REPLY_BYTES = 64 * 1024 * 1024

#: Bytes read per chunk while enforcing :data:`MAX_REPLY_BYTES`.
_CHUNK = 64 * 1024

#: Characters kept of an error reply that is not the API's JSON: enough for the start
#: of a proxy's error page, not the whole page.
_ERROR_TEXT = 200

#: Lowest HTTP status that is an error reply.
_ERROR_STATUS = 400


class AgentError(CRDTGossipError):
    """A request to an agent failed: the agent refused it or could not be reached.

    Attributes:
        status: the HTTP status the agent answered, or None when it was not reached.
        detail: the cause alone, for callers that word their own message: the agent's
            ``error`` (or the start of a body that has none), or what kept the request
            from an answer. Empty when the message has nothing more to say.
    """

    def __init__(self, message: str, status: int | None = None, *, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class AgentUnreachable(AgentError, TransportError):
    """The agent could not be reached, or did not answer in time (``status`` is None)."""


class AgentReplyError(AgentError, DecodeError):
    """The agent answered a success status without a JSON object, or too much of it."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer of the agent.

    Attributes:
        status: the HTTP status (below 400).
        index: the agent's change index from ``X-Index``, None when the header is
            missing or not a number (the agent sends it on every read).
        body: the decoded JSON object.
    """

    status: int
    index: int | None
    body: dict[str, Any]


def agent_path(*segments: str) -> str:
    """The API path of ``segments``, each percent-quoted whole: ``/v1/services/a%2Fb``.

    The agent checks names; quoting keeps a bad one from changing the path.
    """
    return "".join("/" + quote(segment, safe="") for segment in segments)


class BaseAgentClient:
    """A client of one agent's REST API; use as ``async with``, or call :meth:`close`.

    Args:
        url: the agent's base URL (``http://127.0.0.1:7700``), checked by
            :meth:`_base_url`.
        token: the bearer token sent with every request, when the agent protects writes.
        timeout: seconds each request may take, unless the call gives its own.
        session: an aiohttp session to use (the client does not close it); by default
            the client opens its own on the first request and closes it in :meth:`close`.

    Raises:
        ~crdtgossip.errors.ConfigError: aiohttp (the ``apps`` extra) is not installed.
        CRDTGossipError: the URL is refused by :meth:`_base_url` (the subclass says which).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_HTTP_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        try:
            import aiohttp  # noqa: F401 - checked here, used per request
        except ImportError as exc:  # pragma: no cover - aiohttp is the apps extra
            raise ConfigError(
                "the agent client needs aiohttp: pip install 'crdtgossip[apps]'"
            ) from exc
        self.url = self._base_url(url).rstrip("/")
        self._token = token
        self._timeout = timeout
        self._session = session
        self._owns_session = session is None

    @staticmethod
    def _base_url(url: str) -> str:
        """The base URL to send requests to, from ``url`` as the user gave it.

        Each subclass checks it its own way (and raises its own error); this one
        takes it as it is.
        """
        return url

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session, if the client opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """Send one request and return the agent's answer.

        Args:
            method: the HTTP method.
            path: the API path from the base URL, starting with ``/`` (see
                :func:`agent_path`); it may carry a query string.
            body: the JSON body, if any.
            params: query parameters (a blocking query's ``index`` and ``wait``).
            timeout: seconds the request may take; the client's own by default.

        Returns:
            The status, the ``X-Index`` and the JSON object of a reply below 400.

        Raises:
            AgentUnreachable: no connection, a broken one, or no answer in time.
            AgentError: the agent answered 400 or above; the message carries its
                ``error`` (or the start of the body when that is not JSON).
            AgentReplyError: a reply below 400 that is not a JSON object, or one larger
                than :data:`MAX_REPLY_BYTES`.
        """
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        where = f"{method} {self.url}{path}"
        total = self._timeout if timeout is None else timeout
        try:
            async with self._session.request(
                method,
                self.url + path,
                params=params,
                json=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=total),
            ) as response:
                status = response.status
                raw = await _read_bounded(response, where)
                index_header = response.headers.get("X-Index", "")
        except TimeoutError as exc:
            detail = f"no answer within {total:g} s"
            raise AgentUnreachable(f"{where}: {detail}", detail=detail) from exc
        except aiohttp.ClientError as exc:
            detail = _describe(exc)
            raise AgentUnreachable(
                f"{where}: cannot reach the agent: {detail}", detail=detail
            ) from exc
        decoded = _decode(raw)
        if status >= _ERROR_STATUS:
            raise _refusal(where, status, decoded, raw)
        if not isinstance(decoded, dict):
            raise AgentReplyError(f"{where}: answered {status} without a JSON object", status)
        index = int(index_header) if index_header.isdigit() else None
        return Reply(status, index, decoded)


async def _read_bounded(response: aiohttp.ClientResponse, where: str) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > MAX_REPLY_BYTES:
            message = f"{where}: reply larger than {MAX_REPLY_BYTES} bytes"
            raise AgentReplyError(message, response.status)
    return bytes(body)


def _decode(raw: bytes) -> object:
    """The JSON value of ``raw``, or None when it is not JSON."""
    try:
        value: object = json.loads(raw)
    except ValueError:  # UnicodeDecodeError included
        return None
    return value


def _refusal(where: str, status: int, decoded: object, raw: bytes) -> AgentError:
    """The error of a reply of 400 or more, with the agent's ``error`` as its detail, or
    the start of the body when it has none (a proxy's error page, say)."""
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if isinstance(error, str):
        detail = " ".join(error.split())
    else:
        detail = " ".join(raw[:_ERROR_TEXT].decode("utf-8", "replace").split())
    if isinstance(decoded, dict):
        message = f"{where}: {status}: {detail}"
    else:
        message = f"{where}: answered {status} without a JSON object"
        message += f": {detail}" if detail else ""
    return AgentError(message, status, detail=detail)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
