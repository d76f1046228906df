"""infermeter.v1.Admin: the operators' gRPC API (devices, costs, token rotation, revocation).

Every call carries an admin token (`authorization: Bearer ima_...`); authorize() runs before
each call (collector.rpc) and refuses what the token's role does not allow (collector.auth).

Money crosses as the same exact decimal strings as in the HTTP API (CostReport.to_json), so the
two surfaces never disagree on a digit.
"""

from __future__ import annotations

import grpc
from infermeter.v1 import admin_pb2

from collector import tokens
from collector.auth import GRPC_ROLES, Denied, authorize_admin
from collector.pricebook import NAME_PATTERN
from collector.rpc import call_store
from collector.store import DEVICE_NAME_RULE, DeviceRow, RotationRefused, Store


class AdminServicer:
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

    async def ListDevices(self, request: admin_pb2.ListDevicesRequest, context: grpc.aio.ServicerContext) -> admin_pb2.ListDevicesResponse:
        rows = await call_store(context, self._store.list_devices)
        return admin_pb2.ListDevicesResponse(devices=[device_to_proto(row) for row in rows])

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
        device = await call_store(context, self._store.device, name)
        if device is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no device named or with id {name!r}")
        return device

    async def GetCosts(self, request: admin_pb2.GetCostsRequest, context: grpc.aio.ServicerContext) -> admin_pb2.GetCostsResponse:
        # 0 and "" mean unbounded, whole range and every group, as documented in admin.proto.
        since = request.since_unix_ns or None
        until = request.until_unix_ns or None
        try:
            report = await call_store(
                context, self._store.costs, group_by=tuple(request.group_by), since_unix_ns=since, until_unix_ns=until,
                granularity=request.granularity or None, top=request.top or None,
            )
        except ValueError as err:  # an unknown group key or granularity, too large a top, since after until
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        return costs_to_proto(report.to_json())


def device_to_proto(row: DeviceRow) -> admin_pb2.Device:
    return admin_pb2.Device(
        device_id=row.device_id,
        name=row.name,
        profile=row.profile,
        site=row.site,
        created_unix_ns=row.created_unix_ns,
        last_seen_unix_ns=row.last_seen_unix_ns,
        revoked=row.revoked,
        hostname=row.hostname,
        cpu_cores=row.cpu_cores,
        platform=row.platform,
        agent_version=row.agent_version,
        records=row.records,
        rotating=row.rotating,
    )


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
                period=group.get("period", ""),
                other=group.get("other", False),
            )
            for group in report["groups"]
        ],
        total_cost=report["total_cost"],
        total_inferences=report["total_inferences"],
        total_records=report["total_records"],
        granularity=report.get("granularity", ""),
        top=report.get("top", 0),
    )
