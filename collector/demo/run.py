"""`infermeter demo`: the whole path on one machine, in a temporary folder.

collector (SQLite) <- gRPC <- agent daemon <- device buffer <- Meter.wrap_onnx(bundled model)

Fails (exit 1) when the collector does not end up with every record exactly once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from collector.demo import processes
from collector.demo.model import INPUT_NAME, INPUT_WIDTH, MODEL_PATH

USERS = ("alice", "bob", "carol")


class DemoFailed(RuntimeError):
    """The demo could not complete; the message says what went wrong."""
GROUP_BY = ("model", "device", "tag:user")


def _say(message: str, *, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _get_json(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _run_model(buffer_path: Path, runs: int, *, quiet: bool) -> int:
    """Run the bundled model `runs` times through a metered session; the records committed."""
    import numpy as np
    import onnxruntime

    from agent import Meter

    session = onnxruntime.InferenceSession(str(MODEL_PATH), providers=["CPUExecutionProvider"])
    inputs = [np.random.default_rng(i).random((1 + i % 8, INPUT_WIDTH), dtype=np.float32) for i in range(8)]
    with Meter(buffer=buffer_path, tags={"project": "demo"}) as meter:
        metered = {
            user: meter.wrap_onnx(session, model="tiny-mlp", version="1", tags={"user": user})
            for user in USERS
        }
        step = max(1, runs // 10)
        for i in range(runs):
            metered[USERS[i % len(USERS)]].run(None, {INPUT_NAME: inputs[i % len(inputs)]})
            if (i + 1) % step == 0:
                _say(f"  ran the model {i + 1}/{runs} times", quiet=quiet)
        meter.flush()
        stats = meter.stats()
    if stats.dropped or stats.errors:
        raise DemoFailed(f"metering dropped {stats.dropped} records, {stats.errors} errors")
    return stats.written


def _wait_for_sync(http_url: str, token: str, expected: int, timeout_s: float, *, quiet: bool) -> dict:
    """Poll the collector's cost API until it holds the `expected` inference records (the idle
    records that carry the device's unattributed energy stand for no inference); the report."""
    query = "group_by=" + ",".join(GROUP_BY)
    deadline = time.monotonic() + timeout_s
    last = -1
    while True:
        # Until now: the demo's device has been in service for seconds, not a whole hour.
        report = _get_json(f"{http_url}/api/v1/costs?{query}&until={time.time_ns()}", token)
        synced = report["total_inferences"]
        if synced != last:
            _say(f"  collector has {synced}/{expected} inference records", quiet=quiet)
            last = synced
        if synced >= expected or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


def _write_agent_config(workdir: Path, grpc_address: str, token: str) -> Path:
    token_file = workdir / "device.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    config = workdir / "agent.toml"
    config.write_text(
        f'buffer = "{workdir / "buffer.db"}"\n\n'
        f'[collector]\naddress = "{grpc_address}"\ntoken_file = "{token_file}"\n\n'
        "[shipper]\ninterval_s = 0.2\nbackoff_initial_s = 0.1\nbackoff_max_s = 2\n"
        # A short demo: its idle energy in a record at every attribution round, not a minute.
        "[energy]\nidle_record_s = 0\n"
    )
    return config


def run_demo(workdir: Path, runs: int, timeout_s: float, *, quiet: bool) -> dict:
    from collector.store import Store

    db_url = f"sqlite:///{workdir / 'collector.db'}"
    store = Store.open(db_url)
    try:
        device = store.add_device("demo-device")
        viewer = store.add_admin_token("viewer", name="demo")
    finally:
        store.close()
    collector = processes.start_collector(db_url, workdir)
    _say(f"collector listening on grpc {collector.grpc_address}, http {collector.http_url}", quiet=quiet)
    agent = processes.start_agent(_write_agent_config(workdir, collector.grpc_address, device.token), workdir)
    try:
        _say(f"running the bundled model {runs} times through Meter.wrap_onnx", quiet=quiet)
        made = _run_model(workdir / "buffer.db", runs, quiet=quiet)
        report = _wait_for_sync(collector.http_url, viewer.token, made, timeout_s, quiet=quiet)
    finally:
        agent_code = processes.stop(agent)
        collector_code = processes.stop(collector.process)
    if agent_code or collector_code:
        raise DemoFailed(f"the agent exited {agent_code}, the collector {collector_code}")
    return {"records_made": made, "records_synced": report["total_inferences"],
            "total_cost": report["total_cost"], "currency": report["currency"], "report": report}


def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="infermeter-demo-"))
    failed = True  # until shown otherwise: an interrupted demo keeps its folder too
    try:
        result = run_demo(workdir, args.records, args.timeout, quiet=args.json)
        lost = result["records_made"] - result["records_synced"]
        _print_result(result, lost, as_json=args.json)
        if lost:
            print(f"demo failed: {lost:+d} records lost between the device and the collector", file=sys.stderr)
        failed = lost != 0
    except (DemoFailed, processes.ProcessError, OSError) as err:
        print(f"demo failed: {err}", file=sys.stderr)
    finally:
        if args.keep or failed:
            print(f"demo folder kept (buffer, collector database, logs): {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def _print_result(result: dict, lost: int, *, as_json: bool) -> None:
    from collector.cli import format_cost_report

    if as_json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    print()
    print(format_cost_report(result["report"]))
    print(
        f"\n{result['records_made']} records made on the device, "
        f"{result['records_synced']} in the collector: "
        + ("none lost, none counted twice." if lost == 0 else "MISMATCH.")
    )
