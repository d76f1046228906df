"""Pipeline throughput, printed (a benchmark script, not a test).

    python tests/bench/pipeline.py [--records N] [--e2e-records M] [--json]

1. library -> flusher -> device buffer: records/s that the Meter's flusher commits to the
   SQLite buffer, timed on the flusher's own work (target >= 200k/s on one core). What a span
   costs the application's thread is printed beside it.
2. agent -> collector on loopback: records/s from a pre-filled device buffer, through the real
   agent daemon process and gRPC, into the real collector process on SQLite, priced and
   committed, timed from the first records stored to the last (target >= 50k/s).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent import Meter  # noqa: E402
from agent.buffer import Buffer, row_from_record  # noqa: E402
from agent.record import Kind, UsageRecord  # noqa: E402
from collector.demo import processes  # noqa: E402
from collector.store import Store  # noqa: E402


def bench_flusher(workdir: Path, records: int, *, round_records: int = 10_000) -> dict:
    """The flusher's commit rate: spans queued in rounds of round_records (untimed, as the
    application's threads would), each round written by flusher.run_once() (timed): rows built,
    one SQLite transaction, group commit with synchronous=FULL."""
    buffer_path = workdir / "flusher.db"
    meter = Meter(buffer=buffer_path, tags={"project": "bench"}, max_queue=round_records + 1, start_thread=False)
    produce_s = flush_s = 0.0
    written = 0
    for _ in range(-(-records // round_records)):
        started = time.perf_counter()
        for _ in range(round_records):
            with meter.span("step"):
                pass
        produce_s += time.perf_counter() - started
        started = time.perf_counter()
        written += meter.flusher.run_once()
        flush_s += time.perf_counter() - started
    meter.close()
    stored = sqlite3.connect(buffer_path).execute("SELECT count(*) FROM records").fetchone()[0]
    assert stored == written, f"{stored} stored of {written}"
    return {
        "records": written,
        "produce_us_per_record": produce_s / written * 1e6,
        "flush_us_per_record": flush_s / written * 1e6,
        "records_per_s": written / flush_s,
    }


def fill_buffer(path: Path, records: int) -> None:
    now = time.time_ns()
    tags = {"project": "bench", "user": "alice"}
    with Buffer.open(path) as buffer:
        batch = []
        for i in range(records):
            batch.append(row_from_record(UsageRecord(
                seq=0, kind=Kind.INFERENCE, model="tiny-mlp", model_version="1",
                runtime="onnxruntime", execution_provider="CPUExecutionProvider", batch_size=1,
                input_bytes=64, output_bytes=16, start_unix_ns=now + i * 1000, duration_ns=20_000,
                cpu_time_ns=18_000, tags=tags, pid=1234,
            )))
            if len(batch) == 10_000:
                buffer.append(batch)
                batch = []
        buffer.append(batch)


def bench_end_to_end(workdir: Path, records: int) -> dict:
    db_url = f"sqlite:///{workdir / 'collector.db'}"
    store = Store.open(db_url)
    device = store.add_device("bench-device")
    store.close()
    buffer_path = workdir / "e2e.db"
    fill_buffer(buffer_path, records)
    (workdir / "token").write_text(device.token)
    collector = processes.start_collector(db_url, workdir)
    config = workdir / "agent.toml"
    config.write_text(
        f'buffer = "{buffer_path}"\n[collector]\naddress = "{collector.grpc_address}"\n'
        f'token_file = "{workdir / "token"}"\n[shipper]\nbatch_size = 5000\ninterval_s = 0.05\n'
    )
    collector_db = sqlite3.connect(workdir / "collector.db")
    # The device's record count, kept by ingest: counting the records table would scan it,
    # and scanning it every few ms would take the collector's CPU away from ingesting.
    progress = "SELECT record_count FROM devices"
    stored = 0
    try:
        agent = processes.start_agent(config, workdir)
        deadline = time.monotonic() + 600
        # Timed from the first records stored, so the agent's start-up (a Python process
        # importing grpc) is not counted as shipping time.
        while not stored:
            time.sleep(0.001)
            stored = collector_db.execute(progress).fetchone()[0]
            first_seen = time.perf_counter()
        first_stored = stored
        while stored < records:
            if time.monotonic() > deadline:
                raise SystemExit("end-to-end run did not finish in 600 s")
            time.sleep(0.01)
            stored = collector_db.execute(progress).fetchone()[0]
        elapsed_s = time.perf_counter() - first_seen
        cpu_s = {name: sum(psutil.Process(process.pid).cpu_times()[:2])
                 for name, process in (("agent", agent), ("collector", collector.process))}
    finally:
        for process in (locals().get("agent"), collector.process):
            if process is not None:
                processes.stop(process)
    measured = records - first_stored
    return {
        "records": measured, "seconds": elapsed_s, "records_per_s": measured / elapsed_s,
        # Whole-process CPU (start-up included), per record shipped: which side is the limit.
        "cpu_us_per_record": {name: seconds / records * 1e6 for name, seconds in cpu_s.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=300_000, help="records through the flusher")
    parser.add_argument("--e2e-records", type=int, default=200_000, help="records agent -> collector")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="infermeter-bench-") as tmp:
        flusher = bench_flusher(Path(tmp), args.records)
        e2e = bench_end_to_end(Path(tmp), args.e2e_records)
    if args.json:
        print(json.dumps({"flusher": flusher, "end_to_end": e2e}, indent=2))
        return 0
    print(f"{'stage':<44} {'records/s':>12} {'target':>10}")
    print(f"{'library -> flusher -> device buffer':<44} {flusher['records_per_s']:>12,.0f} {'>= 200,000':>10}")
    print(f"{'agent -> gRPC -> collector (SQLite), priced':<44} {e2e['records_per_s']:>12,.0f} {'>= 50,000':>10}")
    cpu = e2e["cpu_us_per_record"]
    print(f"(end to end, CPU per record: agent {cpu['agent']:.1f} µs, collector {cpu['collector']:.1f} µs,"
          f" start-up included)")
    print(f"(flusher: {flusher['flush_us_per_record']:.2f} µs per record in rounds of 10,000;"
          f" a span on the caller's thread: {flusher['produce_us_per_record']:.2f} µs;"
          f" {flusher['records']:,} and {e2e['records']:,} records timed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
