"""Soak: a long stream through real processes while the network and both sides misbehave,
printed (a benchmark script, not a test).

    python tests/bench/soak.py [--duration-s 600] [--rate 1000] [--report-s 10] [--json]

A producer meters the bundled ONNX model through a real Meter at --rate runs a second into the
device buffer; the real agent daemon ships through a loopback proxy to the real collector on
SQLite. Every fault period (--fault-s) one fault in turn: a partition (blackhole) of a few
seconds, 10 % of replies lost for a while, connection resets, a kill -9 of the agent, a kill -9
of the collector. Every --report-s it prints records/s committed and stored, the backlog, the
agent's RSS and open fds and the buffer's size on disk. At the end the collector's store is
diffed against the oracle of committed records: 0 lost, 0 duplicated, cost totals equal (the
same check as tests/reliability); the exit status is 1 if it fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from collector.demo import processes
from collector.demo.model import MODEL_PATH
from tests.integration.deployment import Deployment
from tests.reliability.proxy import Proxy
from tests.reliability.stream import Producer, check_exactly_once, wait_until_delivered
from tests.reliability.watch import AgentWatch

MB = 1024 * 1024
FAULTS = ("partition", "lost-replies", "resets", "kill-agent", "kill-collector")


class Soak:
    def __init__(self, workdir: Path, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.proxy = Proxy(seed=args.seed).start()
        self.deployment = Deployment(
            workdir, collector_address=self.proxy.address, energy=not args.no_energy,
            buffer_max_mb=args.buffer_max_mb,
        )
        self.proxy.upstream = self.deployment.grpc_address
        self.deployment.start_collector()
        self.deployment.start_agent()
        session = onnxruntime.InferenceSession(str(MODEL_PATH), providers=["CPUExecutionProvider"])
        self.producer = Producer(self.deployment.buffer_path, session, rate_per_s=args.rate).start()
        self.watch = AgentWatch(self.deployment, period_s=0.5).start()
        self.rows: list[dict] = []
        self.faults: list[tuple[float, str]] = []

    def run(self) -> dict:
        started = time.monotonic()
        next_report = started + self.args.report_s
        next_fault = started + self.args.fault_s
        fault_index = 0
        last = (started, 0, 0)
        while (now := time.monotonic()) < started + self.args.duration_s:
            assert self.producer.error is None, self.producer.error
            if now >= next_fault:
                self._fault(FAULTS[fault_index % len(FAULTS)], now - started)
                fault_index += 1
                next_fault += self.args.fault_s
            if now >= next_report:
                last = self._report(now - started, last)
                next_report += self.args.report_s
            time.sleep(0.05)
        oracle = self.producer.stop()
        drain_s = wait_until_delivered(self.deployment, len(oracle), timeout_s=300)
        samples = self.watch.stop()
        processes.stop(self.deployment.agent)
        check_exactly_once(self.deployment, oracle, cpu_cores=os.cpu_count())
        rss = [s.rss_bytes for s in samples]
        return {
            "duration_s": self.args.duration_s, "rate": self.args.rate, "records": len(oracle),
            "lost": 0, "duplicated": 0, "final_drain_s": round(drain_s, 2),
            "faults": len(self.faults), "rss_first_mb": round(rss[0] / MB, 1) if rss else None,
            "rss_max_mb": round(max(rss) / MB, 1) if rss else None,
            "fds_max": max((s.fds for s in samples), default=None),
            "buffer_max_mb": round(max((s.buffer_bytes for s in samples), default=0) / MB, 2),
            "over_time": self.rows,
        }

    def close(self) -> None:
        self.producer.abandon()
        self.watch.stop()
        self.deployment.stop()
        self.proxy.close()

    def _fault(self, fault: str, at_s: float) -> None:
        self.faults.append((at_s, fault))
        if not self.args.json:
            print(f"{at_s:8.1f}s  fault: {fault}", flush=True)
        proxy, deployment = self.proxy, self.deployment
        if fault == "partition":
            proxy.blackhole()
            time.sleep(self.rng.uniform(2, 5))
            proxy.heal()
        elif fault == "lost-replies":
            proxy.drop_reply_ratio = 0.10
            time.sleep(3)
            proxy.drop_reply_ratio = 0.0
        elif fault == "resets":
            proxy.reset_ratio = 0.05
            time.sleep(2)
            proxy.reset_ratio = 0.0
            proxy.reset_all()
        elif fault == "kill-agent":
            processes.kill(deployment.agent)
            deployment.start_agent()
        else:
            processes.kill(deployment.collector.process)
            time.sleep(self.rng.uniform(0, 1))
            deployment.start_collector()

    def _report(self, at_s: float, last: tuple[float, int, int]) -> tuple[float, int, int]:
        then, committed_before, stored_before = last
        now = time.monotonic()
        committed, stored = self.producer.committed(), self.deployment.stored_count()
        sample = self.watch.samples[-1] if self.watch.samples else None
        row = {
            "t_s": round(at_s, 1),
            "committed_per_s": round((committed - committed_before) / (now - then)),
            "stored_per_s": round((stored - stored_before) / (now - then)),
            "backlog": committed - stored,
            "rss_mb": round(sample.rss_bytes / MB, 1) if sample else None,
            "fds": sample.fds if sample else None,
            "buffer_mb": round(sample.buffer_bytes / MB, 2) if sample else None,
        }
        self.rows.append(row)
        if not self.args.json:
            print(
                f"{row['t_s']:8.1f}s  committed {row['committed_per_s']:6d}/s  stored {row['stored_per_s']:6d}/s"
                f"  backlog {row['backlog']:7d}  rss {row['rss_mb']} MB  fds {row['fds']}  buffer {row['buffer_mb']} MB",
                flush=True,
            )
        return now, committed, stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=600, help="how long to produce (default 600)")
    parser.add_argument("--rate", type=float, default=1000, help="metered runs a second (default 1000)")
    parser.add_argument("--report-s", type=float, default=10, help="seconds between printed lines (default 10)")
    parser.add_argument("--fault-s", type=float, default=20, help="seconds between faults (default 20)")
    parser.add_argument("--buffer-max-mb", type=float, default=64, help="the device buffer's cap (default 64)")
    parser.add_argument("--no-energy", action="store_true", help="ship without energy attribution")
    parser.add_argument("--seed", type=int, default=1, help="seed of the faults' timing")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (logs, databases)")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="infermeter-soak-"))
    soak = Soak(workdir, args)
    try:
        result = soak.run()
    except AssertionError as err:
        print(f"soak failed: {err}\nworking folder: {workdir}", file=sys.stderr)
        return 1
    finally:
        soak.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['records']} records in {args.duration_s:.0f} s through {result['faults']} faults: 0 lost,"
            f" 0 duplicated, cost totals equal; final drain {result['final_drain_s']} s; agent RSS"
            f" {result['rss_first_mb']} -> max {result['rss_max_mb']} MB, fds max {result['fds_max']},"
            f" buffer max {result['buffer_max_mb']} MB"
        )
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"working folder: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
