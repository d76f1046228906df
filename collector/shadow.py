"""Shadow AI on the collector: the processes each device reports that run an inference runtime
but meter nothing (agent.discovery), kept per device, and what they are estimated to cost.

A report is the device's whole latest scan: it replaces the device's list in one transaction;
a process (pid and start time) keeps when it was first reported. The estimate prices the CPU
time the process used as the collector prices a record's (collector.pricing): the CPU share of
the device (CPU time over its cores) times the device's cost per second (amortized hardware
and upkeep, or the cloud rate) under the price book in force now, in exact picos, rounded
half-even once per figure. Energy and GPU time are not in it: nothing measured them for these
processes (their GPU memory is shown).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from agent.discovery import RUNTIMES, ShadowProcess
from agent.record import InvalidRecord, check_text
from collector.admin_ops import NOT_FOUND, Refused
from collector.books import PriceBooks
from collector.database import transaction
from collector.pricing import (
    DeviceRate,
    decimal_text,
    div_round_half_even,
    picos_to_decimal,
)
from collector.schema import devices, shadow_processes, shadow_scans
from collector.store import Store

MAX_PROCESSES = 1000
MAX_CMDLINE_CHARS = 256
INT64_MAX = 2**63 - 1
NS_PER_HOUR = 3_600 * 10**9
NS_PER_S = 10**9
_RUNTIMES = frozenset(name for name, _ in RUNTIMES)
_COUNTS = ("rss_bytes", "cpu_time_ns", "cpu_ns_per_s", "gpu_memory_bytes")


@dataclass(frozen=True, slots=True)
class ShadowReport:
    scanned_unix_ns: int
    interval_ms: int
    runtime_processes: int
    processes: tuple[ShadowProcess, ...]
    unreadable_processes: int = 0


def check_report(report: ShadowReport) -> None:
    """InvalidRecord naming the first field that is wrong; nothing is stored then."""
    if not 0 < report.scanned_unix_ns <= INT64_MAX:
        raise InvalidRecord("scanned_unix_ns", "must be a positive time in ns")
    if not 0 <= report.interval_ms <= INT64_MAX:
        raise InvalidRecord("interval_s", "must be a finite, non-negative number of seconds")
    if len(report.processes) > MAX_PROCESSES:
        raise InvalidRecord("processes", f"a report lists at most {MAX_PROCESSES} processes, got {len(report.processes)}")
    if report.runtime_processes < len(report.processes):
        raise InvalidRecord("runtime_processes", "is less than the processes listed")
    seen = set()
    for index, process in enumerate(report.processes):
        where = f"processes[{index}]"
        key = (process.pid, process.start_unix_ns)
        if key in seen:
            raise InvalidRecord(where, f"pid {process.pid} started at {process.start_unix_ns} is listed twice")
        seen.add(key)
        if process.pid <= 0 or not 0 < process.start_unix_ns <= INT64_MAX:
            raise InvalidRecord(f"{where}.pid", "a process needs its pid and start time")
        check_text(f"{where}.command", process.command, 64)
        check_text(f"{where}.cmdline", process.cmdline, MAX_CMDLINE_CHARS)
        check_text(f"{where}.user", process.user, 64)
        if not process.runtimes or not set(process.runtimes) <= _RUNTIMES:
            raise InvalidRecord(f"{where}.runtimes", f"must be some of: {', '.join(sorted(_RUNTIMES))}")
        for name in _COUNTS:
            if getattr(process, name) > INT64_MAX:
                raise InvalidRecord(f"{where}.{name}", "is out of range")
        if not 0 <= process.last_record_unix_ns <= INT64_MAX:
            raise InvalidRecord(f"{where}.last_record_unix_ns", "is out of range")


def store_report(store: Store, device_id: str, report: ShadowReport, *, received_unix_ns: int) -> int:
    """Replace the device's scan and list with the report's; the processes stored."""
    check_report(report)
    with transaction(store.engine, write=True) as connection:
        first_seen = _first_seen(connection, device_id)
        connection.execute(sa.delete(shadow_processes).where(shadow_processes.c.device_id == device_id))
        connection.execute(sa.delete(shadow_scans).where(shadow_scans.c.device_id == device_id))
        connection.execute(sa.insert(shadow_scans), {
            "device_id": device_id, "scanned_unix_ns": report.scanned_unix_ns, "received_unix_ns": received_unix_ns,
            "interval_ms": report.interval_ms, "runtime_processes": report.runtime_processes,
            "unreadable_processes": report.unreadable_processes,
        })
        if report.processes:
            connection.execute(sa.insert(shadow_processes), [
                {
                    "device_id": device_id, "pid": p.pid, "start_unix_ns": p.start_unix_ns, "command": p.command,
                    "cmdline": p.cmdline, "uid": p.uid, "user_name": p.user, "runtimes": list(p.runtimes),
                    "rss_bytes": p.rss_bytes, "cpu_time_ns": p.cpu_time_ns, "cpu_ns_per_s": p.cpu_ns_per_s,
                    "gpu_memory_bytes": p.gpu_memory_bytes, "last_record_unix_ns": p.last_record_unix_ns,
                    "first_seen_unix_ns": first_seen.get((p.pid, p.start_unix_ns), received_unix_ns),
                }
                for p in report.processes
            ])
    return len(report.processes)


def _first_seen(connection: sa.Connection, device_id: str) -> dict[tuple[int, int], int]:
    rows = connection.execute(
        sa.select(shadow_processes.c.pid, shadow_processes.c.start_unix_ns, shadow_processes.c.first_seen_unix_ns)
        .where(shadow_processes.c.device_id == device_id)
    )
    return {(pid, start): seen for pid, start, seen in rows}


def list_shadow(store: Store, device: str | None, *, now_unix_ns: int | None = None) -> dict:
    """{"currency", "devices": [their last scan], "processes": [...], "estimated_cost_per_hour"}:
    every device's, or one device's (its name or id; Refused NOT_FOUND if unknown). Priced
    with the price books in force at now_unix_ns (default: now)."""
    now_unix_ns = time.time_ns() if now_unix_ns is None else now_unix_ns
    device_id = None
    if device is not None:
        row = store.device(device)
        if row is None:
            raise Refused(NOT_FOUND, f"no device named or with id {device!r}", "device")
        device_id = row.device_id
    books = PriceBooks()
    with transaction(store.engine) as connection:
        where = [] if device_id is None else [devices.c.device_id == device_id]
        scans = connection.execute(
            sa.select(devices.c.device_id, devices.c.name, devices.c.profile, devices.c.site, devices.c.cpu_cores,
                      shadow_scans.c.scanned_unix_ns, shadow_scans.c.received_unix_ns, shadow_scans.c.interval_ms,
                      shadow_scans.c.runtime_processes, shadow_scans.c.unreadable_processes)
            .join(shadow_scans, shadow_scans.c.device_id == devices.c.device_id)
            .where(*where).order_by(devices.c.name)
        ).all()
        rows = connection.execute(
            sa.select(shadow_processes).where(
                *([] if device_id is None else [shadow_processes.c.device_id == device_id])
            ).order_by(shadow_processes.c.cpu_ns_per_s.desc(), shadow_processes.c.pid)
        ).all()
        currency = books.currency(connection)
        rates = {
            scan.device_id: books.schedule(
                connection, profile=scan.profile, site=scan.site, reported_cpu_cores=scan.cpu_cores
            ).rate_at(now_unix_ns)
            for scan in scans
        }
    names = {scan.device_id: scan.name for scan in scans}
    processes = [_process_json(row, names[row.device_id], rates[row.device_id]) for row in rows if row.device_id in names]
    total = sum(process.pop("_per_hour_pico") for process in processes)
    return {
        "currency": currency,
        "devices": [
            {
                "device": scan.name, "scanned_unix_ns": scan.scanned_unix_ns, "received_unix_ns": scan.received_unix_ns,
                "interval_s": decimal_text(Decimal(scan.interval_ms) / 1000), "runtime_processes": scan.runtime_processes,
                "unreadable_processes": scan.unreadable_processes,
                "shadow_processes": sum(1 for row in rows if row.device_id == scan.device_id),
            }
            for scan in scans
        ],
        "processes": processes,
        "estimated_cost_per_hour": _money(total),
    }


def _process_json(row: sa.Row, device_name: str, rate: DeviceRate) -> dict:
    per_hour = cpu_cost_pico(rate, row.cpu_ns_per_s * NS_PER_HOUR // NS_PER_S)
    return {
        "device": device_name, "pid": row.pid, "start_unix_ns": row.start_unix_ns, "command": row.command,
        "cmdline": row.cmdline, "uid": row.uid, "user": row.user_name, "runtimes": list(row.runtimes),
        "rss_bytes": row.rss_bytes, "cpu_time_ns": row.cpu_time_ns, "cpu_ns_per_s": row.cpu_ns_per_s,
        "cpu_cores_busy": decimal_text(Decimal(row.cpu_ns_per_s) / NS_PER_S),
        "gpu_memory_bytes": row.gpu_memory_bytes, "last_record_unix_ns": row.last_record_unix_ns,
        "first_seen_unix_ns": row.first_seen_unix_ns,
        "estimated_cost_per_hour": _money(per_hour),
        "estimated_cost_to_date": _money(cpu_cost_pico(rate, row.cpu_time_ns)),
        "estimate": _basis(rate),
        "_per_hour_pico": per_hour,
    }


def cpu_cost_pico(rate: DeviceRate, cpu_time_ns: int) -> int:
    """What cpu_time_ns of CPU costs on the device: its share (over the cores) of the device's
    cost per second, exactly, rounded half-even to picos."""
    return div_round_half_even(cpu_time_ns * rate.cpu_num, rate.compute_den)


def _basis(rate: DeviceRate) -> str:
    per_s = decimal_text(picos_to_decimal(div_round_half_even(
        rate.compute_per_device_s.numerator * 10**12, rate.compute_per_device_s.denominator
    )))
    text = (
        f"CPU time over {rate.cpu_cores} cores x {per_s} per device-second ({rate.profile}, price book "
        f"{rate.price_book_id}); energy and GPU time not included"
    )
    return f"{text}; {rate.note}" if rate.note else text


def _money(picos: int) -> str:
    return decimal_text(picos_to_decimal(picos))


def report_from_rows(scanned_unix_ns: int, interval_s: float, runtime_processes: int,
                     processes: Sequence[ShadowProcess], unreadable_processes: int = 0) -> ShadowReport:
    """A ShadowReport from decoded fields; InvalidRecord for an interval that is no number of
    seconds."""
    if not (math.isfinite(interval_s) and 0 <= interval_s < INT64_MAX / 1000):
        raise InvalidRecord("interval_s", "must be a finite, non-negative number of seconds")
    return ShadowReport(
        scanned_unix_ns, round(interval_s * 1000), runtime_processes, tuple(processes), unreadable_processes
    )
