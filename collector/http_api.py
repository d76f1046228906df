"""The collector's HTTP API: /healthz, /metrics (Prometheus: collector.metrics) and JSON under
/api/v1/, described by openapi.json.

The dashboard at / and /dashboard/{name} (collector.dashboard) is files only: the API calls it
makes carry the token. Every other route but /healthz, /metrics and the OpenAPI document needs
`Authorization: Bearer <admin token>`;
the role each route needs is in collector.auth.HTTP_ROLES (reads: viewer, writes: admin).
Every error is JSON {"code", "message", "field"}: the middleware turns aiohttp's own 404/405,
the handlers' ApiErrors and the shared checks' QueryErrors and Refused (collector.params,
collector.admin_ops) into that shape, so bad input gets a 4xx that says what is wrong, never a
5xx or an HTML page. The operations themselves are admin_ops's, which the gRPC Admin service
calls too: the two surfaces accept, refuse and answer alike.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from collector import admin_ops, params, tokens
from collector.admin_ops import Refused
from collector.auth import HTTP_ROLES, PUBLIC, Denied, authorize_admin
from collector.dashboard.serve import Dashboard
from collector.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from collector.metrics import CollectorMetrics
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
_METRICS = web.AppKey("metrics", CollectorMetrics)
# aiohttp's own HTTP errors, by status, as error codes.
_HTTP_CODES = {413: "too_large", 415: "unsupported_media_type"}
# admin_ops.Refused kinds -> (status, code).
_REFUSED = {admin_ops.NOT_FOUND: (404, "not_found"), admin_ops.EXISTS: (409, "conflict")}
_EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
_EXPORT_CHUNK_BYTES = 1 << 16


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
    except QueryError as err:
        return error_response(400, err.code, str(err), err.field)
    except Refused as err:
        status, code = _REFUSED[err.kind]
        return error_response(status, code, str(err), err.field)
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
    except Exception as err:  # noqa: BLE001 - whatever the failure, the collector cannot serve
        logger.warning("health check failed: %s", err)
        return error_response(503, "unavailable", f"the store is not usable: {err}")
    return web.json_response({"status": "ok"})


async def costs(request: web.Request) -> web.Response:
    query = _query(request, ("group_by", "since", "until", "granularity", "top", "usage_only"))
    try:
        group_by = parse_group_by(query.get("group_by", ""))
        since, until = (
            parse_time_ns(query[name], field=name) if name in query else None for name in ("since", "until")
        )
        check_range(since, until)
        granularity = _granularity(query["granularity"]) if "granularity" in query else None
        top = _top(query["top"]) if "top" in query else None
        usage_only = _flag(query["usage_only"], "usage_only") if "usage_only" in query else False
    except QueryError as err:
        raise ApiError(400, "invalid_parameter", str(err), err.field) from None
    try:
        report = await asyncio.to_thread(
            request.app[STORE].costs, group_by=group_by, since_unix_ns=since, until_unix_ns=until,
            granularity=granularity, top=top, period_costs=not usage_only,
        )
    except QueryError as err:  # too many periods for the period costs
        raise ApiError(400, "invalid_parameter", str(err), err.field) from None
    except ValueError as err:  # the store's verdict on a group key
        raise ApiError(400, "invalid_parameter", str(err), "group_by") from None
    return web.json_response(report.to_json())


def _flag(text: str, field: str) -> bool:
    if text not in ("true", "false"):
        raise QueryError(field, f"{text!r} is not true or false")
    return text == "true"


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
    return web.json_response({"devices": [admin_ops.device_json(row) for row in rows]})


async def add_device(request: web.Request) -> web.Response:
    _query(request, ())
    body = await _body(request, required=("name",), optional=("profile", "site"))
    spec = params.device_spec(body["name"], body.get("profile"), body.get("site"))
    added = await asyncio.to_thread(admin_ops.add_device, request.app[STORE], spec)
    return web.json_response(added, status=201)


async def get_device(request: web.Request) -> web.Response:
    return web.json_response(admin_ops.device_json(await _named_device(request)))


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
    await _no_body(request)
    name = request.match_info["name"]
    if not NAME_PATTERN.fullmatch(name):
        raise ApiError(400, "invalid_parameter", DEVICE_NAME_RULE, "name")
    return await asyncio.to_thread(admin_ops.find_device, request.app[STORE], name)


async def _device_now(request: web.Request, device: DeviceRow) -> web.Response:
    now = await asyncio.to_thread(request.app[STORE].device, device.device_id)
    return web.json_response(admin_ops.device_json(now))


async def price_books(request: web.Request) -> web.Response:
    _query(request, ())
    books = await asyncio.to_thread(admin_ops.list_price_books, request.app[STORE])
    return web.json_response({"price_books": books})


async def create_price_book(request: web.Request) -> web.Response:
    _query(request, ())
    body = await _body(request, required=("effective_from", "book"))
    effective_from = params.time_value(body["effective_from"], field="effective_from")
    document = params.json_object(body["book"], field="book")
    created = await asyncio.to_thread(
        admin_ops.create_price_book, request.app[STORE], document, effective_from,
        document_field="book", effective_field="effective_from",
    )
    return web.json_response(created, status=201)


async def get_price_book(request: web.Request) -> web.Response:
    _query(request, ())
    await _no_body(request)
    book_id = params.price_book_id(request.match_info["id"])
    return web.json_response(await asyncio.to_thread(admin_ops.price_book, request.app[STORE], book_id))


async def explain_record(request: web.Request) -> web.Response:
    query = _query(request, ("device",))
    await _no_body(request)
    ref = params.record_ref(request.match_info["stream_id"], request.match_info["seq"], query.get("device"))
    return web.json_response(await asyncio.to_thread(admin_ops.explain_record, request.app[STORE], ref))


async def reprice(request: web.Request) -> web.Response:
    _query(request, ())
    body = await _body(request, optional=("since", "until", "device"), empty=True)
    scope = params.time_range(body.get("since"), body.get("until"), body.get("device"))
    return web.json_response(await asyncio.to_thread(admin_ops.reprice, request.app[STORE], scope))


async def prune(request: web.Request) -> web.Response:
    _query(request, ())
    body = await _body(request, required=("before",))
    before = params.time_value(body["before"], field="before")
    return web.json_response(await asyncio.to_thread(admin_ops.prune_records, request.app[STORE], before))


async def export_focus(request: web.Request) -> web.StreamResponse:
    """The FOCUS file, written to a temporary folder (the export writes files atomically) and
    sent from there in chunks."""
    query = _query(request, ("since", "until", "format"))
    await _no_body(request)
    file_format = admin_ops.check_export_format(query.get("format", "csv"))
    scope = params.time_range(query.get("since"), query.get("until"))
    with tempfile.TemporaryDirectory(prefix="infermeter-export-") as folder:
        path = Path(folder) / f"focus.{file_format}"
        await asyncio.to_thread(
            admin_ops.export_focus_file, request.app[STORE], path, file_format=file_format, scope=scope
        )
        response = web.StreamResponse(headers={
            "Content-Type": _EXPORT_TYPES[file_format],
            "Content-Disposition": f'attachment; filename="focus.{file_format}"',
        })
        response.content_length = path.stat().st_size
        await response.prepare(request)
        try:
            with path.open("rb") as file:
                while chunk := await asyncio.to_thread(file.read, _EXPORT_CHUNK_BYTES):
                    await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:  # the client went away: there is no one to answer
            logger.info("%s %s: the client closed the connection during the export", request.method, request.path)
    return response


async def forecasts(request: web.Request) -> web.Response:
    query = _query(request, ("scope", "horizon_days", "since"))
    await _no_body(request)
    checked = params.forecast_query(
        query.get("scope"), query.get("horizon_days"), query.get("since"), today=admin_ops.today()
    )
    return web.json_response(await asyncio.to_thread(admin_ops.forecast, request.app[STORE], checked))


async def budgets(request: web.Request) -> web.Response:
    _query(request, ())
    await _no_body(request)
    return web.json_response({"budgets": await asyncio.to_thread(admin_ops.list_budgets, request.app[STORE])})


async def create_budget(request: web.Request) -> web.Response:
    _query(request, ())
    document = await _document(request)
    return web.json_response(await asyncio.to_thread(admin_ops.add_budget, request.app[STORE], document), status=201)


async def get_budget(request: web.Request) -> web.Response:
    name = await _named_budget(request)
    return web.json_response(await asyncio.to_thread(admin_ops.get_budget, request.app[STORE], name))


async def update_budget(request: web.Request) -> web.Response:
    _query(request, ())
    name = params.budget_name(request.match_info["name"])
    document = await _document(request)
    return web.json_response(await asyncio.to_thread(admin_ops.update_budget, request.app[STORE], name, document))


async def delete_budget(request: web.Request) -> web.Response:
    name = await _named_budget(request)
    await asyncio.to_thread(admin_ops.delete_budget, request.app[STORE], name)
    return web.Response(status=204)


async def _named_budget(request: web.Request) -> str:
    _query(request, ())
    await _no_body(request)
    return params.budget_name(request.match_info["name"])


async def _document(request: web.Request) -> dict:
    """A JSON object body that is a whole document (a budget's), checked by its own rules."""
    data = await request.read()
    _check_json_type(request)
    document = params.parse_json(data)
    if not isinstance(document, dict):
        raise QueryError(None, "the body must be a JSON object: the budget document", code="invalid_body")
    return document


async def budget_events(request: web.Request) -> web.Response:
    query = _query(request, ("budget", "since", "limit"))
    await _no_body(request)
    checked = params.events_query(query.get("budget"), query.get("since"), query.get("limit"))
    return web.json_response({"events": await asyncio.to_thread(admin_ops.budget_events, request.app[STORE], checked)})


async def webhooks(request: web.Request) -> web.Response:
    _query(request, ())
    await _no_body(request)
    return web.json_response({"webhooks": await asyncio.to_thread(admin_ops.list_webhooks, request.app[STORE])})


async def add_webhook(request: web.Request) -> web.Response:
    _query(request, ())
    body = await _body(request, required=("url",))
    url = params.webhook_url(body["url"])
    return web.json_response(await asyncio.to_thread(admin_ops.add_webhook, request.app[STORE], url), status=201)


async def revoke_webhook(request: web.Request) -> web.Response:
    _query(request, ())
    await _no_body(request)
    webhook_id = params.webhook_id(request.match_info["id"])
    return web.json_response(await asyncio.to_thread(admin_ops.revoke_webhook, request.app[STORE], webhook_id))


async def _body(
    request: web.Request, *, required: tuple[str, ...] = (), optional: tuple[str, ...] = (), empty: bool = False
) -> dict:
    """The request's JSON object body with these fields (collector.params.body_fields); with
    `empty`, no body at all stands for {}. aiohttp refuses a body over its limit with 413."""
    data = await request.read()
    if not data and empty:
        return {}
    _check_json_type(request)
    return params.body_fields(params.parse_json(data), required=required, optional=optional)


def _check_json_type(request: web.Request) -> None:
    if request.content_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type",
            f"the body must be JSON sent as Content-Type: application/json, not {request.content_type}", "Content-Type",
        )


async def _no_body(request: web.Request) -> None:
    if await request.content.read(1):
        raise ApiError(400, "unexpected_body", f"{request.method} {request.path} takes no request body")


async def prometheus_metrics(request: web.Request) -> web.Response:
    _query(request, ())
    body = await asyncio.to_thread(request.app[_METRICS].render)
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    _query(request, ())
    return web.Response(body=request.app[_OPENAPI], content_type="application/json")


def make_app(store: Store, *, metrics: CollectorMetrics | None = None) -> web.Application:
    """metrics: the server's, which its ingest reports to (a fresh one when None)."""
    app = web.Application(middlewares=[json_errors, require_token])
    app[STORE] = store
    app[_METRICS] = metrics or CollectorMetrics(store)
    app[_OPENAPI] = OPENAPI_PATH.read_bytes()
    # allow_head=False: the routes served are exactly those in openapi.json. The names are
    # those of collector.auth.HTTP_ROLES.
    app.router.add_get("/healthz", healthz, allow_head=False, name="healthz")
    dashboard = Dashboard()
    app.router.add_get("/", dashboard.page, allow_head=False, name="dashboard")
    app.router.add_get("/dashboard/{name}", dashboard.asset, allow_head=False, name="dashboard_asset")
    app.router.add_get("/metrics", prometheus_metrics, allow_head=False, name="metrics")
    app.router.add_get("/api/v1/costs", costs, allow_head=False, name="costs")
    app.router.add_get("/api/v1/devices", devices, allow_head=False, name="devices")
    app.router.add_post("/api/v1/devices", add_device, name="add_device")
    app.router.add_get("/api/v1/devices/{name}", get_device, allow_head=False, name="device")
    app.router.add_post("/api/v1/devices/{name}/rotate", rotate_device, name="rotate_device")
    app.router.add_post("/api/v1/devices/{name}/revoke", revoke_device, name="revoke_device")
    app.router.add_get("/api/v1/pricebooks", price_books, allow_head=False, name="price_books")
    app.router.add_post("/api/v1/pricebooks", create_price_book, name="create_price_book")
    app.router.add_get("/api/v1/pricebooks/{id}", get_price_book, allow_head=False, name="price_book")
    app.router.add_get(
        "/api/v1/records/{stream_id}/{seq}/explain", explain_record, allow_head=False, name="explain_record"
    )
    app.router.add_post("/api/v1/reprice", reprice, name="reprice")
    app.router.add_post("/api/v1/prune", prune, name="prune")
    app.router.add_get("/api/v1/exports/focus", export_focus, allow_head=False, name="export_focus")
    app.router.add_get("/api/v1/forecasts", forecasts, allow_head=False, name="forecasts")
    app.router.add_get("/api/v1/budgets", budgets, allow_head=False, name="budgets")
    app.router.add_post("/api/v1/budgets", create_budget, name="create_budget")
    app.router.add_get("/api/v1/budgets/{name}", get_budget, allow_head=False, name="budget")
    app.router.add_put("/api/v1/budgets/{name}", update_budget, name="update_budget")
    app.router.add_delete("/api/v1/budgets/{name}", delete_budget, name="delete_budget")
    app.router.add_get("/api/v1/budget-events", budget_events, allow_head=False, name="budget_events")
    app.router.add_get("/api/v1/webhooks", webhooks, allow_head=False, name="webhooks")
    app.router.add_post("/api/v1/webhooks", add_webhook, name="add_webhook")
    app.router.add_post("/api/v1/webhooks/{id}/revoke", revoke_webhook, name="revoke_webhook")
    from collector import tag_http  # here, not at the top: it imports this module

    tag_http.add_routes(app)
    from collector import shadow_http  # here, not at the top: it imports this module

    shadow_http.add_routes(app)
    from collector import insights_http  # here, not at the top: it imports this module

    insights_http.add_routes(app)
    app.router.add_get("/api/v1/openapi.json", openapi, allow_head=False, name="openapi")
    return app
