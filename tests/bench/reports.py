"""Cost reports over a month of a fleet, and ingest with pricing, printed (a benchmark script,
not a test).

    python tests/bench/reports.py [--records N] [--devices 100] [--days 30] [--batch 5000]
                                  [--dialects sqlite,postgresql] [--postgres URL] [--json]

For each database: a fresh one is filled with N records (default 10,000,000: 100 devices over 30
days), batch by batch through Store.ingest as the collector receives them (priced, inserted, the
hourly roll-ups updated in the same transaction), devices taking turns as they would pushing
together. Then a cost report by model x day over the whole month is timed (target <= 500 ms; with
the period costs of the book: idle capacity, monthly fixed costs and volume discounts; and
without them),
next to the same report from every record (no roll-ups) and to a report whose range starts and
ends mid-hour (roll-ups plus the records of the two partial hours). Last, ingest as agents ship
live (a batch is a few seconds of a device's records) into the full database: records/s on one
collector, one thread (target >= 50,000). Ingest is timed on Store.ingest alone, not on making
the records; the fill's rate is printed too (its batches each span a day or more of a device's
month, so each adds many roll-up rows).

PostgreSQL: a new database on the server at --postgres (default the tests' 127.0.0.1:5432), dropped
afterwards; ANALYZE runs after the fill, as autovacuum would have by then.
"""

from __future__ import annotations

import argparse
import calendar
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.record import MIN_START_UNIX_NS, EnergyShare, Kind, Status, UsageRecord  # noqa: E402
from collector.store import DeviceInfo, Store  # noqa: E402
from tests.collector.databases import fresh_postgres_database  # noqa: E402

MONTH_START_NS = calendar.timegm((2026, 11, 1, 0, 0, 0)) * 10**9
DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9
MODELS = ("resnet50", "yolov8n", "bert-base", "whisper-small", "llama-3-8b", "mobilenet-v3")
PROJECTS = ("search", "ads", "vision", "assistant")
SITES = ("default", "lab", "edge")
BOOK = {
    "currency": "USD",
    "hardware": {"default": {"purchase": "1199.99", "lifetime_years": 4, "upkeep_per_year": "120.00"},
                 "jetson": {"purchase": "699.00", "residual": "99.00", "lifetime_years": "3.5"}},
    "cloud": {"m5.xlarge": {"hourly": "0.192", "cpu_cores": 4}},
    "energy": {"default": {"kwh": "0.1537", "pue": "1.35"}, "lab": {"kwh": "0.31"}},
    # Period costs, so that a report works them all out: idle capacity (spread, the default),
    # monthly fixed costs of the fleet and of a model, graduated volume discounts.
    "monthly": {"support": {"amount": "500.00"}, "licence": {"amount": "99.00", "model": "llama-3-8b"}},
    "discounts": {"volume": {"tiers": [{"from": "0", "percent_off": "0"}, {"from": "1000", "percent_off": "5"},
                                       {"from": "5000", "percent_off": "12.5"}]}},
}
PROFILES = ("default", "jetson", "m5.xlarge")


def device_batches(device: int, records: int, batch: int, days: int) -> Iterator[list[UsageRecord]]:
    """A device's records in batches: two models, each with its project's tag, evenly over the
    days; the first model's version 2 from mid-month on; an idle record now and then."""
    span_ns = days * DAY_NS
    step_ns = span_ns // records
    models = (MODELS[device % len(MODELS)], MODELS[(device + 1) % len(MODELS)])
    tags = ({"project": PROJECTS[device % len(PROJECTS)]}, {"project": PROJECTS[(device + 1) % len(PROJECTS)]})
    mid_month_ns = MONTH_START_NS + span_ns // 2
    for first in range(0, records, batch):
        chunk = []
        for i in range(first, min(first + batch, records)):
            start = MONTH_START_NS + i * step_ns + (i * 7_919) % step_ns
            cpu_time_ns = 800_000 + (i * 104_729) % 4_000_000
            energy = (EnergyShare("cpu", 20_000 + (i * 31) % 50_000, "rapl", "cpu-time", 100_000_000, 500),)
            if i % 37 == 0:  # the device's idle energy between inferences
                chunk.append(UsageRecord(
                    i + 1, Kind.IDLE, "", start, 60 * 10**9, energy=energy,
                ))
                continue
            which = i % 2
            chunk.append(UsageRecord(
                i + 1, Kind.INFERENCE, models[which], start, cpu_time_ns + 200_000,
                "2" if which == 0 and start >= mid_month_ns else "1", "onnxruntime", "CPUExecutionProvider",
                1, 150_528, 4_000, 0, 0, cpu_time_ns, Status.OK, "", tags[which], 1234, 1, 0, energy, None,
            ))
        yield chunk


@contextmanager
def database(dialect: str, workdir: Path, postgres_server: str) -> Iterator[str]:
    if dialect == "sqlite":
        yield f"sqlite:///{workdir / 'collector.db'}"
        return
    with fresh_postgres_database(postgres_server, prefix="infermeter_bench") as url:
        yield url


def fill(store: Store, *, records: int, devices: int, days: int, batch: int, progress: Callable[[str], None]) -> dict:
    """Ingest the fleet's records; the seconds spent in Store.ingest."""
    store.add_price_book(BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
    ids = [
        store.add_device(f"edge-{d:03d}", profile=PROFILES[d % len(PROFILES)], site=SITES[d % len(SITES)]).device_id
        for d in range(devices)
    ]
    info = DeviceInfo(hostname="bench", cpu_cores=8, platform="linux-x86_64", agent_version="0.1.0")
    per_device = [records // devices + (1 if d < records % devices else 0) for d in range(devices)]
    pending = [(d, device_batches(d, per_device[d], batch, days)) for d in range(devices)]
    ingest_s = 0.0
    stored = 0
    last_report = time.monotonic()
    while pending:
        still = []
        for d, stream in pending:  # devices take turns, batch by batch
            chunk = next(stream, None)
            if chunk is None:
                continue
            started = time.perf_counter()
            stored += store.ingest(ids[d], f"{d:032x}", info, chunk).inserted
            ingest_s += time.perf_counter() - started
            still.append((d, stream))
        pending = still
        if time.monotonic() - last_report > 30:
            progress(f"  {stored:,} records stored, {stored / ingest_s:,.0f}/s")
            last_report = time.monotonic()
    assert stored == records, f"{stored} stored of {records}"
    return {"records": stored, "ingest_s": ingest_s, "records_per_s": stored / ingest_s}


def live_ingest(store: Store, *, batches: int, batch: int, days: int) -> dict:
    """Ingest as the agents ship while they run: each batch a few seconds of one device's
    records (10 ms apart, so one or two roll-up hours), after the month; the seconds spent in
    Store.ingest, and this process's CPU time in it (the collector's share: on one machine the
    database server's CPU time comes out of the same cores)."""
    devices = store.list_devices()
    info = DeviceInfo(hostname="bench", cpu_cores=8, platform="linux-x86_64", agent_version="0.1.0")
    first_ns = MONTH_START_NS + days * DAY_NS + HOUR_NS
    ingest_s = cpu_s = 0.0
    stored = 0
    for n in range(batches):
        device = devices[n % len(devices)]
        records = [
            UsageRecord(
                seq, Kind.INFERENCE, "resnet50", first_ns + (n * batch + seq) * 10_000_000, 1_000_000, "1",
                "onnxruntime", "CPUExecutionProvider", 1, 150_528, 4_000, 0, 0, 900_000, Status.OK, "",
                {"project": "search"}, 1234, 1, 0, (EnergyShare("cpu", 25_000, "rapl", "cpu-time", 100_000_000, 500),),
                None,
            )
            for seq in range(n * batch + 1, (n + 1) * batch + 1)
        ]
        started, started_cpu = time.perf_counter(), time.process_time()
        stored += store.ingest(device.device_id, "live".ljust(32, "0"), info, records).inserted
        ingest_s += time.perf_counter() - started
        cpu_s += time.process_time() - started_cpu
    return {"records": stored, "ingest_s": ingest_s, "records_per_s": stored / ingest_s,
            "collector_cpu_us_per_record": cpu_s / stored * 1e6}


def add_budgets(store: Store, count: int) -> None:
    """Budgets that every live record matches (each adds to its spend on ingest), of every scope kind."""
    scopes = ("global", "model:resnet50", "tag:project=search", "site:default", f"device:{store.list_devices()[0].name}")
    for n in range(count):
        store.add_budget({"name": f"bench-{n}", "scope": scopes[n % len(scopes)], "period": "month",
                          "amount": "1000000", "thresholds": [50, 80, 100]})


def timed(call: Callable[[], object], runs: int) -> tuple[float, object]:
    """The fastest of `runs` calls after a warm-up, in ms; and the last result."""
    result = call()
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - started)
    return best * 1e3, result


def bench(dialect: str, args: argparse.Namespace, workdir: Path) -> dict:
    def progress(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    # The collector's clock stands after the month, as when its report is made: capacity and
    # monthly costs accrue until now, so a clock inside the month would move the figures.
    month_end_ns = MONTH_START_NS + args.days * DAY_NS
    with database(dialect, workdir, args.postgres) as url, Store.open(url, clock=lambda: month_end_ns) as store:
        progress(f"{dialect}: filling {args.records:,} records ({args.devices} devices x {args.days} days)")
        ingest = fill(store, records=args.records, devices=args.devices, days=args.days, batch=args.batch,
                      progress=progress)
        with store.engine.connect() as connection:
            if dialect == "postgresql":
                connection.exec_driver_sql("ANALYZE")
            rollup_rows = connection.execute(sa.text("SELECT count(*) FROM cost_rollups")).scalar_one()
        whole = {"group_by": ("model",), "granularity": "day", "since_unix_ns": MONTH_START_NS,
                 "until_unix_ns": MONTH_START_NS + args.days * DAY_NS}
        report_ms, report = timed(lambda: store.costs(**whole), args.runs)
        usage_ms, usage = timed(lambda: store.costs(**whole, period_costs=False), args.runs)
        raw_ms, raw = timed(lambda: store.costs(**whole, from_records=True), 1)
        assert report == raw, "the roll-ups and the records disagree"
        assert usage.total_records == args.records  # with period costs, idle-energy records are idle cost
        mid_hour = dict(whole, since_unix_ns=MONTH_START_NS + HOUR_NS // 2,
                        until_unix_ns=MONTH_START_NS + args.days * DAY_NS - HOUR_NS // 3)
        mixed_ms, mixed = timed(lambda: store.costs(**mid_hour), args.runs)
        assert mixed == store.costs(**mid_hour, from_records=True)
        add_budgets(store, args.budgets)
        progress(f"{dialect}: ingesting {args.live_batches} live batches ({args.budgets} budgets)")
        live = live_ingest(store, batches=args.live_batches, batch=args.batch, days=args.days)
    return {
        "fill": ingest,
        "live_ingest": live,
        "rollup_rows": rollup_rows,
        "groups": len(report.groups),
        "report_ms": report_ms,
        "report_usage_only_ms": usage_ms,
        "report_from_records_ms": raw_ms,
        "report_mid_hour_range_ms": mixed_ms,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000_000, help="records in the database")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--batch", type=int, default=5_000, help="records per ingest call (the agent's batch)")
    parser.add_argument("--live-batches", type=int, default=40, help="batches ingested as agents ship them live")
    parser.add_argument("--budgets", type=int, default=0, help="budgets matching the live batches' records")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each report (the fastest is shown)")
    parser.add_argument("--dialects", default="sqlite,postgresql")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="infermeter-bench-") as tmp:
        for dialect in args.dialects.split(","):
            results[dialect] = bench(dialect, args, Path(tmp))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"\n{args.records:,} records, {args.devices} devices over {args.days} days, batches of {args.batch:,}, "
          f"{args.budgets} budgets")
    print(f"{'':<44}" + "".join(f"{dialect:>14}" for dialect in results) + f"{'target':>12}")
    lines = [
        ("ingest, live batches (records/s)", lambda r: f"{r['live_ingest']['records_per_s']:,.0f}", ">= 50,000"),
        ("  collector CPU per record (µs)", lambda r: f"{r['live_ingest']['collector_cpu_us_per_record']:.1f}", ""),
        ("ingest, filling the month (records/s)", lambda r: f"{r['fill']['records_per_s']:,.0f}", ""),
        ("report model x day, whole month (ms)", lambda r: f"{r['report_ms']:,.1f}", "<= 500"),
        ("  usage only: no idle, fixed or discounts (ms)", lambda r: f"{r['report_usage_only_ms']:,.1f}", ""),
        ("  the same from every record (ms)", lambda r: f"{r['report_from_records_ms']:,.0f}", ""),
        ("  range starting and ending mid-hour (ms)", lambda r: f"{r['report_mid_hour_range_ms']:,.1f}", ""),
        ("roll-up rows", lambda r: f"{r['rollup_rows']:,}", ""),
        ("report groups (model x day)", lambda r: f"{r['groups']:,}", ""),
    ]
    for label, cell, target in lines:
        print(f"{label:<44}" + "".join(f"{cell(r):>14}" for r in results.values()) + f"{target:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
