"""`infermeter agent records`: what a device buffer holds, through the real root CLI (in process)
on buffers that a real Meter wrote."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from agent.buffer import SCHEMA_VERSION, Buffer
from agent.cli import main
from collector.demo.model import INPUT_NAME, INPUT_WIDTH
from tests.agent.conftest import FakeClock

REASON = "tags.user: longer than 256 characters"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(["agent", "records", *argv])
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def filled(meter, tiny_session, feed) -> Path:
    """Five records, seq 1..5: three good runs, a failed run (seq 4) and a span (seq 5)."""
    session = meter.wrap_onnx(tiny_session, model="resnet50", version="3", tags={"user": "alice"})
    for _ in range(3):
        session.run(None, feed)
    with pytest.raises(Exception):
        session.run(None, {INPUT_NAME: np.ones((2, INPUT_WIDTH), np.float64)})
    with meter.span("my-llm", tags={"user": "bob"}) as span:
        span.set_tokens(input=120, output=512)
    assert meter.flush()
    return meter.buffer_path


def _stream_id(path: Path) -> str:
    with Buffer.open(path) as buffer:
        return buffer.stream_id


def _record_lines(out: str) -> list[list[str]]:
    """The table's record rows, split into their columns (tags last)."""
    lines = out.splitlines()
    assert lines[1].split()[:3] == ["seq", "start", "(UTC)"]
    return [line.split() for line in lines[2:] if line.split()[0].isdigit()]


def test_the_table_lists_every_waiting_record(capsys, filled):
    code, out, err = run(capsys, "--buffer", str(filled))

    assert (code, err) == (0, "")
    summary = out.splitlines()[0]
    assert summary.startswith(
        f"buffer {filled}: stream {_stream_id(filled)}, 5 records waiting (seq 1..5)"
    )
    assert "0 set aside" in summary
    rows = _record_lines(out)
    assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"]
    # The fixed clock: each call starts one 1 µs step after the last read and lasts one step.
    assert rows[0] == [
        "1", "2023-11-14T22:13:20.000+00:00", "resnet50", "3", "1.0", "0.4", "3", "ok",
        "project=search,user=alice",
    ]
    assert rows[3][2:] == ["resnet50", "3", "1.0", "0.4", "2", "error", "project=search,user=alice"]
    assert rows[4][2:] == ["my-llm", "1.0", "0.4", "0", "ok", "project=search,user=bob"]
    assert "--limit" not in out


def test_json_gives_the_buffer_stats_and_every_field_of_each_record(capsys, filled):
    code, out, err = run(capsys, "--buffer", str(filled), "--json")

    assert (code, err) == (0, "")
    report = json.loads(out)
    assert set(report) == {"buffer", "records"}
    assert report["buffer"] == {
        "path": str(filled), "stream_id": _stream_id(filled), "schema_version": SCHEMA_VERSION, "records": 5,
        "first_seq": 1, "last_seq": 5, "rejected": 0, "file_bytes": report["buffer"]["file_bytes"],
    }
    assert report["buffer"]["file_bytes"] > 0
    records = report["records"]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0] == {
        "seq": 1, "kind": 1, "model": "resnet50", "model_version": "3", "runtime": "onnxruntime",
        "execution_provider": "CPUExecutionProvider",
        "start_unix_ns": FakeClock.WALL_START_NS + 1_000, "duration_ns": 1_000, "cpu_time_ns": 400,
        "batch_size": 3, "input_bytes": 3 * 16 * 4, "output_bytes": 3 * 4 * 4,
        "input_tokens": 0, "output_tokens": 0, "status": 1, "error_type": "",
        "tags": {"project": "search", "user": "alice"}, "pid": os.getpid(), "count": 1,
        "gpu_time_ns": 0, "energy": [], "memory": None, "server": None,
    }
    assert (records[3]["status"], records[3]["error_type"]) == (2, "InvalidArgument")
    span = records[4]
    assert (span["kind"], span["model"], span["runtime"]) == (2, "my-llm", "span")
    assert (span["input_tokens"], span["output_tokens"]) == (120, 512)
    assert all("reason" not in r for r in records)


def test_limit_shows_the_first_records_and_says_there_are_more(capsys, filled):
    code, out, _ = run(capsys, "--buffer", str(filled), "--limit", "2")
    assert code == 0
    assert [row[0] for row in _record_lines(out)] == ["1", "2"]
    assert out.splitlines()[-1] == "... first 2 shown; --limit N for more"

    code, out, _ = run(capsys, "--buffer", str(filled), "--limit", "2", "--json")
    report = json.loads(out)
    assert [r["seq"] for r in report["records"]] == [1, 2]
    assert report["buffer"]["records"] == 5


@pytest.mark.parametrize("limit", ["0", "-1", "many"])
def test_a_bad_limit_is_a_usage_error(capsys, filled, limit):
    code, out, err = run(capsys, "--buffer", str(filled), "--limit", limit)
    assert (code, out) == (2, "")
    assert "--limit" in err


def test_rejected_shows_the_records_set_aside_with_their_reasons(capsys, filled):
    with Buffer.open(filled) as buffer:
        assert buffer.reject([2, 4], REASON) == 2

    code, out, _ = run(capsys, "--buffer", str(filled))
    assert code == 0
    assert "3 records waiting (seq 1..5), 2 set aside" in out.splitlines()[0]
    assert [row[0] for row in _record_lines(out)] == ["1", "3", "5"]

    code, out, _ = run(capsys, "--buffer", str(filled), "--rejected")
    assert code == 0
    lines = [line for line in out.splitlines()[2:] if line.split()[0].isdigit()]
    assert [line.split()[0] for line in lines] == ["2", "4"]
    assert all(line.endswith(f"  [{REASON}]") for line in lines)

    code, out, _ = run(capsys, "--buffer", str(filled), "--rejected", "--json")
    report = json.loads(out)
    assert [(r["seq"], r["reason"], r["status"]) for r in report["records"]] == [
        (2, REASON, 1), (4, REASON, 2),
    ]
    assert (report["buffer"]["records"], report["buffer"]["rejected"]) == (3, 2)


def test_an_empty_buffer_lists_nothing(capsys, buffer_path):
    Buffer.open(buffer_path).close()

    code, out, err = run(capsys, "--buffer", str(buffer_path))
    assert (code, err) == (0, "")
    stream = _stream_id(buffer_path)
    size = buffer_path.stat().st_size  # its tables' pages: under 0.1 MB
    assert size < 100_000
    assert out.splitlines() == [
        f"buffer {buffer_path}: stream {stream}, 0 records waiting, 0 set aside, {size / 1e6:.1f} MB"
    ]
    code, out, _ = run(capsys, "--buffer", str(buffer_path), "--json")
    assert json.loads(out)["records"] == []


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("infermeter: ")
    return line


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["table", "json"])
def test_a_missing_buffer_is_one_clear_error_and_creates_nothing(capsys, tmp_path, json_flag):
    path = tmp_path / "nowhere" / "buffer.db"

    code, out, err = run(capsys, "--buffer", str(path), *json_flag)

    assert (code, out) == (1, "")
    assert _one_line_error(err) == f"infermeter: no buffer at {path}"
    assert list(tmp_path.iterdir()) == []


def test_an_empty_file_is_no_buffer_and_stays_empty(capsys, tmp_path):
    path = tmp_path / "buffer.db"
    path.touch()

    code, out, err = run(capsys, "--buffer", str(path))

    assert (code, out) == (1, "")
    assert _one_line_error(err) == f"infermeter: no buffer at {path}"
    assert [p.name for p in tmp_path.iterdir()] == ["buffer.db"] and path.stat().st_size == 0


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_an_sqlite_file_that_is_not_a_buffer_is_a_clear_error_and_stays_as_it_was(capsys, tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.execute("INSERT INTO users VALUES ('alice')")
    conn.commit()
    conn.close()
    before = _files(tmp_path)

    code, out, err = run(capsys, "--buffer", str(path))

    assert (code, out) == (1, "")
    line = _one_line_error(err)
    assert str(path) in line and "not an infermeter buffer" in line
    assert _files(tmp_path) == before  # not switched to WAL, no journal left beside it


@pytest.mark.parametrize(
    "content", [b"not an SQLite database\n" * 100, b"SQLite format 3\x00" + b"\xff" * 84],
    ids=["text", "truncated-header"],
)
def test_a_garbage_file_is_a_clear_error_and_stays_as_it_was(capsys, tmp_path, content):
    path = tmp_path / "buffer.db"
    path.write_bytes(content)

    code, out, err = run(capsys, "--buffer", str(path), "--json")

    assert (code, out) == (1, "")
    line = _one_line_error(err)
    assert line.startswith(f"infermeter: cannot open buffer {path}: ")
    assert _files(tmp_path) == {"buffer.db": content}
