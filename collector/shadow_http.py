"""GET /api/v1/shadow-processes (collector.shadow), added to the API by
collector.http_api.make_app; its role is in collector.auth.HTTP_ROLES, its shape in openapi.json."""

from __future__ import annotations

import asyncio

from aiohttp import web

from collector import params, shadow
from collector.http_api import STORE, _no_body, _query


async def shadow_processes(request: web.Request) -> web.Response:
    query = _query(request, ("device",))
    await _no_body(request)
    device = params.check_name(query["device"], field="device") if "device" in query else None
    return web.json_response(await asyncio.to_thread(shadow.list_shadow, request.app[STORE], device))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/shadow-processes", shadow_processes, allow_head=False, name="shadow_processes")
