"""The collector process as users run it (`infermeter collector serve`), and its graceful stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from infermeter.v1 import ingest_pb2_grpc

from collector.store import Store
from tests.collector.helpers import ServersThread, make_record, push_request


def start_collector(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    ready = tmp_path / "ready.json"
    log = open(tmp_path / "collector.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "collector", "serve", "--db", f"sqlite:///{tmp_path / 'c.db'}",
         "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--ready-file", str(ready), *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert process.poll() is None, (tmp_path / "collector.log").read_text()
        assert time.monotonic() < deadline, "the collector did not get ready"
        time.sleep(0.05)
    return process, ready


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_listens_reports_ready_and_stops_cleanly(tmp_path, signum):
    process, ready = start_collector(tmp_path)
    try:
        addresses = json.loads(ready.read_text())
        assert addresses["pid"] == process.pid
        assert addresses["grpc"].startswith("127.0.0.1:") and addresses["http"].startswith("127.0.0.1:")
        with urllib.request.urlopen(f"http://{addresses['http']}/healthz", timeout=10) as response:
            assert json.load(response) == {"status": "ok"}
        with grpc.insecure_channel(addresses["grpc"]) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        process.send_signal(signum)
        code = process.wait(30)

    log = (tmp_path / "collector.log").read_text()
    assert code == 0, log
    assert not ready.exists()
    start_line = next(line for line in log.splitlines() if "collector serving" in line)
    assert addresses["grpc"] in start_line and addresses["http"] in start_line and "c.db" in start_line
    assert "Traceback" not in log


def test_the_log_hides_the_database_password():
    from sqlalchemy.engine import make_url

    assert "s3cret" not in make_url("postgresql://meter:s3cret@db/infermeter").render_as_string(hide_password=True)


class SlowStore(Store):
    """The real store; ingest waits until the test lets it go."""

    entered = threading.Event()
    release = threading.Event()

    def ingest(self, *args, **kwargs):
        self.entered.set()
        assert self.release.wait(20)
        return super().ingest(*args, **kwargs)


def test_an_in_flight_push_completes_during_a_graceful_stop(tmp_path):
    store = SlowStore.open(f"sqlite:///{tmp_path / 'slow.db'}")
    store.entered, store.release = threading.Event(), threading.Event()
    device = store.add_device("edge-1")
    try:
        with ServersThread(store, grace_s=20) as running, grpc.insecure_channel(running.grpc_address) as channel:
            stub = ingest_pb2_grpc.IngestStub(channel)
            metadata = [("authorization", f"Bearer {device.token}")]
            in_flight = stub.Push.future(push_request([make_record(1), make_record(2)]), metadata=metadata, timeout=30)
            assert store.entered.wait(10)

            stopping = running.begin_stop()
            # Stopping does not return while the call is in flight...
            time.sleep(0.2)
            assert not stopping.done()
            # ...and refuses new calls.
            with pytest.raises(grpc.RpcError) as refused:
                stub.Push(push_request([make_record(3)]), metadata=metadata, timeout=5)
            store.release.set()

            reply = in_flight.result(10)
            stopping.result(20)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        assert (reply.acked_through_seq, reply.inserted) == (2, 2)
        assert store.costs().total_records == 2
    finally:
        store.release.set()
        store.close()
