"""The daemon's runtime state, kept in a status file next to the buffer, and read back by
`infermeter agent status` without talking to the daemon.

    /var/lib/infermeter/buffer.db               the device buffer
    /var/lib/infermeter/buffer.db.status.json   this file: {"format": 1, "pid": ..., ...}

The daemon (StatusBoard) rewrites the file atomically (a reader sees the old or the new file,
never half of one) when something changes (a failure starts or ends, it stops) and at least
every `refresh_s` (5 s) while its main loop runs, from the main loop itself; it sends the same
news to systemd as a one-line STATUS=. A file rather than a row in the buffer: publishing must
not wait for the buffer's write lock (a stalled buffer is exactly what it has to report), and a
reader needs no write access to SQLite.

Whether the daemon runs is judged from the file alone (liveness): "stopped" when it says so
(it is written on every exit, with the error that ended the daemon, if any); "not running" when
its process is gone (its pid is free or now another process's: the start time in
/proc/PID/stat differs) or the machine restarted since (boot id); "stalled" when the process
is there but the file is older than `stale_after_s` (measured on CLOCK_MONOTONIC, so a wall
clock that jumps cannot fake it): its main loop is stuck, and the systemd watchdog restarts it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from agent import systemd
from agent.boot import boot_key
from agent.files import write_atomically

logger = logging.getLogger(__name__)

FORMAT = 1
REFRESH_S = 5.0
STALE_AFTER_S = 60.0
_STATUS_MAX_CHARS = 200


def status_path(buffer_path: Path) -> Path:
    """The status file of the daemon that ships the buffer at buffer_path."""
    return buffer_path.with_name(buffer_path.name + ".status.json")


@dataclass(slots=True)
class ErrorInfo:
    source: str  # "collector", a task ("Attributor", "Compactor"), or "daemon" (what ended it)
    kind: str  # the collector's answer (retry, auth-failed, too-large) or the exception's class
    message: str
    at_unix_ns: int  # the latest time it happened
    since_unix_ns: int  # when this streak of it began


@dataclass(slots=True)
class EnergyInfo:
    sensors: list[dict[str, str]] = field(default_factory=list)  # name, domain, source
    passes: int = 0
    failed_reads: int = 0
    write_errors: int = 0
    last_pass_unix_ns: int | None = None


@dataclass(slots=True)
class AgentState:
    pid: int
    started_unix_ns: int
    buffer: str = ""
    stream_id: str = ""
    collector: str = ""
    state: str = "running"  # or "stopped"
    boot: int = 0
    pid_start_ticks: int | None = None
    updated_unix_ns: int = 0
    updated_monotonic_ns: int = 0
    stale_after_s: float = STALE_AFTER_S
    last_sync_unix_ns: int | None = None  # the last batch the collector acknowledged
    shipped: int = 0  # records acknowledged since the daemon started
    rejected: int = 0  # records the collector refused, set aside, since it started
    failing: list[str] = field(default_factory=list)  # sources failing now
    last_error: ErrorInfo | None = None
    energy: EnergyInfo | None = None
    watchdog_timeout_s: float | None = None
    watchdog_problem: str | None = None  # why the watchdog is not being pinged

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **dataclasses.asdict(self)}, indent=1)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> AgentState:
        """From a status file's JSON; unknown keys (a newer daemon's) are ignored."""
        values = _known(cls, data)
        if isinstance(values.get("last_error"), dict):
            values["last_error"] = ErrorInfo(**_known(ErrorInfo, values["last_error"]))
        if isinstance(values.get("energy"), dict):
            values["energy"] = EnergyInfo(**_known(EnergyInfo, values["energy"]))
        return cls(**values)


def _known(cls: type, data: Mapping[str, object]) -> dict[str, object]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def read_state(path: Path) -> AgentState | None:
    """The state in the status file at path; None when there is none. BufferError-like
    problems (unreadable, not JSON) raise ValueError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ValueError(f"cannot read the status file {path}: {err.strerror}") from err
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format') if isinstance(data, dict) else None!r}")
        return AgentState.from_dict(data)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path} is not a status file this infermeter can read: {err}") from err


def process_start_ticks(pid: int, *, proc: Path = Path("/proc")) -> int | None:
    """When process pid started, in clock ticks since boot (field 22 of /proc/PID/stat), or
    None if there is no such process (or no /proc)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    try:  # the command name, in parentheses, may hold spaces and parentheses itself
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


class StatusBoard:
    """The daemon's side: keeps its AgentState up to date and publishes it (the status file,
    systemd's STATUS=) from the main loop: refresh() after every step."""

    def __init__(
        self,
        state: AgentState,
        path: Path | None,
        *,
        sampler: object | None = None,
        refresh_s: float = REFRESH_S,
        notify: Callable[[str], object] = systemd.notify,
        wall_ns: Callable[[], int] = time.time_ns,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """sampler: an agent.energy Sampler (its passes, failed_reads, write_errors and infos
        are read), or None without energy."""
        self.state = state
        self._path = path
        self._sampler = sampler
        self.refresh_s = refresh_s
        self._refresh_ns = round(refresh_s * 1e9)
        self._notify = notify
        self._wall_ns = wall_ns
        self._monotonic_ns = monotonic_ns
        self._published_ns: int | None = None
        self._sent_summary = ""
        self._write_failed = False
        if sampler is not None:
            state.energy = EnergyInfo(sensors=[
                {"name": info.name, "domain": info.domain, "source": info.source}
                for info in sampler.infos.values()
            ])

    def shipped(self, records: int, rejected: int) -> None:
        """The collector acknowledged batches this round."""
        self.state.last_sync_unix_ns = self._wall_ns()
        self.state.shipped += records
        self.state.rejected += rejected

    def failed(self, source: str, kind: str, message: str) -> None:
        now_ns = self._wall_ns()
        last = self.state.last_error
        ongoing = source in self.state.failing and last is not None and last.source == source and last.kind == kind
        since_ns = last.since_unix_ns if ongoing else now_ns
        self.state.last_error = ErrorInfo(source, kind, _one_line(message), now_ns, since_ns)
        if not ongoing:
            if source not in self.state.failing:
                self.state.failing.append(source)
            self.refresh(force=True)

    def recovered(self, source: str) -> None:
        if source in self.state.failing:
            self.state.failing.remove(source)
            self.refresh(force=True)

    def watchdog(self, problem: str | None) -> None:
        if problem != self.state.watchdog_problem:
            changed = (problem is None) != (self.state.watchdog_problem is None)
            self.state.watchdog_problem = problem
            if changed:
                self.refresh(force=True)

    def stopped(self, error: BaseException | None = None) -> None:
        """The daemon is on its way out (error: what ended it); publish that, always."""
        self.state.state = "stopped"
        if error is not None:
            now_ns = self._wall_ns()
            self.state.last_error = ErrorInfo("daemon", type(error).__name__, _one_line(str(error)), now_ns, now_ns)
            self.state.failing = ["daemon"]
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> None:
        """Publish the state if forced or due (refresh_s since the last time)."""
        now_ns = self._monotonic_ns()
        self._observe_sampler()
        if not force and self._published_ns is not None and now_ns - self._published_ns < self._refresh_ns:
            return
        self._published_ns = now_ns
        self.state.updated_unix_ns = self._wall_ns()
        self.state.updated_monotonic_ns = now_ns
        self._write()
        summary = self.summary()
        if summary != self._sent_summary:
            self._sent_summary = summary
            self._notify(f"STATUS={summary}")

    def summary(self) -> str:
        """A one-line account for systemd (`systemctl status` shows it)."""
        state = self.state
        if state.state == "stopped":
            text = "stopped"
        elif state.watchdog_problem:
            text = f"stalled: {state.watchdog_problem}"
        elif "collector" in state.failing and state.last_error is not None:
            error = state.last_error if state.last_error.source == "collector" else None
            since = f" since {_clock(error.since_unix_ns)}" if error else ""
            text = {
                "auth-failed": f"the collector refuses the device token{since}; records kept",
                "too-large": f"the collector finds batches too large{since}; sending smaller ones",
            }.get(error.kind if error else "", f"cannot ship to {state.collector}{since}; records kept, retrying")
        elif state.last_sync_unix_ns is None:
            text = f"shipping to {state.collector}: nothing to send yet"
        else:
            text = f"shipping to {state.collector}: last sync {_clock(state.last_sync_unix_ns)}, {state.shipped} records since start"
        others = [source for source in state.failing if source != "collector"]
        if others and state.state != "stopped":
            text += f"; {', '.join(others)} failing"
        if state.energy is not None and state.state != "stopped":
            sources = sorted({sensor["source"] for sensor in state.energy.sensors})
            text += f"; energy: {', '.join(sources) or 'no sensor'}"
        return text[:_STATUS_MAX_CHARS]

    def _observe_sampler(self) -> None:
        if self._sampler is None or self.state.energy is None:
            return
        energy = self.state.energy
        passes = self._sampler.passes
        if passes != energy.passes:
            energy.last_pass_unix_ns = self._wall_ns()
        energy.passes = passes
        energy.failed_reads = self._sampler.failed_reads
        energy.write_errors = self._sampler.write_errors

    def _write(self) -> None:
        if self._path is None:
            return
        try:
            write_atomically(self._path, self.state.to_json())
        except OSError as err:
            if not self._write_failed:
                logger.warning("cannot write the status file %s: %s (retrying)", self._path, err)
            self._write_failed = True
        else:
            self._write_failed = False


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _clock(unix_ns: int) -> str:
    return datetime.fromtimestamp(unix_ns / 1e9, timezone.utc).strftime("%H:%M:%S UTC")


def new_state(**values: object) -> AgentState:
    """The state of a daemon starting now in this process."""
    return AgentState(
        pid=os.getpid(), started_unix_ns=time.time_ns(), boot=boot_key(),
        pid_start_ticks=process_start_ticks(os.getpid()), **values,
    )


@dataclass(frozen=True, slots=True)
class Liveness:
    running: bool
    word: str  # running, stalled, stopped, not running, never started
    detail: str


def liveness(
    state: AgentState | None,
    *,
    now_monotonic_ns: int | None = None,
    boot: int | None = None,
    proc: Path = Path("/proc"),
) -> Liveness:
    """Whether the daemon that wrote state runs, judged without talking to it."""
    if state is None:
        return Liveness(False, "never started", "no status file: the daemon has not run with this buffer")
    if state.state == "stopped":
        error = state.last_error
        ended = f", ended by {error.kind}: {error.message}" if error is not None and error.source == "daemon" else ""
        return Liveness(False, "stopped", f"since {_when(state.updated_unix_ns)}{ended}")
    boot = boot_key() if boot is None else boot
    if boot and state.boot and boot != state.boot:
        return Liveness(False, "not running", f"the machine restarted since its last update ({_when(state.updated_unix_ns)})")
    if not _alive(state, proc):
        return Liveness(False, "not running", f"process {state.pid} is gone (killed or crashed); last update {_when(state.updated_unix_ns)}")
    now_ns = time.monotonic_ns() if now_monotonic_ns is None else now_monotonic_ns
    age_s = (now_ns - state.updated_monotonic_ns) / 1e9
    if age_s > state.stale_after_s:
        return Liveness(
            False, "stalled",
            f"process {state.pid} has not updated its status for {age_s:.0f} s: its main loop is stuck"
            " (the systemd watchdog restarts it)",
        )
    return Liveness(True, "running", f"pid {state.pid}, since {_when(state.started_unix_ns)}")


def _alive(state: AgentState, proc: Path) -> bool:
    ticks = process_start_ticks(state.pid, proc=proc)
    if ticks is not None:
        return state.pid_start_ticks is None or ticks == state.pid_start_ticks
    if proc.is_dir() and (proc / "self").exists():
        return False  # /proc works and the pid is not in it
    try:  # no /proc to read: ask the kernel
        os.kill(state.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _when(unix_ns: int | None) -> str:
    if not unix_ns:
        return "never"
    return datetime.fromtimestamp(unix_ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
