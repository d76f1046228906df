"""sd_notify: the datagrams themselves, and the real daemon as systemd sees it: a subprocess
with NOTIFY_SOCKET (a unix datagram socket this test binds) and WATCHDOG_USEC, that says
READY=1, pings WATCHDOG=1 only while its main loop is healthy, and says STOPPING=1 on SIGTERM."""

from __future__ import annotations

import itertools
import json
import socket
import sqlite3
import time

import pytest

from agent.buffer import Buffer, row_from_record
from agent.status import status_path
from agent.systemd import notify, watchdog_timeout_s
from tests.agent.daemon_process import WATCHDOG_USEC, write_config
from tests.agent.test_device_buffer import make_record


def test_sends_the_state_to_notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        assert notify("READY=1", environ={"NOTIFY_SOCKET": path})
        assert listener.recv(100) == b"READY=1"


def test_abstract_socket(tmp_path):
    name = f"infermeter-test-{id(tmp_path)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        assert notify("STOPPING=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert listener.recv(100) == b"STOPPING=1"


def test_outside_systemd_it_does_nothing():
    assert notify("READY=1", environ={}) is False


def test_a_dead_socket_is_logged_not_raised(tmp_path):
    assert notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),  # meant for another process
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_timeout_comes_from_the_environment_as_systemd_sets_it(environ, expected):
    assert watchdog_timeout_s(environ=environ, pid=4242) == expected


# The real daemon under a fake systemd.


def max_gap_s(times: list[float]) -> float:
    return max(b - a for a, b in itertools.pairwise(times))


def test_ready_then_watchdog_pings_then_stopping_on_sigterm(tmp_path, collector, start_daemon):
    _, address = collector
    daemon = start_daemon(write_config(tmp_path, address))
    ready_s = daemon.listener.wait_for("READY=1")
    daemon.listener.wait_for("STATUS=shipping to", after_s=ready_s - 1)
    time.sleep(1.0)
    pings = daemon.listener.pings(ready_s, ready_s + 1.0)
    assert len(pings) >= 5
    assert max_gap_s([ready_s, *pings]) < WATCHDOG_USEC / 2e6 + 0.1  # half the timeout, and some slack
    assert daemon.stop() == 0
    stopping_s = daemon.listener.wait_for("STOPPING=1", after_s=ready_s)
    assert daemon.listener.pings(stopping_s, float("inf")) == []
    state = json.loads(status_path(tmp_path / "buffer.db").read_text())
    assert state["state"] == "stopped" and state["watchdog_timeout_s"] == 0.4


def test_a_main_loop_stalled_on_the_buffer_lock_stops_the_pings_until_it_moves_again(tmp_path, collector, start_daemon):
    """An honest stall: the collector acknowledges a batch while another connection holds the
    buffer's write lock (BEGIN EXCLUSIVE), so the daemon's delete of the acknowledged records
    blocks inside SQLite (for up to its busy timeout, 10 s), on the main loop. No ping may come
    while it is blocked; once the lock is released the delete goes through and pings resume."""
    ingest, address = collector
    daemon = start_daemon(write_config(tmp_path, address))
    ready_s = daemon.listener.wait_for("READY=1")
    with Buffer.open(tmp_path / "buffer.db") as buffer:
        ingest.release.clear()  # hold the first push until the lock is taken
        buffer.append([row_from_record(make_record(i)) for i in range(20)])
        assert ingest.arrived.wait(10), "the daemon did not ship"
        blocker = sqlite3.connect(tmp_path / "buffer.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        locked_s = time.monotonic()
        ingest.release.set()  # acknowledged: the daemon now deletes, and waits for the lock
        time.sleep(2.0)
        assert daemon.listener.pings(locked_s, time.monotonic()) == [], "pinged while stalled"
        assert daemon.process.poll() is None  # stalled, not dead: that is the watchdog's job
        blocker.execute("ROLLBACK")
        blocker.close()
        released_s = time.monotonic()
        resumed_s = daemon.listener.wait_for("WATCHDOG=1", after_s=released_s, timeout_s=5)
        assert resumed_s - released_s < 1.0
        deadline = time.monotonic() + 5
        while buffer.stats().records and time.monotonic() < deadline:
            time.sleep(0.05)
        assert buffer.stats().records == 0
    assert daemon.listener.pings(ready_s, locked_s)  # it did ping before the stall
    assert daemon.stop() == 0


def test_a_collector_that_is_down_is_no_reason_to_stop_pinging(tmp_path, start_daemon):
    # Port 1 on loopback: nothing listens, every push fails at once (UNAVAILABLE) and is retried.
    daemon = start_daemon(write_config(tmp_path, "127.0.0.1:1", energy=True))
    ready_s = daemon.listener.wait_for("READY=1")
    with Buffer.open(tmp_path / "buffer.db") as buffer:
        buffer.append([row_from_record(make_record(i)) for i in range(5)])
    failing_s = daemon.listener.wait_for("STATUS=cannot ship to 127.0.0.1:1", after_s=ready_s)
    time.sleep(1.5)
    pings = daemon.listener.pings(failing_s, time.monotonic())
    assert len(pings) >= 6 and max_gap_s(pings) < WATCHDOG_USEC / 2e6 + 0.1
    state = json.loads(status_path(tmp_path / "buffer.db").read_text())
    assert state["failing"] == ["collector"] and state["last_error"]["kind"] == "retry"
    assert state["energy"]["passes"] > 0 and state["watchdog_problem"] is None
    assert daemon.stop() == 0
