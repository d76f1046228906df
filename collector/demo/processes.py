"""Start the collector and the agent daemon as child processes, as a user would run them.

Used by `infermeter demo` and by the integration tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class ProcessError(RuntimeError):
    """A child process did not start, or died."""


@dataclass
class Collector:
    process: subprocess.Popen
    grpc_address: str
    http_address: str
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://{self.http_address}"


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli", *args]


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_collector(
    db_url: str, workdir: Path, *, grpc_address: str = "127.0.0.1:0",
    http_address: str = "127.0.0.1:0", timeout_s: float = 30.0, extra_args: Sequence[str] = (),
) -> Collector:
    """Start `infermeter collector serve` and wait until it listens (its --ready-file).
    extra_args: more options of `collector serve` (--tls-cert FILE, ...)."""
    ready = workdir / "collector.ready.json"
    ready.unlink(missing_ok=True)
    log_path = workdir / "collector.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            _command(
                "collector", "serve", "--db", db_url, "--grpc", grpc_address,
                "--http", http_address, "--ready-file", str(ready), *extra_args,
            ),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    _wait_for(ready, process, "the collector", log_path, timeout_s)
    addresses = json.loads(ready.read_text())
    return Collector(process, addresses["grpc"], addresses["http"], log_path)


def start_agent(config_path: Path, workdir: Path, *, timeout_s: float = 30.0) -> subprocess.Popen:
    """Start `infermeter agent run --config config_path`, logging to workdir/agent.log, and wait
    until it samples and ships (its --ready-file)."""
    ready = workdir / "agent.ready.json"
    ready.unlink(missing_ok=True)
    log_path = workdir / "agent.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            _command("agent", "run", "--config", str(config_path), "--ready-file", str(ready)),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    _wait_for(ready, process, "the agent", log_path, timeout_s)
    return process


def _wait_for(ready: Path, process: subprocess.Popen, what: str, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if process.poll() is not None:
            raise ProcessError(f"{what} exited with {process.returncode}:\n{_log_tail(log_path)}")
        if time.monotonic() > deadline:
            stop(process)
            raise ProcessError(f"{what} did not start in {timeout_s:.0f} s:\n{_log_tail(log_path)}")
        time.sleep(0.05)


def stop(process: subprocess.Popen, *, timeout_s: float = 15.0) -> int:
    """SIGTERM, wait, SIGKILL if it will not go; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def kill(process: subprocess.Popen) -> None:
    """kill -9, as a crash would."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
