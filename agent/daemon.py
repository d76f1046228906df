"""The agent daemon: ships the device buffer to the collector until told to stop.

    infermeter agent run --config /etc/infermeter/agent.toml

Runs under systemd as Type=notify (READY=1 once the buffer is open). The loop is
`while not stop.wait(delay): run_once()`, so tests drive run_once() directly.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from agent import systemd
from agent.buffer import Buffer
from agent.config import AgentConfig
from agent.energy.service import EnergyService
from agent.exporter import DeviceInfo, ExportResult, GrpcExporter, open_channel
from agent.files import write_atomically
from agent.shipper import Backoff, Shipper

logger = logging.getLogger(__name__)

# While a failure lasts, repeat its log line at most this often.
FAILURE_LOG_INTERVAL_S = 60.0


class Task(Protocol):
    """Work on the buffer that comes before each round of shipping (energy attribution,
    compaction): run_once() does one round of it."""

    def run_once(self) -> object: ...


class Daemon:
    def __init__(
        self,
        shipper: Shipper,
        *,
        tasks: Sequence[Task] = (),
        interval_s: float = 1.0,
        backoff: Backoff | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """tasks: run in order before each round of shipping; one that fails is logged (once
        per streak) and the others, and shipping, go on."""
        self._shipper = shipper
        self._tasks = list(tasks)
        self._failing_tasks: set[int] = set()
        self._interval_s = interval_s
        self._backoff = backoff or Backoff()
        self._monotonic = monotonic
        self._failing_since: float | None = None
        self._last_failure_log = float("-inf")
        self.stop = threading.Event()

    def run_once(self) -> float:
        """Run the tasks, ship what is ready; return the delay before the next round."""
        for index, task in enumerate(self._tasks):
            self._run_task(index, task)
        report = self._shipper.run_once()
        if report.failure is None:
            if self._failing_since is not None:
                logger.info(
                    "collector reachable again after %.1f s; shipped %d records",
                    self._monotonic() - self._failing_since, report.shipped,
                )
                self._failing_since = None
            self._backoff.reset()
            # Drain a backlog without pausing between rounds.
            return 0.0 if report.more_pending else self._interval_s
        self._log_failure(report.failure, report.message)
        return self._backoff.next_delay_s()

    def _run_task(self, index: int, task: Task) -> None:
        name = type(task).__name__
        try:
            task.run_once()
        except Exception:  # the task's work waits for the next round; shipping goes on
            if index not in self._failing_tasks:
                logger.exception("%s failed; retrying every round", name)
            self._failing_tasks.add(index)
        else:
            if index in self._failing_tasks:
                logger.info("%s works again", name)
            self._failing_tasks.discard(index)

    def _log_failure(self, failure: ExportResult, message: str) -> None:
        now = self._monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._last_failure_log < FAILURE_LOG_INTERVAL_S:
            return
        self._last_failure_log = now
        hint = {
            ExportResult.AUTH_FAILED: "check the device token (records are kept)",
            ExportResult.TOO_LARGE: "sending smaller batches",
        }.get(failure, "records are kept and retried")
        logger.warning("cannot ship to the collector (%s): %s; %s", failure.value, message, hint)

    def serve(self) -> None:
        systemd.notify("READY=1")
        delay = 0.0
        while not self.stop.wait(delay):
            delay = self.run_once()
        systemd.notify("STOPPING=1")


def run(config: AgentConfig, *, ready_file: Path | None = None) -> int:
    """Run the daemon with config until SIGTERM/SIGINT; the exit code. ready_file: once it
    samples and ships, write {"pid", "buffer", "energy_sensors"} there (atomically)."""
    if not config.collector_address:
        logger.error("no collector address: set collector.address in the config or --collector")
        return 2
    buffer = Buffer.open(config.buffer_path)
    channel = open_channel(config)
    exporter = GrpcExporter(
        channel, config.device_token, device=DeviceInfo.of_this_machine(), timeout_s=config.timeout_s
    )
    energy = EnergyService.create(config, buffer) if config.energy_enabled else None
    shipper = Shipper(buffer, exporter, batch_size=config.batch_size, attributed_only=energy is not None)
    daemon = Daemon(
        shipper,
        tasks=[energy.attributor] if energy is not None else [],
        interval_s=config.interval_s,
        backoff=Backoff(initial_s=config.backoff_initial_s, max_s=config.backoff_max_s),
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: daemon.stop.set())
    logger.info(
        "agent shipping %s (stream %s) to %s", buffer.path, buffer.stream_id, config.collector_address
    )
    if energy is not None:
        energy.start()
    if ready_file is not None:
        sensors = sorted(energy.sampler.infos) if energy is not None else []
        write_atomically(ready_file, json.dumps({"pid": os.getpid(), "buffer": str(buffer.path), "energy_sensors": sensors}))
    try:
        daemon.serve()
    finally:
        if energy is not None:
            energy.stop()
        channel.close()
        buffer.close()
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
    logger.info("agent stopped")
    return 0
