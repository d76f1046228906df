"""The agent daemon: ships the device buffer to the collector until told to stop.

    infermeter agent run --config /etc/infermeter/agent.toml

At start the buffer is opened through the quarantine check (a corrupt file is moved aside, a
new stream starts, the loss is reported as a gap record: agent.quarantine) with the configured
cap; while its disk is too full to open it, the daemon waits for room rather than exiting.
Each round then attributes energy, compacts the buffer when it nears its cap (agent.compaction)
and ships; a token the collector hands over during a rotation goes to the token file
(agent.rotation), and each reply's budget state to the buffer (agent.budget_store), as well as
the device's default tags, which it adds to the records it ships (agent.device_tags). Every
discovery.interval_s, it scans for processes that run an inference runtime but meter nothing
and reports them (agent.discovery). The spend
against the budgets' leases is counted every interval_s, also while a backoff keeps the
collector waiting: offline, the lease runs down as records are written.

Runs under systemd as Type=notify (READY=1 once the buffer is open, STOPPING=1 on the way out,
STATUS= with a one-line summary) and pings the systemd watchdog only while healthy (the rule is
in agent.watchdog). Its runtime state goes to a status file next to the buffer, which
`infermeter agent status` reads (agent.status). With `[metrics] listen` set it also serves
Prometheus metrics (agent.metrics) from a thread of their own. The loop is `while not sleep(delay):
run_once()`, and every step of it ends in tick(), so tests drive run_once() directly, on a
daemon from build_daemon().
"""

from __future__ import annotations

import errno
import faulthandler
import functools
import gc
import json
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import grpc

from agent import systemd
from agent.boot import boot_key
from agent.budget_store import BudgetStore
from agent.buffer import MIB, Buffer, BufferError, disk_free_bytes, is_full
from agent.compaction import CompactionPolicy, Compactor
from agent.config import AgentConfig
from agent.device_tags import DeviceTags, TaggingExporter
from agent.discovery import Discovery, ProcScanner, ShippedPids, WriterLog
from agent.discovery_report import GrpcScanReporter
from agent.energy.service import EnergyService
from agent.exporter import (
    DeviceInfo,
    Exporter,
    ExportOutcome,
    ExportResult,
    GrpcExporter,
    PendingExport,
    open_channel,
)
from agent.files import write_atomically
from agent.quarantine import open_checked
from agent.record import UsageRecord
from agent.rotation import TokenKeeper
from agent.shipper import Backoff, Shipper
from agent.status import STALE_AFTER_S, StatusBoard, new_state, status_path
from agent.triton_join import triton_join_tasks
from agent.watchdog import SamplerProgress, Watchdog

if TYPE_CHECKING:
    from agent.metrics import AgentMetrics

logger = logging.getLogger(__name__)

# While a failure lasts, repeat its log line at most this often.
FAILURE_LOG_INTERVAL_S = 60.0
# While the buffer cannot be opened for want of room, try again this often.
OPEN_RETRY_S = 2.0
# A disk with less free space than this counts as full when SQLite fails on it.
NO_ROOM_BYTES = 1024 * 1024


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
        watchdog: Watchdog | None = None,
        board: StatusBoard | None = None,
        stop: threading.Event | None = None,
        watchers: Sequence[Task] = (),
    ) -> None:
        """tasks: run in order before each round of shipping; one that fails is logged (once
        per streak) and the others, and shipping, go on. watchdog: pinged by tick() while
        healthy; board: the runtime state, kept up to date and published by tick(); stop:
        set to end serve(); watchers: run before each round and every interval_s while a
        backoff lasts longer (failures logged once per streak, like tasks')."""
        self._shipper = shipper
        self._tasks = list(tasks)
        self._watchers = list(watchers)
        self._last_watch = float("-inf")
        self._failing_tasks: set[int] = set()
        self._interval_s = interval_s
        self._backoff = backoff or Backoff()
        self._monotonic = monotonic
        self._failing_since: float | None = None
        self._last_failure_log = float("-inf")
        self.watchdog = watchdog or Watchdog(None)
        self.board = board or StatusBoard(new_state(), None, notify=lambda _: None)
        self.stop = stop if stop is not None else threading.Event()

    def run_once(self) -> float:
        """Run the tasks, ship what is ready; return the delay before the next round."""
        self._watch()
        for index, task in enumerate(self._tasks):
            self._run_task(index, task)
            self.tick()
        report = self._shipper.run_once()
        if report.batches:
            self.board.shipped(report.shipped, report.rejected)
        if report.failure is None:
            self.board.recovered("collector")
        else:
            self.board.failed("collector", report.failure.value, report.message)
        if report.undeleted:
            self.board.failed(
                "buffer", "full", f"{report.undeleted} acknowledged records cannot be deleted (the disk or"
                " the buffer's cap is full): kept, and sent again once there is room",
            )
        else:
            self.board.recovered("buffer")
        self.tick()
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

    def _watch(self) -> None:
        self._last_watch = self._monotonic()
        for index, watcher in enumerate(self._watchers, start=len(self._tasks)):
            self._run_task(index, watcher)

    def _run_task(self, index: int, task: Task) -> None:
        name = type(task).__name__
        try:
            task.run_once()
        except Exception as err:  # the task's work waits for the next round; shipping goes on
            if index not in self._failing_tasks:
                logger.exception("%s failed; retrying every round", name)
            self._failing_tasks.add(index)
            self.board.failed(name, type(err).__name__, str(err))
        else:
            if index in self._failing_tasks:
                logger.info("%s works again", name)
                self.board.recovered(name)
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
        self.tick()
        delay = 0.0
        while not self._sleep(delay):
            delay = self.run_once()
        systemd.notify("STOPPING=1")

    def tick(self) -> None:
        """A step of the main loop is done (a task, a batch, a round, a stretch of sleep): ping
        the watchdog if healthy, and publish the runtime state when due. Only the main loop
        calls this: a main loop stuck in a step calls nothing, and the pings stop."""
        self.watchdog.kick()
        self.board.watchdog(self.watchdog.problem)
        self.board.refresh()

    def _sleep(self, delay_s: float) -> bool:
        """Wait delay_s between rounds, waking to tick() meanwhile (waiting is healthy); True
        once stop is set."""
        wake_s = min(self.watchdog.wake_s, self.board.refresh_s)
        if self._watchers:
            wake_s = min(wake_s, self._interval_s)
        deadline_s = time.monotonic() + delay_s
        while (remaining_s := deadline_s - time.monotonic()) > 0:
            if self.stop.wait(min(remaining_s, wake_s)):
                return True
            if self._watchers and self._monotonic() - self._last_watch >= self._interval_s:
                self._watch()
            self.tick()
        return self.stop.is_set()


def run(config: AgentConfig, *, ready_file: Path | None = None) -> int:
    """Run the daemon with config until SIGTERM/SIGINT; the exit code. ready_file: once it
    samples and ships, write {"pid", "buffer", "energy_sensors"} there (atomically)."""
    if not config.collector_address:
        logger.error("no collector address: set collector.address in the config or --collector")
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    watchdog_s = systemd.watchdog_timeout_s()
    buffer = open_buffer(config, stop, watchdog=Watchdog(watchdog_s))
    if buffer is None:
        logger.info("agent stopped before its buffer could be opened")
        return 0
    energy = EnergyService.create(config, buffer) if config.energy_enabled else None
    metrics = start_metrics(config, energy)
    channel = open_channel(config)
    daemon = build_daemon(config, buffer, channel, energy, stop=stop, watchdog_s=watchdog_s, metrics=metrics)
    # What start-up made lives as long as the daemon: out of the garbage collector's sight, so
    # that its collections go over the rounds' own objects only.
    gc.freeze()
    if not faulthandler.is_enabled():
        # systemd's watchdog kills with SIGABRT: the journal then shows where each thread was.
        faulthandler.enable()
    logger.info(
        "agent shipping %s (stream %s) to %s", buffer.path, buffer.stream_id, config.collector_address
    )
    if energy is not None:
        energy.start()
    if ready_file is not None:
        sensors = sorted(energy.sampler.infos) if energy is not None else []
        write_atomically(ready_file, json.dumps({"pid": os.getpid(), "buffer": str(buffer.path), "energy_sensors": sensors}))
    error: BaseException | None = None
    try:
        daemon.serve()
    except BaseException as err:
        error = err
        raise
    finally:
        if energy is not None:
            energy.stop()
        daemon.board.stopped(error)
        channel.close()
        buffer.close()
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
    logger.info("agent stopped")
    return 0


def build_daemon(
    config: AgentConfig,
    buffer: Buffer,
    channel: grpc.Channel,
    energy: EnergyService | None,
    *,
    stop: threading.Event | None = None,
    watchdog_s: float | None = None,
    metrics: AgentMetrics | None = None,
) -> Daemon:
    """The daemon's parts, wired: each round runs energy attribution (with energy on), then
    compaction, then ships through a GrpcExporter that keeps rotated tokens (TokenKeeper);
    the status file goes next to the buffer. metrics: told of each batch shipped and of the
    budgets enforced."""
    exporter: Exporter = GrpcExporter(
        channel, config.device_token, device=DeviceInfo.of_this_machine(), timeout_s=config.timeout_s,
        on_new_token=TokenKeeper.for_config(config),
    )
    checks = [SamplerProgress(lambda: energy.sampler.passes, stall_s=watchdog_s)] if energy and watchdog_s else []
    board = StatusBoard(
        new_state(
            buffer=str(buffer.path), stream_id=buffer.stream_id, collector=config.collector_address,
            watchdog_timeout_s=watchdog_s, stale_after_s=max(STALE_AFTER_S, watchdog_s or 0.0),
        ),
        status_path(buffer.path),
        sampler=energy.sampler if energy is not None else None,
    )
    # Each batch that goes out is a step of the main loop too (the one before it was
    # acknowledged): a long drain keeps the watchdog fed and the status fresh.
    budgets = BudgetStore(buffer)
    device_tags = DeviceTags(buffer)
    exporter = TaggingExporter(exporter, device_tags)
    discovery = _discovery(config, buffer, channel, energy)
    if discovery is not None:
        exporter = ShippedPids(exporter, discovery.writers)
    if metrics is not None:
        exporter = metrics.metered(exporter)
        metrics.follow_budgets(lambda: budgets.budgets)
    shipper = Shipper(
        buffer, TickingExporter(exporter, lambda: daemon.tick()), batch_size=config.batch_size,
        attributed_only=energy is not None, heartbeat_s=config.heartbeat_s,
        on_reply=functools.partial(keep_reply, budgets, device_tags),
    )
    # The shipper sends at most two batches before it deletes what was acknowledged: those
    # records may be on the collector, and compaction must leave them as they are.
    compactor = Compactor(
        buffer, policy=CompactionPolicy(keep_head_records=2 * config.batch_size), attributed_only=energy is not None
    )
    daemon = Daemon(
        shipper,
        tasks=[
            *triton_join_tasks(config, buffer),
            *([energy.attributor] if energy is not None else []), compactor, *([discovery] if discovery else []),
        ],
        interval_s=config.interval_s,
        backoff=Backoff(initial_s=config.backoff_initial_s, max_s=config.backoff_max_s),
        watchdog=Watchdog(watchdog_s, checks=checks),
        board=board,
        stop=stop,
        watchers=[budgets],
    )
    return daemon


def _discovery(config: AgentConfig, buffer: Buffer, channel: grpc.Channel, energy: EnergyService | None) -> Discovery | None:
    """Shadow AI discovery (agent.discovery), with discovery.enabled: scans every
    discovery.interval_s, reported to the collector over the daemon's channel."""
    if not config.discovery_enabled:
        return None
    return Discovery(
        buffer, ProcScanner(), WriterLog(keep_s=config.discovery_recent_s),
        interval_s=config.discovery_interval_s, recent_s=config.discovery_recent_s,
        report=GrpcScanReporter(channel, config.device_token, timeout_s=config.timeout_s),
        gpu_memory=energy.gpu_memory if energy is not None else None,
    )


def start_metrics(config: AgentConfig, energy: EnergyService | None) -> AgentMetrics | None:
    """With metrics.listen set, the daemon's metrics, served there. None when it is not set, or
    when they cannot be served (prometheus-client missing, the address taken): that is logged
    as an error, and the daemon ships on without them (metering goes first)."""
    if not config.metrics_listen:
        return None
    try:
        from agent.metrics import AgentMetrics
    except ImportError as err:
        logger.error(
            "metrics.listen is set to %s but prometheus-client is not installed (%s): no metrics are"
            " served; install the agent's `metrics` extra (pip install 'infermeter[metrics]') or remove"
            " [metrics] listen from the config", config.metrics_listen, err,
        )
        return None
    metrics = AgentMetrics(
        config.buffer_path, sensors=sorted(energy.sampler.infos) if energy is not None else (),
        boot=boot_key(), sample_period_s=config.sample_period_s,
    )
    try:
        metrics.serve(config.metrics_listen)
    except (OSError, ValueError) as err:
        logger.error("cannot serve metrics on %s (%s): no metrics are served", config.metrics_listen, err)
        return None
    logger.info("serving Prometheus metrics on http://%s/metrics", config.metrics_listen)
    return metrics


def keep_reply(budgets: BudgetStore, device_tags: DeviceTags, outcome: ExportOutcome, acked_seq: int) -> None:
    """What a successful reply tells the device: its budget state and its default tags."""
    keep_budget_state(budgets, outcome, acked_seq)
    device_tags.keep(outcome.device_tags)


def keep_budget_state(store: BudgetStore, outcome: ExportOutcome, acked_seq: int) -> None:
    """A successful reply's budgets and price hints go to the buffer, received now; the records
    after acked_seq (those the collector does not hold) are counted against them again."""
    store.keep_reply(outcome.budgets, outcome.price_hints, received_unix_ns=time.time_ns(), acked_through_seq=acked_seq)


def open_buffer(
    config: AgentConfig, stop: threading.Event, *, watchdog: Watchdog, retry_s: float = OPEN_RETRY_S
) -> Buffer | None:
    """The device buffer, capped at config.buffer_max_mb, through the quarantine check (a
    corrupt file is moved aside and its loss reported: agent.quarantine). While the disk has
    no room to open it, waits and tries again every retry_s instead of exiting: a restart
    cannot make room either, and systemd would restart it in a loop. Meanwhile systemd hears
    READY=1 and a STATUS= and the watchdog is pinged (a full disk is a condition of the world,
    not a stall). None when stop is set first; other failures raise."""
    max_bytes = round(config.buffer_max_mb * MIB)
    waiting_since: float | None = None
    while True:
        try:
            buffer = open_checked(config.buffer_path, max_bytes=max_bytes)
        except (BufferError, sqlite3.Error, OSError) as err:
            if not _no_room(err, config.buffer_path):
                raise
            if waiting_since is None:
                waiting_since = time.monotonic()
                logger.error(
                    "cannot open the buffer %s: %s; its disk is full: waiting for room, trying again"
                    " every %.0f s", config.buffer_path, err, retry_s,
                )
                systemd.notify(f"READY=1\nSTATUS=waiting for room on the disk of {config.buffer_path}")
        else:
            if waiting_since is not None:
                logger.info(
                    "buffer %s opened after %.0f s of waiting for room", buffer.path, time.monotonic() - waiting_since
                )
            return buffer
        deadline_s = time.monotonic() + retry_s
        while (remaining_s := deadline_s - time.monotonic()) > 0 and not stop.wait(min(remaining_s, watchdog.wake_s)):
            watchdog.kick()
        if stop.is_set():
            return None


def _no_room(err: BaseException, path: Path) -> bool:
    """Whether err says the disk is full: SQLITE_FULL or ENOSPC (itself or as its cause), or
    an SQLite error while the disk has next to nothing left (a full disk fails the mapping of
    the WAL index as an I/O error)."""
    causes = [err, err.__cause__]
    if any(is_full(e) or isinstance(e, OSError) and e.errno == errno.ENOSPC for e in causes if e is not None):
        return True
    free = disk_free_bytes(path)
    return any(isinstance(e, sqlite3.OperationalError) for e in causes) and free is not None and free < NO_ROOM_BYTES


class TickingExporter:
    """An exporter that calls tick() on the main loop as each batch goes out."""

    def __init__(self, exporter: Exporter, tick: Callable[[], None]) -> None:
        self._exporter = exporter
        self._tick = tick

    def prepare(self, stream_id: str, records: Sequence[UsageRecord]) -> object:
        return self._exporter.prepare(stream_id, records)

    def send(self, prepared: object) -> PendingExport:
        self._tick()
        return self._exporter.send(prepared)
