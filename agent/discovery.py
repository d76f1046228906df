"""Shadow AI discovery: processes on the device that have an inference runtime loaded but meter
nothing.

Every interval_s the daemon reads each process's memory map (/proc/<pid>/maps) and looks for the
shared libraries of an inference runtime (RUNTIMES: ONNX Runtime, TensorRT, Triton, PyTorch).
A process with one loaded is *metered* when its pid wrote a record to the device buffer within
the last recent_s (and after the process started: a reused pid does not count); every other one
is a *shadow* process, listed with its user, command, runtimes, resident memory, CPU use
(cumulative, and over the last interval) and GPU memory (NVML, when the energy probe found it).

Who wrote records is learnt cheaply and without gaps: WriterLog reads only the records written
since its last look (by seq) and the long calls in flight (the writers table), each daemon round;
and the daemon's exporter tells it the pids of every batch it ships (ShippedPids), so records
shipped and deleted between two looks count too. Reading a process's maps is most of a scan's
cost (the kernel writes them out), so they are read again only for a process with no runtime
found yet whose virtual size changed since (loading a library changes it).

The last scan is kept in the buffer's meta table (DISCOVERY_KEY, JSON), where
`infermeter agent shadow` reads it; agent.discovery_report sends it to the collector. The /proc
root is injected, so tests run on real processes or a built tree alike.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.buffer import Buffer

if TYPE_CHECKING:
    from agent.exporter import Exporter, PendingExport
    from agent.record import UsageRecord

logger = logging.getLogger(__name__)

DISCOVERY_KEY = "discovery:last"
NS_PER_S = 1_000_000_000
MAX_CMDLINE_CHARS = 256
MAX_COMMAND_CHARS = 64
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
# Runtime -> what its shared libraries' file names start with.
RUNTIMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("onnxruntime", ("libonnxruntime", "onnxruntime_pybind11_state")),
    ("tensorrt", ("libnvinfer",)),
    ("triton", ("libtritonserver",)),
    ("pytorch", ("libtorch",)),
)
_RUNTIME_OF = {prefix.encode(): runtime for runtime, prefixes in RUNTIMES for prefix in prefixes}
# A mapped file whose name starts with one of the prefixes and is a shared object: one pass of
# the regex engine over the whole maps file (a Python loop over its lines costs ten times more).
_LIBRARY = re.compile(
    rb"/(" + b"|".join(re.escape(prefix) for prefix in _RUNTIME_OF) + rb")[^/\n]*\.so[^/\n]*$", re.MULTILINE
)


def runtimes_in(maps: bytes) -> tuple[str, ...]:
    """The runtimes whose libraries a /proc/<pid>/maps text names, in RUNTIMES order."""
    found = {_RUNTIME_OF[match[1]] for match in _LIBRARY.finditer(maps)}
    return tuple(runtime for runtime, _ in RUNTIMES if runtime in found)


@dataclass(frozen=True, slots=True)
class ProcessSighting:
    """A process with an inference runtime loaded, as /proc shows it now. start_unix_ns tells
    a reused pid apart; cpu_time_ns is user + system time since it started."""

    pid: int
    start_unix_ns: int
    command: str
    cmdline: str
    uid: int
    user: str
    runtimes: tuple[str, ...]
    rss_bytes: int
    cpu_time_ns: int


@dataclass(frozen=True, slots=True)
class ShadowProcess:
    """A process that runs an inference runtime and meters nothing. cpu_ns_per_s: CPU time per
    second over the last interval (1e9: one core busy; 0 on the first sighting);
    last_record_unix_ns: when its pid last wrote a record (0: never seen)."""

    pid: int
    start_unix_ns: int
    command: str
    cmdline: str
    uid: int
    user: str
    runtimes: tuple[str, ...]
    rss_bytes: int
    cpu_time_ns: int
    cpu_ns_per_s: int
    gpu_memory_bytes: int
    last_record_unix_ns: int

    def to_json(self) -> dict:
        return {**asdict(self), "runtimes": list(self.runtimes)}


@dataclass(frozen=True, slots=True)
class Scan:
    """One discovery pass: when, what it looked at, and the shadow processes it found.
    unreadable_processes: those whose memory map it may not read (another user's, without
    CAP_SYS_PTRACE): what it cannot tell about."""

    scanned_unix_ns: int
    interval_s: float
    runtime_processes: int
    shadow: tuple[ShadowProcess, ...]
    unreadable_processes: int = 0

    def to_json(self) -> dict:
        return {
            "scanned_unix_ns": self.scanned_unix_ns, "interval_s": self.interval_s,
            "runtime_processes": self.runtime_processes, "unreadable_processes": self.unreadable_processes,
            "shadow": [p.to_json() for p in self.shadow],
        }

    @classmethod
    def from_json(cls, value: Mapping) -> Scan:
        shadow = tuple(ShadowProcess(**{**p, "runtimes": tuple(p["runtimes"])}) for p in value["shadow"])
        return cls(
            value["scanned_unix_ns"], value["interval_s"], value["runtime_processes"], shadow,
            value["unreadable_processes"],
        )


class ProcScanner:
    """Finds the processes with an inference runtime loaded under a /proc root. Processes it
    may not read (another user's, without CAP_SYS_PTRACE) are counted in `unreadable`."""

    def __init__(self, proc: Path = Path("/proc"), *, own_pid: int | None = None) -> None:
        self._proc = proc
        self._own_pid = os.getpid() if own_pid is None else own_pid
        self._ticks_per_s = os.sysconf("SC_CLK_TCK")
        self._boot_unix_ns: int | None = None
        # (pid, start ticks) -> (virtual size when its maps were read, the runtimes found there)
        self._known: dict[tuple[int, int], tuple[int, tuple[str, ...]]] = {}
        self._users: dict[int, str] = {}
        self.unreadable = 0  # in the last scan

    def scan(self) -> list[ProcessSighting]:
        found = []
        alive = set()
        self.unreadable = 0
        for entry in os.scandir(self._proc):
            if not entry.name.isdigit() or int(entry.name) == self._own_pid:
                continue
            sighting = self._look_at(int(entry.name), alive)
            if sighting is not None:
                found.append(sighting)
        self._known = {key: value for key, value in self._known.items() if key in alive}
        return found

    def _look_at(self, pid: int, alive: set[tuple[int, int]]) -> ProcessSighting | None:
        base = self._proc / str(pid)
        try:
            stat = (base / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            start_ticks, vsize = int(fields[19]), int(fields[20])
            key = (pid, start_ticks)
            alive.add(key)
            runtimes = self._runtimes(key, vsize, base)
            if not runtimes:
                return None
            status = _status_fields((base / "status").read_text())
            cmdline = _printable((base / "cmdline").read_bytes().decode(errors="replace").replace("\0", " "))
        except PermissionError:  # another user's: its maps need CAP_SYS_PTRACE
            self.unreadable += 1
            return None
        except (OSError, ValueError, IndexError):  # gone meanwhile
            return None
        uid = int(status.get("Uid", "0").split()[0])
        return ProcessSighting(
            pid=pid,
            start_unix_ns=self._boot_ns() + start_ticks * NS_PER_S // self._ticks_per_s,
            command=_printable(status.get("Name", ""))[:MAX_COMMAND_CHARS],
            cmdline=cmdline[:MAX_CMDLINE_CHARS],
            uid=uid,
            user=self._user(uid),
            runtimes=runtimes,
            rss_bytes=int(status.get("VmRSS", "0 kB").split()[0]) * 1024,
            cpu_time_ns=(int(fields[11]) + int(fields[12])) * NS_PER_S // self._ticks_per_s,
        )

    def _runtimes(self, key: tuple[int, int], vsize: int, base: Path) -> tuple[str, ...]:
        """The runtimes the process has mapped. Its maps are read again only while none was
        found and its virtual size moved (loading a library moves it): reading maps is most
        of a scan's cost. Kernel threads (no virtual memory) map nothing."""
        known = self._known.get(key)
        if known is not None and (known[1] or known[0] == vsize):
            return known[1]
        runtimes = runtimes_in((base / "maps").read_bytes()) if vsize else ()
        if not runtimes and vsize and (base / "comm").read_text().strip() == "tritonserver":
            runtimes = ("triton",)
        self._known[key] = (vsize, runtimes)
        return runtimes

    def _boot_ns(self) -> int:
        if self._boot_unix_ns is None:
            for line in (self._proc / "stat").read_text().splitlines():
                if line.startswith("btime "):
                    self._boot_unix_ns = int(line.split()[1]) * NS_PER_S
                    break
            else:
                raise ValueError(f"{self._proc / 'stat'} has no btime")
        return self._boot_unix_ns

    def _user(self, uid: int) -> str:
        user = self._users.get(uid)
        if user is None:
            try:
                user = pwd.getpwuid(uid).pw_name
            except KeyError:  # a uid without a name (containers)
                user = str(uid)
            self._users[uid] = user
        return user


def _printable(text: str) -> str:
    """text with runs of whitespace and control characters as one space (a process may name
    itself anything; the collector takes no control characters)."""
    return " ".join(_UNPRINTABLE.sub(" ", text).split())


def _status_fields(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key] = value.strip()
    return values


class WriterLog:
    """When each pid last wrote a record to the buffer (unix ns), learnt from what appears
    there and from what is shipped. Forgets pids not heard from for `keep_s`."""

    def __init__(self, *, keep_s: float, clock: Callable[[], int] = time.time_ns) -> None:
        self._keep_ns = round(keep_s * NS_PER_S)
        self._clock = clock
        self._last: dict[int, int] = {}
        self._seen_seq = 0

    def note(self, pid: int, unix_ns: int) -> None:
        if pid > 0 and unix_ns > self._last.get(pid, 0):
            self._last[pid] = unix_ns

    def last_record_unix_ns(self, pid: int) -> int:
        return self._last.get(pid, 0)

    def snapshot(self) -> dict[int, int]:
        return dict(self._last)

    def read_buffer(self, buffer: Buffer) -> None:
        """Note the records written since the last look (by seq) and the long calls running."""
        rows = buffer.query(
            "SELECT pid, max(start_unix_ns + duration_ns), max(seq) FROM records WHERE seq > ? GROUP BY pid",
            (self._seen_seq,),
        )
        for pid, end_unix_ns, seq in rows:
            self.note(pid, end_unix_ns)
            self._seen_seq = max(self._seen_seq, seq)
        now = self._clock()
        for (pid,) in buffer.query("SELECT DISTINCT pid FROM writers"):
            self.note(pid, now)
        cutoff = now - self._keep_ns
        self._last = {pid: at for pid, at in self._last.items() if at >= cutoff}

    def shipped(self, records: Sequence[UsageRecord]) -> None:
        latest: dict[int, int] = {}
        for record in records:
            end = record.start_unix_ns + record.duration_ns
            if end > latest.get(record.pid, 0):
                latest[record.pid] = end
        for pid, end in latest.items():
            self.note(pid, end)


class ShippedPids:
    """An exporter that tells a WriterLog which pids wrote the records of each batch."""

    def __init__(self, exporter: Exporter, log: WriterLog) -> None:
        self._exporter = exporter
        self._log = log

    def prepare(self, stream_id: str, records: Sequence[UsageRecord]) -> object:
        self._log.shipped(records)
        return self._exporter.prepare(stream_id, records)

    def send(self, prepared: object) -> PendingExport:
        return self._exporter.send(prepared)


def shadow_processes(
    sightings: Iterable[ProcessSighting], log: WriterLog, *, now_unix_ns: int, recent_s: float,
    previous: Mapping[tuple[int, int], tuple[int, int]], gpu_memory: Mapping[int, int],
) -> list[ShadowProcess]:
    """The sightings whose pid wrote no record within recent_s of now (or none since the
    process started). previous: (pid, start) -> (cpu_time_ns, scanned_unix_ns) of the last
    scan, for the CPU rate."""
    cutoff = now_unix_ns - round(recent_s * NS_PER_S)
    shadow = []
    for s in sightings:
        last = log.last_record_unix_ns(s.pid)
        if last >= max(cutoff, s.start_unix_ns):
            continue
        before = previous.get((s.pid, s.start_unix_ns))
        rate = 0
        if before is not None and now_unix_ns > before[1]:
            rate = max(s.cpu_time_ns - before[0], 0) * NS_PER_S // (now_unix_ns - before[1])
        shadow.append(ShadowProcess(
            s.pid, s.start_unix_ns, s.command, s.cmdline, s.uid, s.user, s.runtimes, s.rss_bytes,
            s.cpu_time_ns, rate, gpu_memory.get(s.pid, 0), last if last >= s.start_unix_ns else 0,
        ))
    return sorted(shadow, key=lambda p: (-p.cpu_ns_per_s, -p.rss_bytes, p.pid))


class Discovery:
    """The daemon's discovery task: run_once() every round notes who wrote records, and every
    interval_s scans, keeps the scan in the buffer and hands it to `report` (the collector).
    A report that fails is logged; the next scan sends a fresh one."""

    def __init__(
        self,
        buffer: Buffer,
        scanner: ProcScanner,
        log: WriterLog,
        *,
        interval_s: float,
        recent_s: float,
        report: Callable[[Scan], object] | None = None,
        gpu_memory: Callable[[], Mapping[int, int]] | None = None,
        clock: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._buffer = buffer
        self._scanner = scanner
        self.writers = log
        self._interval_s = interval_s
        self._recent_s = recent_s
        self._report = report
        self._gpu_memory = gpu_memory
        self._clock = clock
        self._monotonic = monotonic
        self._next_scan_s = float("-inf")
        self._previous: dict[tuple[int, int], tuple[int, int]] = {}
        self.last_scan: Scan | None = None

    def run_once(self) -> Scan | None:
        """Note new writers; scan when due. The scan made now, or None."""
        self.writers.read_buffer(self._buffer)
        now_s = self._monotonic()
        if now_s < self._next_scan_s:
            return None
        self._next_scan_s = now_s + self._interval_s
        scan = self.scan_now()
        if self._report is not None:
            self._report(scan)
        return scan

    def scan_now(self) -> Scan:
        started_s = time.perf_counter()
        sightings = self._scanner.scan()
        now = self._clock()
        gpu = self._gpu_memory() if self._gpu_memory is not None else {}
        shadow = shadow_processes(
            sightings, self.writers, now_unix_ns=now, recent_s=self._recent_s, previous=self._previous, gpu_memory=gpu
        )
        self._previous = {(s.pid, s.start_unix_ns): (s.cpu_time_ns, now) for s in sightings}
        scan = Scan(now, self._interval_s, len(sightings), tuple(shadow), self._scanner.unreadable)
        keep_scan(self._buffer, scan, self.writers.snapshot())
        logger.debug(
            "discovery: %d processes with a runtime, %d shadow, in %.1f ms",
            len(sightings), len(shadow), (time.perf_counter() - started_s) * 1e3,
        )
        if scan.unreadable_processes and (self.last_scan is None or not self.last_scan.unreadable_processes):
            logger.info(
                "discovery cannot read the memory maps of %d processes of other users: give the agent"
                " CAP_SYS_PTRACE to see whether they run an inference runtime (README, Shadow AI discovery)",
                scan.unreadable_processes,
            )
        self.last_scan = scan
        return scan


def keep_scan(buffer: Buffer, scan: Scan, writers: Mapping[int, int]) -> None:
    """Keep the scan, and when each pid last wrote a record (for `agent shadow --scan`, which
    cannot see the records shipped and deleted since)."""
    document = {**scan.to_json(), "writers": {str(pid): at for pid, at in writers.items()}}
    with buffer.transaction() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (DISCOVERY_KEY, json.dumps(document, separators=(",", ":"))),
        )


def last_scan(buffer: Buffer) -> tuple[Scan, dict[int, int]] | None:
    """The daemon's last scan and the writers it knew of, as kept in the buffer; None before
    the first."""
    value = buffer.meta(DISCOVERY_KEY)
    if not value:
        return None
    document = json.loads(value)
    return Scan.from_json(document), {int(pid): at for pid, at in document.get("writers", {}).items()}
