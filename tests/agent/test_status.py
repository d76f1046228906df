"""The daemon's status file (agent.status) and `infermeter agent status`: what the daemon
publishes, how a reader judges whether it runs, and the command's table, JSON and errors,
down to a real daemon process that runs, stops, or is killed."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

from agent import cli
from agent.buffer import Buffer, row_from_record
from agent.status import (
    AgentState,
    EnergyInfo,
    ErrorInfo,
    StatusBoard,
    liveness,
    new_state,
    process_start_ticks,
    read_state,
    status_path,
)
from tests.agent.daemon_process import write_config
from tests.agent.test_device_buffer import make_record

T0_NS = 1_790_000_000 * 10**9


class Clocks:
    def __init__(self) -> None:
        self.wall_ns = T0_NS
        self.mono_ns = 5 * 10**9

    def advance(self, seconds: float) -> None:
        self.wall_ns += round(seconds * 1e9)
        self.mono_ns += round(seconds * 1e9)


class FakeSampler:
    def __init__(self) -> None:
        from agent.energy.attribution import SensorInfo

        self.infos = {"rapl:package-0": SensorInfo("rapl:package-0", "package", "rapl")}
        self.passes = 0
        self.failed_reads = 0
        self.write_errors = 0


@pytest.fixture
def clocks():
    return Clocks()


def make_board(tmp_path, clocks, **kwargs):
    sent: list[str] = []
    state = AgentState(pid=os.getpid(), started_unix_ns=T0_NS, buffer=str(tmp_path / "buffer.db"), collector="c:50051")
    board = StatusBoard(
        state, status_path(tmp_path / "buffer.db"), notify=sent.append,
        wall_ns=lambda: clocks.wall_ns, monotonic_ns=lambda: clocks.mono_ns, **kwargs,
    )
    return board, sent


def read(tmp_path) -> AgentState:
    return read_state(status_path(tmp_path / "buffer.db"))


# The daemon's side: StatusBoard


def test_the_board_publishes_when_due_and_at_once_when_something_changes(tmp_path, clocks):
    board, sent = make_board(tmp_path, clocks)
    board.refresh()
    assert read(tmp_path).updated_unix_ns == T0_NS
    assert sent == ["STATUS=shipping to c:50051: nothing to send yet"]
    clocks.advance(1)
    board.shipped(20, 0)
    board.refresh()  # not due yet: the file keeps the old state
    assert read(tmp_path).shipped == 0
    clocks.advance(4)
    board.refresh()
    state = read(tmp_path)
    assert (state.shipped, state.last_sync_unix_ns, state.updated_unix_ns) == (20, T0_NS + 10**9, T0_NS + 5 * 10**9)
    assert sent[-1] == "STATUS=shipping to c:50051: last sync 14:13:21 UTC, 20 records since start"
    clocks.advance(1)
    board.failed("collector", "retry", "UNAVAILABLE: failed to connect\nto all addresses")  # published now
    state = read(tmp_path)
    assert state.failing == ["collector"]
    assert state.last_error == ErrorInfo("collector", "retry", "UNAVAILABLE: failed to connect to all addresses",
                                         T0_NS + 6 * 10**9, T0_NS + 6 * 10**9)
    assert sent[-1] == "STATUS=cannot ship to c:50051 since 14:13:26 UTC; records kept, retrying"
    clocks.advance(1)
    board.failed("collector", "retry", "again")  # the same streak: kept for the next refresh
    assert read(tmp_path).last_error.message != "again"
    assert board.state.last_error.since_unix_ns == T0_NS + 6 * 10**9
    board.recovered("collector")
    assert read(tmp_path).failing == []
    assert read(tmp_path).last_error.message == "again"  # the last error stays, marked over


def test_the_summary_names_the_trouble(tmp_path, clocks):
    board, _ = make_board(tmp_path, clocks, sampler=FakeSampler())
    board.failed("collector", "auth-failed", "UNAUTHENTICATED: unknown token")
    assert board.summary() == "the collector refuses the device token since 14:13:20 UTC; records kept; energy: rapl"
    board.failed("Attributor", "OperationalError", "disk I/O error")
    assert board.summary().endswith("; Attributor failing; energy: rapl")
    board.watchdog("the energy sampler has taken no pass for 61 s")
    assert board.summary().startswith("stalled: the energy sampler has taken no pass for 61 s")
    assert read(tmp_path).watchdog_problem == "the energy sampler has taken no pass for 61 s"
    board.stopped(RuntimeError("boom"))
    state = read(tmp_path)
    assert (state.state, state.failing, state.last_error.kind, state.last_error.message) == (
        "stopped", ["daemon"], "RuntimeError", "boom")
    assert board.summary() == "stopped"


def test_the_board_follows_the_sampler(tmp_path, clocks):
    sampler = FakeSampler()
    board, _ = make_board(tmp_path, clocks, sampler=sampler)
    board.refresh()
    assert read(tmp_path).energy == EnergyInfo(
        sensors=[{"name": "rapl:package-0", "domain": "package", "source": "rapl"}])
    clocks.advance(5)
    sampler.passes, sampler.failed_reads = 50, 2
    board.refresh()
    clocks.advance(5)
    board.refresh()  # no pass since: the last one stays where it was seen
    energy = read(tmp_path).energy
    assert (energy.passes, energy.failed_reads, energy.last_pass_unix_ns) == (50, 2, T0_NS + 5 * 10**9)


def test_an_unwritable_status_file_is_logged_once_and_never_raised(tmp_path, clocks, caplog):
    state = AgentState(pid=1, started_unix_ns=T0_NS)
    board = StatusBoard(state, tmp_path / "missing-dir" / "buffer.db.status.json", notify=lambda _: None,
                        wall_ns=lambda: clocks.wall_ns, monotonic_ns=lambda: clocks.mono_ns)
    caplog.set_level(logging.WARNING, logger="agent.status")
    for _ in range(3):
        board.refresh(force=True)
    assert len(caplog.records) == 1 and "cannot write the status file" in caplog.text


# The reader's side: the file and liveness


def test_a_status_file_from_a_newer_daemon_is_read_and_garbage_is_refused(tmp_path):
    path = tmp_path / "buffer.db.status.json"
    assert read_state(path) is None
    state = AgentState(pid=7, started_unix_ns=T0_NS, last_error=ErrorInfo("collector", "retry", "x", 1, 1))
    data = json.loads(state.to_json())
    data["something_new"] = {"a": 1}
    path.write_text(json.dumps(data))
    assert read_state(path) == state
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a status file"):
        read_state(path)
    path.write_text(json.dumps({**data, "format": 99}))
    with pytest.raises(ValueError, match="format 99"):
        read_state(path)


def fake_proc(tmp_path: Path, pid: int, start_ticks: int, comm: str = "python3") -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    (proc / str(pid)).mkdir(exist_ok=True)
    fields = ["S", "1", "1", "1", "0", "-1", "4194560"] + ["0"] * 12 + [str(start_ticks), "123", "456"]
    (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) {' '.join(fields)}\n")
    return proc


def test_start_ticks_are_read_past_a_command_name_with_spaces_and_parentheses(tmp_path):
    proc = fake_proc(tmp_path, 321, 98765, comm="infer (meter) x")
    assert process_start_ticks(321, proc=proc) == 98765
    assert process_start_ticks(322, proc=proc) is None
    assert process_start_ticks(os.getpid()) is not None  # the real /proc


def live_state(**values) -> AgentState:
    defaults = dict(
        pid=321, started_unix_ns=T0_NS, boot=11, pid_start_ticks=98765, updated_unix_ns=T0_NS,
        updated_monotonic_ns=100 * 10**9,
    )
    return AgentState(**{**defaults, **values})


@pytest.mark.parametrize(
    ("state", "now_s", "word", "detail"),
    [
        (live_state(), 130, "running", "pid 321, since 2026-09-21 14:13:20 UTC"),
        (live_state(), 161, "stalled", "has not updated its status for 61 s: its main loop is stuck"),
        (live_state(stale_after_s=120.0), 161, "running", "pid 321"),
        (live_state(pid_start_ticks=5), 130, "not running", "process 321 is gone"),  # the pid is another's now
        (live_state(pid=322), 130, "not running", "process 322 is gone (killed or crashed)"),
        (live_state(boot=12), 130, "not running", "the machine restarted since its last update"),
        (live_state(state="stopped"), 130, "stopped", "since 2026-09-21 14:13:20 UTC"),
        (live_state(state="stopped", last_error=ErrorInfo("daemon", "OSError", "disk gone", 1, 1)), 130,
         "stopped", "ended by OSError: disk gone"),
        (None, 130, "never started", "no status file"),
    ],
)
def test_liveness_is_judged_from_the_file_the_process_table_and_the_monotonic_clock(tmp_path, state, now_s, word, detail):
    proc = fake_proc(tmp_path, 321, 98765)
    verdict = liveness(state, now_monotonic_ns=now_s * 10**9, boot=11, proc=proc)
    assert verdict.word == word and detail in verdict.detail
    assert verdict.running is (word == "running")


def test_this_process_judged_through_the_real_proc_is_running():
    state = new_state(buffer="b")
    state.updated_monotonic_ns = time.monotonic_ns()
    assert liveness(state).word == "running"


# The command


def make_buffer(tmp_path: Path, records: int = 0) -> Path:
    path = tmp_path / "buffer.db"
    with Buffer.open(path) as buffer:
        buffer.append([row_from_record(make_record(i, start_unix_ns=T0_NS + i)) for i in range(records)])
    return path


def write_live_status(buffer_path: Path, **values) -> AgentState:
    state = new_state(buffer=str(buffer_path), collector="collector.example.com:50051", **values)
    state.updated_unix_ns = time.time_ns()
    state.updated_monotonic_ns = time.monotonic_ns()
    status_path(buffer_path).write_text(state.to_json())
    return state


def test_status_of_a_running_daemon_as_a_table(tmp_path, capsys):
    buffer_path = make_buffer(tmp_path, records=3)
    now_ns = time.time_ns()
    write_live_status(
        buffer_path, last_sync_unix_ns=now_ns - 5 * 10**9, shipped=1200, failing=["collector"],
        last_error=ErrorInfo("collector", "retry", "UNAVAILABLE: connection refused", now_ns - 10**9, now_ns - 300 * 10**9),
        energy=EnergyInfo([{"name": "rapl:package-0", "domain": "package", "source": "rapl"}], 30, 1, 0, now_ns),
        watchdog_timeout_s=120.0,
    )
    assert cli.main(["agent", "status", "--buffer", str(buffer_path)]) == 0
    lines = {line[:10].strip(): line[12:] for line in capsys.readouterr().out.splitlines()}
    assert lines["agent"].startswith(f"running: pid {os.getpid()}, since ")
    assert lines["waiting"].startswith("3 records, the oldest made ") and "waiting for their energy" not in lines["waiting"]
    assert lines["last sync"].endswith("(5 s ago); 1,200 records shipped since it started")
    assert lines["last error"].endswith(
        "(1 s ago), collector: retry: UNAVAILABLE: connection refused (failing since "
        + lines["last error"].split("failing since ")[1])
    assert "(5 min ago))" in lines["last error"]
    assert lines["compaction"] == "nothing compacted or dropped"
    assert lines["energy"].startswith("rapl:package-0: last sample ") and "30 passes, 1 failed reads" in lines["energy"]
    assert lines["watchdog"] == "120 s, pinged: healthy"


def test_status_json_with_counters_from_the_buffers_meta_table(tmp_path, capsys):
    buffer_path = make_buffer(tmp_path, records=2)
    with sqlite3.connect(buffer_path) as conn:  # what compaction leaves in the buffer
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                         [("counter:compactions", "3"), ("counter:rolled_up_records", "12000")])
    write_live_status(buffer_path)
    assert cli.main(["agent", "status", "--buffer", str(buffer_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["daemon"]["running"] is True and report["daemon"]["status"] == "running"
    assert report["daemon"]["pid"] == os.getpid()
    assert report["buffer"]["records"] == 2 and report["buffer"]["oldest_waiting_unix_ns"] == T0_NS
    assert report["buffer"]["oldest_waiting_age_s"] > 0
    assert report["buffer"]["counters"] == {"compactions": 3, "rolled_up_records": 12000}
    assert report["status_file"] == str(status_path(buffer_path))
    assert cli.main(["agent", "status", "--buffer", str(buffer_path)]) == 0
    assert "compaction  compactions 3, rolled up records 12,000" in capsys.readouterr().out


def test_a_buffer_no_daemon_ever_shipped(tmp_path, capsys):
    buffer_path = make_buffer(tmp_path)
    assert cli.main(["agent", "status", "--buffer", str(buffer_path)]) == cli.NOT_RUNNING
    out = capsys.readouterr().out
    assert out.startswith("agent        never started: no status file: the daemon has not run with this buffer")
    assert f"status file  {status_path(buffer_path)}" in out


def test_the_buffer_comes_from_the_config(tmp_path, capsys, monkeypatch):
    buffer_path = make_buffer(tmp_path)
    config = tmp_path / "agent.toml"
    config.write_text(f'buffer = "{buffer_path}"\n')
    monkeypatch.delenv("INFERMETER_CONFIG", raising=False)
    monkeypatch.delenv("INFERMETER_BUFFER", raising=False)
    assert cli.main(["agent", "status", "--config", str(config), "--json"]) == cli.NOT_RUNNING
    assert json.loads(capsys.readouterr().out)["buffer"]["path"] == str(buffer_path)
    monkeypatch.setattr(cli, "DEFAULT_CONFIG", config)  # /etc/infermeter/agent.toml on a device
    assert cli.main(["agent", "status", "--json"]) == cli.NOT_RUNNING
    assert json.loads(capsys.readouterr().out)["buffer"]["path"] == str(buffer_path)


def test_clear_errors_for_a_missing_buffer_or_config(tmp_path, capsys):
    assert cli.main(["agent", "status", "--buffer", str(tmp_path / "none.db")]) == 1
    err = capsys.readouterr().err
    assert f"no buffer at {tmp_path / 'none.db'}" in err and "--buffer PATH" in err
    assert not (tmp_path / "none.db").exists()
    assert cli.main(["agent", "status", "--config", str(tmp_path / "none.toml")]) == 2
    assert "cannot read config" in capsys.readouterr().err
    status_path(make_buffer(tmp_path)).write_text("garbage")
    assert cli.main(["agent", "status", "--buffer", str(tmp_path / "buffer.db")]) == cli.NOT_RUNNING
    assert "is not a status file this infermeter can read" in capsys.readouterr().out


def test_status_of_a_real_daemon_running_stopped_and_killed(tmp_path, capsys, start_daemon):
    config = write_config(tmp_path, "127.0.0.1:1")  # no collector: it keeps retrying
    buffer_path = tmp_path / "buffer.db"
    daemon = start_daemon(config)
    daemon.listener.wait_for("READY=1")
    make_buffer(tmp_path, records=4)
    daemon.listener.wait_for("STATUS=cannot ship")
    assert cli.main(["agent", "status", "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["daemon"]["pid"] == daemon.process.pid and report["daemon"]["running"]
    assert report["daemon"]["last_error"]["source"] == "collector" and report["buffer"]["records"] == 4
    assert daemon.stop() == 0
    assert cli.main(["agent", "status", "--config", str(config)]) == cli.NOT_RUNNING
    assert capsys.readouterr().out.startswith("agent       stopped: since ")

    killed = start_daemon(config)
    killed.listener.wait_for("READY=1")
    deadline = time.monotonic() + 10
    while read_state(status_path(buffer_path)).pid != killed.process.pid and time.monotonic() < deadline:
        time.sleep(0.02)
    killed.kill()  # SIGKILL: no chance to say it stopped
    assert cli.main(["agent", "status", "--buffer", str(buffer_path)]) == cli.NOT_RUNNING
    assert f"not running: process {killed.process.pid} is gone (killed or crashed)" in capsys.readouterr().out
