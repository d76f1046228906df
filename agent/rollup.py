"""Roll-ups and gap records: many usage records summed into a few, keeping every sum that the
collector prices and reports. Pure; agent.compaction does the I/O.

A roll-up stands for the records of one start minute that share every static field (kind,
model, version, runtime, execution provider, tags, status, error type). It keeps their exact
sums: `count` (units), duration, CPU and GPU time, batch sizes, bytes, tokens, and energy per
(domain, sensor, method) with the error bounds added up. The collector prices compute from CPU
and GPU time and energy from energy_uj, both linear, so a roll-up prices as its records did
(each record's cost is rounded to a pico on its own, so the stored sums may differ by up to
half a pico per record). Errors stay apart: an error roll-up has status ERROR and the error
type, and its count is the number of failed calls. Not additive, so not summed: the energy
interval (the longest), the memory peaks (the highest), the pid (kept when all records share
it, else 0). duration_ns is the records' summed duration, not a span of wall time.

A gap record stands for records dropped when even roll-ups do not fit: kind GAP, count the
units they stood for, the `infermeter.lost_records` tag the number of records, and the same
sums as a roll-up, one per hour of starts, so the cost totals still hold and only the detail
(model, tags, minute) is lost. Idle records among them are summed into idle records.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

from agent.record import (
    INT64_MAX,
    MAX_DURATION_NS,
    MAX_ENERGY_SHARES,
    EnergyShare,
    Kind,
    Memory,
    Status,
    UsageRecord,
)

ROLLUP_WINDOW_NS = 60 * 10**9
GAP_WINDOW_NS = 3_600 * 10**9
# Tags of a gap record: why records were lost, and how many ("unknown" when that cannot be told).
GAP_REASON_TAG = "infermeter.gap"
LOST_RECORDS_TAG = "infermeter.lost_records"
BUFFER_FULL = "buffer-full"
CORRUPT_BUFFER = "corrupt-buffer"
# Records that compaction rolls up: one per call. Idle, roll-up and gap records already sum many.
ROLLED_UP_KINDS = frozenset({Kind.INFERENCE, Kind.SPAN})

_SUMMED = (
    "count", "duration_ns", "cpu_time_ns", "gpu_time_ns", "batch_size", "input_bytes",
    "output_bytes", "input_tokens", "output_tokens",
)
_LIMITS = {name: INT64_MAX for name in _SUMMED} | {"duration_ns": MAX_DURATION_NS}


@dataclass(frozen=True, slots=True)
class Summed:
    """A record standing for others, and the seqs of those it replaces (oldest first)."""

    record: UsageRecord
    seqs: tuple[int, ...]
    lost_records: int = 0  # for a gap record: the records it stands for, gap records' own included


@dataclass(slots=True)
class _Sum:
    first: UsageRecord
    seqs: list[int] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_SUMMED, 0))
    energy: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)  # [uj, error_uj, interval]
    memory: list[int] | None = None
    pids: set[int] = field(default_factory=set)
    start_unix_ns: int = INT64_MAX
    lost_records: int = 0

    def fits(self, record: UsageRecord) -> bool:
        if any(self.totals[name] + getattr(record, name) > _LIMITS[name] for name in _SUMMED):
            return False
        keys = self.energy.keys() | {(s.domain, s.sensor, s.method) for s in record.energy}
        if len(keys) > MAX_ENERGY_SHARES:
            return False
        return all(
            parts[0] + share.energy_uj <= INT64_MAX and parts[1] + share.error_uj <= INT64_MAX
            for share in record.energy
            if (parts := self.energy.get((share.domain, share.sensor, share.method))) is not None
        )

    def add(self, record: UsageRecord) -> None:
        self.seqs.append(record.seq)
        for name in _SUMMED:
            self.totals[name] += getattr(record, name)
        for share in record.energy:
            parts = self.energy.setdefault((share.domain, share.sensor, share.method), [0, 0, 0])
            parts[0] += share.energy_uj
            parts[1] += share.error_uj
            parts[2] = max(parts[2], share.interval_ns)
        if record.memory is not None:
            peaks = (record.memory.peak_rss_bytes, record.memory.peak_gpu_memory_bytes,
                     record.memory.model_resident_bytes)
            self.memory = list(peaks) if self.memory is None else list(map(max, self.memory, peaks))
        self.pids.add(record.pid)
        self.start_unix_ns = min(self.start_unix_ns, record.start_unix_ns)
        self.lost_records += _lost_records(record)

    def summed(self, **fields: object) -> Summed:
        """The record standing for the sum, under the smallest seq it replaces."""
        first = self.first
        values = dict(
            seq=min(self.seqs), kind=Kind.ROLLUP, model=first.model, model_version=first.model_version,
            runtime=first.runtime, execution_provider=first.execution_provider, status=first.status,
            error_type=first.error_type, tags=dict(first.tags),
        )
        values.update(fields)
        record = UsageRecord(
            start_unix_ns=self.start_unix_ns, pid=next(iter(self.pids)) if len(self.pids) == 1 else 0,
            energy=tuple(
                EnergyShare(domain, uj, sensor, method, interval_ns, error_uj)
                for (domain, sensor, method), (uj, error_uj, interval_ns) in sorted(self.energy.items())
            ),
            memory=Memory(*self.memory) if self.memory is not None else None,
            **self.totals, **values,
        )
        return Summed(record, tuple(sorted(self.seqs)), self.lost_records)


def _lost_records(record: UsageRecord) -> int:
    if record.kind is Kind.GAP:
        lost = record.tags.get(LOST_RECORDS_TAG, "")
        return int(lost) if lost.isdigit() else 1
    return 1


def static_key(record: UsageRecord) -> Hashable:
    """What a roll-up's records share, but for their start minute."""
    return (
        int(record.kind), record.model, record.model_version, record.runtime,
        record.execution_provider, tuple(sorted(record.tags.items())), int(record.status),
        record.error_type,
    )


def _sums(
    records: Iterable[UsageRecord], key: Callable[[UsageRecord], Hashable], window_ns: int
) -> list[_Sum]:
    """Records summed by (key, start window); a sum that would break a record's limits (an
    int64 counter, 31 days of duration, 16 energy shares) is closed and another one begun."""
    open_sums: dict[Hashable, _Sum] = {}
    closed: list[_Sum] = []
    for record in records:
        group = (key(record), record.start_unix_ns // window_ns)
        current = open_sums.get(group)
        if current is not None and not current.fits(record):
            closed.append(current)
            current = None
        if current is None:
            current = open_sums[group] = _Sum(record)
        current.add(record)
    return closed + list(open_sums.values())


def roll_up(records: Iterable[UsageRecord], *, window_ns: int = ROLLUP_WINDOW_NS) -> list[Summed]:
    """Roll-ups of valid records of ROLLED_UP_KINDS, per start window (a minute) and static
    fields, in the order of their seqs. A group of one is returned too (as a roll-up of one)."""
    sums = _sums(records, static_key, window_ns)
    return sorted((s.summed() for s in sums), key=lambda summed: summed.record.seq)


def _gap_key(record: UsageRecord) -> Hashable:
    # Idle records (count 0) are summed apart, by their tags: they stay idle records.
    return ("idle", tuple(sorted(record.tags.items()))) if record.kind is Kind.IDLE else "gap"


def gap_records(
    records: Iterable[UsageRecord], *, reason: str = BUFFER_FULL, window_ns: int = GAP_WINDOW_NS
) -> list[Summed]:
    """The records that stand for valid records being dropped, per start window (an hour):
    gap records for what had units, idle records for idle energy; in the order of their seqs."""
    summed = []
    for one in _sums(records, _gap_key, window_ns):
        if one.first.kind is Kind.IDLE:
            summed.append(one.summed(kind=Kind.IDLE))
            continue
        tags = {GAP_REASON_TAG: reason, LOST_RECORDS_TAG: str(one.lost_records)}
        summed.append(one.summed(
            kind=Kind.GAP, model="", model_version="", runtime="", execution_provider="",
            status=Status.OK, error_type="", tags=tags,
        ))
    return sorted(summed, key=lambda s: s.record.seq)


def lost_record(*, start_unix_ns: int, lost: int | None, reason: str) -> UsageRecord:
    """A gap record for records lost without their sums (a corrupt file): count is the number
    lost, at least 1 (lost None: unknown, said so in the tag); seq 0, for the buffer to give."""
    return UsageRecord(
        seq=0, kind=Kind.GAP, model="", start_unix_ns=start_unix_ns, duration_ns=0,
        count=max(lost or 0, 1),
        tags={GAP_REASON_TAG: reason, LOST_RECORDS_TAG: "unknown" if lost is None else str(lost)},
    )
