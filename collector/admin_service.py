"""infermeter.v1.Admin: the operators' gRPC API (devices, price books, costs, explanations,
re-pricing, pruning, token rotation, revocation).

Every call carries an admin token (`authorization: Bearer ima_...`); authorize() runs before
each call (collector.rpc) and refuses what the token's role does not allow (collector.auth).

The requests are checked by collector.params and carried out by collector.admin_ops, as the
HTTP API's are; money crosses as the same exact decimal strings (CostReport.to_json and
admin_ops's answers), so the two surfaces never disagree on a digit.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
from infermeter.v1 import admin_pb2

from collector import admin_ops, params, shadow, tokens
from collector.admin_ops import Refused
from collector.auth import GRPC_ROLES, Denied, authorize_admin
from collector.insights_service import InsightRpcs
from collector.params import QueryError
from collector.pricebook import NAME_PATTERN
from collector.rpc import call_store
from collector.store import DEVICE_NAME_RULE, DeviceRow, RotationRefused, Store
from collector.tag_service import TagRpcs

# admin_ops.Refused kinds -> statuses.
_REFUSED = {admin_ops.NOT_FOUND: grpc.StatusCode.NOT_FOUND, admin_ops.EXISTS: grpc.StatusCode.ALREADY_EXISTS}


class AdminServicer(TagRpcs, InsightRpcs):
    def __init__(self, store: Store) -> None:
        self._store = store

    async def authorize(self, method: str, context: grpc.aio.ServicerContext) -> None:
        """Abort unless the call's admin token may call `method`."""
        values = [value for key, value in context.invocation_metadata() or () if key == "authorization"]
        # Absent: None; given more than once: malformed ("").
        authorization = values[0] if len(values) == 1 else (None if not values else "")
        try:
            await call_store(context, authorize_admin, self._store, authorization, GRPC_ROLES.get(method, tokens.ADMIN))
        except Denied as err:
            code = grpc.StatusCode.PERMISSION_DENIED if err.forbidden else grpc.StatusCode.UNAUTHENTICATED
            await context.abort(code, str(err))

    async def _do(self, context: grpc.aio.ServicerContext, check: Callable[[], object], operation: Callable, *args, **kwargs):
        """Check the request with `check` (its result goes first to `operation`), then run the
        admin_ops operation off the event loop; their refusals abort with the matching status."""
        try:
            checked = check()
            return await call_store(context, operation, self._store, checked, *args, **kwargs)
        except QueryError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{err.field}: {err}" if err.field else str(err))
        except Refused as err:
            await context.abort(_REFUSED[err.kind], str(err))

    async def ListDevices(self, request: admin_pb2.ListDevicesRequest, context: grpc.aio.ServicerContext) -> admin_pb2.ListDevicesResponse:
        rows = await call_store(context, self._store.list_devices)
        return admin_pb2.ListDevicesResponse(devices=[device_to_proto(row) for row in rows])

    async def GetDevice(self, request: admin_pb2.GetDeviceRequest, context: grpc.aio.ServicerContext) -> admin_pb2.Device:
        return device_to_proto(await self._device(request.name, context))

    async def AddDevice(self, request: admin_pb2.AddDeviceRequest, context: grpc.aio.ServicerContext) -> admin_pb2.AddDeviceResponse:
        added = await self._do(
            context, lambda: params.device_spec(request.name, request.profile or None, request.site or None),
            admin_ops.add_device,
        )
        return admin_pb2.AddDeviceResponse(device=admin_pb2.Device(**added["device"]), token=added["token"])

    async def ListPriceBooks(
        self, request: admin_pb2.ListPriceBooksRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListPriceBooksResponse:
        books = await call_store(context, admin_ops.list_price_books, self._store)
        return admin_pb2.ListPriceBooksResponse(price_books=[admin_pb2.PriceBook(**book) for book in books])

    async def GetPriceBook(self, request: admin_pb2.GetPriceBookRequest, context: grpc.aio.ServicerContext) -> admin_pb2.GetPriceBookResponse:
        book = await self._do(context, lambda: params.price_book_id(request.id), admin_ops.price_book)
        document = book.pop("document")
        return admin_pb2.GetPriceBookResponse(price_book=admin_pb2.PriceBook(**book), document_json=json.dumps(document))

    async def CreatePriceBook(self, request: admin_pb2.CreatePriceBookRequest, context: grpc.aio.ServicerContext) -> admin_pb2.PriceBook:
        def check() -> dict:
            params.time_value(request.effective_from_unix_ns, field="effective_from_unix_ns")
            document = params.parse_json(request.document_json.encode(), field="document_json")
            return params.json_object(document, field="document_json")

        created = await self._do(
            context, check, admin_ops.create_price_book, request.effective_from_unix_ns,
            document_field="document_json", effective_field="effective_from_unix_ns",
        )
        return admin_pb2.PriceBook(**created)

    async def ExplainRecord(
        self, request: admin_pb2.ExplainRecordRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ExplainRecordResponse:
        explanation = await self._do(
            context, lambda: params.record_ref(request.stream_id, request.seq, request.device or None),
            admin_ops.explain_record,
        )
        return admin_pb2.ExplainRecordResponse(explanation_json=json.dumps(explanation))

    async def Reprice(self, request: admin_pb2.RepriceRequest, context: grpc.aio.ServicerContext) -> admin_pb2.RepriceResponse:
        # 0 and "" mean unbounded and every device, as documented in admin.proto.
        result = await self._do(
            context,
            lambda: params.time_range(request.since_unix_ns or None, request.until_unix_ns or None, request.device or None),
            admin_ops.reprice, since_field="since_unix_ns",
        )
        return admin_pb2.RepriceResponse(**result)

    async def PruneRecords(
        self, request: admin_pb2.PruneRecordsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.PruneRecordsResponse:
        def check() -> int:
            if not request.before_unix_ns:
                raise QueryError("before_unix_ns", "before_unix_ns is required: the records that started before it are deleted")
            return params.time_value(request.before_unix_ns, field="before_unix_ns")

        pruned = await self._do(context, check, admin_ops.prune_records, before_field="before_unix_ns")
        return admin_pb2.PruneRecordsResponse(**pruned)

    async def RotateDevice(self, request: admin_pb2.RotateDeviceRequest, context: grpc.aio.ServicerContext) -> admin_pb2.Device:
        device = await self._device(request.name, context)
        try:
            await call_store(context, self._store.rotate_device, device.device_id)
        except RotationRefused as err:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        return device_to_proto(await self._device(request.name, context))

    async def RevokeDevice(self, request: admin_pb2.RevokeDeviceRequest, context: grpc.aio.ServicerContext) -> admin_pb2.Device:
        device = await self._device(request.name, context)
        await call_store(context, self._store.revoke_device, device.device_id)
        return device_to_proto(await self._device(request.name, context))

    async def _device(self, name: str, context: grpc.aio.ServicerContext) -> DeviceRow:
        if not NAME_PATTERN.fullmatch(name):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"name: {DEVICE_NAME_RULE}")
        return await self._do(context, lambda: name, admin_ops.find_device)

    async def GetCosts(self, request: admin_pb2.GetCostsRequest, context: grpc.aio.ServicerContext) -> admin_pb2.GetCostsResponse:
        # 0 and "" mean unbounded, whole range and every group, as documented in admin.proto.
        since = request.since_unix_ns or None
        until = request.until_unix_ns or None
        try:
            report = await call_store(
                context, self._store.costs, group_by=tuple(request.group_by), since_unix_ns=since, until_unix_ns=until,
                granularity=request.granularity or None, top=request.top or None,
                period_costs=not request.usage_only,
            )
        except ValueError as err:  # a bad group key or granularity, too large a top or range, since after until
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        return costs_to_proto(report.to_json())


    async def GetForecast(self, request: admin_pb2.GetForecastRequest, context: grpc.aio.ServicerContext) -> admin_pb2.GetForecastResponse:
        # "", 0 and 0 mean global, 30 days and the default history, as documented in admin.proto.
        answer = await self._do(
            context,
            lambda: params.forecast_query(
                request.scope or None, request.horizon_days or None, request.since_unix_ns or None,
                today=admin_ops.today(),
            ),
            admin_ops.forecast,
        )
        return admin_pb2.GetForecastResponse(forecast_json=json.dumps(answer))

    async def ListBudgets(self, request: admin_pb2.ListBudgetsRequest, context: grpc.aio.ServicerContext) -> admin_pb2.ListBudgetsResponse:
        budgets = await call_store(context, admin_ops.list_budgets, self._store)
        return admin_pb2.ListBudgetsResponse(budgets_json=json.dumps(budgets))

    async def GetBudget(self, request: admin_pb2.GetBudgetRequest, context: grpc.aio.ServicerContext) -> admin_pb2.BudgetResponse:
        status = await self._do(context, lambda: params.budget_name(request.name), admin_ops.get_budget)
        return admin_pb2.BudgetResponse(budget_json=json.dumps(status))

    async def CreateBudget(self, request: admin_pb2.CreateBudgetRequest, context: grpc.aio.ServicerContext) -> admin_pb2.BudgetResponse:
        status = await self._do(
            context, lambda: _document(request.document_json), admin_ops.add_budget, document_field="document_json"
        )
        return admin_pb2.BudgetResponse(budget_json=json.dumps(status))

    async def UpdateBudget(self, request: admin_pb2.UpdateBudgetRequest, context: grpc.aio.ServicerContext) -> admin_pb2.BudgetResponse:
        def check() -> tuple[str, dict]:
            return params.budget_name(request.name), _document(request.document_json)

        def update(store: Store, checked: tuple[str, dict]) -> dict:
            return admin_ops.update_budget(store, *checked, document_field="document_json")

        status = await self._do(context, check, update)
        return admin_pb2.BudgetResponse(budget_json=json.dumps(status))

    async def DeleteBudget(self, request: admin_pb2.DeleteBudgetRequest, context: grpc.aio.ServicerContext) -> admin_pb2.DeleteBudgetResponse:
        await self._do(context, lambda: params.budget_name(request.name), admin_ops.delete_budget)
        return admin_pb2.DeleteBudgetResponse()

    async def ListBudgetEvents(
        self, request: admin_pb2.ListBudgetEventsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListBudgetEventsResponse:
        # "", 0 and 0 mean every budget, any time and 100, as documented in admin.proto.
        events = await self._do(
            context,
            lambda: params.events_query(request.budget or None, request.since_unix_ns or None, request.limit or None),
            admin_ops.budget_events,
        )
        return admin_pb2.ListBudgetEventsResponse(events_json=json.dumps(events))

    async def ListWebhooks(self, request: admin_pb2.ListWebhooksRequest, context: grpc.aio.ServicerContext) -> admin_pb2.ListWebhooksResponse:
        rows = await call_store(context, admin_ops.list_webhooks, self._store)
        return admin_pb2.ListWebhooksResponse(webhooks=[webhook_to_proto(row) for row in rows])

    async def AddWebhook(self, request: admin_pb2.AddWebhookRequest, context: grpc.aio.ServicerContext) -> admin_pb2.AddWebhookResponse:
        added = await self._do(context, lambda: params.webhook_url(request.url), admin_ops.add_webhook)
        webhooks = await call_store(context, admin_ops.list_webhooks, self._store)
        row = next(row for row in webhooks if row["webhook_id"] == added["webhook_id"])
        return admin_pb2.AddWebhookResponse(webhook=webhook_to_proto(row), secret=added["secret"])

    async def RevokeWebhook(self, request: admin_pb2.RevokeWebhookRequest, context: grpc.aio.ServicerContext) -> admin_pb2.Webhook:
        row = await self._do(
            context, lambda: params.webhook_id(request.webhook_id, field="webhook_id"), admin_ops.revoke_webhook
        )
        return webhook_to_proto(row)


    async def ListShadowProcesses(
        self, request: admin_pb2.ListShadowProcessesRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListShadowProcessesResponse:
        # "" means every device, as documented in admin.proto.
        answer = await self._do(
            context, lambda: params.check_name(request.device, field="device") if request.device else None,
            shadow.list_shadow,
        )
        return admin_pb2.ListShadowProcessesResponse(answer_json=json.dumps(answer))


def _document(text: str) -> dict:
    """A budget document sent as JSON text."""
    return params.json_object(params.parse_json(text.encode(), field="document_json"), field="document_json")


def webhook_to_proto(row: dict) -> admin_pb2.Webhook:
    return admin_pb2.Webhook(
        webhook_id=row["webhook_id"], url=row["url"], created_unix_ns=row["created_unix_ns"],
        revoked=row["revoked"],
    )


def device_to_proto(row: DeviceRow) -> admin_pb2.Device:
    """The device's JSON form (the HTTP API's) as a Device: the two have the same fields."""
    return admin_pb2.Device(**admin_ops.device_json(row))


def costs_to_proto(report: dict) -> admin_pb2.GetCostsResponse:
    """The CostReport's JSON form (the HTTP API's body) as GetCostsResponse."""
    return admin_pb2.GetCostsResponse(
        group_by=report["group_by"],
        currency=report["currency"],
        groups=[
            admin_pb2.CostGroup(
                key=group["key"],
                inferences=group["inferences"],
                records=group["records"],
                cost=group["cost"],
                compute_cost=group["compute_cost"],
                energy_cost=group["energy_cost"],
                energy_uj=group["energy_uj"],
                duration_ns=group["duration_ns"],
                cpu_time_ns=group["cpu_time_ns"],
                token_cost=group["token_cost"],
                request_cost=group["request_cost"],
                period=group.get("period", ""),
                other=group.get("other", False),
                **{name: group.get(name, "") for name in _GROUP_BREAKDOWN},
            )
            for group in report["groups"]
        ],
        total_cost=report["total_cost"],
        total_inferences=report["total_inferences"],
        total_records=report["total_records"],
        granularity=report.get("granularity", ""),
        top=report.get("top", 0),
        **{name: report.get(name, "") for name in _REPORT_BREAKDOWN},
    )


# Money fields a cost report may carry beyond usage costs (list price, discount, idle and
# fixed costs); "" in the reply when the report has none.
_GROUP_BREAKDOWN = ("list_cost", "discount", "idle_cost", "fixed_cost", "total_cost")
_REPORT_BREAKDOWN = ("list_cost", "discount", "idle_cost", "fixed_cost", "usage_cost")
