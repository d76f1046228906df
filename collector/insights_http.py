"""The HTTP routes of the FinOps insights (collector.insights_ops): workload classes, business
KPIs and their report, the model registry, and right-sizing; documented in openapi.json, their
roles in collector.auth.HTTP_ROLES."""

from __future__ import annotations

import asyncio

from aiohttp import web

from collector import insights_ops, kpis, model_registry, right_sizing, workload_classes
from collector.http_api import STORE, _body, _no_body, _query
from collector.params import QueryError, parse_time_ns


async def list_classes(request: web.Request) -> web.Response:
    _query(request, ())
    await _no_body(request)
    return web.json_response(await asyncio.to_thread(insights_ops.list_classes, request.app[STORE]))


async def set_class(request: web.Request) -> web.Response:
    _query(request, ())
    body = await _body(request, optional=tuple(workload_classes.DIMENSIONS))
    chosen = workload_classes.parse_class(_path_model(request), body)
    return web.json_response(await asyncio.to_thread(insights_ops.set_class, request.app[STORE], chosen))


async def delete_class(request: web.Request) -> web.Response:
    _query(request, ())
    await _no_body(request)
    await asyncio.to_thread(insights_ops.delete_class, request.app[STORE], _path_model(request))
    return web.Response(status=204)


def _path_model(request: web.Request) -> str:
    """The model named in the path. A name starting with a dot is refused, as the document says:
    clients and proxies rewrite the segments . and .. (the gRPC API and the CLI take any name)."""
    model = request.match_info["model"]
    if model.startswith("."):
        raise QueryError("model", "a model name in a path cannot start with a dot (set its classes with the CLI)")
    return model


async def list_kpis(request: web.Request) -> web.Response:
    _query(request, ())
    await _no_body(request)
    return web.json_response(await asyncio.to_thread(insights_ops.list_kpis, request.app[STORE]))


async def create_kpi(request: web.Request) -> web.Response:
    _query(request, ())
    kpi = kpis.parse_kpi(await _body(request, required=("name", "unit"), optional=("measure", "model", "tag", "value_per_unit")))
    return web.json_response(await asyncio.to_thread(insights_ops.add_kpi, request.app[STORE], kpi), status=201)


async def delete_kpi(request: web.Request) -> web.Response:
    _query(request, ())
    await _no_body(request)
    await asyncio.to_thread(insights_ops.delete_kpi, request.app[STORE], request.match_info["name"])
    return web.Response(status=204)


async def kpi_report(request: web.Request) -> web.Response:
    query = _query(request, ("since", "until", "granularity"))
    await _no_body(request)
    store = request.app[STORE]
    since, until = _times(query)
    checked = kpis.kpi_query(since, until, query.get("granularity"), now_unix_ns=store.now_unix_ns())
    return web.json_response(await asyncio.to_thread(insights_ops.kpi_report, store, checked))


async def models(request: web.Request) -> web.Response:
    query = _query(request, ("active_days", "sprawl_versions", "model"))
    await _no_body(request)
    checked = model_registry.registry_query(query.get("active_days"), query.get("sprawl_versions"), query.get("model"))
    return web.json_response(await asyncio.to_thread(insights_ops.model_registry_report, request.app[STORE], checked))


async def right_sizing_report(request: web.Request) -> web.Response:
    query = _query(request, ("model", "since", "until"))
    await _no_body(request)
    store = request.app[STORE]
    since, until = _times(query)
    checked = right_sizing.right_sizing_query(query.get("model"), since, until, now_unix_ns=store.now_unix_ns())
    return web.json_response(await asyncio.to_thread(insights_ops.right_sizing_report, store, checked))


def _times(query: dict[str, str]) -> tuple[int | None, int | None]:
    since, until = (parse_time_ns(query[name], field=name) if name in query else None for name in ("since", "until"))
    if since is not None and until is not None and since > until:
        raise QueryError("since", "since is after until")
    return since, until


def add_routes(app: web.Application) -> None:
    """Add the routes; their names are those of collector.auth.HTTP_ROLES."""
    app.router.add_get("/api/v1/workload-classes", list_classes, allow_head=False, name="workload_classes")
    app.router.add_put("/api/v1/workload-classes/{model}", set_class, name="set_workload_class")
    app.router.add_delete("/api/v1/workload-classes/{model}", delete_class, name="delete_workload_class")
    app.router.add_get("/api/v1/kpis", list_kpis, allow_head=False, name="kpis")
    app.router.add_post("/api/v1/kpis", create_kpi, name="create_kpi")
    app.router.add_delete("/api/v1/kpis/{name}", delete_kpi, name="delete_kpi")
    app.router.add_get("/api/v1/reports/kpis", kpi_report, allow_head=False, name="kpi_report")
    app.router.add_get("/api/v1/models", models, allow_head=False, name="model_registry")
    app.router.add_get("/api/v1/reports/right-sizing", right_sizing_report, allow_head=False, name="right_sizing")
