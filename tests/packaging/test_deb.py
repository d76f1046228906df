"""The .deb packages hold what a host needs, where Debian looks for it: `dpkg-deb -c` (the files)
and `dpkg-deb -I` (control, conffiles, maintainer scripts)."""

from __future__ import annotations

import os
import re
import shutil
import sys

import pytest

from tests.packaging.conftest import PACKAGING, PYTHON_VERSION, ROOT, run

AGENT_FILES = {
    "./lib/systemd/system/infermeter-agent.service",
    "./usr/lib/sysusers.d/infermeter.conf",
    "./usr/lib/tmpfiles.d/infermeter.conf",
    "./lib/udev/rules.d/70-infermeter-energy.rules",
    "./etc/infermeter/agent.toml",
    "./usr/lib/infermeter/make-venv",
    "./usr/share/doc/{package}/copyright",
}
COLLECTOR_FILES = {
    "./lib/systemd/system/infermeter-collector.service",
    "./usr/lib/sysusers.d/infermeter-collector.conf",
    "./usr/lib/tmpfiles.d/infermeter-collector.conf",
    "./etc/infermeter/collector.env",
}
AGENT_DEPENDENCIES = {"grpcio", "protobuf", "psutil"}
COLLECTOR_DEPENDENCIES = {"aiohttp", "sqlalchemy", "alembic", "psycopg", "psycopg_binary"}


def contents(deb) -> dict[str, tuple[str, str, str]]:
    """path -> (mode string, owner/group, link target or "")."""
    entries = {}
    for line in run("dpkg-deb", "-c", deb).stdout.splitlines():
        mode, owner, _size, _date, _time, path, *link = line.split(maxsplit=6)
        entries[path] = (mode, owner, link[0].removeprefix("-> ") if link else "")
    return entries


def control(deb) -> dict[str, str]:
    fields = {}
    for line in run("dpkg-deb", "-f", deb).stdout.splitlines():
        if not line.startswith(" "):
            key, _, value = line.partition(": ")
            fields[key] = value
    return fields


def wheel_names(entries) -> set[str]:
    return {
        path.rsplit("/", 1)[1].split("-")[0].lower()
        for path in entries
        if path.startswith("./usr/lib/infermeter/wheels/") and path.endswith(".whl")
    }


@pytest.mark.parametrize("kind", ["agent", "collector"])
def test_units_configs_users_folders_and_the_entry_point_are_where_debian_looks(debs, kind):
    deb = getattr(debs, kind)
    package = f"infermeter-{kind}"
    entries = contents(deb)
    expected = {path.format(package=package) for path in AGENT_FILES}
    if kind == "collector":
        expected |= COLLECTOR_FILES
    assert expected <= entries.keys(), expected - entries.keys()
    assert entries["./usr/bin/infermeter"] == ("lrwxrwxrwx", "root/root", f"/opt/infermeter/{kind}/venv/bin/infermeter")
    assert entries["./usr/lib/infermeter/make-venv"][0] == "-rwxr-xr-x"
    # dpkg-deb --root-owner-group: nothing in a package belongs to the build machine's users.
    assert {owner for _, owner, _ in entries.values()} == {"root/root"}
    if kind == "collector":
        assert entries["./etc/infermeter/collector.env"][0] == "-rw-------"  # may hold a DB password


def test_the_agent_package_carries_the_agent_dependencies_only(debs):
    agent = wheel_names(contents(debs.agent))
    assert {"infermeter", *AGENT_DEPENDENCIES} <= agent
    assert not agent & COLLECTOR_DEPENDENCIES
    assert not any("collector" in path for path in contents(debs.agent) if not path.endswith(".whl"))
    collector = wheel_names(contents(debs.collector))
    assert {"infermeter", *AGENT_DEPENDENCIES, *COLLECTOR_DEPENDENCIES} <= collector


@pytest.mark.parametrize("kind", ["agent", "collector"])
def test_configs_under_etc_are_conffiles(debs, kind):
    deb = getattr(debs, kind)
    conffiles = run("dpkg-deb", "-I", deb, "conffiles").stdout.split()
    expected = ["/etc/infermeter/agent.toml"] + (["/etc/infermeter/collector.env"] if kind == "collector" else [])
    assert conffiles == expected
    assert {path.removeprefix(".") for path in contents(deb) if path.startswith("./etc/") and not path.endswith("/")} == set(expected)


def test_control_fields_pin_the_python_the_wheels_were_chosen_for(debs):
    major, minor = PYTHON_VERSION.split(".")
    arch = run("dpkg", "--print-architecture").stdout.strip()
    agent = control(debs.agent)
    assert agent["Package"] == "infermeter-agent" and agent["Architecture"] == arch
    assert agent["Version"] == f"{debs.version}-1"
    depends = [part.strip() for part in agent["Depends"].split(",")]
    assert f"python3 (>= {major}.{minor})" in depends and f"python3 (<< {major}.{int(minor) + 1})" in depends
    assert "python3-venv" in depends
    collector = control(debs.collector)
    # One host runs one of them: both own /usr/bin/infermeter, and the collector's holds the agent.
    assert agent["Conflicts"] == agent["Replaces"] == "infermeter-collector"
    assert collector["Conflicts"] == collector["Replaces"] == collector["Provides"] == "infermeter-agent"


@pytest.mark.parametrize("kind", ["agent", "collector"])
def test_maintainer_scripts_are_filled_in_and_parse(debs, kind, tmp_path):
    deb = getattr(debs, kind)
    run("dpkg-deb", "-e", deb, tmp_path / "DEBIAN")
    for script in ("postinst", "prerm", "postrm"):
        path = tmp_path / "DEBIAN" / script
        assert os.access(path, os.X_OK)
        text = path.read_text()
        assert not re.search(r"@[A-Z_]+@", text), f"{script}: placeholder left"
        run("sh", "-n", path)
    postinst = (tmp_path / "DEBIAN/postinst").read_text()
    requirement = "infermeter[collector]" if kind == "collector" else "infermeter"
    assert f"make-venv build /usr/lib/infermeter/wheels '{requirement}=={debs.version}'" in postinst
    assert "systemd-sysusers /usr/lib/sysusers.d/infermeter.conf" in postinst
    assert "systemctl daemon-reload" in postinst and "[ -d /run/systemd/system ]" in postinst
    assert f"INFERMETER_HOME=/opt/infermeter/{kind}" in postinst
    if shutil.which("shellcheck"):
        run("shellcheck", "--shell=sh", *(tmp_path / "DEBIAN" / s for s in ("postinst", "prerm", "postrm")))


def test_a_dependency_without_a_wheel_for_the_target_fails_the_build_not_the_install(debs, tmp_path):
    partial = tmp_path / "wheelhouse"
    partial.mkdir()
    for wheel in debs.wheelhouse.iterdir():
        if not wheel.name.startswith("grpcio-"):
            os.link(wheel, partial / wheel.name)
    result = run(
        "bash", PACKAGING / "build-deb.sh", "--package", "agent", "--wheelhouse", partial,
        "--out", tmp_path / "out", "--compression", "none", check=False, cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode != 0
    assert "grpcio" in result.stderr
    assert not list((tmp_path / "out").glob("*.deb"))


@pytest.mark.parametrize(
    ("kind", "python_version", "expected"),
    [
        ("agent", PYTHON_VERSION, []),
        ("collector", PYTHON_VERSION, []),
        # What pip download --python-version 3.10, run on a newer Python, leaves out.
        ("agent", "3.10", ["tomli>=2.0"]),
        ("collector", "3.10", ["async-timeout<6.0,>=4.0", "tomli>=2.0"]),
    ],
)
def test_missing_wheels_follows_the_target_markers(debs, tmp_path, kind, python_version, expected):
    if python_version == "3.10" and sys.version_info < (3, 11):
        pytest.skip("the packages here were built for Python 3.10 itself")
    run("dpkg-deb", "-x", getattr(debs, kind), tmp_path)
    requirement = "infermeter[collector]" if kind == "collector" else "infermeter"
    result = run(
        sys.executable, PACKAGING / "missing-wheels.py", "--python-version", python_version, "--machine", "x86_64",
        tmp_path / "usr/lib/infermeter/wheels", requirement,
    )
    assert result.stdout.splitlines() == expected
