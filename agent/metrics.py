"""The agent daemon's Prometheus metrics, served when agent.toml sets `[metrics] listen`.

prometheus_client's own small HTTP server answers scrapes on a daemon thread, from a registry
of this daemon's (never the global one). Shipping is counted as batches go out (the exporter
is wrapped: MeteredExporter); everything else is read when scraped, so the metered calls and
the main loop do no extra work: the buffer's backlog and compaction counters through a
read-only connection of the scrape's own, the energy sensors' newest samples from the buffer,
and the budgets the daemon enforces from its budget store.

Needs the `metrics` extra (prometheus-client, pure Python).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.budgets import BudgetState
from agent.exporter import Exporter, ExportOutcome, ExportResult, PendingExport
from agent.record import UsageRecord

# Sample names this module exports (tests check them against a live scrape).
METRIC_NAMES = (
    "infermeter_agent_buffer_records", "infermeter_agent_buffer_bytes",
    "infermeter_agent_compactions_total", "infermeter_agent_gap_records_total",
    "infermeter_agent_dropped_records_total", "infermeter_agent_shipped_records_total",
    "infermeter_agent_ship_seconds_bucket", "infermeter_agent_ship_seconds_count", "infermeter_agent_ship_seconds_sum",
    "infermeter_agent_ship_failures_total", "infermeter_agent_heartbeats_total",
    "infermeter_agent_sensor_readable", "infermeter_agent_sensor_sample_age_seconds", "infermeter_agent_budget_state",
)
# A sensor with no sample this much newer than its sampling period is reported unreadable.
STALE_PERIODS = 50
_SHIP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BUSY_TIMEOUT_S = 2.0


class AgentMetrics:
    def __init__(
        self, buffer_path: Path, *, sensors: Sequence[str] = (), boot: int = 0, sample_period_s: float = 0.1,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """sensors: the energy sensors sampled (their newest samples are in the buffer, for
        this boot)."""
        self.registry = CollectorRegistry()
        self.shipped = Counter(
            "infermeter_agent_shipped_records", "Records the collector acknowledged.", registry=self.registry
        )
        self.ship_seconds = Histogram(
            "infermeter_agent_ship_seconds", "Time from sending a batch to the collector's answer.",
            buckets=_SHIP_BUCKETS_S, registry=self.registry,
        )
        self.failures = Counter(
            "infermeter_agent_ship_failures", "Pushes that failed, by reason (retry, too-large, auth-failed, rejected).",
            ["reason"], registry=self.registry,
        )
        self.heartbeats = Counter(
            "infermeter_agent_heartbeats", "Empty pushes acknowledged (asking for budget state).", registry=self.registry
        )
        for result in ExportResult:
            if result is not ExportResult.SUCCESS:
                self.failures.labels(result.value)
        self._buffer = _BufferCollector(
            Path(buffer_path), tuple(sensors), boot=boot, stale_ns=round(STALE_PERIODS * sample_period_s * 1e9),
            monotonic_ns=monotonic_ns,
        )
        self.registry.register(self._buffer)

    def follow_budgets(self, budgets: Callable[[], Sequence[BudgetState]]) -> None:
        """budgets: the budgets the daemon enforces now (read at each scrape)."""
        self._buffer.budgets = budgets

    def metered(self, exporter: Exporter) -> MeteredExporter:
        return MeteredExporter(exporter, self)

    def serve(self, address: str) -> threading.Thread:
        """Answer scrapes on address ("HOST:PORT") from a daemon thread. OSError if it cannot listen."""
        host, _, port = address.rpartition(":")
        _, thread = start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
        return thread

    def answered(self, records: int, outcome: ExportOutcome, seconds: float) -> None:
        self.ship_seconds.observe(seconds)
        if outcome.result is not ExportResult.SUCCESS:
            self.failures.labels(outcome.result.value).inc()
        elif records:
            self.shipped.inc(records)
        else:
            self.heartbeats.inc()


class MeteredExporter:
    """An exporter that reports each batch's answer and how long it took to AgentMetrics."""

    def __init__(self, exporter: Exporter, metrics: AgentMetrics) -> None:
        self._exporter = exporter
        self._metrics = metrics

    def prepare(self, stream_id: str, records: Sequence[UsageRecord]) -> object:
        return len(records), self._exporter.prepare(stream_id, records)

    def send(self, prepared: object) -> PendingExport:
        records, inner = prepared
        return _TimedExport(self._exporter.send(inner), records, self._metrics)


class _TimedExport:
    def __init__(self, pending: PendingExport, records: int, metrics: AgentMetrics) -> None:
        self._pending = pending
        self._records = records
        self._metrics = metrics
        self._sent_s = time.perf_counter()

    def result(self) -> ExportOutcome:
        outcome = self._pending.result()
        self._metrics.answered(self._records, outcome, time.perf_counter() - self._sent_s)
        return outcome


class _BufferCollector:
    """The buffer's backlog and counters, the sensors' health and the budgets, at each scrape."""

    def __init__(
        self, path: Path, sensors: tuple[str, ...], *, boot: int, stale_ns: int, monotonic_ns: Callable[[], int],
    ) -> None:
        self._path = path
        self._sensors = sensors
        self._boot = boot
        self._stale_ns = stale_ns
        self.budgets: Callable[[], Sequence[BudgetState]] = tuple
        self._monotonic_ns = monotonic_ns

    def collect(self) -> Iterable[Metric]:
        # Read-only, and a connection of the scrape's thread: the daemon's is its main loop's.
        conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S)
        try:
            (waiting,) = conn.execute("SELECT count(*) FROM records").fetchone()
            counters = dict(conn.execute("SELECT key, value FROM meta WHERE key LIKE 'counter:%'").fetchall())
            newest = dict(conn.execute(
                "SELECT sensor, max(t_ns) FROM energy_samples WHERE boot = ? GROUP BY sensor", (self._boot,)
            ).fetchall())
        finally:
            conn.close()
        yield GaugeMetricFamily("infermeter_agent_buffer_records", "Records waiting in the buffer.", value=waiting)
        yield GaugeMetricFamily(
            "infermeter_agent_buffer_bytes", "Size of the buffer's files (database and WAL).", value=self._file_bytes()
        )
        for name, counter, text in (
            ("infermeter_agent_compactions", "compactions", "Compactions run to keep the buffer under its cap."),
            ("infermeter_agent_gap_records", "gap_records", "Gap records written for records dropped."),
            ("infermeter_agent_dropped_records", "dropped_records", "Records dropped to keep the buffer under its cap."),
        ):
            yield CounterMetricFamily(name, text, value=int(counters.get(f"counter:{counter}", 0)))
        yield from self._sensor_health(newest)
        state = GaugeMetricFamily(
            "infermeter_agent_budget_state", "1 for each budget enforced on this device, in its state.",
            labels=["budget", "state", "action"],
        )
        for budget in self.budgets():
            state.add_metric([budget.name, budget.state, budget.action], 1.0)
        yield state

    def _sensor_health(self, newest: dict[str, int]) -> Iterable[Metric]:
        readable = GaugeMetricFamily(
            "infermeter_agent_sensor_readable", "1 while the energy sensor gives samples, else 0.", labels=["sensor"]
        )
        age = GaugeMetricFamily(
            "infermeter_agent_sensor_sample_age_seconds", "Age of the sensor's newest sample in the buffer.",
            labels=["sensor"],
        )
        now_ns = self._monotonic_ns()
        for sensor in self._sensors:
            t_ns = newest.get(sensor)
            age_ns = None if t_ns is None else max(0, now_ns - t_ns)
            readable.add_metric([sensor], 1.0 if age_ns is not None and age_ns <= self._stale_ns else 0.0)
            if age_ns is not None:
                age.add_metric([sensor], age_ns / 1e9)
        yield readable
        yield age

    def _file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += self._path.with_name(self._path.name + suffix).stat().st_size
            except FileNotFoundError:
                pass
        return total
