"""What metering adds to one ONNX Runtime call on the caller's thread, next to an OpenTelemetry span.

    python tests/bench/overhead.py [--calls 200000] [--block 1000] [--json]

Four variants of the same call on the bundled tiny model (collector/demo/tiny_mlp.onnx), run in
interleaved blocks whose order rotates every round, so that drift (frequency scaling, noisy
neighbours) touches them all alike:

    bare          session.run(...)
    metered       Meter.wrap_onnx(session).run(...), the flusher thread writing to a real buffer
    hot path      the same with no flusher (its queue emptied between blocks, untimed): what
                  the caller's thread itself does per call
    otel span     an OpenTelemetry SDK span (TracerProvider, BatchSpanProcessor, an exporter
                  that discards) around session.run(...): the reference
    budgets ok    the hot path with 3 budgets in the buffer, none of them over (no check runs)
    budgets miss  the hot path with 3 exceeded `block` budgets, none of whose scopes covers the
                  call (model:resnet50, model:bert, tag:project=ads): the enforcer's check runs

Each call is timed alone; "added" is a variant's median minus bare's median. Means are shown
too: they carry what medians hide, such as garbage collection and the flusher's share of the
GIL. The flusher's own work per record (building rows, the SQLite insert) is measured apart,
since it runs on another thread: on a machine with few cores it competes with the application.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from agent import Meter
from agent.budget_store import BudgetStore
from agent.budgets import BudgetState
from agent.buffer import Buffer
from collector.demo.model import INPUT_NAME, INPUT_WIDTH, MODEL_PATH, OUTPUT_NAME

TARGET_ADDED_US = 2.0
FLUSHER_SAMPLE_RECORDS = 20_000


class DiscardingExporter(SpanExporter):
    def export(self, spans) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _session(intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    return ort.InferenceSession(str(MODEL_PATH), options, providers=["CPUExecutionProvider"])


def _budgets_buffer(path: Path, *, over: bool) -> Path:
    """A buffer holding 3 block budgets, exceeded or not, none covering the benchmark's calls."""
    period_end_ns = time.time_ns() + 86_400 * 10**9
    budgets = [
        BudgetState(f"bgt_{i}", f"b{i}", scope, "block", "exceeded" if over else "ok", "USD", "money",
                    0 if over else 10**15, 0.0, period_end_ns)
        for i, scope in enumerate(("model:resnet50", "model:bert", "tag:project=ads"))
    ]
    with Buffer.open(path) as buffer:
        BudgetStore(buffer).keep_reply(budgets, [], received_unix_ns=time.time_ns(), acked_through_seq=0)
    return path


def _time_block(call: Callable[[], object], calls: int, samples_ns: array) -> None:
    clock = time.perf_counter_ns
    for _ in range(calls):
        start_ns = clock()
        call()
        samples_ns.append(clock() - start_ns)


def _summary(samples_ns: array) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "calls": len(ordered),
        "median_us": ordered[len(ordered) // 2] / 1000,
        "mean_us": statistics.fmean(ordered) / 1000,
        "p99_us": ordered[int(len(ordered) * 0.99)] / 1000,
    }


def _clock_read_ns(clock: Callable[[], int], reads: int = 200_000) -> float:
    """What one read of a clock costs here: the floor under the per-call budget."""
    start_ns = time.perf_counter_ns()
    for _ in range(reads):
        clock()
    return (time.perf_counter_ns() - start_ns) / reads


def _flusher_us_per_record(session: ort.InferenceSession, feed: dict, buffer_path: Path) -> float:
    """Rows + one SQLite transaction per record, measured synchronously on this thread."""
    with Meter(buffer_path, tags={"project": "bench"}, start_thread=False) as meter:
        metered = meter.wrap_onnx(session, version="1")
        for _ in range(FLUSHER_SAMPLE_RECORDS):
            metered.run([OUTPUT_NAME], feed)
        start_ns = time.perf_counter_ns()
        written = meter.flusher.run_once()
        return (time.perf_counter_ns() - start_ns) / written / 1000


def measure(calls: int, block: int, batch: int, intra_op_threads: int) -> dict:
    session = _session(intra_op_threads)
    feed = {INPUT_NAME: np.random.default_rng(0).random((batch, INPUT_WIDTH), dtype=np.float32)}
    names = [OUTPUT_NAME]
    workdir = Path(tempfile.mkdtemp(prefix="infermeter-bench-"))

    meter = Meter(workdir / "buffer.db", tags={"project": "bench"})
    metered = meter.wrap_onnx(session, version="1")
    hot_meter = Meter(workdir / "unused.db", start_thread=False, max_queue=block + 1)
    hot_path = hot_meter.wrap_onnx(session, version="1")
    budget_meters = {
        over: Meter(_budgets_buffer(workdir / f"budgets-{over}.db", over=over), tags={"project": "bench"},
                    start_thread=False, max_queue=block + 1)
        for over in (False, True)
    }
    budgets_ok = budget_meters[False].wrap_onnx(session, version="1")
    budgets_miss = budget_meters[True].wrap_onnx(session, version="1")
    assert budget_meters[False].budgets.enforcer is None and budget_meters[True].budgets.enforcer is not None
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DiscardingExporter()))
    tracer = provider.get_tracer("infermeter.bench")

    def otel_run() -> object:
        with tracer.start_as_current_span("run"):
            return session.run(names, feed)

    variants: dict[str, Callable[[], object]] = {
        "bare": lambda: session.run(names, feed),
        "metered": lambda: metered.run(names, feed),
        "hot path": lambda: hot_path.run(names, feed),
        "otel span": otel_run,
        "budgets ok": lambda: budgets_ok.run(names, feed),
        "budgets miss": lambda: budgets_miss.run(names, feed),
    }
    queues = [hot_meter.flusher.queue, *(m.flusher.queue for m in budget_meters.values())]
    samples = {name: array("q") for name in variants}
    for call in variants.values():  # warm-up: first-run allocations, thread start, buffer open
        _time_block(call, block, array("q"))
    for queue in queues:
        queue.clear()
    order = list(variants)
    for round_index in range(-(-calls // block)):
        shift = round_index % len(order)
        for name in order[shift:] + order[:shift]:
            _time_block(variants[name], block, samples[name])
        for queue in queues:
            queue.clear()

    meter.close()
    for budget_meter in budget_meters.values():
        budget_meter.close()
    provider.shutdown()
    stats = meter.stats()
    summaries = {name: _summary(values) for name, values in samples.items()}
    bare = summaries["bare"]
    for summary in summaries.values():
        summary["added_median_us"] = summary["median_us"] - bare["median_us"]
        summary["added_mean_us"] = summary["mean_us"] - bare["mean_us"]
    return {
        "machine": {
            "python": platform.python_version(), "onnxruntime": ort.__version__,
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
        },
        "setup": {
            "calls_per_variant": len(samples["bare"]), "block": block, "batch": batch,
            "intra_op_threads": intra_op_threads,
        },
        "variants": summaries,
        "flusher_us_per_record": _flusher_us_per_record(session, feed, workdir / "sync.db"),
        # A metered call reads each of these twice.
        "clock_read_ns": {
            "thread_time_ns": _clock_read_ns(time.thread_time_ns),
            "perf_counter_ns": _clock_read_ns(time.perf_counter_ns),
        },
        "meter_stats": {
            "recorded": stats.recorded, "written": stats.written, "dropped": stats.dropped,
            "errors": stats.errors,
        },
        "target_added_us": TARGET_ADDED_US,
    }


def _print_table(result: dict) -> None:
    setup, machine = result["setup"], result["machine"]
    print(
        f"tiny_mlp, batch {setup['batch']}, {setup['calls_per_variant']} calls per variant in "
        f"blocks of {setup['block']}, intra-op threads {setup['intra_op_threads']}; "
        f"{machine['cpus']} CPUs, Python {machine['python']}, onnxruntime {machine['onnxruntime']}"
    )
    print(f"{'variant':<13}{'median µs':>11}{'mean µs':>10}{'p99 µs':>10}{'added (median)':>16}{'added (mean)':>14}")
    for name, s in result["variants"].items():
        print(
            f"{name:<13}{s['median_us']:>11.2f}{s['mean_us']:>10.2f}{s['p99_us']:>10.2f}"
            f"{s['added_median_us']:>16.2f}{s['added_mean_us']:>14.2f}"
        )
    added = result["variants"]["metered"]["added_median_us"]
    verdict = "met" if added <= result["target_added_us"] else "missed"
    print(f"target: <= {result['target_added_us']:.1f} µs added per metered run (median): {verdict}")
    variants = result["variants"]
    for name in ("budgets ok", "budgets miss"):
        added = variants[name]["added_median_us"]
        enforcement = added - variants["hot path"]["added_median_us"]
        verdict = "met" if added <= result["target_added_us"] else "missed"
        print(f"{name}: {added:.2f} µs added per call (median), {enforcement:+.2f} µs over the hot path: {verdict}")
    clocks = result["clock_read_ns"]
    print(
        f"of which clocks: 2 x thread CPU time at {clocks['thread_time_ns']:.0f} ns and 2 x "
        f"monotonic at {clocks['perf_counter_ns']:.0f} ns per read (alone, in a loop; the thread "
        f"CPU clock is a system call, not served by the vDSO)"
    )
    print(
        f"flusher, off the caller's thread: {result['flusher_us_per_record']:.2f} µs per record "
        f"(rows + SQLite insert, group commit)"
    )
    print(f"meter: {result['meter_stats']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000, help="timed calls per variant")
    parser.add_argument("--block", type=int, default=1000, help="calls per interleaved block")
    parser.add_argument("--batch", type=int, default=1, help="rows per input")
    parser.add_argument(
        "--intra-op-threads", type=int, default=1,
        help="ONNX Runtime threads per run (1: a tiny model gains nothing from more, and the "
        "flusher gets a core)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = measure(args.calls, args.block, args.batch, args.intra_op_threads)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        _print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
