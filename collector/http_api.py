"""The collector's HTTP API: /healthz and JSON under /api/v1/, described by openapi.json.

Every route but /healthz and the OpenAPI document needs `Authorization: Bearer <admin token>`;
the role each route needs is in collector.auth.HTTP_ROLES (reads: viewer, writes: admin).
Every error is JSON {"code", "message", "field"}: the middleware turns aiohttp's own 404/405
and the handlers' ApiErrors into that shape, so bad input gets a 4xx that says what is wrong,
never a 5xx or an HTML page.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from collector import tokens
from collector.auth import HTTP_ROLES, PUBLIC, Denied, authorize_admin
from collector.params import QueryError, check_range, parse_group_by, parse_time_ns
from collector.pricebook import NAME_PATTERN
from collector.reports import GRANULARITIES, MAX_TOP
from collector.store import (
    DEVICE_NAME_RULE,
    DeviceRow,
    RotationRefused,
    Store,
    StoreUnavailable,
)

logger = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
STORE = web.AppKey("store", Store)
_OPENAPI = web.AppKey("openapi", bytes)
# aiohttp's own HTTP errors, by status, as error codes.
_HTTP_CODES = {413: "too_large", 415: "unsupported_media_type"}


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="infermeter"'}
_TOP = re.compile(r"[0-9]{1,7}")


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.headers = headers


def error_response(status: int, code: str, message: str, field: str | None = None, **kwargs) -> web.Response:
    return web.json_response({"code": code, "message": message, "field": field}, status=status, **kwargs)


@web.middleware
async def json_errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err.status, err.code, str(err), err.field, headers=err.headers)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        return _http_error(request, err)
    except StoreUnavailable as err:
        logger.warning("store unavailable for %s %s: %s", request.method, request.path, err)
        return error_response(503, "unavailable", f"the collector's store is unavailable, retry later: {err}")
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal", "the collector failed to handle the request")


@web.middleware
async def require_token(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Let a request reach its route only with a token whose role the route allows."""
    match = request.match_info
    if match.http_exception is not None:  # no such route or method: the 404 / 405 says so
        return await handler(request)
    needed = HTTP_ROLES.get(match.route.name, tokens.ADMIN)
    if needed is not PUBLIC:
        values = request.headers.getall("Authorization", [])
        # Absent: None; given more than once: malformed ("").
        authorization = values[0] if len(values) == 1 else (None if not values else "")
        try:
            await asyncio.to_thread(authorize_admin, request.app[STORE], authorization, needed)
        except Denied as err:
            if err.forbidden:
                raise ApiError(403, "forbidden", str(err)) from None
            raise ApiError(401, "unauthenticated", str(err), "Authorization", headers=_CHALLENGE) from None
    return await handler(request)


def _http_error(request: web.Request, err: web.HTTPException) -> web.Response:
    if isinstance(err, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(err.allowed_methods))
        message = f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
        return error_response(405, "method_not_allowed", message, headers={"Allow": allowed})
    if isinstance(err, web.HTTPNotFound):
        return error_response(404, "not_found", f"no such route: {request.path} (the API is described at /api/v1/openapi.json)")
    return error_response(err.status, _HTTP_CODES.get(err.status, "http_error"), err.reason)


def _query(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters as a dict; unknown or repeated ones are a 400."""
    for name in request.query:
        if name not in allowed:
            expected = ", ".join(allowed) or "none"
            raise ApiError(400, "unknown_parameter", f"unknown query parameter {name!r} (expected: {expected})", name)
        if len(request.query.getall(name)) > 1:
            raise ApiError(400, "repeated_parameter", f"query parameter {name!r} is given more than once", name)
    return dict(request.query)


async def healthz(request: web.Request) -> web.Response:
    _query(request, ())
    try:
        await asyncio.to_thread(request.app[STORE].list_devices)
    except Exception as err:
        logger.warning("health check failed: %s", err)
        return error_response(503, "unavailable", f"the store is not usable: {err}")
    return web.json_response({"status": "ok"})


async def costs(request: web.Request) -> web.Response:
    query = _query(request, ("group_by", "since", "until", "granularity", "top"))
    try:
        group_by = parse_group_by(query.get("group_by", ""))
        since, until = (
            parse_time_ns(query[name], field=name) if name in query else None for name in ("since", "until")
        )
        check_range(since, until)
        granularity = _granularity(query["granularity"]) if "granularity" in query else None
        top = _top(query["top"]) if "top" in query else None
    except QueryError as err:
        raise ApiError(400, "invalid_parameter", str(err), err.field) from None
    try:
        report = await asyncio.to_thread(
            request.app[STORE].costs, group_by=group_by, since_unix_ns=since, until_unix_ns=until,
            granularity=granularity, top=top,
        )
    except ValueError as err:  # the store's verdict on a group key
        raise ApiError(400, "invalid_parameter", str(err), "group_by") from None
    return web.json_response(report.to_json())


def _granularity(text: str) -> str:
    if text not in GRANULARITIES:
        raise QueryError("granularity", f"{text!r} is not a granularity (expected one of: {', '.join(GRANULARITIES)})")
    return text


def _top(text: str) -> int:
    # Digits only, and few of them: int() would also take " 5", "+5", "5_0" and "５".
    if not _TOP.fullmatch(text) or not 1 <= int(text) <= MAX_TOP:
        raise QueryError("top", f"{text!r} is not a whole number from 1 to {MAX_TOP}")
    return int(text)


async def devices(request: web.Request) -> web.Response:
    _query(request, ())
    rows = await asyncio.to_thread(request.app[STORE].list_devices)
    return web.json_response({"devices": [dataclasses.asdict(row) for row in rows]})


async def rotate_device(request: web.Request) -> web.Response:
    device = await _named_device(request)
    try:
        await asyncio.to_thread(request.app[STORE].rotate_device, device.device_id)
    except RotationRefused as err:
        raise ApiError(409, "conflict", str(err), "name") from None
    return await _device_now(request, device)


async def revoke_device(request: web.Request) -> web.Response:
    device = await _named_device(request)
    await asyncio.to_thread(request.app[STORE].revoke_device, device.device_id)
    return await _device_now(request, device)


async def _named_device(request: web.Request) -> DeviceRow:
    """The device the path names; a 400 for a query or a body, which these routes take none of."""
    _query(request, ())
    if await request.content.read(1):
        raise ApiError(400, "unexpected_body", f"{request.method} {request.path} takes no request body")
    name = request.match_info["name"]
    if not NAME_PATTERN.fullmatch(name):
        raise ApiError(400, "invalid_parameter", DEVICE_NAME_RULE, "name")
    device = await asyncio.to_thread(request.app[STORE].device, name)
    if device is None:
        raise ApiError(404, "not_found", f"no device named or with id {name!r}", "name")
    return device


async def _device_now(request: web.Request, device: DeviceRow) -> web.Response:
    now = await asyncio.to_thread(request.app[STORE].device, device.device_id)
    return web.json_response(dataclasses.asdict(now))


async def openapi(request: web.Request) -> web.Response:
    _query(request, ())
    return web.Response(body=request.app[_OPENAPI], content_type="application/json")


def make_app(store: Store) -> web.Application:
    app = web.Application(middlewares=[json_errors, require_token])
    app[STORE] = store
    app[_OPENAPI] = OPENAPI_PATH.read_bytes()
    # allow_head=False: the routes served are exactly those in openapi.json. The names are
    # those of collector.auth.HTTP_ROLES.
    app.router.add_get("/healthz", healthz, allow_head=False, name="healthz")
    app.router.add_get("/api/v1/costs", costs, allow_head=False, name="costs")
    app.router.add_get("/api/v1/devices", devices, allow_head=False, name="devices")
    app.router.add_post("/api/v1/devices/{name}/rotate", rotate_device, name="rotate_device")
    app.router.add_post("/api/v1/devices/{name}/revoke", revoke_device, name="revoke_device")
    app.router.add_get("/api/v1/openapi.json", openapi, allow_head=False, name="openapi")
    return app
