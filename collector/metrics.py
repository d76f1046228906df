"""The collector's Prometheus metrics, served at /metrics (collector.http_api).

Each server has its own registry (several servers may share a process). Ingest figures are
counted by this process as it serves pushes, so each replica exports its own share and
Prometheus sums them; budget and device figures are read from the store at scrape time (one
query each), so every replica reports the same fleet-wide values there.

infermeter_spend_total and infermeter_energy_joules_total keep at most MAX_SPEND_SERIES
model x device series per process: once that many exist, further pairs are counted under
model="other", device="other", so a fleet with many models cannot blow up Prometheus.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from collector.rows import RECORD_COLUMNS
from collector.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_SPEND_SERIES = 200
OTHER = "other"
PICOS_PER_UNIT = 10**12
_MODEL, _START, _COST, _ENERGY = (RECORD_COLUMNS.index(name) for name in ("model", "start_unix_ns", "cost_pico", "energy_uj"))
_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS_S = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3_600.0, 4 * 3_600.0, 24 * 3_600.0, 7 * 24 * 3_600.0)


class CollectorMetrics:
    """The metrics of one collector server: IngestServicer reports each push here."""

    def __init__(self, store: Store, *, wall_ns: Callable[[], int] = time.time_ns,
                 max_spend_series: int = MAX_SPEND_SERIES) -> None:
        self.registry = CollectorRegistry()
        self._wall_ns = wall_ns
        self._max_spend_series = max_spend_series
        self._series: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        registry = self.registry
        self.pushes = Counter("infermeter_ingest_pushes", "Ingest pushes stored (heartbeats included).", registry=registry)
        self.batches = Counter("infermeter_ingest_batches", "Ingest pushes that carried records.", registry=registry)
        self.records = Counter(
            "infermeter_ingest_records", "Records received, by result (inserted, duplicate).", ["result"], registry=registry
        )
        self.refused = Counter(
            "infermeter_ingest_refused", "Pushes refused, by gRPC status code.", ["code"], registry=registry
        )
        self.latency = Histogram(
            "infermeter_ingest_seconds", "Time to store a batch of records (decode, price, commit).",
            buckets=_LATENCY_BUCKETS_S, registry=registry,
        )
        self.lag = Histogram(
            "infermeter_pricing_lag_seconds", "Per push with records: now less the newest record's start.",
            buckets=_LAG_BUCKETS_S, registry=registry,
        )
        self.spend = Counter(
            "infermeter_spend", "Effective cost of the records this process inserted, in the price book's currency units.",
            ["model", "device"], registry=registry,
        )
        self.energy = Counter(
            "infermeter_energy_joules", "Energy of the records this process inserted.", ["model", "device"], registry=registry,
        )
        registry.register(_StoreCollector(store, wall_ns))
        for result in ("inserted", "duplicate"):
            self.records.labels(result)

    def pushed(self, device: str, *, inserted: int, duplicates: int, new_rows: Sequence[tuple], seconds: float) -> None:
        """A push was stored: count its records and add the inserted rows' cost and energy."""
        self.pushes.inc()
        self.records.labels("inserted").inc(inserted)
        self.records.labels("duplicate").inc(duplicates)
        if inserted + duplicates == 0:
            return
        self.batches.inc()
        self.latency.observe(seconds)
        if not new_rows:
            return
        self.lag.observe(max(0.0, (self._wall_ns() - max(row[_START] for row in new_rows)) / 1e9))
        sums: dict[str, list[int]] = {}
        for row in new_rows:
            pair = sums.setdefault(row[_MODEL], [0, 0])
            pair[0] += row[_COST] or 0
            pair[1] += row[_ENERGY] or 0
        for model, (cost_pico, energy_uj) in sums.items():
            labels = self._labels(model, device)
            self.spend.labels(*labels).inc(cost_pico / PICOS_PER_UNIT)
            self.energy.labels(*labels).inc(energy_uj / 1e6)

    def refused_push(self, code: str) -> None:
        self.refused.labels(code).inc()

    def _labels(self, model: str, device: str) -> tuple[str, str]:
        with self._lock:
            if (model, device) in self._series:
                return model, device
            if len(self._series) < self._max_spend_series:
                self._series.add((model, device))
                return model, device
        return OTHER, OTHER

    def render(self) -> bytes:
        """The exposition text (reads budgets and devices from the store: call off the loop)."""
        return generate_latest(self.registry)


class _StoreCollector:
    """Budgets and devices, read from the store at each scrape."""

    def __init__(self, store: Store, wall_ns: Callable[[], int]) -> None:
        self._store = store
        self._wall_ns = wall_ns

    def collect(self) -> Iterable[Metric]:
        now_ns = self._wall_ns()
        ratio = GaugeMetricFamily(
            "infermeter_budget_spent_ratio", "Spend of the budget's current period over its amount (1 = all spent).",
            labels=["budget"],
        )
        state = GaugeMetricFamily(
            "infermeter_budget_state", "1 for the budget's current state (ok, warning, exceeded).", labels=["budget", "state"]
        )
        for status in self._store.list_budgets():
            name = status.budget.name
            ratio.add_metric([name], status.spent / status.budget.amount if status.budget.amount else 0.0)
            state.add_metric([name, status.state], 1.0)
        devices = GaugeMetricFamily("infermeter_devices", "Devices by state (live, revoked).", labels=["state"])
        seen = GaugeMetricFamily(
            "infermeter_device_last_seen_age_seconds", "Seconds since each live device last pushed (absent: never).",
            labels=["device"],
        )
        counts = {"live": 0, "revoked": 0}
        for device in self._store.list_devices():
            counts["revoked" if device.revoked else "live"] += 1
            if not device.revoked and device.last_seen_unix_ns:
                seen.add_metric([device.name], max(0.0, (now_ns - device.last_seen_unix_ns) / 1e9))
        for name, count in counts.items():
            devices.add_metric([name], count)
        yield from (ratio, state, devices, seen)
