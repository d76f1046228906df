"""Conversion between the domain's UsageRecord and infermeter.v1 protobuf messages.

Protobuf types stop here: everything else works on agent.record dataclasses.
"""

from __future__ import annotations

from infermeter.v1 import usage_pb2

from agent.record import EnergyShare, Kind, Memory, Status, UsageRecord


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
    return message


def record_from_proto(message: usage_pb2.UsageRecord) -> UsageRecord:
    """Decode without validating: call agent.record.validate on the result."""
    memory = None
    if message.HasField("memory"):
        m = message.memory
        memory = Memory(m.peak_rss_bytes, m.peak_gpu_memory_bytes, m.model_resident_bytes)
    return UsageRecord(
        seq=message.seq,
        kind=_KINDS.get(message.kind, message.kind),
        model=message.model,
        model_version=message.model_version,
        runtime=message.runtime,
        execution_provider=message.execution_provider,
        batch_size=message.batch_size,
        input_bytes=message.input_bytes,
        output_bytes=message.output_bytes,
        input_tokens=message.input_tokens,
        output_tokens=message.output_tokens,
        start_unix_ns=message.start_unix_ns,
        duration_ns=message.duration_ns,
        cpu_time_ns=message.cpu_time_ns,
        status=_STATUSES.get(message.status, message.status),
        error_type=message.error_type,
        tags=dict(message.tags) if message.tags else {},
        pid=message.pid,
        count=message.count,
        gpu_time_ns=message.gpu_time_ns,
        energy=tuple(
            EnergyShare(e.domain, e.energy_uj, e.sensor, e.method, e.interval_ns, e.error_uj)
            for e in message.energy
        )
        if message.energy
        else (),
        memory=memory,
    )
