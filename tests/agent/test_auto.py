"""Zero-code metering (agent.auto, `infermeter wrap`): an unmodified app's ONNX Runtime
sessions are metered, in real child processes started the way users start them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.buffer import Buffer
from agent.wrap_cli import AUTOLOAD_DIR, metering_env
from collector.demo.model import INPUT_NAME, INPUT_WIDTH, MODEL_PATH

pytest.importorskip("onnxruntime")

APP = textwrap.dedent(f"""
    import numpy as np
    import onnxruntime
    from onnxruntime import InferenceSession

    class Mine(InferenceSession):  # an app's own subclass: its constructor is the app's
        pass

    session = InferenceSession({str(MODEL_PATH)!r}, providers=["CPUExecutionProvider"])
    assert isinstance(session, onnxruntime.InferenceSession) and isinstance(session, InferenceSession)
    print(type(session).__name__, type(Mine({str(MODEL_PATH)!r})).__name__)
    feed = {{{INPUT_NAME!r}: np.ones((2, {INPUT_WIDTH}), dtype=np.float32)}}
    for _ in range(3):
        assert session.run(None, feed)[0].shape[0] == 2
""")


def wrapped(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    app = tmp_path / "app.py"
    app.write_text(APP)
    infermeter = [sys.executable, "-m", "agent.cli", "wrap", *args, "--", sys.executable, str(app)]
    return subprocess.run(infermeter, capture_output=True, text=True, timeout=120, env=env, check=False)


def test_an_unmodified_apps_sessions_are_metered_with_the_environments_tags(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERMETER_TAGS", "project=search")
    buffer_path = tmp_path / "buffer.db"

    done = wrapped(tmp_path, "--buffer", str(buffer_path), "--tags", "user=alice")

    assert done.returncode == 0, done.stderr
    # What the app created is metered (and passes its isinstance checks); its subclass is its own.
    assert done.stdout.split() == ["MeteredSession", "Mine"]
    with Buffer.open(buffer_path) as buffer:
        records = buffer.read()
    assert len(records) == 3
    assert {(r.model, r.runtime, r.batch_size) for r in records} == {("tiny_mlp", "onnxruntime", 2)}
    assert all(dict(r.tags) == {"project": "search", "user": "alice"} for r in records)


def test_infermeter_auto_0_leaves_a_child_unmetered(tmp_path):
    buffer_path = tmp_path / "buffer.db"
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {**os.environ, **metering_env(os.environ, buffer=buffer_path), "INFERMETER_AUTO": "0"}

    done = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, timeout=120, env=env, check=False)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["InferenceSession", "Mine"]
    assert not buffer_path.exists()


def test_print_env_and_bad_tags(tmp_path):
    shown = subprocess.run(
        [sys.executable, "-m", "agent.cli", "wrap", "--print-env", "--json", "--tags", "team=ml"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    bad = subprocess.run(
        [sys.executable, "-m", "agent.cli", "wrap", "--tags", "no-equals", "--", "true"],
        capture_output=True, text=True, timeout=60, check=False,
    )

    env = json.loads(shown.stdout)
    assert env["INFERMETER_AUTO"] == "1" and env["PYTHONPATH"].split(":")[0] == AUTOLOAD_DIR
    assert env["INFERMETER_TAGS"].endswith("team=ml")
    assert bad.returncode == 2 and "not KEY=VALUE" in bad.stderr
