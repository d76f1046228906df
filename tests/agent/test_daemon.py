"""The daemon loop: delays after success, failure and backlog; logging once per failure streak;
the watchdog pinged from its steps only while healthy; the runtime state it publishes."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from infermeter.v1 import ingest_pb2, ingest_pb2_grpc

from agent import Meter, cli
from agent.buffer import MIB, Buffer, row_from_record
from agent.codec import record_from_proto
from agent.compaction import CompactionPolicy, Compactor
from agent.config import AgentConfig
from agent.daemon import Daemon, TickingExporter, build_daemon, open_buffer
from agent.exporter import (
    DeviceInfo,
    ExportResult,
    GrpcExporter,
    InMemoryExporter,
    open_channel,
)
from agent.record import MIN_START_UNIX_NS, Kind, UsageRecord
from agent.rollup import CORRUPT_BUFFER, GAP_REASON_TAG, LOST_RECORDS_TAG
from agent.shipper import Backoff, Shipper
from agent.status import StatusBoard, liveness, new_state, read_state, status_path
from agent.watchdog import SamplerProgress, Watchdog
from tests.agent.buffer_helpers import all_records, append, fill, totals
from tests.agent.buffer_helpers import make_record as make_helper_record
from tests.agent.daemon_process import write_config
from tests.agent.test_device_buffer import make_record
from tests.agent.test_quarantine import damage_a_page

DAY_NS = 86_400 * 10**9


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


# The watchdog and the runtime state


class Pings:
    """systemd's side of sd_notify, for a Watchdog: what it was sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, state: str) -> None:
        self.sent.append(state)

    @property
    def count(self) -> int:
        return self.sent.count("WATCHDOG=1")


def test_a_ping_goes_out_at_most_every_quarter_of_the_timeout():
    clock, pings = FakeClock(), Pings()
    watchdog = Watchdog(8.0, notify=pings, monotonic=clock)
    assert watchdog.wake_s == 2.0
    sent = []
    for _ in range(40):  # a step every 0.5 s for 20 s
        sent.append(watchdog.kick())
        clock.now += 0.5
    assert pings.count == 10 and sent[:5] == [True, False, False, False, True]
    assert Watchdog(None, notify=pings).kick() is False and pings.count == 10  # no WATCHDOG_USEC: off


def test_a_stalled_sampler_withholds_the_pings_until_it_moves_again(caplog):
    clock, pings = FakeClock(), Pings()
    sampler = SimpleNamespace(passes=0)
    watchdog = Watchdog(
        4.0, checks=[SamplerProgress(lambda: sampler.passes, stall_s=4.0)], notify=pings, monotonic=clock
    )
    caplog.set_level(logging.INFO, logger="agent.watchdog")
    for _ in range(10):  # the main loop is fine, the sampler is stuck from the start
        watchdog.kick()
        clock.now += 1
    assert pings.count == 4  # t = 0..3: within stall_s of the last pass seen
    assert watchdog.problem == "the energy sampler has taken no pass for 9 s"
    sampler.passes = 1
    assert watchdog.kick() and watchdog.problem is None and pings.count == 5
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "not pinging the systemd watchdog" in messages[0] and "healthy again" in messages[1]


def make_watched_daemon(tmp_path, exporter, *, timeout_s=1.0, max_batches=50, batch_size=10):
    buffer = Buffer.open(tmp_path / "buffer.db")
    pings = Pings()
    ticks = []
    board = StatusBoard(new_state(collector="c:1"), status_path(buffer.path), notify=pings)
    watchdog = Watchdog(timeout_s, notify=pings)
    shipper = Shipper(buffer, TickingExporter(exporter, lambda: ticks.append(1)), batch_size=batch_size, max_batches=max_batches)
    daemon = Daemon(shipper, interval_s=0.05, backoff=Backoff(initial_s=0.05, max_s=0.05, rand=lambda: 1.0),
                    watchdog=watchdog, board=board)
    return daemon, buffer, pings, ticks


def test_each_batch_that_goes_out_is_a_step_of_the_main_loop(tmp_path):
    daemon, buffer, _, ticks = make_watched_daemon(tmp_path, InMemoryExporter())
    buffer.append([row_from_record(make_record(i)) for i in range(35)])
    daemon.run_once()
    assert len(ticks) == 4 and buffer.stats().records == 0


def test_rounds_and_sleep_between_them_ping_and_publish(tmp_path):
    daemon, buffer, pings, _ = make_watched_daemon(tmp_path, InMemoryExporter(), timeout_s=0.08)
    buffer.append([row_from_record(make_record(i)) for i in range(5)])
    daemon.run_once()
    assert pings.count == 1
    assert daemon._sleep(0.2) is False
    assert pings.count >= 3  # woke every 0.02 s, pinged when due (every 0.02 s at most)
    state = read_state(status_path(buffer.path))
    assert state.shipped == 5 and state.last_sync_unix_ns is not None and state.failing == []
    assert pings.sent[:2] == ["WATCHDOG=1", pings.sent[1]]
    assert pings.sent[1].startswith("STATUS=shipping to c:1: last sync ") and pings.sent[1].endswith(", 5 records since start")
    daemon.stop.set()
    assert daemon._sleep(10) is True  # stopped: no waiting


def test_the_state_says_what_failed_and_when_it_works_again(tmp_path):
    exporter = InMemoryExporter(script=[ExportResult.AUTH_FAILED, ExportResult.AUTH_FAILED])

    class FailingTask:
        def __init__(self) -> None:
            self.failures = 1

        def run_once(self) -> None:
            if self.failures:
                self.failures -= 1
                raise OSError("disk I/O error")

    daemon, buffer, pings, _ = make_watched_daemon(tmp_path, exporter)
    daemon._tasks = [FailingTask()]
    buffer.append([row_from_record(make_record())])
    daemon.run_once()
    state = read_state(status_path(buffer.path))
    assert state.failing == ["FailingTask", "collector"]
    assert (state.last_error.source, state.last_error.kind) == ("collector", "auth-failed")
    assert pings.sent[-1] == "STATUS=the collector refuses the device token since " + pings.sent[-1].split("since ")[1]
    daemon.run_once()
    daemon.run_once()
    state = read_state(status_path(buffer.path))
    assert state.failing == [] and state.shipped == 1 and state.last_error.kind == "auth-failed"


# The daemon as run() wires it: the buffer opened through the quarantine check with the cap,
# compaction before shipping, rotated tokens kept; a collector on loopback (or the real one).


class LoopbackCollector(ingest_pb2_grpc.IngestServicer):
    """Stores each (stream, seq) once, as the real collector does; refuses pushes while
    `down`; hands `new_token` over in its replies; keeps the token each push came with."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, int], UsageRecord] = {}
        self.duplicates = 0
        self.down = False
        self.new_token = ""
        self.tokens: list[str] = []

    def Push(self, request, context):
        self.tokens.append(dict(context.invocation_metadata())["authorization"].removeprefix("Bearer "))
        if self.down:
            context.abort(grpc.StatusCode.UNAVAILABLE, "down for the test")
        for message in request.records:
            key = (request.stream_id, message.seq)
            self.duplicates += key in self.stored
            self.stored.setdefault(key, record_from_proto(message))
        return ingest_pb2.PushResponse(
            acked_through_seq=request.last_seq, inserted=len(request.records), new_token=self.new_token
        )

    def records(self) -> list[UsageRecord]:
        return [self.stored[key] for key in sorted(self.stored)]


@pytest.fixture
def loopback():
    servicer = LoopbackCollector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    ingest_pb2_grpc.add_IngestServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


def agent_config(tmp_path: Path, address: str, **values) -> AgentConfig:
    token_file = tmp_path / "device.token"
    if not token_file.exists():
        token_file.write_text("imd_old\n")
        token_file.chmod(0o640)
    defaults = dict(
        buffer_path=tmp_path / "buffer.db", collector_address=address, token_file=token_file,
        energy_enabled=False, batch_size=50, interval_s=0.05,
        # These collectors take pushes only (discovery's reports: tests/agent/test_discovery.py).
        discovery_enabled=False,
    )
    return AgentConfig(**{**defaults, **values})


@contextmanager
def wired(config: AgentConfig) -> Iterator[tuple[Daemon, Buffer]]:
    """The daemon that run() builds (energy off), on the buffer as run() opens it."""
    buffer = open_buffer(config, threading.Event(), watchdog=Watchdog(None))
    channel = open_channel(config)
    try:
        yield build_daemon(config, buffer, channel, None), buffer
    finally:
        channel.close()
        buffer.close()


def drain(daemon: Daemon, buffer: Buffer) -> None:
    for _ in range(1_000):
        daemon.run_once()
        if not buffer.stats().records:
            return
    raise AssertionError(f"{buffer.stats().records} records left")


def test_a_round_compacts_a_buffer_past_its_cap_before_shipping_and_every_sum_arrives(tmp_path, loopback, capsys):
    collector, address = loopback
    config = agent_config(tmp_path, address, buffer_max_mb=1)
    with wired(config) as (daemon, buffer):
        assert buffer.limits.max_bytes == MIB
        fill(buffer)
        before = all_records(buffer)

        collector.down = True  # compaction does not wait for the collector
        daemon.run_once()

        after = all_records(buffer)
        counters = buffer.counters()
        assert counters.compactions >= 1 and counters.rolled_up_records > 1_000 and counters.dropped_records == 0
        assert Compactor(buffer).fill() <= CompactionPolicy().compact_to
        assert after[:100] == before[:100]  # two batches: what the collector may have already
        assert totals(after) == totals(before)

        collector.down = False
        drain(daemon, buffer)

    shipped = collector.records()
    assert totals(shipped) == totals(before) and collector.duplicates == 0
    assert [r.seq for r in shipped][:100] == list(range(1, 101))
    assert cli.main(["agent", "status", "--buffer", str(config.buffer_path)]) == 0
    lines = {line[:10].strip(): line[12:] for line in capsys.readouterr().out.splitlines()}
    assert lines["agent"].startswith(f"running: pid {os.getpid()}")
    assert lines["waiting"] == "no records"
    compaction = f"compactions {counters.compactions:,}, rolled up records {counters.rolled_up_records:,}"
    assert compaction in lines["compaction"]
    assert "records shipped since it started" in lines["last sync"]
    assert "collector: retry: UNAVAILABLE: down for the test" in lines["last error"]
    assert lines["last error"].endswith("(over)")


def test_without_energy_attribution_the_apps_records_are_rolled_up_all_the_same(tmp_path, loopback):
    collector, address = loopback
    config = agent_config(tmp_path, address, buffer_max_mb=1)
    with wired(config) as (daemon, buffer):
        meter = Meter(config.buffer_path, start_thread=False)
        made = 0
        while meter.flush():  # up to the cap: records waiting for energy that never comes
            for _ in range(500):
                with meter.span("step", tags={"project": "search"}):
                    pass
            made += 500
        collector.down = True
        daemon.run_once()
        assert buffer.counters().rolled_up_records > 0 and buffer.counters().dropped_records == 0
        assert meter.flush()  # room again
        collector.down = False
        drain(daemon, buffer)
        meter.close()
    assert sum(r.count for r in collector.records()) == made == meter.stats().written


def test_a_corrupt_buffer_at_start_is_quarantined_and_its_loss_shipped_as_a_gap_record(tmp_path, loopback):
    collector, address = loopback
    config = agent_config(tmp_path, address)
    with Buffer.open(config.buffer_path) as old:
        append(old, [make_helper_record(i) for i in range(300)])
        old_stream = old.stream_id
    damage_a_page(config.buffer_path)

    with wired(config) as (daemon, buffer):
        assert buffer.stream_id != old_stream
        daemon.run_once()
        assert buffer.stats().records == 0

    (((stream, _), gap),) = collector.stored.items()
    assert stream != old_stream and gap.kind is Kind.GAP
    assert (gap.count, gap.tags[LOST_RECORDS_TAG], gap.tags[GAP_REASON_TAG]) == (300, "300", CORRUPT_BUFFER)
    assert len(list(tmp_path.glob("buffer.db.corrupt-*Z"))) == 1


def test_a_real_daemon_started_on_a_corrupt_buffer_keeps_running_and_says_what_was_lost(
    tmp_path, loopback, start_daemon, capsys,
):
    collector, address = loopback
    path = tmp_path / "buffer.db"
    with Buffer.open(path) as old:
        append(old, [make_helper_record(i) for i in range(120)])
    damage_a_page(path)

    daemon = start_daemon(write_config(tmp_path, address))
    daemon.listener.wait_for("STATUS=shipping to", timeout_s=20)
    deadline = time.monotonic() + 15
    while not collector.stored and time.monotonic() < deadline:
        time.sleep(0.05)
    ((_, gap),) = collector.stored.items()
    assert gap.kind is Kind.GAP and gap.count == 120
    while read_state(status_path(path)).last_sync_unix_ns is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the daemon publishes its state every few seconds
    assert daemon.process.poll() is None
    assert cli.main(["agent", "status", "--buffer", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["daemon"]["running"] and report["daemon"]["pid"] == daemon.process.pid
    assert report["buffer"]["counters"] == {"gap_records": 1, "quarantined_files": 1}
    assert report["daemon"]["last_sync_unix_ns"] is not None
    assert daemon.stop() == 0
    assert "is corrupt" in daemon.log_path.read_text()


def test_a_rotated_token_in_a_reply_goes_to_the_token_file_atomically_and_the_next_push_uses_it(tmp_path, loopback):
    collector, address = loopback
    config = agent_config(tmp_path, address)
    old_inode = config.token_file.stat().st_ino
    with wired(config) as (daemon, buffer):
        collector.new_token = "imd_new"
        append(buffer, [make_helper_record(0)])
        daemon.run_once()
        collector.new_token = ""
        append(buffer, [make_helper_record(1)])
        daemon.run_once()

    assert collector.tokens == ["imd_old", "imd_new"]
    stat = config.token_file.stat()
    assert config.token_file.read_text() == "imd_new\n"
    assert stat.st_mode & 0o777 == 0o600 and stat.st_ino != old_inode  # replaced by a rename, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir() if "token" in p.name) == ["device.token"]


def test_an_inline_token_cannot_take_a_rotation_and_says_so_once(tmp_path, loopback, caplog):
    collector, address = loopback
    config = agent_config(tmp_path, address, token="imd_inline", token_file=None)
    collector.new_token = "imd_new"
    caplog.set_level(logging.WARNING, logger="agent.rotation")
    with wired(config) as (daemon, buffer):
        for i in range(3):
            append(buffer, [make_helper_record(i)])
            daemon.run_once()
    assert collector.tokens == ["imd_inline"] * 3
    assert len(caplog.records) == 1 and "set collector.token_file to take rotations" in caplog.text


class JumpingWallClock:
    """The device's wall clock, which an operator or NTP steps by offset_ns; the monotonic and
    CPU clocks run on."""

    def __init__(self) -> None:
        self.offset_ns = 0
        self._real_time_ns = time.time_ns

    def time_ns(self) -> int:
        return self._real_time_ns() + self.offset_ns

    def time_s(self) -> float:
        return self.time_ns() / 1e9

    perf_counter_ns = staticmethod(time.perf_counter_ns)
    thread_time_ns = staticmethod(time.thread_time_ns)


def test_wall_clock_jumps_of_a_day_change_nothing_the_daemon_compacts_ships_or_logs(
    tmp_path, loopback, monkeypatch, caplog,
):
    """Stepped a day back, then two forward, while the collector is down: the daemon runs on
    its monotonic clock (its failure log once a minute of it, whatever the wall clock says),
    records keep the start times the clock gave them, and every one reaches the collector once,
    in seq order, after compaction rolled them up."""
    collector, address = loopback
    wall = JumpingWallClock()
    monkeypatch.setattr(time, "time_ns", wall.time_ns)  # whatever reads the wall clock sees the jumps
    monkeypatch.setattr(time, "time", wall.time_s)
    config = agent_config(tmp_path, address)
    clock = FakeClock()
    buffer = Buffer.open(config.buffer_path, max_bytes=MIB)
    board = StatusBoard(new_state(collector=address), status_path(buffer.path), notify=lambda _: None,
                        wall_ns=wall.time_ns, monotonic_ns=lambda: round(clock.now * 1e9))
    exporter = GrpcExporter(open_channel(config), config.device_token, device=DeviceInfo("edge-1", 4, "linux", "test"))
    daemon = Daemon(
        Shipper(buffer, exporter, batch_size=50, monotonic=clock),
        tasks=[Compactor(buffer, policy=CompactionPolicy(compact_at=0.02, compact_to=0.01, keep_head_records=100),
                         attributed_only=False)],  # as build_daemon makes it with energy off
        backoff=Backoff(initial_s=0.5, max_s=8, rand=lambda: 1.0), monotonic=clock, board=board,
    )
    meter = Meter(config.buffer_path, start_thread=False, clock=wall)
    caplog.set_level(logging.WARNING, logger="agent.daemon")
    collector.down = True
    for offset_ns in (0, -DAY_NS, +DAY_NS, 0):
        wall.offset_ns = offset_ns
        for _ in range(300):
            with meter.span("step"):
                pass
        assert meter.flush()
        for _ in range(10):
            daemon.run_once()
            clock.now += 5
    before = all_records(buffer)
    assert buffer.counters().rolled_up_records > 0
    failures = [r for r in caplog.records if r.name == "agent.daemon"]
    assert len(failures) == 4  # 200 s of monotonic time: one line a minute, from the first

    collector.down = False
    drain(daemon, buffer)
    meter.close()
    buffer.close()

    shipped = collector.records()
    assert totals(shipped) == totals(before) and sum(r.count for r in shipped) == 1_200
    assert collector.duplicates == 0 and [r.seq for r in shipped] == sorted({r.seq for r in shipped})
    days = {round((r.start_unix_ns - shipped[0].start_unix_ns) / DAY_NS) for r in shipped}
    assert days == {-1, 0, 1}
    assert liveness(board.state, now_monotonic_ns=round(clock.now * 1e9)).word == "running"  # not fooled either


# With the collector itself (its store on SQLite, its servers on loopback), where its packages
# are installed (the agent's own test run on Python 3.10 has only the agent's).

# One pico per CPU ns and per µJ: every record costs whole picos, so sums compare exactly.
WHOLE_PICO_BOOK = {
    "currency": "USD",
    "cloud": {"default": {"hourly": "14.4", "cpu_cores": 4}},
    "energy": {"default": {"kwh": "3.6"}},
}


@pytest.fixture
def real_collector(tmp_path):
    for name in ("sqlalchemy", "alembic", "aiohttp"):
        pytest.importorskip(name)
    from collector.store import Store
    from tests.collector.helpers import ServersThread

    store = Store.open(f"sqlite:///{tmp_path / 'collector.db'}")
    with ServersThread(store) as running:
        yield store, running.servers.grpc_address
    store.close()


def report_totals(store, group_by: tuple[str, ...]) -> dict:
    return {
        group.key: (group.inferences, group.cost, group.compute_cost, group.energy_cost, group.energy_uj,
                    group.duration_ns, group.cpu_time_ns)
        for group in store.costs(group_by=group_by).groups
    }


def test_the_real_collector_prices_a_buffer_the_daemon_compacted_as_its_records(tmp_path, real_collector):
    from collector.store import DeviceInfo as ReportedDevice
    from collector.store import Store

    store, address = real_collector
    device = store.add_device("edge-1")
    store.add_price_book(WHOLE_PICO_BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
    config = agent_config(tmp_path, address, buffer_max_mb=1)
    config.token_file.write_text(device.token + "\n")
    with wired(config) as (daemon, buffer):
        fill(buffer)
        raw = all_records(buffer)
        stream_id = buffer.stream_id
        drain(daemon, buffer)  # its first round compacts, then ships
        assert buffer.counters().rolled_up_records > 1_000

    this = DeviceInfo.of_this_machine()
    with Store.open(f"sqlite:///{tmp_path / 'reference.db'}") as reference:  # the records as they were
        as_made = reference.add_device("edge-1")
        reference.add_price_book(WHOLE_PICO_BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
        reference.ingest(as_made.device_id, stream_id,
                         ReportedDevice(this.hostname, this.cpu_cores, this.platform, this.agent_version), raw)
        for group_by in ((), ("model",), ("model", "version", "tag:project")):
            assert report_totals(store, group_by) == report_totals(reference, group_by)
        assert store.costs().total_cost == reference.costs().total_cost > 0
        assert store.costs().total_records < reference.costs().total_records


def test_the_real_collector_rotates_the_device_token_through_the_daemon(tmp_path, real_collector):
    store, address = real_collector
    device = store.add_device("edge-1")
    config = agent_config(tmp_path, address)
    config.token_file.write_text(device.token + "\n")
    store.rotate_device(device.device_id)
    with wired(config) as (daemon, buffer):
        append(buffer, [make_helper_record(0)])
        daemon.run_once()  # pushed with the old token: the reply hands over the new one
        new_token = config.token_file.read_text().strip()
        assert new_token != device.token and config.token_file.stat().st_mode & 0o777 == 0o600
        append(buffer, [make_helper_record(1)])
        daemon.run_once()  # pushed with the new one: the collector retires the old one
        assert buffer.stats().records == 0
    assert store.authenticate(device.token) is None
    assert store.authenticate(new_token).device_id == device.device_id
