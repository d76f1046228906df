"""The agent daemon as systemd runs it, for the tests: a NOTIFY_SOCKET listener, a collector
that holds its replies, the daemon's config, and `infermeter agent run` as a subprocess with
NOTIFY_SOCKET and WATCHDOG_USEC set."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
from infermeter.v1 import ingest_pb2, ingest_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
WATCHDOG_USEC = 400_000  # pings at least every 0.2 s


class NotifyListener:
    """The systemd side of NOTIFY_SOCKET: a bound datagram socket; a thread keeps every message
    with its arrival time (monotonic)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[tuple[float, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.05)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def wait_for(self, message: str, *, after_s: float = 0.0, timeout_s: float = 15.0) -> float:
        """When message (or a message starting with it) arrived after after_s."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for at, text in list(self.messages):
                if at > after_s and text.startswith(message):
                    return at
            time.sleep(0.01)
        raise AssertionError(f"no {message!r} within {timeout_s} s; got {self.messages[-10:]}")

    def pings(self, start_s: float, end_s: float) -> list[float]:
        return [at for at, text in list(self.messages) if text == "WATCHDOG=1" and start_s <= at <= end_s]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._sock.close()
        self.path.unlink(missing_ok=True)


class HoldingIngest(ingest_pb2_grpc.IngestServicer):
    """A collector that acknowledges every push, each once `release` is set; `arrived` is set as
    a push comes in."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.pushes = 0

    def Push(self, request, context):
        self.pushes += 1
        self.arrived.set()
        self.release.wait(timeout=20)
        return ingest_pb2.PushResponse(acked_through_seq=request.last_seq, inserted=len(request.records))


@contextmanager
def holding_collector() -> Iterator[tuple[HoldingIngest, str]]:
    """A HoldingIngest served on loopback, and its address."""
    servicer = HoldingIngest()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ingest_pb2_grpc.add_IngestServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        servicer.release.set()
        server.stop(None)


def write_config(tmp_path: Path, collector_address: str, *, energy: bool = False) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'buffer = "{tmp_path / "buffer.db"}"\n'
        f'[collector]\naddress = "{collector_address}"\ntoken = "imd_test"\ntimeout_s = 10\n'
        "[shipper]\ninterval_s = 0.1\nbackoff_initial_s = 0.1\nbackoff_max_s = 0.3\n"
        f'[energy]\nenabled = {"true" if energy else "false"}\nsensors = ["estimate"]\n'
    )
    return config


class DaemonProcess:
    """`infermeter agent run --config CONFIG` as systemd starts it. program: the command that
    stands for `infermeter` (default: this work tree's, run by this interpreter)."""

    def __init__(
        self, tmp_path: Path, config: Path, *, watchdog_usec: int = WATCHDOG_USEC, program: Sequence[str] = ()
    ) -> None:
        self.listener = NotifyListener(tmp_path / "notify.sock")
        env = {**os.environ, "NOTIFY_SOCKET": str(self.listener.path), "WATCHDOG_USEC": str(watchdog_usec)}
        cwd = tmp_path
        if not program:
            program, cwd = [sys.executable, "-m", "agent.cli"], ROOT
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        for name in ("INFERMETER_CONFIG", "INFERMETER_BUFFER", "INFERMETER_COLLECTOR", "WATCHDOG_PID"):
            env.pop(name, None)
        self.log = (tmp_path / "agent.log").open("w")
        self.process = subprocess.Popen(
            [*program, "agent", "run", "--config", str(config)],
            env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.log_path = tmp_path / "agent.log"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        finally:
            self.listener.close()
            self.log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.listener.close()
        self.log.close()
