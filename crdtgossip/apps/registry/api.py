"""The registry's REST API on aiohttp: JSON in and out, ``{"error": ...}`` on failure.

Every request is checked completely before anything is written. Failures answer:

* 400: malformed JSON, a missing, mistyped, out-of-range or unknown field, a bad
  name, a bad ``index``, ``wait``, ``at`` or ``passing`` parameter;
* 401: a request without a known token, when the agent has tokens (:mod:`.tokens`);
  403: a token without the scope the request needs;
* 404: an unknown service or instance, or no such endpoint; 405: a wrong method;
* 413: a body over :data:`MAX_BODY_BYTES`;
* 501 / 504: a ``majority`` maintenance write the node cannot coordinate, or whose
  majority did not answer in time (the change is applied on this agent and spreads).

Every write, allowed or refused, adds an entry to the audit record (:mod:`.audit`).

Every reply carries ``X-Index``, this agent's change index; a GET with ``?index=N``
blocks until the index passes ``N`` or ``wait`` ends (:mod:`.index`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from crdtgossip.apps.registry.audit import AuditLog, add_audit_routes, summarize
from crdtgossip.apps.registry.fields import NAME_RULE
from crdtgossip.apps.registry.index import parse_blocking
from crdtgossip.apps.registry.metrics import CONTENT_TYPE, RiemannCounters, render_metrics
from crdtgossip.apps.registry.model import (
    RegistryError,
    check_name,
    parse_expectation,
    parse_instance,
    parse_json,
    parse_maintenance,
)
from crdtgossip.apps.registry.releases_api import add_release_routes
from crdtgossip.apps.registry.renderers_api import add_renderer_routes
from crdtgossip.apps.registry.state import Registry
from crdtgossip.apps.registry.tokens import ANONYMOUS, TokenTable, default_table
from crdtgossip.apps.registry.view import instance_view, service_view, services_view
from crdtgossip.errors import ConfigError, QuorumError

__all__ = ["MAX_BODY_BYTES", "make_app"]

_log = logging.getLogger(__name__)

#: Largest request body, in bytes. A registration with every field at its limit (64
#: tags, 64 meta pairs of 128 + 512 characters) is about 60 KiB; aiohttp's default is
#: 1 MiB and Consul's agent takes up to 512 KiB for a KV value. Larger gets a 413.
MAX_BODY_BYTES = 64 * 1024

#: Methods that only read; every other method is a write and needs the token, if set.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: Characters no name may hold that the router cannot even match (a 400, not a 404).
_BRACES = frozenset("{}")

_TRUE = frozenset({"", "1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})


@dataclass(slots=True)
class _ApiState:
    registry: Registry
    tokens: TokenTable | None
    audit: AuditLog
    max_body: int
    riemann: RiemannCounters | None = None
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)


_STATE = web.AppKey("crdtgossip.registry", _ApiState)


def make_app(
    registry: Registry,
    *,
    token: str | None = None,
    tokens: TokenTable | None = None,
    audit: AuditLog | None = None,
    client_max_size: int = MAX_BODY_BYTES,
    riemann: RiemannCounters | None = None,
) -> web.Application:
    """The aiohttp application serving ``registry``.

    Args:
        registry: a started :class:`~crdtgossip.apps.registry.state.Registry`.
        token: when given (and ``tokens`` not), every write (PUT, POST, DELETE) needs
            the header ``Authorization: Bearer <token>``; reads stay open. It is the
            admin token named ``default`` of :mod:`.tokens`.
        tokens: the named tokens and their scopes (:mod:`.tokens`); it wins over
            ``token``. With neither, every request is allowed.
        audit: where writes are recorded; by default an
            :class:`~crdtgossip.apps.registry.audit.AuditLog` on the registry's node.
        client_max_size: largest request body in bytes (413 beyond).
        riemann: the counters of the agent's Riemann listener
            (:mod:`.riemann_listener`), shown on ``/metrics``; None without one.

    Returns:
        The application, ready for an ``aiohttp.web.AppRunner``.
    """
    if tokens is None and token is not None:
        tokens = default_table(token)
    if audit is None:
        audit = AuditLog(registry.node, registry.now)
    app = web.Application(middlewares=[_middleware], client_max_size=client_max_size)
    app[_STATE] = _ApiState(
        registry=registry, tokens=tokens, audit=audit, max_body=client_max_size, riemann=riemann
    )
    add_audit_routes(app, lambda request: request.app[_STATE].audit)
    instance = "/v1/services/{service}/instances/{instance}"
    app.router.add_put(instance, _register)
    app.router.add_get(instance, _instance)
    app.router.add_delete(instance, _deregister)
    app.router.add_put(instance + "/maintenance", _maintenance)
    app.router.add_get("/v1/services", _services)
    app.router.add_get("/v1/services/{service}", _service)
    app.router.add_post("/v1/events", _event)
    add_release_routes(app, lambda request: request.app[_STATE].registry, _block)
    add_renderer_routes(app, lambda request: request.app[_STATE].registry, _block)
    app.router.add_put("/v1/expectations/{env}/{service}", _expectation)
    app.router.add_delete("/v1/expectations/{env}/{service}", _delete_expectation)
    app.router.add_get("/v1/health", _health)
    app.router.add_get("/v1/members", _members)
    app.router.add_get("/v1/ready", _ready)
    app.router.add_get("/metrics", _metrics)
    return app


# ---- plumbing --------------------------------------------------------------------------
def _error(status: int, message: str) -> web.Response:
    response = web.json_response({"error": message}, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="crdtgossip"'
    return response


def _http_message(exc: web.HTTPException, request: web.Request) -> str:
    if exc.status == 404 and request.path.startswith("/v1/") and _BRACES & set(request.path):
        # The router's {name} segments never match a brace, so such a name would be
        # an unknown endpoint; it is a bad name.
        return f"{request.path!r} holds a name with '{{' or '}}': {NAME_RULE}"
    if exc.status == 404:
        return f"no such endpoint: {request.method} {request.path}"
    if exc.status == 405:
        return f"method {request.method} is not allowed on {request.path}"
    if exc.status == 413:
        return f"the request body is larger than {request.app[_STATE].max_body} bytes"
    text = exc.text or exc.reason
    return text.split(": ", 1)[-1] if text.startswith(str(exc.status)) else text


def _authorize(request: web.Request, tokens: TokenTable | None) -> str:
    """Who makes ``request`` (a token's name), if it may be made.

    Raises:
        RegistryError: (401) no known token; (403) a token without the scope needed.
    """
    if tokens is None:
        return ANONYMOUS
    authorization = request.headers.get("Authorization", "")
    return tokens.check(request.method, request.path, authorization)


async def _audit(
    request: web.Request, state: _ApiState, who: str | None, response: web.StreamResponse
) -> None:
    """Add the audit entry of a write request (allowed or refused)."""
    if who is None:  # refused before it was known: name the token, if one was given
        header = request.headers.get("Authorization", "")
        who = ANONYMOUS if state.tokens is None else state.tokens.name_of(header)
    if response.status < 400:
        summary = summarize(await request.read())  # read already: aiohttp keeps it
    else:
        summary = _error_text(response) if isinstance(response, web.Response) else ""
    peer = request.remote or ""
    await state.audit.record_quietly(
        who, request.method, request.path, response.status, summary, peer
    )


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[_STATE]
    response: web.StreamResponse
    who: str | None = None
    try:
        who = _authorize(request, state.tokens)
        response = await handler(request)
    except RegistryError as exc:
        response = _error(exc.status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        status = 400 if exc.status == 404 and _BRACES & set(request.path) else exc.status
        response = _error(status, _http_message(exc, request))
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except ConnectionResetError:
        # The client hung up mid-request (its body cut short): nothing to answer.
        _log.info(
            "%s %s: the client hung up before the request ended", request.method, request.path
        )
        response = _error(400, "the request ended early")
    except Exception:
        _log.exception("crdtgossip registry: error answering %s %s", request.method, request.path)
        response = _error(500, "internal error; see the agent's log")
    if request.method not in SAFE_METHODS:
        await _audit(request, state, who, response)
    response.headers.setdefault("X-Index", str(state.registry.index.value))
    state.requests[(request.method, response.status)] += 1
    if response.status >= 400 and isinstance(response, web.Response):
        _log.info(
            "refused %s %s: %d %s",
            request.method,
            request.path,
            response.status,
            _error_text(response),
        )
    return response


def _error_text(response: web.Response) -> str:
    """The ``error`` of an answer built by :func:`_error` (for the log line)."""
    try:
        return str(json.loads(response.body or b"{}").get("error", ""))  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        return ""


def _reply(data: Mapping[str, Any], index: int | None = None) -> web.Response:
    headers = {} if index is None else {"X-Index": str(index)}
    return web.json_response(dict(data), headers=headers)


async def _body(request: web.Request) -> dict[str, Any]:
    return parse_json(await request.read())


async def _block(request: web.Request) -> int:
    """Wait as a blocking query asks (if it does); the index to answer with."""
    registry = request.app[_STATE].registry
    query = parse_blocking(request.query)
    if query is not None:
        await registry.index.wait_past(query.index, query.jittered_wait())
    # Read the index before the state: a change landing in between makes the next
    # query return at once rather than be missed.
    return registry.index.value


def _flag(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name)
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise RegistryError(f"{name} must be true or false, not {value[:40]!r}")


def _path_name(request: web.Request, kind: str) -> str:
    return check_name(kind, request.match_info[kind])


# ---- services and instances ------------------------------------------------------------
async def _register(request: web.Request) -> web.Response:
    service, instance = _path_name(request, "service"), _path_name(request, "instance")
    record = parse_instance(await _body(request))
    view = await request.app[_STATE].registry.register(service, instance, record)
    return _reply({"instance": view})


async def _instance(request: web.Request) -> web.Response:
    service, instance = _path_name(request, "service"), _path_name(request, "instance")
    index = await _block(request)
    registry = request.app[_STATE].registry
    return _reply(
        {"instance": instance_view(await registry.current(), service, instance, registry.now())},
        index,
    )


async def _deregister(request: web.Request) -> web.Response:
    service, instance = _path_name(request, "service"), _path_name(request, "instance")
    await request.app[_STATE].registry.deregister(service, instance)
    return _reply({"deregistered": {"service": service, "instance": instance}})


async def _maintenance(request: web.Request) -> web.Response:
    service, instance = _path_name(request, "service"), _path_name(request, "instance")
    wanted = parse_maintenance(await _body(request))
    try:
        view = await request.app[_STATE].registry.set_maintenance(service, instance, wanted)
    except QuorumError as exc:
        raise RegistryError(
            f"{exc}; maintenance is set on this agent and still spreading", status=504
        ) from None
    except ConfigError as exc:  # this node cannot coordinate a quorum
        raise RegistryError(str(exc), status=501) from None
    return _reply({"instance": view})


async def _services(request: web.Request) -> web.Response:
    index = await _block(request)
    current = await request.app[_STATE].registry.current()
    return _reply(services_view(current), index)


async def _service(request: web.Request) -> web.Response:
    service = _path_name(request, "service")
    passing = _flag(request.query, "passing")
    env_text = request.query.get("env")
    env = None if env_text is None else check_name("env", env_text)
    index = await _block(request)
    registry = request.app[_STATE].registry
    view = service_view(
        await registry.current(), service, registry.now(), passing_only=passing, env=env
    )
    return _reply(view, index)


# ---- health ----------------------------------------------------------------------------
async def _event(request: web.Request) -> web.Response:
    return _reply(await request.app[_STATE].registry.push_event(await _body(request)))


async def _expectation(request: web.Request) -> web.Response:
    env, service = _path_name(request, "env"), _path_name(request, "service")
    min_passing = parse_expectation(await _body(request))
    registry = request.app[_STATE].registry
    return _reply({"expectation": await registry.set_expectation(env, service, min_passing)})


async def _delete_expectation(request: web.Request) -> web.Response:
    env, service = _path_name(request, "env"), _path_name(request, "service")
    await request.app[_STATE].registry.delete_expectation(env, service)
    return _reply({"deleted": {"env": env, "service": service}})


async def _health(request: web.Request) -> web.Response:
    index = await _block(request)
    registry = request.app[_STATE].registry
    return _reply(await registry.health(), index)


# ---- cluster ---------------------------------------------------------------------------
async def _members(request: web.Request) -> web.Response:
    index = await _block(request)
    return _reply({"members": request.app[_STATE].registry.members()}, index)


async def _ready(request: web.Request) -> web.Response:
    """``{"ready": bool, "reason": str}``: 200 either way, so a client reads the answer
    instead of retrying it as a failure."""
    return _reply(request.app[_STATE].registry.readiness.report())


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    registry = state.registry
    health = await registry.health()
    text = render_metrics(
        stats=registry.node.stats(),
        members=registry.members(),
        health=health,
        releases=registry.view.release_count(),
        index=registry.index.value,
        requests=dict(state.requests),
        riemann=state.riemann,
    )
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})
