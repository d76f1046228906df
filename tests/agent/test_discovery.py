"""Shadow AI discovery (agent.discovery): real child processes that load ONNX Runtime, metered
and not, found through the real /proc; the edge cases on /proc trees built under tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import cli
from agent.buffer import Buffer
from agent.config import ConfigError, load_config
from agent.discovery import (
    Discovery,
    ProcessSighting,
    ProcScanner,
    Scan,
    ShippedPids,
    WriterLog,
    last_scan,
    runtimes_in,
    shadow_processes,
)
from agent.exporter import InMemoryExporter, export
from agent.record import Kind, Status, UsageRecord
from collector.demo.model import MODEL_PATH

pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[2]

# A child that loads ONNX Runtime, runs the demo model (metered when told a buffer), says
# "ready" and waits for its stdin to close.
_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
    feed = {"features": np.ones((2, 16), dtype=np.float32)}
    if len(sys.argv) > 2:
        from agent import Meter
        meter = Meter(sys.argv[2])
        meter.wrap_onnx(session, model="tiny").run(None, feed)
        meter.close()
    else:
        session.run(None, feed)
    print("ready", flush=True)
    sys.stdin.read()
""")
_PLAIN_CHILD = "import sys; print('ready', flush=True); sys.stdin.read()"


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for child in started:
        child.stdin.close()
        child.wait(timeout=10)


def _start(children: list[subprocess.Popen], *args: str) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    children.append(child)
    assert child.stdout.readline().strip() == "ready"
    return child


def test_finds_the_unmetered_onnxruntime_process_and_not_the_metered_one(tmp_path, children):
    buffer_path = tmp_path / "buffer.db"
    Buffer.open(buffer_path).close()
    script = tmp_path / "serve.py"
    script.write_text(_CHILD)
    metered = _start(children, str(script), str(MODEL_PATH), str(buffer_path))
    shadow = _start(children, str(script), str(MODEL_PATH))
    plain = _start(children, "-c", _PLAIN_CHILD)
    reports: list[Scan] = []
    with Buffer.open(buffer_path) as buffer:
        discovery = Discovery(
            buffer, ProcScanner(), WriterLog(keep_s=600), interval_s=60, recent_s=600, report=reports.append,
        )
        scan = discovery.run_once()
        assert discovery.run_once() is None  # not due again for interval_s
        kept, writers = last_scan(buffer)

    found = {p.pid: p for p in scan.shadow}
    assert shadow.pid in found
    assert metered.pid not in found
    assert plain.pid not in found
    assert scan.runtime_processes >= 2  # the metered child has the runtime loaded too
    process = found[shadow.pid]
    assert process.runtimes == ("onnxruntime",)
    assert process.user and process.uid == os.getuid()
    assert process.cmdline == f"{sys.executable} {script} {MODEL_PATH}"
    assert process.rss_bytes > 10 * 2**20  # Python with numpy and ONNX Runtime
    assert process.cpu_time_ns > 0 and process.last_record_unix_ns == 0
    assert reports == [scan] and kept == scan
    assert writers.get(metered.pid, 0) > 0


def test_a_process_that_stops_metering_becomes_shadow_after_recent_s():
    log = WriterLog(keep_s=100)
    pid = 4321
    log.note(pid, 1_000 * 10**9)
    me = ProcessSighting(pid, 500 * 10**9, "python", "python", 0, "root", ("onnxruntime",), 1, 2)
    kwargs = {"previous": {}, "gpu_memory": {}}
    assert shadow_processes([me], log, now_unix_ns=1_050 * 10**9, recent_s=100, **kwargs) == []
    late = shadow_processes([me], log, now_unix_ns=1_200 * 10**9, recent_s=100, **kwargs)
    assert [p.last_record_unix_ns for p in late] == [1_000 * 10**9]
    # The same pid, reused by a process started after that record: it never metered.
    reused = ProcessSighting(pid, 1_100 * 10**9, "python", "python", 0, "root", ("onnxruntime",), 1, 2)
    again = shadow_processes([reused], log, now_unix_ns=1_150 * 10**9, recent_s=100, **kwargs)
    assert [p.last_record_unix_ns for p in again] == [0]


def _fake_proc(root: Path, pid: int, *, maps: str, comm: str = "python3", utime: int = 100, stime: int = 50,
               start: int = 1000, uid: int = 0, rss_kb: int = 2048, readable: bool = True,
               vsize: int = 10**8) -> None:
    base = root / str(pid)
    base.mkdir(parents=True)
    fields = ["S", *["0"] * 10, str(utime), str(stime), *["0"] * 6, str(start), str(vsize)]
    (base / "stat").write_text(f"{pid} ({comm}) {' '.join(fields)}\n")
    (base / "comm").write_text(comm + "\n")
    (base / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nVmRSS:\t{rss_kb} kB\n")
    (base / "cmdline").write_bytes(b"\0".join(part.encode() for part in (comm, "serve.py", "--tag=\x1b[31mred")) + b"\0")
    (base / "maps").write_text(maps)
    if not readable:
        (base / "maps").chmod(0)


def test_scanner_on_a_built_proc_tree(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "stat").write_text("cpu 1 2 3\nbtime 1700000000\n")
    lib = "7f00-7f01 r-xp 00000000 08:01 42 /usr/lib/python3/site-packages/{}\n"
    _fake_proc(proc, 10, maps=lib.format("onnxruntime/capi/onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so"))
    _fake_proc(proc, 11, maps=lib.format("torch/lib/libtorch_cpu.so") + lib.format("tensorrt/libnvinfer.so.10"))
    _fake_proc(proc, 12, maps="", comm="tritonserver")
    _fake_proc(proc, 13, maps=lib.format("libc.so.6") + "7f00-7f01 rw-p 00000000 00:00 0 [heap]\n")
    (proc / "self").mkdir()
    scanner = ProcScanner(proc, own_pid=1)
    found = {s.pid: s for s in scanner.scan()}

    assert {pid: s.runtimes for pid, s in found.items()} == {
        10: ("onnxruntime",), 11: ("tensorrt", "pytorch"), 12: ("triton",),
    }
    ticks = os.sysconf("SC_CLK_TCK")
    assert found[10].start_unix_ns == 1_700_000_000 * 10**9 + 1000 * 10**9 // ticks
    assert found[10].cpu_time_ns == 150 * 10**9 // ticks
    assert found[10].rss_bytes == 2048 * 1024 and found[10].user == "root"
    assert found[10].cmdline == "python3 serve.py --tag= [31mred"  # no control characters

    # A process that loads a runtime later: its maps are read again once its virtual size moves.
    (proc / "13" / "maps").write_text(lib.format("libc.so.6") + lib.format("onnxruntime/capi/libonnxruntime.so.1.17.0"))
    assert 13 not in {s.pid for s in scanner.scan()}
    (proc / "13" / "stat").write_text(f"13 (python3) S {'0 ' * 10}100 50 {'0 ' * 6}1000 {2 * 10**8}\n")
    assert {s.pid: s.runtimes for s in scanner.scan()}[13] == ("onnxruntime",)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_processes_are_counted(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "stat").write_text("btime 1700000000\n")
    _fake_proc(proc, 20, maps="x /opt/libonnxruntime.so.1.17\n", readable=False)
    scanner = ProcScanner(proc, own_pid=1)
    assert scanner.scan() == [] and scanner.unreadable == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_a_daemon_without_ptrace_rights_counts_other_users_processes_as_unreadable(children):
    shadow = _start(children, "-c", _CHILD, str(MODEL_PATH))  # root's
    code = (  # imports first: the interpreter's own files may be out of nobody's reach
        "import os; from agent.discovery import ProcScanner; scanner = ProcScanner()\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "found = scanner.scan(); print(len(found), scanner.unreadable)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
    )
    found, unreadable = map(int, result.stdout.split())
    assert found == 0 and unreadable >= 1  # the root child among them
    assert shadow.poll() is None


def _maps(*paths: str) -> bytes:
    return "".join(f"7f00-7f01 r-xp 00000000 08:01 {i} {path}\n" for i, path in enumerate(paths)).encode()


def test_runtime_names_match_library_files_only():
    assert runtimes_in(_maps("/opt/ort/lib/libonnxruntime.so.1.17.0")) == ("onnxruntime",)
    assert runtimes_in(_maps("/usr/lib/libtritonserver.so", "/usr/lib/libnvinfer_plugin.so.8")) == ("tensorrt", "triton")
    assert runtimes_in(_maps("/home/me/onnxruntime-notes.txt", "/usr/lib/libtorchaudio_helper.txt", "/opt/libtorch/x")) == ()


def test_cpu_rate_between_two_scans(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "stat").write_text("btime 1700000000\n")
    _fake_proc(proc, 30, maps="x /opt/libonnxruntime.so\n", utime=0, stime=0)
    ticks = os.sysconf("SC_CLK_TCK")
    now = [1_800_000_000 * 10**9]
    with Buffer.open(tmp_path / "buffer.db") as buffer:
        discovery = Discovery(
            buffer, ProcScanner(proc, own_pid=1), WriterLog(keep_s=60), interval_s=10, recent_s=60,
            gpu_memory=lambda: {30: 5 * 2**20}, clock=lambda: now[0], monotonic=lambda: now[0] / 1e9,
        )
        assert discovery.run_once().shadow[0].cpu_ns_per_s == 0
        # Half a core over the next 10 s.
        (proc / "30" / "stat").write_text(f"30 (python3) S {'0 ' * 10}{5 * ticks} 0 {'0 ' * 6}1000 {10**8}\n")
        now[0] += 10 * 10**9
        process = discovery.run_once().shadow[0]
    assert process.cpu_ns_per_s == 500_000_000
    assert process.gpu_memory_bytes == 5 * 2**20


def test_pids_of_records_shipped_before_a_look_still_count(tmp_path):
    start = time.time_ns()
    log = WriterLog(keep_s=600)
    exporter = ShippedPids(InMemoryExporter(), log)
    with Buffer.open(tmp_path / "buffer.db") as buffer:
        record = UsageRecord(
            seq=1, kind=Kind.INFERENCE, model="m", start_unix_ns=start, duration_ns=5, status=Status.OK, pid=4242,
        )
        export(exporter, buffer.stream_id, [record])
        log.read_buffer(buffer)  # the buffer never held it
    assert log.last_record_unix_ns(4242) == start + 5
    # Forgotten once older than keep_s.
    stale = WriterLog(keep_s=600)
    stale.note(4242, start - 601 * 10**9)
    with Buffer.open(tmp_path / "buffer.db") as buffer:
        stale.read_buffer(buffer)
    assert stale.last_record_unix_ns(4242) == 0


def test_agent_shadow_cli_prints_the_kept_scan(tmp_path, children, capsys):
    buffer_path = tmp_path / "buffer.db"
    assert cli.main(["agent", "shadow", "--buffer", str(buffer_path)]) == 1  # no buffer
    Buffer.open(buffer_path).close()
    assert cli.main(["agent", "shadow", "--buffer", str(buffer_path)]) == 1
    assert "no discovery scan" in capsys.readouterr().err
    shadow = _start(children, "-c", _CHILD, str(MODEL_PATH))
    with Buffer.open(buffer_path) as buffer:
        Discovery(buffer, ProcScanner(), WriterLog(keep_s=60), interval_s=60, recent_s=60).run_once()

    assert cli.main(["agent", "shadow", "--buffer", str(buffer_path), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert shadow.pid in [p["pid"] for p in answer["shadow"]]
    assert cli.main(["agent", "shadow", "--buffer", str(buffer_path), "--scan"]) == 0
    text = capsys.readouterr().out
    assert f"{shadow.pid:>7}" in text and "onnxruntime" in text


def test_discovery_settings_come_from_the_config_file(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text("[discovery]\nenabled = false\ninterval_s = 30\nrecent_s = 120\n")
    config = load_config(path, env={})
    assert (config.discovery_enabled, config.discovery_interval_s, config.discovery_recent_s) == (False, 30.0, 120.0)
    assert load_config(None, env={}).discovery_enabled  # on by default
    for text, message in (
        ("[discovery]\ninterval_s = 0.5\n", "discovery.interval_s must be at least 1"),
        ("[discovery]\nrecent_s = -1\n", "discovery.recent_s must not be negative"),
        ("[discovery]\nevery = 5\n", "unknown key discovery.every"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config(path, env={})
