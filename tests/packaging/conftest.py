"""The .deb packages, built once per test session from this work tree, and installed into
temporary roots as their postinst would install them on a host: the static users
(systemd-sysusers --root), the folders (systemd-tmpfiles --root) and the venv (make-venv,
offline, from the wheels the package holds).

The dependencies' wheels come from this environment's installed distributions (wheelhouse.py):
tests may not download. The packages are left uncompressed, to save the time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging import wheelhouse

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
# The host's own units (sysinit.target, network-online.target, ...), which the packaged units
# depend on: systemd-analyze --root looks for them inside the root.
HOST_UNITS = Path("/usr/lib/systemd/system")


def require(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (it comes with the dpkg / systemd Debian packages)")


def run(*args: object, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, check=False, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given, in order (systemd units repeat keys)."""
    sections: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert section is not None, f"{path}: {line!r} before any section"
        section.setdefault(key, []).append(value)
    return sections


def one(unit: dict, section: str, key: str) -> str:
    (value,) = unit[section][key]
    return value


@dataclass(frozen=True)
class Debs:
    agent: Path
    collector: Path
    version: str
    wheelhouse: Path


@pytest.fixture(scope="session")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Debs:
    require("dpkg-deb", "dpkg")
    work = tmp_path_factory.mktemp("debs")
    wheelhouse.make(work / "wheelhouse", extras=("collector",))
    env = {**os.environ, "PYTHON": sys.executable}
    run(
        "bash", PACKAGING / "build-deb.sh", "--wheelhouse", work / "wheelhouse", "--out", work / "out",
        "--python-version", PYTHON_VERSION, "--compression", "none", env=env, cwd=ROOT,
    )
    arch = run("dpkg", "--print-architecture").stdout.strip()
    (agent,) = (work / "out").glob(f"infermeter-agent_*_{arch}.deb")
    (collector,) = (work / "out").glob(f"infermeter-collector_*_{arch}.deb")
    version = agent.name.split("_")[1].rsplit("-", 1)[0]
    return Debs(agent, collector, version, work / "wheelhouse")


@dataclass(frozen=True)
class Installed:
    """A package unpacked into root and set up as its postinst does."""

    root: Path
    kind: str  # agent | collector
    requirement: str

    @property
    def venv(self) -> Path:
        return self.root / "opt/infermeter" / self.kind / "venv"

    def owner(self, name: str) -> tuple[int, int]:
        """The uid and gid of user name, from the root's own /etc/passwd."""
        for line in (self.root / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2]), int(fields[3])
        raise AssertionError(f"no user {name} in {self.root}/etc/passwd")


def make_venv(root: Path, kind: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INFERMETER_HOME": str(root / "opt/infermeter" / kind), "PYTHON": sys.executable}
    return run(root / "usr/lib/infermeter/make-venv", *args, env=env, check=check)


def install(deb: Path, root: Path, kind: str, version: str) -> Installed:
    require("systemd-sysusers", "systemd-tmpfiles")
    if os.geteuid() != 0:
        pytest.skip("the folders a package makes belong to the package's users: making them needs root")
    run("dpkg-deb", "-x", deb, root)
    (root / "etc").mkdir(exist_ok=True)
    run("systemd-sysusers", f"--root={root}", *sorted((root / "usr/lib/sysusers.d").glob("*.conf")))
    run("systemd-tmpfiles", "--create", f"--root={root}", *sorted((root / "usr/lib/tmpfiles.d").glob("*.conf")))
    requirement = f"infermeter[collector]=={version}" if kind == "collector" else f"infermeter=={version}"
    make_venv(root, kind, "build", str(root / "usr/lib/infermeter/wheels"), requirement)
    if HOST_UNITS.is_dir():
        shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    return Installed(root, kind, requirement)


@pytest.fixture(scope="session")
def installed_agent(debs: Debs, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return install(debs.agent, tmp_path_factory.mktemp("agent-root"), "agent", debs.version)


@pytest.fixture(scope="session")
def installed_collector(debs: Debs, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return install(debs.collector, tmp_path_factory.mktemp("collector-root"), "collector", debs.version)
