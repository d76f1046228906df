"""The systemd units: `systemd-analyze verify` and `security --offline` on the units as a package
installs them (a temporary root: the package unpacked, its venv made, the host's own units
beside), the settings the deployment relies on, and the default configs the units read."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from agent.cli import build_parser
from agent.config import load_config
from tests.packaging.conftest import PACKAGING, one, require, run, settings

UNITS = PACKAGING / "systemd"
# `systemd-analyze security` exposure, 0 (locked down) to 10: the line each unit must stay under.
# The agent's is higher by what energy sensing needs (devices for NVML, /proc of the metered
# apps, real user ids for the shared buffer): see the comments in the unit.
MAX_EXPOSURE = {"infermeter-agent.service": 2.5, "infermeter-collector.service": 1.5}


def verify(root: Path, unit: str) -> str:
    require("systemd-analyze")
    result = run("systemd-analyze", "verify", f"--root={root}", "--man=no", f"/lib/systemd/system/{unit}", check=False)
    # verify exits 0 on unknown keys and values it cannot parse: it only warns. Any word is a fault.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("unit", ["infermeter-agent.service", "infermeter-collector.service"])
def test_systemd_analyze_verify_finds_nothing_to_say(installed_collector, unit):
    verify(installed_collector.root, unit)


def test_the_agent_unit_verifies_as_the_agent_package_installs_it(installed_agent):
    verify(installed_agent.root, "infermeter-agent.service")


def test_verify_does_check_the_installed_command(installed_agent, tmp_path):
    """The check above is not empty: without the venv, ExecStart's command is missing."""
    require("systemd-analyze")
    root = tmp_path / "root"
    (root / "lib/systemd/system").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    for unit in ("infermeter-agent.service",):
        (root / "lib/systemd/system" / unit).write_bytes((installed_agent.root / "lib/systemd/system" / unit).read_bytes())
    (root / "usr/bin/infermeter").symlink_to("/opt/infermeter/agent/venv/bin/infermeter")
    result = run("systemd-analyze", "verify", f"--root={root}", "--man=no", "/lib/systemd/system/infermeter-agent.service", check=False)
    assert result.returncode != 0
    assert "/usr/bin/infermeter is not executable" in result.stderr


@pytest.mark.parametrize("unit", sorted(MAX_EXPOSURE))
def test_hardening_keeps_the_exposure_low(installed_collector, unit):
    require("systemd-analyze")
    result = run("systemd-analyze", "security", "--offline=yes", f"--root={installed_collector.root}", "--no-pager", f"/lib/systemd/system/{unit}")
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout + result.stderr)
    assert match, result.stdout[-2000:]
    assert float(match.group(1)) <= MAX_EXPOSURE[unit]


def test_the_agent_unit_is_a_watched_notify_service_that_never_gives_up():
    unit = settings(UNITS / "infermeter-agent.service")
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "ExecStart") == "/usr/bin/infermeter agent run --config /etc/infermeter/agent.toml"
    assert one(unit, "Service", "Restart") == "always"
    assert one(unit, "Unit", "StartLimitIntervalSec") == "0"
    # The watchdog outlasts the longest healthy step of the main loop: a batch waiting the
    # collector's timeout, or a write waiting the buffer's busy timeout (10 s each).
    watchdog_s = int(one(unit, "Service", "WatchdogSec").removesuffix("s"))
    config = load_config(PACKAGING / "agent.toml", env={})
    assert watchdog_s >= 3 * max(config.timeout_s, 10)


@pytest.mark.parametrize(
    ("unit", "user", "state"),
    [("infermeter-agent.service", "infermeter", "infermeter"), ("infermeter-collector.service", "infermeter-collector", "infermeter-collector")],
)
def test_units_run_as_their_static_user_with_no_privilege(unit, user, state):
    service = settings(UNITS / unit)["Service"]
    assert service["User"] == [user] and service["Group"] == [user]
    assert service["StateDirectory"] == [state]
    assert service["CapabilityBoundingSet"] == [""] and service["AmbientCapabilities"] == [""]
    for key in ("NoNewPrivileges", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
                "ProtectControlGroups", "PrivateTmp", "RestrictSUIDSGID", "RestrictNamespaces", "LockPersonality"):
        assert service[key] == ["yes"], key
    assert service["ProtectSystem"] == ["strict"]
    assert service["SystemCallFilter"][0] == "@system-service"
    assert set(service["RestrictAddressFamilies"][0].split()) <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    declared = f"u {user} "
    sysusers = PACKAGING / "sysusers.d" / f"{user}.conf"
    assert any(line.startswith(declared) for line in sysusers.read_text().splitlines())


def test_the_agent_unit_leaves_energy_sensing_open():
    """NVML needs /dev/nvidia*, the memory probe /proc/PID of the app users: neither may be
    closed (PrivateDevices, ProtectClock's implied DeviceAllow, ProtectProc, ProcSubset), and
    no capability stands in for the udev rule that opens the root-only energy counters."""
    service = settings(UNITS / "infermeter-agent.service")["Service"]
    for key in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock", "ProtectProc", "ProcSubset", "PrivateUsers"):
        assert key not in service, key
    rules = (PACKAGING / "udev/70-infermeter-energy.rules").read_text()
    assert 'SUBSYSTEM=="powercap"' in rules and "chown infermeter " in rules


def test_the_agent_can_write_the_rotated_token_where_the_config_keeps_it():
    config = load_config(PACKAGING / "agent.toml", env={})
    service = settings(UNITS / "infermeter-agent.service")["Service"]
    assert f"-{config.token_file.parent}" in service["ReadWritePaths"]
    tmpfiles = (PACKAGING / "tmpfiles.d/infermeter.conf").read_text().splitlines()
    assert f"d {config.token_file.parent} 0700 infermeter infermeter -" in [" ".join(line.split()) for line in tmpfiles]
    # The buffer is in the state directory, the only other place the unit may write.
    assert service["StateDirectory"] == [config.buffer_path.parent.relative_to("/var/lib").as_posix()]


def test_the_collector_env_file_gives_serve_arguments_it_takes():
    values = dict(
        line.split("=", 1) for line in (PACKAGING / "collector.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(values) == {"INFERMETER_DB", "INFERMETER_COLLECTOR_ARGS"}
    assert values["INFERMETER_DB"] == "sqlite:////var/lib/infermeter-collector/collector.db"
    args = shlex.split(values["INFERMETER_COLLECTOR_ARGS"])[0].split()  # systemd unquotes, then $VAR splits
    parsed = build_parser().parse_args(["collector", "serve", *args])
    assert parsed.grpc.startswith("0.0.0.0:") and parsed.http.startswith("127.0.0.1:")
    exec_start = one(settings(UNITS / "infermeter-collector.service"), "Service", "ExecStart")
    assert exec_start == "/usr/bin/infermeter collector serve $INFERMETER_COLLECTOR_ARGS"
