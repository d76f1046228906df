"""The energy tables of the device buffer: what the sampler writes (its passes), and what
attribution reads (intervals, records waiting for their energy) and writes back (each record's
energy and memory, idle records).

Times are CLOCK_MONOTONIC nanoseconds with the boot they belong to. A pass is one round of the
sampler: every sensor's cumulative reading, the machine's busy CPU and GPU time, and the memory
of the processes that meter, all under the pass's time.
"""

from __future__ import annotations

import json
import sqlite3
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.buffer import Buffer, decode_json, encode_energy, encode_memory, encode_tags
from agent.energy.attribution import GPU_PROVIDERS, Activity, Counted, Interval, SensorInfo
from agent.record import EnergyShare, Kind, Memory, Status


@dataclass(frozen=True, slots=True)
class Pass:
    t_ns: int
    energy: Mapping[str, tuple[int, int, int]]  # sensor -> (cumulative energy_uj, error_uj, read_ns)
    cpu_busy_ns: int | None = None  # cumulative, all CPUs
    gpu_busy_ns: int | None = None  # cumulative, all GPUs
    memory: Sequence[tuple[int, int | None, int | None]] = ()  # (pid, rss_bytes, gpu_memory_bytes)


@dataclass(slots=True)
class Waiting:
    """A record waiting for its energy: what attribution needs of it, and what it has so far."""

    activity: Activity
    pid: int
    energy: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)  # (domain, source, method)
    memory: Memory | None = None
    seen: bool = False  # an earlier run attributed time to it already (with energy or not)


def write_passes(buffer: Buffer, boot: int, passes: Iterable[Pass], sensors: Mapping[str, SensorInfo]) -> None:
    energy_rows, activity_rows, memory_rows = [], [], []
    for one in passes:
        for name, (energy_uj, error_uj, read_ns) in one.energy.items():
            info = sensors[name]
            energy_rows.append((boot, one.t_ns, name, info.domain, info.source, energy_uj, error_uj, read_ns))
        activity_rows.append((boot, one.t_ns, one.cpu_busy_ns, one.gpu_busy_ns))
        memory_rows += [(boot, one.t_ns, pid, rss, gpu) for pid, rss, gpu in one.memory]
    with buffer.transaction() as conn:
        conn.executemany("INSERT OR REPLACE INTO energy_samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)", energy_rows)
        conn.executemany("INSERT OR REPLACE INTO activity_samples VALUES (?, ?, ?, ?)", activity_rows)
        conn.executemany("INSERT OR REPLACE INTO memory_samples VALUES (?, ?, ?, ?, ?)", memory_rows)


def sensors_in(buffer: Buffer, boot: int) -> dict[str, SensorInfo]:
    """The sensors a boot's samples name (those of an earlier boot may no longer exist)."""
    rows = buffer.query("SELECT DISTINCT sensor, domain, source FROM energy_samples WHERE boot = ?", (boot,))
    return {name: SensorInfo(name, domain, source) for name, domain, source in rows}


def boots_waiting(buffer: Buffer) -> list[int]:
    """Boots with records waiting for energy or samples not yet used."""
    rows = buffer.query(
        "SELECT boot FROM records WHERE attributed = 0 UNION SELECT boot FROM activity_samples"
    )
    return sorted(boot for (boot,) in rows)


def last_pass_ns(buffer: Buffer, boot: int) -> int | None:
    return buffer.query("SELECT max(t_ns) FROM activity_samples WHERE boot = ?", (boot,))[0][0]


def intervals(buffer: Buffer, boot: int, *, until_ns: int) -> list[Interval]:
    """The intervals between a boot's passes up to until_ns not attributed yet, each starting
    at the pass before it: what save left of the samples is, per sensor, the last one already
    attributed and those after it. A sensor missing from some passes gets one interval across
    the gap, even when the gap spans a done mark."""
    busy = {
        t_ns: (cpu, gpu)
        for t_ns, cpu, gpu in buffer.query(
            "SELECT t_ns, cpu_busy_ns, gpu_busy_ns FROM activity_samples WHERE boot = ? AND t_ns <= ?",
            (boot, until_ns),
        )
    }
    by_span: dict[tuple[int, int], dict[str, Counted]] = defaultdict(dict)
    previous: dict[str, tuple[int, int, int]] = {}
    for sensor, t_ns, energy_uj, error_uj, read_ns in buffer.query(
        "SELECT sensor, t_ns, energy_uj, error_uj, read_ns FROM energy_samples"
        " WHERE boot = ? AND t_ns <= ? ORDER BY sensor, t_ns",
        (boot, until_ns),
    ):
        if sensor in previous:
            last_t_ns, last_uj, last_read_ns = previous[sensor]
            # A counter that went down was reset (a restarted daemon's new sensor object):
            # count from the new value.
            by_span[(last_t_ns, t_ns)][sensor] = Counted(
                max(energy_uj - last_uj, 0), error_uj, read_ns - last_read_ns
            )
        previous[sensor] = (t_ns, energy_uj, read_ns)
    return [
        Interval(t0, t1, energy, _delta(busy, t0, t1, 0), _delta(busy, t0, t1, 1))
        for (t0, t1), energy in sorted(by_span.items())
    ]


def _delta(busy: Mapping[int, tuple], t0: int, t1: int, index: int) -> int | None:
    if t0 not in busy or t1 not in busy or busy[t0][index] is None or busy[t1][index] is None:
        return None
    return max(busy[t1][index] - busy[t0][index], 0)


def waiting(buffer: Buffer, boot: int, *, start_before_ns: int) -> list[Waiting]:
    """A boot's records waiting for energy that started before start_before_ns, with what
    earlier runs already gave them."""
    rows = buffer.query(
        "SELECT seq, start_mono_ns, duration_ns, cpu_time_ns, gpu_time_ns, execution_provider, pid,"
        " energy, memory FROM records WHERE attributed = 0 AND boot = ? AND start_mono_ns < ? ORDER BY seq",
        (boot, start_before_ns),
    )
    found = []
    memories: dict[str, Memory] = {}  # the records of one session mostly start with the same
    for seq, start_ns, duration_ns, cpu_ns, gpu_ns, provider, pid, energy, memory in rows:
        activity = Activity(seq, start_ns, duration_ns, cpu_ns, gpu_ns, provider in GPU_PROVIDERS)
        partial = {
            (domain, source, method): [energy_uj, error_uj]
            for domain, energy_uj, source, method, _, error_uj in decode_json(energy)
        } if energy else {}
        so_far = None
        if memory:
            so_far = memories.get(memory)
            if so_far is None:
                so_far = memories[memory] = Memory(*decode_json(memory))
        found.append(Waiting(activity, pid, partial, so_far, seen=energy is not None))
    return found


def peak_memory(buffer: Buffer, boot: int, records: Sequence[Waiting], *, margin_ns: int) -> None:
    """Set each record's memory to the peak RSS and GPU memory its process had in the samples
    taken over the record's interval (widened by margin_ns, the sampling period), keeping the
    model's resident footprint the record came with. A record still running at the done mark
    keeps its peak so far, and later runs raise it with the samples that come after."""
    if not records:
        return
    low = min(w.activity.start_ns for w in records) - margin_ns
    high = max(w.activity.end_ns for w in records) + margin_ns
    times: dict[int, list[int]] = defaultdict(list)
    sizes: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for pid, t_ns, rss, gpu in buffer.query(
        "SELECT pid, t_ns, rss_bytes, gpu_memory_bytes FROM memory_samples"
        " WHERE boot = ? AND t_ns BETWEEN ? AND ? ORDER BY pid, t_ns",
        (boot, low, high),
    ):
        times[pid].append(t_ns)
        sizes[pid].append((rss or 0, gpu or 0))
    peaks: dict[tuple[int, int, int], Memory] = {}  # records of one sampling interval share one
    for waiting_record in records:
        pid = waiting_record.pid
        if pid not in times:
            continue
        first = bisect_left(times[pid], waiting_record.activity.start_ns - margin_ns)
        last = bisect_right(times[pid], waiting_record.activity.end_ns + margin_ns)
        if first == last:
            continue
        key = (pid, first, last)
        if key not in peaks:
            window = sizes[pid][first:last]
            peaks[key] = (max(rss for rss, _ in window), max(gpu for _, gpu in window))
        # What earlier runs found stays: the samples before their done mark are pruned.
        so_far = waiting_record.memory or Memory()
        rss, gpu = peaks[key]
        waiting_record.memory = Memory(
            max(rss, so_far.peak_rss_bytes), max(gpu, so_far.peak_gpu_memory_bytes), so_far.model_resident_bytes
        )


def save(
    buffer: Buffer,
    boot: int,
    records: Sequence[Waiting],
    *,
    done_ns: int,
    interval_ns: int,
    idle: Mapping[tuple[str, str, str], list[int]],
    idle_span_ns: tuple[int, int],
    unix_offset_ns: int,
    device_tags: Mapping[str, str],
    idle_record_ns: int = 0,
) -> None:
    """Write back one attribution run, in one transaction: the energy of every record given any
    (finished when it ended by done_ns); the idle energy, added to the boot's open idle span,
    which becomes an idle record once it covers idle_record_ns; the boot's attribution mark and
    wall-clock offset; and the samples no longer needed: those before done_ns, but for each
    sensor's last one (the start of its next interval; a sensor missing from the pass at
    done_ns has its last one earlier) and the busy times at those passes."""
    updates = [
        (
            # "[]", not NULL, for none yet: later runs must tell it from a record never seen.
            encode_energy(_shares(w.energy, interval_ns)) or "[]", encode_memory(w.memory),
            1 if w.activity.end_ns <= done_ns else 0, w.activity.seq,
        )
        for w in records
    ]
    with buffer.transaction() as conn:
        conn.executemany("UPDATE records SET energy = ?, memory = ?, attributed = ? WHERE seq = ?", updates)
        span_ns, idle = _open_idle(conn, boot, idle, idle_span_ns)
        if span_ns[1] - span_ns[0] >= idle_record_ns:
            _write_idle(conn, boot, idle, span_ns, interval_ns, unix_offset_ns, device_tags)
        else:
            _keep_idle(conn, boot, idle, span_ns)
        conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(_done_key(boot), str(done_ns)), (_offset_key(boot), str(unix_offset_ns))],
        )
        last_used = conn.execute(
            "SELECT sensor, max(t_ns) FROM energy_samples WHERE boot = ? AND t_ns <= ? GROUP BY sensor",
            (boot, done_ns),
        ).fetchall()
        conn.executemany(
            "DELETE FROM energy_samples WHERE boot = ? AND t_ns < ? AND sensor = ?",
            [(boot, t_ns, sensor) for sensor, t_ns in last_used],
        )
        conn.execute(
            "DELETE FROM activity_samples WHERE boot = ?1 AND t_ns < ?2"
            " AND t_ns NOT IN (SELECT t_ns FROM energy_samples WHERE boot = ?1)",
            (boot, done_ns),
        )
        conn.execute("DELETE FROM memory_samples WHERE boot = ? AND t_ns < ?", (boot, done_ns))


def long_calls(buffer: Buffer, boot: int) -> list[tuple[int, int]]:
    """(pid, since_ns) of the processes that marked a metered call running for long."""
    return buffer.query("SELECT pid, in_flight_since_ns FROM writers WHERE boot = ?", (boot,))


def forget_long_call(buffer: Buffer, boot: int, pid: int) -> None:
    buffer.mark_long_call(boot, pid, None)


def let_go(buffer: Buffer, boot: int, *, ended_before_ns: int) -> int:
    """Mark records that ended before ended_before_ns as done with the energy they have (no
    samples came for them); the number let go."""
    query = "FROM records WHERE attributed = 0 AND boot = ? AND start_mono_ns + duration_ns < ?"
    if not buffer.query(f"SELECT EXISTS (SELECT 1 {query})", (boot, ended_before_ns))[0][0]:
        return 0
    with buffer.transaction() as conn:
        return conn.execute(f"UPDATE records SET attributed = 1 WHERE seq IN (SELECT seq {query})", (boot, ended_before_ns)).rowcount


def close_boot(
    buffer: Buffer, boot: int, *, interval_ns: int, unix_offset_ns: int, device_tags: Mapping[str, str]
) -> int:
    """Mark a past boot's remaining waiting records as done with the energy they have, write
    its open idle span as an idle record, and drop its samples: no more of them will come.
    The records so closed."""
    with buffer.transaction() as conn:
        closed = conn.execute(
            "UPDATE records SET attributed = 1 WHERE attributed = 0 AND boot = ?", (boot,)
        ).rowcount
        span_ns, idle = _open_idle(conn, boot, {}, None)
        if idle:
            _write_idle(conn, boot, idle, span_ns, interval_ns, unix_offset_ns, device_tags)
        for table in ("energy_samples", "activity_samples", "memory_samples"):
            conn.execute(f"DELETE FROM {table} WHERE boot = ?", (boot,))
        conn.execute("DELETE FROM meta WHERE key IN (?, ?, ?)", (_done_key(boot), _offset_key(boot), _idle_key(boot)))
    return closed


def done_until(buffer: Buffer, boot: int) -> int | None:
    rows = buffer.query("SELECT value FROM meta WHERE key = ?", (_done_key(boot),))
    return int(rows[0][0]) if rows else None


def unix_offset_ns(buffer: Buffer, boot: int) -> int | None:
    """Wall minus monotonic time in a boot, as its last attribution run saw it (None before
    any): an earlier boot's monotonic times mean nothing on this boot's clocks."""
    rows = buffer.query("SELECT value FROM meta WHERE key = ?", (_offset_key(boot),))
    return int(rows[0][0]) if rows else None


def _done_key(boot: int) -> str:
    return f"energy_done_until:{boot}"


def _offset_key(boot: int) -> str:
    return f"energy_unix_offset:{boot}"


def _idle_key(boot: int) -> str:
    return f"energy_idle:{boot}"


IdleParts = dict[tuple[str, str, str], list[int]]


def _open_idle(
    conn: sqlite3.Connection, boot: int, idle: Mapping[tuple[str, str, str], list[int]],
    span_ns: tuple[int, int] | None,
) -> tuple[tuple[int, int], IdleParts]:
    """The boot's open idle span with idle (over span_ns) added: its (start, end), its parts."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_idle_key(boot),)).fetchone()
    if row is None:
        return span_ns or (0, 0), {key: list(parts) for key, parts in idle.items()}
    kept = json.loads(row[0])
    parts: IdleParts = {(d, s, m): [e, err] for d, s, m, e, err in kept["parts"]}
    for key, (energy_uj, error_uj) in idle.items():
        total = parts.setdefault(key, [0, 0])
        total[0] += energy_uj
        total[1] += error_uj
    end_ns = span_ns[1] if span_ns is not None else kept["end_ns"]
    return (kept["start_ns"], end_ns), parts


def _keep_idle(conn: sqlite3.Connection, boot: int, idle: IdleParts, span_ns: tuple[int, int]) -> None:
    value = json.dumps({
        "start_ns": span_ns[0], "end_ns": span_ns[1],
        "parts": [[d, s, m, e, err] for (d, s, m), (e, err) in sorted(idle.items())],
    })
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_idle_key(boot), value))


def _write_idle(
    conn: sqlite3.Connection, boot: int, idle: IdleParts, span_ns: tuple[int, int], interval_ns: int,
    unix_offset_ns: int, device_tags: Mapping[str, str],
) -> None:
    conn.execute("DELETE FROM meta WHERE key = ?", (_idle_key(boot),))
    if any(energy for energy, _ in idle.values()):
        conn.execute(_INSERT_IDLE, _idle_row(idle, span_ns, interval_ns, unix_offset_ns, device_tags, boot))


def _shares(parts: Mapping[tuple[str, str, str], list[int]], interval_ns: int) -> list[EnergyShare]:
    return [
        EnergyShare(domain, energy_uj, source, method, interval_ns, error_uj)
        for (domain, source, method), (energy_uj, error_uj) in sorted(parts.items())
        if energy_uj or error_uj
    ]


_INSERT_IDLE = (
    "INSERT INTO records (kind, model, start_unix_ns, duration_ns, status, tags, count, energy,"
    " start_mono_ns, boot, attributed) VALUES (?, '', ?, ?, ?, ?, 0, ?, ?, ?, 1)"
)


def _idle_row(
    idle: Mapping[tuple[str, str, str], list[int]], span_ns: tuple[int, int], interval_ns: int,
    unix_offset_ns: int, device_tags: Mapping[str, str], boot: int,
) -> tuple:
    start_ns, end_ns = span_ns
    return (
        int(Kind.IDLE), start_ns + unix_offset_ns, end_ns - start_ns, int(Status.OK),
        encode_tags(dict(device_tags)), encode_energy(_shares(idle, interval_ns)), start_ns, boot,
    )
