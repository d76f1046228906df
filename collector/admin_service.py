"""infermeter.v1.Admin: the operators' gRPC API (devices, costs).

Read-only, and without authentication until admin tokens arrive: that is why the collector
binds to 127.0.0.1 by default. Expose it beyond the host only behind something that
authenticates (a VPN, an authenticating proxy).

Money crosses as the same exact decimal strings as in the HTTP API (CostReport.to_json), so the
two surfaces never disagree on a digit.
"""

from __future__ import annotations

import grpc
from infermeter.v1 import admin_pb2

from collector.rpc import call_store
from collector.store import Store


class AdminServicer:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def ListDevices(self, request: admin_pb2.ListDevicesRequest, context: grpc.aio.ServicerContext) -> admin_pb2.ListDevicesResponse:
        rows = await call_store(context, self._store.list_devices)
        return admin_pb2.ListDevicesResponse(devices=[
            admin_pb2.Device(
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
            )
            for row in rows
        ])

    async def GetCosts(self, request: admin_pb2.GetCostsRequest, context: grpc.aio.ServicerContext) -> admin_pb2.GetCostsResponse:
        # 0 means unbounded, as documented in admin.proto.
        since = request.since_unix_ns or None
        until = request.until_unix_ns or None
        try:
            report = await call_store(
                context, self._store.costs, group_by=tuple(request.group_by), since_unix_ns=since, until_unix_ns=until,
            )
        except ValueError as err:  # an unknown group key, or since after until
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        return costs_to_proto(report.to_json())


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
            )
            for group in report["groups"]
        ],
        total_cost=report["total_cost"],
        total_inferences=report["total_inferences"],
        total_records=report["total_records"],
    )
