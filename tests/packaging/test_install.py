"""The packages as installed (conftest.install: what postinst does, inside a temporary root):
the static users, the folders and their modes, the venv made offline from the packaged wheels,
and the device buffer shared between an app user and the agent's user."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.buffer import Buffer, row_from_record
from tests.agent.daemon_process import DaemonProcess, holding_collector, write_config
from tests.agent.test_device_buffer import make_record
from tests.packaging.conftest import ROOT, make_venv, one, run, settings


def passwd(root) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}


def test_sysusers_make_static_system_users_that_cannot_log_in(installed_collector):
    users = passwd(installed_collector.root)
    for name, home in (("infermeter", "/var/lib/infermeter"), ("infermeter-collector", "/var/lib/infermeter-collector")):
        _, _, uid, _, _, user_home, shell = users[name]
        assert int(uid) < 1000, "a system user"
        assert user_home == home and shell.endswith("nologin")
    groups = {line.split(":")[0] for line in (installed_collector.root / "etc/group").read_text().splitlines()}
    assert {"infermeter", "infermeter-collector"} <= groups


def test_tmpfiles_make_the_shared_buffer_folder_and_the_private_token_folder(installed_agent):
    root = installed_agent.root
    uid, gid = installed_agent.owner("infermeter")
    state = (root / "var/lib/infermeter").stat()
    assert (state.st_uid, state.st_gid) == (uid, gid)
    assert stat.S_IMODE(state.st_mode) == 0o2770  # setgid: files stay in the group
    buffer = (root / "var/lib/infermeter/buffer.db").stat()
    assert stat.S_IMODE(buffer.st_mode) == 0o660 and buffer.st_size == 0 and buffer.st_gid == gid
    token = (root / "etc/infermeter/token").stat()
    assert (token.st_uid, stat.S_IMODE(token.st_mode)) == (uid, 0o700)
    assert not (root / "var/lib/infermeter-collector").exists()  # the agent package's only


def test_the_collector_state_folder_is_its_own(installed_collector):
    uid, gid = installed_collector.owner("infermeter-collector")
    state = (installed_collector.root / "var/lib/infermeter-collector").stat()
    assert (state.st_uid, state.st_gid, stat.S_IMODE(state.st_mode)) == (uid, gid, 0o750)


@pytest.fixture
def traversable_root(installed_agent):
    """The agent package's users and folders again, in a root that every user may traverse
    (pytest's own temporary folders are its user's only)."""
    root = Path(tempfile.mkdtemp(prefix="infermeter-root-"))
    try:
        root.chmod(0o755)
        (root / "etc").mkdir()
        run("systemd-sysusers", f"--root={root}", installed_agent.root / "usr/lib/sysusers.d/infermeter.conf")
        run("systemd-tmpfiles", "--create", f"--root={root}", installed_agent.root / "usr/lib/tmpfiles.d/infermeter.conf")
        (root / "var").chmod(0o755)
        (root / "var/lib").chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root)


APPEND = """\
import os, sys
os.umask(int(sys.argv[2], 8))
sys.path.insert(0, sys.argv[3])
from agent.buffer import Buffer, row_from_record
from tests.agent.test_device_buffer import make_record
with Buffer.open(sys.argv[1]) as buffer:
    buffer.append([row_from_record(make_record(1))])
    print(buffer.stats().records)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to the package's users needs root")
def test_an_app_user_in_the_group_and_the_agent_user_share_the_buffer(installed_agent, traversable_root):
    """The buffer the package made, opened first by an app user (a user of its own, umask 022,
    in the infermeter group), then by the agent's user: both append, so neither locked the
    other out (SQLite makes its -wal and -shm files with the database's mode)."""
    uid, gid = installed_agent.owner("infermeter")
    buffer = traversable_root / "var/lib/infermeter/buffer.db"
    app_user = uid + 1000  # in no passwd file: only its numbers and the group count
    counts = []
    for user, group, umask in ((app_user, 4242, "022"), (uid, gid, "007")):
        result = run(
            "setpriv", f"--reuid={user}", f"--regid={group}", f"--groups={gid}", "--",
            sys.executable, "-c", APPEND, buffer, umask, ROOT, cwd="/",
        )
        counts.append(int(result.stdout))
    assert counts == [1, 2]
    assert stat.S_IMODE(buffer.stat().st_mode) == 0o660
    assert {path.stat().st_gid for path in buffer.parent.iterdir()} == {gid}


def test_the_venv_runs_the_packaged_entry_point(installed_agent, debs):
    result = run(installed_agent.venv / "bin/infermeter", "--version")
    assert result.stdout.split() == ["infermeter", debs.version]
    python = installed_agent.venv / "bin/python"
    run(python, "-c", "import grpc, google.protobuf, psutil, agent.daemon")
    # The light install: the collector's dependencies are not there.
    assert run(python, "-c", "import aiohttp", check=False).returncode != 0
    assert (installed_agent.venv.resolve().parent / "venv").is_symlink()


def test_the_collector_venv_has_the_collector(installed_collector):
    run(installed_collector.venv / "bin/python", "-c", "import aiohttp, sqlalchemy, psycopg, collector.server")
    result = run(installed_collector.venv / "bin/infermeter", "collector", "serve", "--help")
    assert "--grpc" in result.stdout


def test_a_failed_venv_build_keeps_the_current_venv(installed_agent):
    home = installed_agent.venv.parent
    current = os.readlink(installed_agent.venv)
    result = make_venv(
        installed_agent.root, "agent", "build", str(installed_agent.root / "usr/lib/infermeter/wheels"),
        "infermeter==999.0", check=False,
    )
    assert result.returncode != 0
    assert os.readlink(installed_agent.venv) == current
    assert sorted(path.name for path in home.iterdir()) == sorted(["venv", current])


def test_a_new_venv_replaces_the_old_and_prune_removes_the_old(installed_agent):
    home = installed_agent.venv.parent
    old = os.readlink(installed_agent.venv)
    make_venv(installed_agent.root, "agent", "build", str(installed_agent.root / "usr/lib/infermeter/wheels"), installed_agent.requirement)
    new = os.readlink(installed_agent.venv)
    assert new != old and (home / old).is_dir()  # kept until the services restarted
    make_venv(installed_agent.root, "agent", "prune")
    assert sorted(path.name for path in home.iterdir()) == sorted(["venv", new])
    subprocess.run([installed_agent.venv / "bin/infermeter", "--version"], check=True, capture_output=True)


def test_the_installed_daemon_speaks_sd_notify_as_its_unit_starts_it(installed_agent, tmp_path):
    """The daemon from the package's venv, with the unit's command line and a fake systemd
    (tests/agent/test_sd_notify.py covers the rules; this covers the packaged program):
    READY=1, watchdog pings, records shipped, STOPPING=1 and exit 0 on SIGTERM."""
    unit = settings(installed_agent.root / "lib/systemd/system/infermeter-agent.service")
    program, *args = shlex.split(one(unit, "Service", "ExecStart"))
    assert (program, args[:3]) == ("/usr/bin/infermeter", ["agent", "run", "--config"])
    with holding_collector() as (ingest, address):
        config = write_config(tmp_path, address, energy=True)
        daemon = DaemonProcess(tmp_path, config, program=[str(installed_agent.venv / "bin/infermeter")])
        try:
            ready_s = daemon.listener.wait_for("READY=1")
            daemon.listener.wait_for("WATCHDOG=1", after_s=ready_s)
            with Buffer.open(tmp_path / "buffer.db") as buffer:
                buffer.append([row_from_record(make_record(i)) for i in range(10)])
                deadline = time.monotonic() + 15
                while buffer.stats().records and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert buffer.stats().records == 0, daemon.log_path.read_text()[-2000:]
            assert ingest.pushes >= 1
            assert daemon.stop() == 0
            assert any(text == "STOPPING=1" for _, text in daemon.listener.messages)
        finally:
            daemon.kill()
