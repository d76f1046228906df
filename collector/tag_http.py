"""The HTTP routes of the tag policy, devices' default tags, untagged costs and chargeback
(collector.tag_ops), added to the API by collector.http_api.make_app; their roles are in
collector.auth.HTTP_ROLES, their shapes in openapi.json."""

from __future__ import annotations

import asyncio

from aiohttp import web

from collector import params, tag_ops
from collector.chargeback import chargeback_csv
from collector.http_api import STORE, ApiError, _body, _no_body, _query


async def tag_policy(request: web.Request) -> web.Response:
    _query(request, ())
    await _no_body(request)
    return web.json_response(await asyncio.to_thread(tag_ops.get_policy, request.app[STORE]))


async def set_tag_policy(request: web.Request) -> web.Response:
    _query(request, ())
    document = await _body(request, optional=("required",))
    return web.json_response(await asyncio.to_thread(tag_ops.set_policy, request.app[STORE], document))


async def device_tags(request: web.Request) -> web.Response:
    _query(request, ())
    await _no_body(request)
    name = params.check_name(request.match_info["name"], field="name")
    return web.json_response(await asyncio.to_thread(tag_ops.get_device_tags, request.app[STORE], name))


async def set_device_tags(request: web.Request) -> web.Response:
    _query(request, ())
    name = params.check_name(request.match_info["name"], field="name")
    body = await _body(request, required=("tags",))
    return web.json_response(
        await asyncio.to_thread(tag_ops.set_device_tags, request.app[STORE], name, body["tags"])
    )


async def untagged(request: web.Request) -> web.Response:
    query = _query(request, ("month", "since", "until"))
    await _no_body(request)
    scope = tag_ops.period(query.get("month"), query.get("since"), query.get("until"))
    return web.json_response(await asyncio.to_thread(tag_ops.untagged_costs, request.app[STORE], scope))


async def chargeback(request: web.Request) -> web.Response:
    query = _query(request, ("month", "since", "until", "by", "format"))
    await _no_body(request)
    file_format = query.get("format", "json")
    if file_format not in ("json", "csv"):
        raise ApiError(400, "invalid_parameter", f"{file_format!r} is not a format (expected json or csv)", "format")
    scope = tag_ops.period(query.get("month"), query.get("since"), query.get("until"))
    by = tag_ops.chargeback_by(query.get("by"))
    answer = await asyncio.to_thread(tag_ops.chargeback_report, request.app[STORE], scope, by)
    if file_format == "json":
        return web.json_response(answer)
    dates = [answer[end][:10] for end in ("since", "until") if answer[end]]
    name = "-".join(["chargeback", *dates]) + ".csv"
    return web.Response(
        text=chargeback_csv(answer), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def add_routes(app: web.Application) -> None:
    """The routes, named as in collector.auth.HTTP_ROLES."""
    app.router.add_get("/api/v1/tag-policy", tag_policy, allow_head=False, name="tag_policy")
    app.router.add_put("/api/v1/tag-policy", set_tag_policy, name="set_tag_policy")
    app.router.add_get("/api/v1/devices/{name}/tags", device_tags, allow_head=False, name="device_tags")
    app.router.add_put("/api/v1/devices/{name}/tags", set_device_tags, name="set_device_tags")
    app.router.add_get("/api/v1/untagged", untagged, allow_head=False, name="untagged")
    app.router.add_get("/api/v1/chargeback", chargeback, allow_head=False, name="chargeback")
