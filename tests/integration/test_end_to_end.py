"""The real collector and the real agent daemon as processes on loopback, a real ONNX Runtime
session metered in this process. The oracle is what the device buffer committed: the collector
must end up with exactly those records, once each, with the right cost."""

from __future__ import annotations

import json
import sqlite3
import time
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from agent import Meter
from collector.demo import processes
from collector.demo.model import INPUT_NAME, INPUT_WIDTH, MODEL_PATH
from tests.integration.deployment import IDLE, INFERENCE, Deployment

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def deployment(tmp_path):
    deployment = Deployment(tmp_path)
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def session():
    return onnxruntime.InferenceSession(str(MODEL_PATH), providers=["CPUExecutionProvider"])


def run_model(meter: Meter, session, runs: int, *, user: str = "alice") -> None:
    metered = meter.wrap_onnx(session, model="tiny-mlp", version="1", tags={"user": user})
    for i in range(runs):
        metered.run(None, {INPUT_NAME: np.ones((1 + i % 4, INPUT_WIDTH), np.float32)})
    assert meter.flush()


def committed_oracle(buffer_path: Path) -> dict[int, tuple]:
    """The inference records the device buffer holds right now: seq -> (model, duration, cpu,
    batch). (The daemon adds idle records of its own as it goes.)"""
    conn = sqlite3.connect(buffer_path)
    try:
        return {
            row[0]: row[1:]
            for row in conn.execute(
                f"SELECT seq, model, duration_ns, cpu_time_ns, batch_size FROM records WHERE kind = {INFERENCE}"
            )
        }
    finally:
        conn.close()


def test_every_record_arrives_exactly_once_with_its_cost(deployment, session):
    deployment.start_collector()
    with Meter(buffer=deployment.buffer_path, tags={"project": "search"}) as meter:
        run_model(meter, session, 400)
        oracle = committed_oracle(deployment.buffer_path)  # before the agent ships anything
        deployment.start_agent()
        assert deployment.wait_for(400) == 400, deployment.logs()

    rows = deployment.stored_rows()
    assert [(seq, model, dur, cpu, batch) for _, seq, model, dur, cpu, batch, _ in rows] == [
        (seq, *oracle[seq]) for seq in sorted(oracle)
    ]
    assert len({stream for stream, *_ in rows}) == 1

    report = deployment.costs("model,device,tag:project,tag:user")
    (group,) = [group for group in report["groups"] if group["key"][0]]  # not the idle energy
    assert group["key"] == ["tiny-mlp", "edge-1", "search", "alice"]
    assert group["inferences"] == 400
    # The default price book: a 1200 USD box over 4 years plus 120 USD a year of upkeep,
    # shared by CPU time over the device's cores.
    rate = (Decimal(1200) / (4 * 365 * 86400) + Decimal(120) / (365 * 86400))
    cores = deployment.get_json("/api/v1/devices")
    cores = next(d for d in cores["devices"] if d["name"] == "edge-1")["cpu_cores"]
    expected_pico = sum(
        (rate * cpu / 10**9 / cores * 10**12).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
        for _, _, cpu, _ in oracle.values()
    )
    assert Decimal(group["compute_cost"]) == Decimal(int(expected_pico)) / 10**12
    assert sum(cost for *_, cost in rows) == expected_pico


def test_restarts_and_crashes_of_both_sides_lose_and_duplicate_nothing(deployment, session):
    deployment.start_collector()
    deployment.start_agent()
    made = 0
    with Meter(buffer=deployment.buffer_path) as meter:
        for round_ in range(6):
            run_model(meter, session, 150, user=f"u{round_}")
            made += 150
            if round_ % 2 == 0:
                processes.kill(deployment.agent)  # kill -9 mid-stream
                deployment.start_agent()
            else:
                processes.kill(deployment.collector.process)
                time.sleep(0.3)  # the agent now fails to push and backs off
                deployment.start_collector()
        assert deployment.wait_for(made) == made, deployment.logs()
    time.sleep(0.5)  # any late duplicate push would land now
    assert len(deployment.stored_rows()) == made
    # Every seq of the stream once, idle records included: nothing lost, nothing twice.
    seqs = [seq for (seq,) in deployment.stored_rows("seq", kind=None)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert deployment.costs()["total_inferences"] == made


def test_records_made_while_the_collector_is_down_arrive_later(deployment, session):
    deployment.start_agent()  # no collector yet: the agent keeps retrying
    with Meter(buffer=deployment.buffer_path) as meter:
        run_model(meter, session, 200)
    time.sleep(0.5)
    assert len(committed_oracle(deployment.buffer_path)) == 200
    deployment.start_collector()
    assert deployment.wait_for(200) == 200, deployment.logs()
    # Acked, then deleted on the device (the agent deletes once the ack is back: soon after).
    deadline = time.monotonic() + 10
    while committed_oracle(deployment.buffer_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert committed_oracle(deployment.buffer_path) == {}


def test_a_wrong_token_keeps_everything_on_the_device(deployment, session):
    (deployment.workdir / "device.token").write_text("imd_" + "x" * 43)
    deployment.start_collector()
    deployment.start_agent()
    with Meter(buffer=deployment.buffer_path) as meter:
        run_model(meter, session, 50)
    log = deployment.workdir / "agent.log"
    deadline = time.monotonic() + 30
    while "check the device token" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "check the device token" in log.read_text()
    assert deployment.costs()["total_inferences"] == 0
    assert len(committed_oracle(deployment.buffer_path)) == 50
    # The operator fixes the token file: the daemon picks it up without a restart.
    (deployment.workdir / "device.token").write_text(deployment.device.token)
    assert deployment.wait_for(50) == 50, deployment.logs()


def test_records_made_while_the_daemon_samples_carry_energy_with_provenance(deployment, session):
    deployment.start_collector()
    deployment.start_agent()  # ready: sampling (this machine has no sensor: the estimate)
    # Half a second of back-to-back runs: /proc/stat, which the estimate follows, counts busy
    # time in 10 ms ticks, so the sampling intervals must be busy enough to see some.
    runs = 0
    with Meter(buffer=deployment.buffer_path) as meter:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            run_model(meter, session, 50)
            runs += 50
    assert deployment.wait_for(runs) == runs, deployment.logs()

    inference = deployment.stored_rows("energy_uj, energy, energy_cost_pico")
    assert sum(1 for energy_uj, _, _ in inference if energy_uj > 0) >= 0.9 * runs, deployment.logs()
    shares = [share for _, energy, _ in inference if energy for share in json.loads(energy)]
    assert {(s["domain"], s["sensor"], s["method"]) for s in shares} == {("cpu", "estimate", "cpu-time")}
    assert all(s["error_uj"] > 0 and s["interval_ns"] == 100_000_000 for s in shares)
    # Energy is priced at the default tariff, 0.15 per kWh: 1 kWh is 3.6e12 µJ, a pico 1e-12.
    for energy_uj, _, energy_cost_pico in inference:
        assert energy_cost_pico == (Decimal(energy_uj) * Decimal("0.15") / Decimal("3.6")).quantize(
            Decimal(1), rounding=ROUND_HALF_EVEN
        )
    idle = deployment.stored_rows("energy", kind=IDLE)
    idle_methods = {(s["domain"], s["method"]) for (energy,) in idle for s in json.loads(energy)}
    assert {("cpu", "baseline"), ("dram", "baseline")} <= idle_methods
