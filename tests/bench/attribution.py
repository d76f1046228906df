"""Energy attribution against a known truth, and what the daemon costs, printed.

    python tests/bench/attribution.py [--seconds 120] [--daemon-seconds 30] [--json]

1. Ground truth. A simulated machine (8 CPUs, 25 W idle, 12 W per busy CPU) runs three models
   on six threads with different CPU shares, beside unmetered background load. Each inference
   really uses `12 W * its CPU time`. The simulation writes a real powercap tree (package
   counter, wrapping at 2^32 µJ) and a real /proc/stat (busy time in 10 ms ticks); the real
   RAPL sensor, sampler and attributor read them through a real device buffer on a simulated
   clock. Printed: each model's attributed energy against the truth (target: error <= 3 %),
   and conservation: records + idle against what the counter measured (target: 0 µJ).
2. Daemon cost. The real agent daemon (sampling at 10 Hz, attributing, shipping to a real
   collector) while another process makes 1,000 metered inferences a second; its CPU time
   and peak RSS over the run (targets: <= 1 % of one core, <= 40 MB). Then the same with
   energy off, to tell what energy costs from what shipping does.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.boot import boot_key  # noqa: E402
from agent.buffer import Buffer, row_from_record  # noqa: E402
from agent.energy.activity import CpuActivity  # noqa: E402
from agent.energy.attributor import Attributor  # noqa: E402
from agent.energy.rapl import probe_rapl  # noqa: E402
from agent.energy.sampler import Sampler  # noqa: E402
from agent.record import Kind, UsageRecord  # noqa: E402
from collector.demo import processes  # noqa: E402
from collector.store import Store  # noqa: E402

CPUS = 8
IDLE_W = 25.0
W_PER_BUSY_CPU = 12.0
WRAP_UJ = 2**32 - 1
STEP_NS = 1_000_000  # the simulation's resolution: 1 ms
TICK_NS = 10_000_000  # /proc/stat counts in 10 ms ticks (USER_HZ = 100)
PERIOD_NS = 100_000_000  # sampling at 10 Hz
START_NS = 10**12  # the simulated CLOCK_MONOTONIC at the start

# (model, threads, wall ms per inference, share of it on the CPU, pause ms between inferences)
WORKLOAD = (
    ("detector", 2, 12, 0.85, 3),
    ("classifier", 3, 2, 0.60, 1),
    ("embedder", 1, 40, 0.95, 20),
)


@dataclass
class Inference:
    model: str
    start_ns: int
    duration_ns: int
    cpu_ns: int


def simulate_workload(seconds: float, rng: random.Random) -> tuple[list[Inference], list[int]]:
    """The inferences, and the machine's busy CPU time per 1 ms step (metered + background)."""
    steps = int(seconds * 1e9 // STEP_NS)
    busy_ns = [0] * steps
    inferences = []
    for model, threads, wall_ms, cpu_share, pause_ms in WORKLOAD:
        for _ in range(threads):
            t_ns = rng.randrange(0, 20 * STEP_NS)
            while True:
                wall_ns = int(wall_ms * 1e6 * rng.uniform(0.7, 1.3))
                if t_ns + wall_ns >= steps * STEP_NS:
                    break
                cpu_ns = int(wall_ns * cpu_share)
                inferences.append(Inference(model, START_NS + t_ns, wall_ns, cpu_ns))
                # The truth: the inference's CPU time spread evenly over its wall time.
                for step in range(t_ns // STEP_NS, (t_ns + wall_ns) // STEP_NS):
                    busy_ns[step] += int(STEP_NS * cpu_share)
                t_ns += wall_ns + int(pause_ms * 1e6 * rng.uniform(0.5, 1.5))
    background = 0.5  # CPUs busy with work nobody meters, wandering between 0 and 2
    for step in range(steps):
        background = min(max(background + rng.gauss(0, 0.02), 0.0), 2.0)
        busy_ns[step] = min(busy_ns[step] + int(background * STEP_NS), CPUS * STEP_NS)
    return inferences, busy_ns


def write_powercap(root: Path) -> Path:
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text(f"{WRAP_UJ}\n")
    (zone / "energy_uj").write_text("0\n")
    (zone / "enabled").write_text("1\n")
    return zone / "energy_uj"


def write_proc_stat(path: Path, busy_ns: int, elapsed_ns: int) -> None:
    busy_ticks = busy_ns // TICK_NS
    idle_ticks = CPUS * elapsed_ns // TICK_NS - busy_ticks
    cpu_lines = "".join(f"cpu{i} 0 0 0 0 0 0 0 0 0 0\n" for i in range(CPUS))
    path.write_text(f"cpu  {busy_ticks} 0 0 {idle_ticks} 0 0 0 0 0 0\n{cpu_lines}")


def ground_truth(seconds: float, seed: int) -> dict:
    rng = random.Random(seed)
    inferences, busy_per_step = simulate_workload(seconds, rng)
    workdir = Path(tempfile.mkdtemp(prefix="infermeter-attribution-"))
    try:
        return _attribute_simulation(workdir, inferences, busy_per_step)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _attribute_simulation(workdir: Path, inferences: list[Inference], busy_per_step: list[int]) -> dict:
    now = [START_NS]
    clock_ns = lambda: now[0]  # noqa: E731
    counter_file = write_powercap(workdir / "powercap")
    proc = workdir / "proc"
    proc.mkdir()
    write_proc_stat(proc / "stat", 0, 0)
    boot = boot_key()
    buffer = Buffer.open(workdir / "buffer.db")
    sensors = probe_rapl(workdir / "powercap", clock_ns=clock_ns)
    sampler = Sampler(
        buffer, sensors, boot=boot, cpu=CpuActivity(proc, ticks_per_s=100), clock_ns=clock_ns,
        passes_per_write=10,
    )
    attributor = Attributor(
        buffer, sampler.infos, boot=boot, cpu_count=CPUS, sample_period_ns=PERIOD_NS,
        clock_ns=clock_ns, wall_ns=lambda: now[0] + 1_700_000_000 * 10**9,
        idle_record_ns=0,  # an idle record per run: all the idle energy is in records to count
    )
    by_end = sorted(inferences, key=lambda i: i.start_ns + i.duration_ns)
    written = 0
    energy_uj = 0.0
    busy_ns = 0
    measured_uj = 0
    first_reading_uj: int | None = None
    for step, busy in enumerate(busy_per_step):
        now[0] = START_NS + (step + 1) * STEP_NS
        energy_uj += (IDLE_W * STEP_NS + W_PER_BUSY_CPU * busy) / 1000  # W * ns = nJ
        busy_ns += busy
        if (step + 1) * STEP_NS % PERIOD_NS:
            continue
        counter_file.write_text(f"{int(energy_uj) % (WRAP_UJ + 1)}\n")
        write_proc_stat(proc / "stat", busy_ns, now[0] - START_NS)
        one = sampler.run_once()
        reading_uj = one.energy[sensors[0].name][0]
        first_reading_uj = reading_uj if first_reading_uj is None else first_reading_uj
        measured_uj = reading_uj - first_reading_uj
        # Records reach the buffer as their calls end (in flush rounds, as the flusher does).
        ended = [i for i in by_end[written:] if i.start_ns + i.duration_ns <= now[0]]
        buffer.append([_row(i, boot) for i in ended])
        written += len(ended)
        if (step + 1) * STEP_NS % (10 * PERIOD_NS) == 0:
            attributor.run_once()
    sampler.write()
    now[0] += 2 * 10**9  # past the attribution slack: everything is final
    attributor.run_once()
    return _compare(buffer, inferences, measured_uj)


def _row(inference: Inference, boot: int) -> tuple:
    record = UsageRecord(
        seq=0, kind=Kind.INFERENCE, model=inference.model, start_unix_ns=1_700_000_000 * 10**9,
        duration_ns=inference.duration_ns, cpu_time_ns=inference.cpu_ns, runtime="onnxruntime",
    )
    return (*row_from_record(record)[:-3], inference.start_ns, boot, 0)


def _compare(buffer: Buffer, inferences: list[Inference], measured_uj: int) -> dict:
    attributed: dict[str, int] = defaultdict(int)
    idle_uj = 0
    unfinished = buffer.query("SELECT count(*) FROM records WHERE attributed = 0")[0][0]
    for kind, model, energy in buffer.query("SELECT kind, model, energy FROM records"):
        total = sum(share[1] for share in json.loads(energy)) if energy else 0
        if kind == Kind.IDLE:
            idle_uj += total
        else:
            attributed[model] += total
    truth: dict[str, float] = defaultdict(float)
    for inference in inferences:
        truth[inference.model] += W_PER_BUSY_CPU * inference.cpu_ns / 1000  # W * ns = nJ -> µJ
    models = {
        model: {
            "true_uj": round(truth[model]),
            "attributed_uj": attributed[model],
            "error_pct": (attributed[model] - truth[model]) / truth[model] * 100,
        }
        for model in sorted(truth)
    }
    return {
        "models": models,
        "measured_uj": measured_uj,
        "records_uj": sum(attributed.values()),
        "idle_uj": idle_uj,
        "conservation_error_uj": sum(attributed.values()) + idle_uj - measured_uj,
        "records": len(inferences),
        "unfinished": unfinished,
    }


PRODUCER = """
import sys, time
import numpy as np, onnxruntime as ort
from agent import Meter
from collector.demo.model import INPUT_NAME, INPUT_WIDTH, MODEL_PATH
options = ort.SessionOptions(); options.intra_op_num_threads = 1
session = ort.InferenceSession(str(MODEL_PATH), options, providers=["CPUExecutionProvider"])
feed = {INPUT_NAME: np.ones((1, INPUT_WIDTH), np.float32)}
rate, seconds = int(sys.argv[2]), float(sys.argv[3])
with Meter(sys.argv[1], tags={"project": "bench"}) as meter:
    metered = meter.wrap_onnx(session, model="tiny-mlp")
    start = time.monotonic()
    made = 0
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        while made < due:
            metered.run(None, feed)
            made += 1
        time.sleep(0.01)
print(made)
"""


def daemon_cost(seconds: float, rate: int, *, energy: bool = True) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="infermeter-daemon-cost-"))
    db_url = f"sqlite:///{workdir / 'collector.db'}"
    with Store.open(db_url) as store:
        device = store.add_device("bench")
    (workdir / "token").write_text(device.token)
    collector = processes.start_collector(db_url, workdir)
    config = workdir / "agent.toml"
    config.write_text(
        f'buffer = "{workdir / "buffer.db"}"\n[collector]\naddress = "{collector.grpc_address}"\n'
        f'token_file = "{workdir / "token"}"\n[energy]\nenabled = {str(energy).lower()}\nsample_period_s = 0.1\n'
    )
    agent = processes.start_agent(config, workdir)
    try:
        daemon = psutil.Process(agent.pid)
        cpu_before = sum(daemon.cpu_times()[:2])
        started = time.monotonic()
        producer = subprocess.Popen(
            [sys.executable, "-c", PRODUCER, str(workdir / "buffer.db"), str(rate), str(seconds)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        peak_rss = 0
        while producer.poll() is None:
            peak_rss = max(peak_rss, daemon.memory_info().rss)
            time.sleep(0.2)
        made = int(producer.stdout.read())
        elapsed_s = time.monotonic() - started
        cpu_s = sum(daemon.cpu_times()[:2]) - cpu_before
    finally:
        processes.stop(agent)
        processes.stop(collector.process)
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "seconds": elapsed_s, "inferences": made, "rate_per_s": made / elapsed_s,
        "cpu_pct_of_one_core": cpu_s / elapsed_s * 100, "peak_rss_mb": peak_rss / 2**20,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120, help="simulated seconds of ground truth")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--daemon-seconds", type=float, default=30, help="seconds of the daemon cost run")
    parser.add_argument("--rate", type=int, default=1000, help="metered inferences per second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    truth = ground_truth(args.seconds, args.seed)
    cost = daemon_cost(args.daemon_seconds, args.rate)
    shipping_only = daemon_cost(args.daemon_seconds, args.rate, energy=False)
    if args.json:
        print(json.dumps({"ground_truth": truth, "daemon": cost, "daemon_without_energy": shipping_only}, indent=2))
        return 0
    print(f"ground truth: {args.seconds:.0f} simulated s, {truth['records']:,} inferences, "
          f"{CPUS} CPUs, {IDLE_W:.0f} W idle, {W_PER_BUSY_CPU:.0f} W per busy CPU")
    print(f"{'model':<12}{'true J':>12}{'attributed J':>14}{'error':>9}   (target: within 3 %)")
    for model, figures in truth["models"].items():
        print(f"{model:<12}{figures['true_uj'] / 1e6:>12.3f}{figures['attributed_uj'] / 1e6:>14.3f}"
              f"{figures['error_pct']:>8.2f}%")
    print(f"conservation: records {truth['records_uj']:,} µJ + idle {truth['idle_uj']:,} µJ - measured "
          f"{truth['measured_uj']:,} µJ = {truth['conservation_error_uj']} µJ (target: 0); "
          f"{truth['unfinished']} records unfinished")
    print(f"daemon: {cost['inferences']:,} inferences in {cost['seconds']:.1f} s ({cost['rate_per_s']:.0f}/s), "
          f"sampling at 10 Hz: {cost['cpu_pct_of_one_core']:.2f} % of one core (target <= 1 %), "
          f"peak RSS {cost['peak_rss_mb']:.1f} MB (target <= 40 MB)")
    print(f"        the same without energy (shipping only): {shipping_only['cpu_pct_of_one_core']:.2f} % of one core, "
          f"peak RSS {shipping_only['peak_rss_mb']:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
