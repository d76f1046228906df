"""What `infermeter agent status` shows, gathered without talking to the daemon: from the
buffer (what waits and since when, what compaction did to keep it under its cap) and from the
daemon's status file (agent.status: whether it runs, last sync, last error, energy sensors,
watchdog). As JSON for scripts, or as a table for people.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone
from pathlib import Path

from agent.buffer import Buffer
from agent.status import AgentState, liveness, read_state, status_path

# The status command only reads: it waits for the buffer's lock no longer than this.
_BUSY_TIMEOUT_MS = 2_000


def gather(buffer_path: Path, *, now_unix_ns: int | None = None, proc: Path = Path("/proc")) -> dict:
    """The status of the agent that ships buffer_path. BufferError when there is no buffer."""
    now_ns = time.time_ns() if now_unix_ns is None else now_unix_ns
    with Buffer.open(buffer_path, create=False, busy_timeout_ms=_BUSY_TIMEOUT_MS) as buffer:
        stats = buffer.stats()
        oldest = buffer.query("SELECT start_unix_ns FROM records ORDER BY seq LIMIT 1")
        waiting_for_energy = buffer.query("SELECT count(*) FROM records WHERE attributed = 0")[0][0]
        counters = _counters(buffer)
        usage = _usage(buffer)
    oldest_ns = oldest[0][0] if oldest else None
    path = status_path(buffer_path)
    try:
        state, problem = read_state(path), None
    except ValueError as err:
        state, problem = None, str(err)
    live = liveness(state, proc=proc)
    daemon = {"status": live.word, "running": live.running, "detail": problem or live.detail}
    return {
        "daemon": {**daemon, **(dataclasses.asdict(state) if state is not None else {})},
        "buffer": {
            **dataclasses.asdict(stats),
            "waiting_for_energy": waiting_for_energy,
            "oldest_waiting_unix_ns": oldest_ns,
            "oldest_waiting_age_s": None if oldest_ns is None else max(0.0, (now_ns - oldest_ns) / 1e9),
            "counters": counters,
            "usage": usage,
        },
        "status_file": str(path),
    }


def _counters(buffer: Buffer) -> dict[str, int]:
    """The buffer's counters (compactions, roll-ups, drops, quarantines: `counter:NAME` rows of
    its meta table), whichever this buffer has; none in a buffer that never needed any."""
    rows = buffer.query("SELECT key, value FROM meta WHERE key LIKE 'counter:%' ORDER BY key")
    return {key.removeprefix("counter:"): int(value) for key, value in rows if str(value).lstrip("-").isdigit()}


def _usage(buffer: Buffer) -> dict | None:
    usage = getattr(buffer, "usage", None)  # how full the buffer is, where the buffer can say
    if usage is None:
        return None
    try:
        return dataclasses.asdict(usage())
    except Exception:  # a figure for people: its absence must not hide the rest
        return None


def render(report: dict, *, now_unix_ns: int | None = None) -> str:
    """The report as lines of `label  text`."""
    now_ns = time.time_ns() if now_unix_ns is None else now_unix_ns
    daemon, buffer = report["daemon"], report["buffer"]
    state = AgentState.from_dict(daemon) if "pid" in daemon else None
    lines = [("agent", f"{daemon['status']}: {daemon['detail']}")]
    if state is not None and not daemon["running"]:
        lines.append(("", "(what follows about the daemon is as of its last update)"))
    lines.append(("buffer", _buffer_line(buffer)))
    lines.append(("waiting", _waiting_line(buffer, now_ns)))
    if state is not None:
        lines.append(("collector", state.collector or "-"))
        sync = "never (since the daemon started)" if state.last_sync_unix_ns is None else _at(state.last_sync_unix_ns, now_ns)
        lines.append(("last sync", f"{sync}; {state.shipped:,} records shipped since it started"
                      + (f", {state.rejected:,} refused" if state.rejected else "")))
        lines.append(("last error", _error_line(state, now_ns)))
    counters = buffer.get("counters") or {}
    lines.append(("compaction", ", ".join(f"{name.replace('_', ' ')} {value:,}" for name, value in counters.items())
                  or "nothing compacted or dropped"))
    if state is not None:
        lines.append(("energy", _energy_line(state, now_ns)))
        lines.append(("watchdog", _watchdog_line(state)))
    else:
        lines.append(("status file", report["status_file"]))
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label:<{width}}  {text}".rstrip() for label, text in lines)


def _buffer_line(buffer: dict) -> str:
    size = _bytes(buffer["file_bytes"])
    usage = buffer.get("usage")
    if usage and usage.get("max_bytes"):
        size += f" on disk, {usage['used_bytes'] / usage['max_bytes']:.0%} of its {usage['max_bytes'] / 2**20:.0f} MiB cap"
    return f"{buffer['path']} (stream {buffer['stream_id']}, {size})"


def _waiting_line(buffer: dict, now_ns: int) -> str:
    if not buffer["records"]:
        text = "no records"
    else:
        text = f"{buffer['records']:,} records, the oldest made {_ago((now_ns - buffer['oldest_waiting_unix_ns']) / 1e9)}"
        if buffer["waiting_for_energy"]:
            text += f" ({buffer['waiting_for_energy']:,} waiting for their energy)"
    if buffer["rejected"]:
        text += f"; {buffer['rejected']:,} refused by the collector, set aside (infermeter agent records --rejected)"
    return text


def _error_line(state: AgentState, now_ns: int) -> str:
    error = state.last_error
    if error is None:
        return "none since the daemon started"
    text = f"{_at(error.at_unix_ns, now_ns)}, {error.source}: {error.kind}: {error.message}"
    if error.source in state.failing:
        text += f" (failing since {_at(error.since_unix_ns, now_ns)})"
    else:
        text += " (over)"
    return text


def _energy_line(state: AgentState, now_ns: int) -> str:
    energy = state.energy
    if energy is None:
        return "off"
    names = ", ".join(sensor["name"] for sensor in energy.sensors) or "no sensor"
    last = "no sample yet" if energy.last_pass_unix_ns is None else f"last sample {_at(energy.last_pass_unix_ns, now_ns)}"
    return (f"{names}: {last}; {energy.passes:,} passes, {energy.failed_reads:,} failed reads,"
            f" {energy.write_errors:,} failed writes")


def _watchdog_line(state: AgentState) -> str:
    if state.watchdog_timeout_s is None:
        return "off (not run by systemd with WatchdogSec=)"
    if state.watchdog_problem:
        return f"{state.watchdog_timeout_s:g} s, NOT pinged: {state.watchdog_problem}"
    return f"{state.watchdog_timeout_s:g} s, pinged: healthy"


def _bytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.0f} kB"


def _at(unix_ns: int, now_ns: int) -> str:
    when = datetime.fromtimestamp(unix_ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{when} ({_ago((now_ns - unix_ns) / 1e9)})"


def _ago(seconds: float) -> str:
    if seconds < 0:
        return "in the future (the clock moved)"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"
