"""The daemon loop: delays after success, failure and backlog; logging once per failure streak."""

from __future__ import annotations

import logging

from agent.buffer import Buffer, row_from_record
from agent.daemon import Daemon
from agent.exporter import ExportResult, InMemoryExporter
from agent.shipper import Backoff, Shipper
from tests.agent.test_device_buffer import make_record


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_daemon(tmp_path, exporter, *, max_batches=50):
    buffer = Buffer.open(tmp_path / "buffer.db")
    clock = FakeClock()
    daemon = Daemon(
        Shipper(buffer, exporter, batch_size=10, max_batches=max_batches),
        interval_s=1.0,
        backoff=Backoff(initial_s=0.5, max_s=8, rand=lambda: 1.0),
        monotonic=clock,
    )
    return daemon, buffer, clock


def test_waits_the_interval_when_idle_and_drains_a_backlog_without_pause(tmp_path):
    daemon, buffer, _ = make_daemon(tmp_path, InMemoryExporter(), max_batches=2)
    assert daemon.run_once() == 1.0
    buffer.append([row_from_record(make_record(i)) for i in range(35)])
    assert daemon.run_once() == 0.0  # 20 shipped, 15 waiting
    assert daemon.run_once() == 1.0  # the rest
    assert buffer.stats().records == 0


def test_backs_off_while_failing_and_resets_on_success(tmp_path, caplog):
    exporter = InMemoryExporter(script=[ExportResult.RETRY] * 4)
    daemon, buffer, clock = make_daemon(tmp_path, exporter)
    buffer.append([row_from_record(make_record())])
    caplog.set_level(logging.INFO, logger="agent.daemon")
    delays = []
    for _ in range(4):
        delays.append(daemon.run_once())
        clock.now += 1
    assert delays == [0.5, 1.0, 2.0, 4.0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "records are kept" in warnings[0].getMessage()
    assert daemon.run_once() == 1.0
    assert "reachable again" in caplog.records[-1].getMessage()
    assert buffer.stats().records == 0


def test_auth_failure_log_says_what_to_check(tmp_path, caplog):
    daemon, buffer, _ = make_daemon(tmp_path, InMemoryExporter(script=[ExportResult.AUTH_FAILED]))
    buffer.append([row_from_record(make_record())])
    caplog.set_level(logging.WARNING, logger="agent.daemon")
    daemon.run_once()
    assert "check the device token" in caplog.text
    assert buffer.stats().records == 1


def test_repeats_the_failure_line_only_after_a_while(tmp_path, caplog):
    daemon, buffer, clock = make_daemon(tmp_path, InMemoryExporter(script=[ExportResult.RETRY] * 100))
    buffer.append([row_from_record(make_record())])
    caplog.set_level(logging.WARNING, logger="agent.daemon")
    for _ in range(30):
        daemon.run_once()
        clock.now += 5
    assert len(caplog.records) == 3  # t=0, t>=60, t>=120 of 150 s
