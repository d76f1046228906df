"""`infermeter demo` as a user runs it: a process that starts a collector and an agent daemon,
meters the bundled model, and prints the cost report. TMPDIR points into the test's own
folder, so what the demo leaves behind there is what it would leave on the user's machine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

REPO_ROOT = Path(__file__).resolve().parents[2]
USERS = ["alice", "bob", "carol"]


def run_demo(tmp_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "demo", *args],
        cwd=REPO_ROOT, env={**os.environ, "TMPDIR": str(tmp_dir)},
        capture_output=True, text=True, timeout=120,
    )


def demo_folders(tmp_dir: Path) -> list[Path]:
    return sorted(tmp_dir.glob("infermeter-demo-*"))


def test_demo_json_reports_every_record_synced_once_and_cleans_up(tmp_path):
    done = run_demo(tmp_path, "--json", "--records", "600")

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    assert (result["records_made"], result["records_synced"]) == (600, 600)
    assert re.fullmatch(r"\d+\.\d+", result["total_cost"]), result["total_cost"]
    assert Decimal(result["total_cost"]) > 0
    report = result["report"]
    assert report["group_by"] == ["model", "device", "tag:user"]
    groups = report["groups"]
    assert sorted(group["key"] for group in groups) == [["tiny-mlp", "demo-device", user] for user in USERS]
    assert [group["inferences"] for group in groups] == [200, 200, 200]
    assert all(group["energy_uj"] > 0 for group in groups)
    # The device's idle capacity and idle energy, shared by the users' inferences.
    assert all(Decimal(group["idle_cost"]) > 0 for group in groups)
    assert sum(Decimal(group["total_cost"]) for group in groups) == Decimal(result["total_cost"])
    assert demo_folders(tmp_path) == []


def test_demo_table_ends_by_saying_nothing_was_lost_or_counted_twice(tmp_path):
    done = run_demo(tmp_path, "--records", "60")

    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().splitlines()[-1] == (
        "60 records made on the device, 60 in the collector: none lost, none counted twice."
    )
    assert all(user in done.stdout for user in USERS)
    assert demo_folders(tmp_path) == []


def test_demo_keep_leaves_the_folder_and_prints_where(tmp_path):
    done = run_demo(tmp_path, "--json", "--records", "30", "--keep")

    assert done.returncode == 0, done.stderr
    (folder,) = demo_folders(tmp_path)
    assert f"demo folder kept (buffer, collector database, logs): {folder}" in done.stderr.splitlines()
    assert {"buffer.db", "collector.db", "agent.toml", "agent.log", "collector.log"} <= {
        path.name for path in folder.iterdir()
    }
    assert json.loads(done.stdout)["records_synced"] == 30


def test_without_the_collector_installed_it_says_what_to_install(tmp_path, monkeypatch, capsys):
    from agent.cli import main

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # as if not installed: find_spec -> None

    assert main(["demo"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "infermeter: the demo needs the collector and ONNX Runtime (sqlalchemy missing):"
        " pip install 'infermeter[all]'\n"
    )
    assert demo_folders(tmp_path) == []
