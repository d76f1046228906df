"""The calls of infermeter.v1.Admin for workload classes, business KPIs, the model registry and
right-sizing (collector.insights_ops), mixed into collector.admin_service.AdminServicer, whose
checks and authorization they share. Answers are the HTTP API's JSON."""

from __future__ import annotations

import json

import grpc
from infermeter.v1 import admin_pb2

from collector import (
    insights_ops,
    kpis,
    model_registry,
    params,
    right_sizing,
    workload_classes,
)
from collector.rpc import call_store


class InsightRpcs:
    """Needs the servicer's `_store` and `_do` (collector.admin_service)."""

    async def ListWorkloadClasses(
        self, request: admin_pb2.ListWorkloadClassesRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListWorkloadClassesResponse:
        answer = await call_store(context, insights_ops.list_classes, self._store)
        return admin_pb2.ListWorkloadClassesResponse(answer_json=json.dumps(answer))

    async def SetWorkloadClass(
        self, request: admin_pb2.SetWorkloadClassRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.WorkloadClassResponse:
        values = {name: getattr(request, name) or None for name in workload_classes.DIMENSIONS}
        answer = await self._do(context, lambda: workload_classes.parse_class(request.model, values),
                                insights_ops.set_class)
        return admin_pb2.WorkloadClassResponse(class_json=json.dumps(answer))

    async def DeleteWorkloadClass(
        self, request: admin_pb2.DeleteWorkloadClassRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DeleteWorkloadClassResponse:
        await self._do(context, lambda: request.model, insights_ops.delete_class)
        return admin_pb2.DeleteWorkloadClassResponse()

    async def ListKpis(self, request: admin_pb2.ListKpisRequest, context: grpc.aio.ServicerContext) -> admin_pb2.ListKpisResponse:
        answer = await call_store(context, insights_ops.list_kpis, self._store)
        return admin_pb2.ListKpisResponse(answer_json=json.dumps(answer))

    async def CreateKpi(self, request: admin_pb2.CreateKpiRequest, context: grpc.aio.ServicerContext) -> admin_pb2.KpiResponse:
        answer = await self._do(
            context, lambda: kpis.parse_kpi(params.parse_json(request.document_json.encode(), field="document_json")),
            insights_ops.add_kpi,
        )
        return admin_pb2.KpiResponse(kpi_json=json.dumps(answer))

    async def DeleteKpi(self, request: admin_pb2.DeleteKpiRequest, context: grpc.aio.ServicerContext) -> admin_pb2.DeleteKpiResponse:
        await self._do(context, lambda: request.name, insights_ops.delete_kpi)
        return admin_pb2.DeleteKpiResponse()

    async def GetKpiReport(
        self, request: admin_pb2.GetKpiReportRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.InsightReportResponse:
        answer = await self._do(context, lambda: kpis.kpi_query(
            request.since_unix_ns or None, request.until_unix_ns or None, request.granularity or None,
            now_unix_ns=self._store.now_unix_ns(),
        ), insights_ops.kpi_report)
        return admin_pb2.InsightReportResponse(answer_json=json.dumps(answer))

    async def GetModelRegistry(
        self, request: admin_pb2.GetModelRegistryRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.InsightReportResponse:
        answer = await self._do(context, lambda: model_registry.registry_query(
            request.active_days or None, request.sprawl_versions or None, request.model or None,
        ), insights_ops.model_registry_report)
        return admin_pb2.InsightReportResponse(answer_json=json.dumps(answer))

    async def GetRightSizing(
        self, request: admin_pb2.GetRightSizingRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.InsightReportResponse:
        answer = await self._do(context, lambda: right_sizing.right_sizing_query(
            request.model or None, request.since_unix_ns or None, request.until_unix_ns or None,
            now_unix_ns=self._store.now_unix_ns(),
        ), insights_ops.right_sizing_report)
        return admin_pb2.InsightReportResponse(answer_json=json.dumps(answer))
