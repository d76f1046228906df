"""Conversion between the domain's UsageRecord and infermeter.v1 protobuf messages.

Protobuf types stop here: everything else works on agent.record dataclasses.
"""

from __future__ import annotations

import operator

from infermeter.v1 import usage_pb2

from agent.budgets import BudgetState, PriceHint
from agent.record import EnergyShare, Kind, Memory, ServerSide, Status, UsageRecord

# Unknown values (from a newer peer) stay raw ints, so validation can name them clearly.
_KINDS = {kind.value: kind for kind in Kind}
_STATUSES = {status.value: status for status in Status}


def record_to_proto(record: UsageRecord) -> usage_pb2.UsageRecord:
    message = usage_pb2.UsageRecord(
        seq=record.seq,
        kind=record.kind,
        model=record.model,
        model_version=record.model_version,
        runtime=record.runtime,
        execution_provider=record.execution_provider,
        batch_size=record.batch_size,
        input_bytes=record.input_bytes,
        output_bytes=record.output_bytes,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        start_unix_ns=record.start_unix_ns,
        duration_ns=record.duration_ns,
        cpu_time_ns=record.cpu_time_ns,
        status=record.status,
        error_type=record.error_type,
        tags=record.tags,
        pid=record.pid,
        count=record.count,
        gpu_time_ns=record.gpu_time_ns,
    )
    for share in record.energy:
        message.energy.add(
            domain=share.domain,
            energy_uj=share.energy_uj,
            sensor=share.sensor,
            method=share.method,
            interval_ns=share.interval_ns,
            error_uj=share.error_uj,
        )
    if record.memory is not None:
        message.memory.CopyFrom(
            usage_pb2.Memory(
                peak_rss_bytes=record.memory.peak_rss_bytes,
                peak_gpu_memory_bytes=record.memory.peak_gpu_memory_bytes,
                model_resident_bytes=record.memory.model_resident_bytes,
            )
        )
    if record.server is not None:
        server = record.server
        message.server.CopyFrom(
            usage_pb2.ServerSide(
                queue_ns=server.queue_ns, compute_input_ns=server.compute_input_ns,
                compute_infer_ns=server.compute_infer_ns, compute_output_ns=server.compute_output_ns,
                gpu_memory_bytes=server.gpu_memory_bytes, source=server.source, method=server.method,
                interval_ns=server.interval_ns,
            )
        )
    return message


# The scalar fields of a UsageRecord message, in UsageRecord's declaration order.
_scalars_of = operator.attrgetter(
    "seq", "kind", "model", "start_unix_ns", "duration_ns", "model_version", "runtime",
    "execution_provider", "batch_size", "input_bytes", "output_bytes", "input_tokens",
    "output_tokens", "cpu_time_ns", "status", "error_type",
)


def record_from_proto(message: usage_pb2.UsageRecord) -> UsageRecord:
    """Decode without validating: call agent.record.validate on the result. The collector
    decodes every record it receives here: one attrgetter for the scalars, positional
    construction."""
    (seq, kind, model, start_unix_ns, duration_ns, model_version, runtime, provider, batch_size,
     input_bytes, output_bytes, input_tokens, output_tokens, cpu_time_ns, status,
     error_type) = _scalars_of(message)
    tags = message.tags
    energy = message.energy
    return UsageRecord(
        seq, _KINDS.get(kind, kind), model, start_unix_ns, duration_ns, model_version, runtime,
        provider, batch_size, input_bytes, output_bytes, input_tokens, output_tokens,
        cpu_time_ns, _STATUSES.get(status, status), error_type,
        # Not dict(tags): that goes through the Mapping mixin's Python-level keys view.
        {key: tags[key] for key in tags} if tags else {},
        message.pid, message.count, message.gpu_time_ns,
        tuple(
            EnergyShare(e.domain, e.energy_uj, e.sensor, e.method, e.interval_ns, e.error_uj)
            for e in energy
        ) if energy else (),
        _memory_from_proto(message.memory) if message.HasField("memory") else None,
        _server_from_proto(message.server) if message.HasField("server") else None,
    )


def _memory_from_proto(message: usage_pb2.Memory) -> Memory:
    return Memory(message.peak_rss_bytes, message.peak_gpu_memory_bytes, message.model_resident_bytes)


def _server_from_proto(message: usage_pb2.ServerSide) -> ServerSide:
    return ServerSide(
        message.queue_ns, message.compute_input_ns, message.compute_infer_ns, message.compute_output_ns,
        message.gpu_memory_bytes, message.source, message.method, message.interval_ns,
    )


def budget_state_from_proto(message) -> BudgetState:
    """A Push reply's infermeter.v1.BudgetState; the lease in the budget's unit."""
    lease = message.lease_remaining_uj if message.unit == "energy" else message.lease_remaining_pico
    return BudgetState(
        budget_id=message.budget_id, name=message.name, scope=message.scope, action=message.action,
        state=message.state, currency=message.currency, unit=message.unit or "money",
        lease_remaining=lease, throttle_per_second=message.throttle_per_second,
        period_end_unix_ns=message.period_end_unix_ns, message=message.message,
    )


def price_hint_from_proto(message) -> PriceHint:
    return PriceHint(
        model=message.model, runtime=message.runtime, currency=message.currency,
        cost_per_inference_pico=message.cost_per_inference_pico,
        energy_per_inference_uj=message.energy_per_inference_uj,
    )
