"""The REST routes of renderer reports and maintenance stamps (see :mod:`.renderers`).

=================================  ==================================================
``PUT /v1/renderers/{name}``       a renderer reports what it applied (:func:`parse_report`)
``GET /v1/renderers``              ``{"renderers": {name: report}}``
``GET /v1/renderers/{name}``       ``{"renderer": report}``; 404 if it never reported
``DELETE /v1/renderers/{name}``    forget a renderer (a load balancer taken away)
``GET /v1/maintenance``            ``{"maintenance": [{service, instance, enabled,
                                   reason, time}]}``: every flag of a registered
                                   instance, with its stamp (``time``)
=================================  ==================================================

A renderer reads ``/v1/maintenance`` after each install to learn the stamps of the
drains its file now applies; ``deploy drain`` reads its own flag's stamp there, then
polls ``/v1/renderers`` until the renderers confirm it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from crdtgossip.apps.registry.fields import RegistryError, check_name, parse_json
from crdtgossip.apps.registry.renderers import (
    delete_report,
    parse_report,
    read_reports,
    store_report,
)
from crdtgossip.apps.registry.state import Registry

__all__ = ["add_renderer_routes", "maintenance_view"]

RegistryOf = Callable[[web.Request], Registry]
Block = Callable[[web.Request], Awaitable[int]]


def maintenance_view(
    maintenance: Mapping[tuple[str, str], Mapping[str, Any]],
    registered: Callable[[str, str], bool],
) -> list[dict[str, Any]]:
    """The flags of registered instances, sorted by (service, instance)."""
    return [
        {
            "service": service,
            "instance": instance,
            "enabled": bool(flag.get("enabled")),
            "reason": flag.get("reason"),
            "time": flag.get("time"),
        }
        for (service, instance), flag in sorted(maintenance.items())
        if registered(service, instance)
    ]


def add_renderer_routes(app: web.Application, registry_of: RegistryOf, block: Block) -> None:
    """Add the routes of the module docstring to ``app``.

    Args:
        app: the registry's application (its middleware turns a
            :class:`RegistryError` into the JSON error reply, and checks the token
            of writes).
        registry_of: the request's :class:`Registry`.
        block: runs the request's blocking query; returns the index to answer with.
    """

    async def report(request: web.Request) -> web.Response:
        name = check_name("renderer", request.match_info["name"])
        parsed = parse_report(parse_json(await request.read()))
        registry = registry_of(request)
        stored = await store_report(registry.node, name, parsed, registry.now())
        return web.json_response({"renderer": stored})

    async def every(request: web.Request) -> web.Response:
        index = await block(request)
        reports = await read_reports(registry_of(request).node)
        return _reply({"renderers": reports}, index)

    async def one(request: web.Request) -> web.Response:
        name = check_name("renderer", request.match_info["name"])
        index = await block(request)
        found = (await read_reports(registry_of(request).node)).get(name)
        if found is None:
            raise RegistryError(f"no renderer {name!r} has reported", status=404)
        return _reply({"renderer": found}, index)

    async def forget(request: web.Request) -> web.Response:
        name = check_name("renderer", request.match_info["name"])
        await delete_report(registry_of(request).node, name)
        return web.json_response({"deleted": {"renderer": name}})

    async def maintenance(request: web.Request) -> web.Response:
        index = await block(request)
        snapshot = await registry_of(request).current()
        flags = maintenance_view(
            snapshot.maintenance,
            lambda service, instance: snapshot.record(service, instance) is not None,
        )
        return _reply({"maintenance": flags}, index)

    app.router.add_put("/v1/renderers/{name}", report)
    app.router.add_get("/v1/renderers", every)
    app.router.add_get("/v1/renderers/{name}", one)
    app.router.add_delete("/v1/renderers/{name}", forget)
    app.router.add_get("/v1/maintenance", maintenance)


def _reply(data: Mapping[str, Any], index: int) -> web.Response:
    return web.json_response(dict(data), headers={"X-Index": str(index)})
