"""The calls of infermeter.v1.Admin for the tag policy, devices' default tags, untagged costs
and chargeback (collector.tag_ops), mixed into collector.admin_service.AdminServicer, whose
checks and authorization they share. Answers are the HTTP API's JSON."""

from __future__ import annotations

import json

import grpc
from infermeter.v1 import admin_pb2

from collector import params, tag_ops
from collector.chargeback import chargeback_csv
from collector.rpc import call_store
from collector.store import Store


class TagRpcs:
    """Needs the servicer's `_store` and `_do` (collector.admin_service)."""

    async def GetTagPolicy(
        self, request: admin_pb2.GetTagPolicyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.TagPolicyResponse:
        policy = await call_store(context, tag_ops.get_policy, self._store)
        return admin_pb2.TagPolicyResponse(policy_json=json.dumps(policy))

    async def SetTagPolicy(
        self, request: admin_pb2.SetTagPolicyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.TagPolicyResponse:
        policy = await self._do(
            context, lambda: params.parse_json(request.policy_json.encode(), field="policy_json"),
            tag_ops.set_policy, prefix="policy_json",
        )
        return admin_pb2.TagPolicyResponse(policy_json=json.dumps(policy))

    async def GetDeviceTags(
        self, request: admin_pb2.GetDeviceTagsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DeviceTagsResponse:
        answer = await self._do(context, lambda: params.check_name(request.name, field="name"), tag_ops.get_device_tags)
        return admin_pb2.DeviceTagsResponse(**answer)

    async def SetDeviceTags(
        self, request: admin_pb2.SetDeviceTagsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.DeviceTagsResponse:
        def update(store: Store, name: str) -> dict:
            return tag_ops.set_device_tags(store, name, dict(request.tags))

        answer = await self._do(context, lambda: params.check_name(request.name, field="name"), update)
        return admin_pb2.DeviceTagsResponse(**answer)

    async def GetUntaggedCosts(
        self, request: admin_pb2.GetUntaggedCostsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.GetUntaggedCostsResponse:
        # "" and 0 mean no month and open bounds, as documented in admin.proto.
        answer = await self._do(
            context,
            lambda: tag_ops.period(
                request.month or None, request.since_unix_ns or None, request.until_unix_ns or None
            ),
            tag_ops.untagged_costs,
        )
        return admin_pb2.GetUntaggedCostsResponse(answer_json=json.dumps(answer))

    async def GetChargeback(
        self, request: admin_pb2.GetChargebackRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.GetChargebackResponse:
        def check() -> tuple[tag_ops.Period, tuple[str, ...]]:
            scope = tag_ops.period(
                request.month or None, request.since_unix_ns or None, request.until_unix_ns or None
            )
            return scope, tag_ops.chargeback_by(list(request.by))

        def report(store: Store, checked: tuple[tag_ops.Period, tuple[str, ...]]) -> dict:
            return tag_ops.chargeback_report(store, *checked)

        answer = await self._do(context, check, report)
        return admin_pb2.GetChargebackResponse(answer_json=json.dumps(answer), csv=chargeback_csv(answer))
