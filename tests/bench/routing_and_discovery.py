"""What cost-aware routing adds to a metered call, and what a shadow AI discovery scan costs.

    python tests/bench/routing_and_discovery.py [--calls 100000] [--block 1000] [--json]

Routing: two metered sessions of the bundled tiny model (collector/demo/tiny_mlp.onnx) behind
meter.router(); the router's run() against the metered session's run(), in interleaved blocks
whose order alternates every round, each call timed alone; "added" is the difference of the
medians. Discovery: agent.discovery.ProcScanner over this machine's /proc, the first scan (every
process's maps read) and the median of ten later ones (maps read again only where the virtual
size moved), with the number of processes and of those with a runtime loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from agent import Meter
from agent.discovery import ProcScanner
from collector.demo.model import INPUT_NAME, INPUT_WIDTH, MODEL_PATH


def routing(calls: int, block: int) -> dict:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    feed = {INPUT_NAME: np.ones((1, INPUT_WIDTH), np.float32)}
    with tempfile.TemporaryDirectory() as folder, Meter(Path(folder) / "buffer.db") as meter:
        first, second = (
            meter.wrap_onnx(ort.InferenceSession(str(MODEL_PATH), options), model=name) for name in ("a", "b")
        )
        router = meter.router([first, second])
        variants = {"metered": first.run, "routed": router.run}
        times: dict[str, list[int]] = {name: [] for name in variants}
        clock = time.perf_counter_ns
        for round_index in range(calls // block):
            order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
            for name in order:
                run = variants[name]
                spent = times[name]
                for _ in range(block):
                    start = clock()
                    run(None, feed)
                    spent.append(clock() - start)
        medians = {name: statistics.median(spent) / 1e3 for name, spent in times.items()}
        return {
            "metered_median_us": round(medians["metered"], 2), "routed_median_us": round(medians["routed"], 2),
            "added_us": round(medians["routed"] - medians["metered"], 2), "router_errors": router.stats().errors,
        }


def discovery() -> dict:
    scanner = ProcScanner()
    start = time.perf_counter()
    found = scanner.scan()
    first_ms = (time.perf_counter() - start) * 1e3
    later = []
    for _ in range(10):
        start = time.perf_counter()
        scanner.scan()
        later.append((time.perf_counter() - start) * 1e3)
    return {
        "processes": sum(1 for entry in os.scandir("/proc") if entry.name.isdigit()),
        "with_runtime": len(found), "first_scan_ms": round(first_ms, 1), "later_scan_ms": round(statistics.median(later), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000, help="calls per variant")
    parser.add_argument("--block", type=int, default=1_000, help="calls per block")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = {"routing": routing(args.calls, args.block), "discovery": discovery()}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    r, d = figures["routing"], figures["discovery"]
    print(f"routing: metered run() {r['metered_median_us']} µs, routed {r['routed_median_us']} µs (median): "
          f"+{r['added_us']} µs per call")
    print(f"discovery: {d['processes']} processes ({d['with_runtime']} with a runtime): first scan "
          f"{d['first_scan_ms']} ms, later scans {d['later_scan_ms']} ms (median of 10)")


if __name__ == "__main__":
    main()
