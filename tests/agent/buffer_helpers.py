"""Records to fill device buffers with, the sums that compaction must keep, and small real file
systems to fill, for the tests of the bounded buffer (compaction, the model test, quarantine,
disk full)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable

from agent.buffer import Buffer, is_full, row_from_record
from agent.record import EnergyShare, Kind, Status, UsageRecord

START_UNIX_NS = 1_794_999_960 * 10**9  # 2026-11-18T11:06:00Z, on a minute boundary
MINUTE_NS = 60 * 10**9
SUMMED = ("count", "duration_ns", "cpu_time_ns", "gpu_time_ns", "batch_size", "input_bytes",
          "output_bytes", "input_tokens", "output_tokens")


def make_record(i: int, **fields) -> UsageRecord:
    """Record i: a call 100 ms after record i-1, of one of two models, with energy."""
    values = dict(
        seq=0, kind=Kind.INFERENCE, model=("resnet50", "bert")[i % 2], model_version="3",
        runtime="onnxruntime", execution_provider="CPUExecutionProvider",
        start_unix_ns=START_UNIX_NS + i * 100_000_000, duration_ns=2_000_000 + i, cpu_time_ns=1_000_000 + 7 * i,
        gpu_time_ns=i % 5, batch_size=1 + i % 4, input_bytes=600 + i, output_bytes=40, input_tokens=i % 13,
        output_tokens=i % 17, tags={"project": "search"}, pid=4242,
        energy=(EnergyShare("cpu", 5_000 + i, "rapl", "cpu-time", 100_000_000, 50),
                EnergyShare("dram", 700, "rapl", "cpu-time", 100_000_000, 7)),
        status=Status.ERROR if i % 11 == 0 else Status.OK, error_type="Timeout" if i % 11 == 0 else "",
    )
    values.update(fields)
    return UsageRecord(**values)


def append(buffer: Buffer, records: Iterable[UsageRecord], *, attributed: bool = True) -> int:
    rows = [row_from_record(record) for record in records]
    if not attributed:  # as the flusher writes them: waiting for their energy
        rows = [(*row[:-3], 1, 1, 0) for row in rows]
    return buffer.append(rows)


def fill(buffer: Buffer, start: int = 0, *, batch: int = 50, make: Callable[[int], UsageRecord] = make_record) -> int:
    """Append records make(start), make(start + 1), ... until the buffer is full; the next number."""
    i = start
    while True:
        try:
            append(buffer, [make(i + k) for k in range(batch)])
        except sqlite3.Error as err:
            assert is_full(err), err
            if batch == 1:
                return i
            batch = 1
            continue
        i += batch


def all_records(buffer: Buffer) -> list[UsageRecord]:
    return buffer.read(limit=10**9)


def totals(records: Iterable[UsageRecord]) -> Counter:
    """Everything the collector sums, energy per (domain, sensor, method) with its error."""
    sums: Counter = Counter()
    for record in records:
        for name in SUMMED:
            sums[name] += getattr(record, name)
        for share in record.energy:
            sums[("energy", share.domain, share.sensor, share.method)] += share.energy_uj
            sums[("error", share.domain, share.sensor, share.method)] += share.error_uj
        if record.status is Status.ERROR and record.kind is not Kind.GAP:
            sums["failed"] += record.count
    return sums


def db_and_wal_bytes(buffer: Buffer) -> int:
    return buffer.usage().file_bytes


