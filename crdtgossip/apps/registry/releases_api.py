"""The REST routes of releases: record them, and read them per env, service, instance.

=================================================  ====================================
``PUT /v1/releases/{env}/{service}``               record a release (:func:`parse_release`)
``GET /v1/releases``                               every env and service
``GET /v1/releases/{env}``                         one environment
``GET /v1/releases/{env}/{service}``               one service (``?instance=`` for one)
``GET /v1/releases/{env}/{service}/{instance}``    one instance
=================================================  ====================================

Every read takes ``at`` (a Unix time: answer as of then) and ``limit`` (history entries
per service); ``GET /v1/releases`` also takes ``env``, ``service`` and ``instance``;
all take ``index`` and ``wait`` (a blocking query). A query parameter a route does not
know is a 400 naming the ones it does, never silently ignored. A read of an environment,
service or instance with no release ever recorded is a 404; with ``at`` before its
first release, it answers with ``current`` null and an empty history.

What "current" means, for a service and an instance, is in :mod:`.releases`.

``GET /v1/perf/{env}/{service}?version=V&metric=M`` answers the percentiles of one
version's metric (:mod:`.perf`): ``{env, service, version, metric, count, min, max,
p50, p95, p99}``, with ``count`` 0 and null percentiles when nothing was recorded.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from crdtgossip.apps.registry.model import RegistryError, check_name, parse_json, parse_release
from crdtgossip.apps.registry.perf import DEFAULT_METRIC, perf_key, perf_view
from crdtgossip.apps.registry.releases import ServiceReleases, service_releases
from crdtgossip.apps.registry.sketch import DDSketch
from crdtgossip.apps.registry.state import Registry
from crdtgossip.apps.registry.view import releases_view

__all__ = ["BLOCKING_PARAMETERS", "MAX_HISTORY_LIMIT", "add_release_routes", "parse_at"]

#: The query parameters of a blocking query, which every read takes.
BLOCKING_PARAMETERS = ("index", "wait")

#: Largest ``limit``: far more than any deploy tool shows (Argo CD keeps 10 by default),
#: small enough that the parameter cannot be mistaken for a time.
MAX_HISTORY_LIMIT = 100_000

_EVERY_FILTER = ("at", "env", "service", "instance", "limit")
_ONE_ENV_FILTER = ("at", "limit")
_ONE_SERVICE_FILTER = ("at", "instance", "limit")

RegistryOf = Callable[[web.Request], Registry]
Block = Callable[[web.Request], Awaitable[int]]


def parse_at(query: Mapping[str, str], name: str = "at") -> float | None:
    """A Unix time from the query (None when absent).

    Raises:
        RegistryError: (400) not a finite number of seconds at or after 0.
    """
    value = query.get(name)
    if value is None:
        return None
    try:
        moment = float(value)
    except ValueError:
        moment = math.nan
    if not math.isfinite(moment) or moment < 0:
        raise RegistryError(f"{name} must be a Unix time in seconds, not {value[:40]!r}")
    return moment


def _limit(query: Mapping[str, str]) -> int | None:
    value = query.get("limit")
    if value is None:
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_HISTORY_LIMIT:
        raise RegistryError(f"limit must be an integer from 1 to {MAX_HISTORY_LIMIT}")
    return int(value)


def _only(request: web.Request, allowed: tuple[str, ...]) -> None:
    known = (*allowed, *BLOCKING_PARAMETERS)
    for name in request.query:
        if name not in known:
            raise RegistryError(
                f"unknown query parameter {name[:40]!r} for GET {request.path}; "
                f"allowed: {', '.join(known)}"
            )


def _name(query: Mapping[str, str], kind: str) -> str | None:
    value = query.get(kind)
    return None if value is None else check_name(kind, value)


def add_release_routes(app: web.Application, registry_of: RegistryOf, block: Block) -> None:
    """Add the routes of the module docstring to ``app``.

    Args:
        app: the registry's application (its middleware turns a
            :class:`RegistryError` into the JSON error reply).
        registry_of: the request's :class:`Registry`.
        block: runs the request's blocking query; returns the index to answer with.
    """

    async def record(request: web.Request) -> web.Response:
        env = check_name("env", request.match_info["env"])
        service = check_name("service", request.match_info["service"])
        release = parse_release(parse_json(await request.read()))
        recorded = await registry_of(request).record_release(env, service, release)
        return web.json_response({"release": recorded})

    async def every(request: web.Request) -> web.Response:
        _only(request, _EVERY_FILTER)
        at, limit = parse_at(request.query), _limit(request.query)
        env, service = _name(request.query, "env"), _name(request.query, "service")
        instance = _name(request.query, "instance")
        index = await block(request)
        snapshot = await registry_of(request).current()
        view = releases_view(snapshot, at, env=env, service=service, instance=instance, limit=limit)
        return _reply(view, index)

    async def one_env(request: web.Request) -> web.Response:
        _only(request, _ONE_ENV_FILTER)
        env = check_name("env", request.match_info["env"])
        at, limit = parse_at(request.query), _limit(request.query)
        index = await block(request)
        elements = (await registry_of(request).current()).releases
        if not service_releases(elements, env=env):
            raise RegistryError(f"no release was ever recorded in env {env!r}", status=404)
        found = service_releases(elements, at, env=env).get(env, {})
        services = {service: entry.view(limit) for service, entry in found.items()}
        return _reply({"at": at, "env": env, "services": services}, index)

    async def one_service(request: web.Request) -> web.Response:
        allowed = _ONE_SERVICE_FILTER if "instance" not in request.match_info else _ONE_ENV_FILTER
        _only(request, allowed)
        env = check_name("env", request.match_info["env"])
        service = check_name("service", request.match_info["service"])
        instance_text = request.match_info.get("instance", request.query.get("instance"))
        instance = None if instance_text is None else check_name("instance", instance_text)
        at, limit = parse_at(request.query), _limit(request.query)
        index = await block(request)
        snapshot = await registry_of(request).current()

        def of_service(moment: float | None) -> ServiceReleases:
            grouped = service_releases(snapshot.releases, moment, env=env, service=service)
            return grouped.get(env, {}).get(service, ServiceReleases([]))

        ever = of_service(None)
        if not ever.history:
            raise RegistryError(
                f"no release of service {service!r} was ever recorded in env {env!r}",
                status=404,
            )
        found = of_service(at)
        answer: dict[str, Any] = {"at": at, "env": env, "service": service}
        if instance is not None:
            if not ever.names(instance) and snapshot.record(service, instance) is None:
                raise RegistryError(
                    f"instance {instance!r} of service {service!r} was never released on "
                    "its own and is not registered",
                    status=404,
                )
            answer["instance"] = instance
            found = found.of_instance(instance)
        answer.update(found.view(limit))
        if instance is not None:
            del answer["instances"]
        return _reply(answer, index)

    async def performance(request: web.Request) -> web.Response:
        _only(request, ("version", "metric"))
        env = check_name("env", request.match_info["env"])
        service = check_name("service", request.match_info["service"])
        version = request.query.get("version")
        if not version:
            raise RegistryError("GET /v1/perf/{env}/{service} needs ?version=V")
        metric = check_name("metric", request.query.get("metric", DEFAULT_METRIC))
        index = await block(request)
        key = perf_key(env, service, version, metric)
        sketch = await registry_of(request).node.get(key, DDSketch)
        answer = {"env": env, "service": service, "version": version, "metric": metric}
        return _reply({**answer, **perf_view(sketch)}, index)

    app.router.add_get("/v1/perf/{env}/{service}", performance)
    app.router.add_put("/v1/releases/{env}/{service}", record)
    app.router.add_get("/v1/releases", every)
    app.router.add_get("/v1/releases/{env}", one_env)
    app.router.add_get("/v1/releases/{env}/{service}", one_service)
    app.router.add_get("/v1/releases/{env}/{service}/{instance}", one_service)


def _reply(data: Mapping[str, Any], index: int) -> web.Response:
    return web.json_response(dict(data), headers={"X-Index": str(index)})
