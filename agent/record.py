"""The usage record: one metered unit of work, as both the device and the collector see it.

Integers at the boundaries, units in the names. The collector validates every record it
receives with `validate`; the agent builds records that pass it (checking what users give it,
names and tags, where they give it), and sets aside any record the collector still refuses.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

INT64_MAX = 2**63 - 1
# Plausible wall-clock range for a record's start: a device whose clock says 1970 (no RTC, no
# NTP yet) or 9999 produces records that no period or price book can be matched to.
MIN_START_UNIX_NS = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z
MAX_START_UNIX_NS = 4_102_444_800 * 10**9  # 2100-01-01T00:00:00Z
MAX_DURATION_NS = 31 * 86_400 * 10**9
MAX_TEXT_CHARS = 256
MAX_TAG_KEY_CHARS = 128
MAX_TAGS = 64
MAX_ENERGY_SHARES = 16


class Kind(enum.IntEnum):
    """Values equal infermeter.v1.RecordKind."""

    INFERENCE = 1
    SPAN = 2
    IDLE = 3
    ROLLUP = 4
    GAP = 5


class Status(enum.IntEnum):
    """Values equal infermeter.v1.Status."""

    OK = 1
    ERROR = 2


@dataclass(slots=True)
class EnergyShare:
    domain: str
    energy_uj: int
    sensor: str
    method: str
    interval_ns: int = 0
    error_uj: int = 0


@dataclass(slots=True)
class Memory:
    peak_rss_bytes: int = 0
    peak_gpu_memory_bytes: int = 0
    model_resident_bytes: int = 0


@dataclass(slots=True)
class ServerSide:
    """The record's share of what the inference server reported doing for its model in one
    polling interval (Triton's statistics extension): time queued, and time computing its
    inputs, the model and its outputs; the model's GPU memory on the server (0: not reported).
    source: where the figures came from ("triton-statistics"); method: how the interval's
    totals were split over the records ("batch-share"); interval_ns: the polling interval."""

    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    gpu_memory_bytes: int = 0
    source: str = ""
    method: str = ""
    interval_ns: int = 0

    @property
    def compute_ns(self) -> int:
        return self.compute_input_ns + self.compute_infer_ns + self.compute_output_ns


SERVER_SIDE_COUNTERS = (
    "queue_ns", "compute_input_ns", "compute_infer_ns", "compute_output_ns", "gpu_memory_bytes", "interval_ns",
)


@dataclass(slots=True)
class UsageRecord:
    """Construct with keywords. The codec and the buffer, which make records by the hundred
    thousand, pass them positionally in this order (four times faster than keywords)."""

    seq: int
    kind: Kind
    model: str
    start_unix_ns: int
    duration_ns: int
    model_version: str = ""
    runtime: str = ""
    execution_provider: str = ""
    batch_size: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cpu_time_ns: int = 0
    status: Status = Status.OK
    error_type: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    pid: int = 0
    count: int = 1
    gpu_time_ns: int = 0
    energy: tuple[EnergyShare, ...] = ()
    memory: Memory | None = None
    server: ServerSide | None = None

    @property
    def energy_uj(self) -> int:
        return sum(share.energy_uj for share in self.energy)


class InvalidRecord(ValueError):
    """A record that breaks the protocol's rules; `field` names the offending field."""

    def __init__(self, field: str, reason: str, *, seq: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.seq = seq
        where = f"record seq {seq}: " if seq is not None else ""
        super().__init__(f"{where}{field}: {reason}")

    def at(self, seq: int) -> InvalidRecord:
        return InvalidRecord(self.field, self.reason, seq=seq)


_COUNTERS = (
    "batch_size", "input_bytes", "output_bytes", "input_tokens", "output_tokens",
    "cpu_time_ns", "pid", "count", "gpu_time_ns",
)
_KINDS = frozenset(Kind)
_STATUSES = frozenset(Status)
_TEXTS = ("model", "model_version", "runtime", "execution_provider", "error_type")
_INT_TYPE = {int}
_STR_TYPE = {str}
_DICT_TYPE = {dict}
_KIND_TYPE = {Kind}
_STATUS_TYPE = {Status}
# C0 controls and DEL: invisible in reports, and NUL truncates strings in C-based tools.
_CONTROL = frozenset(chr(c) for c in (*range(0x20), 0x7F))


def _check_int(name: str, value: object, low: int, high: int) -> None:
    # type() and not isinstance(): bools are ints to isinstance, and a bool is never a count.
    if type(value) is not int and not isinstance(value, enum.IntEnum):
        raise InvalidRecord(name, f"must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidRecord(name, f"{value} is outside [{low}, {high}]")


def _check_counter(name: str, value: object) -> None:
    if type(value) is not int or value < 0 or value > INT64_MAX:
        _check_int(name, value, 0, INT64_MAX)


def check_text(name: str, value: object, max_chars: int = MAX_TEXT_CHARS, *, required: bool = False) -> None:
    if type(value) is not str:
        raise InvalidRecord(name, f"must be a string, got {type(value).__name__}")
    if required and not value:
        raise InvalidRecord(name, "must not be empty")
    if len(value) > max_chars:
        raise InvalidRecord(name, f"is {len(value)} characters long; the limit is {max_chars}")
    if not _CONTROL.isdisjoint(value):
        raise InvalidRecord(name, "contains control characters")


def _check_tags(tags: object) -> None:
    if not isinstance(tags, Mapping):
        raise InvalidRecord("tags", "must be a mapping of strings to strings")
    if not tags:
        return
    if len(tags) > MAX_TAGS:
        raise InvalidRecord("tags", f"has {len(tags)} entries; the limit is {MAX_TAGS}")
    for key, value in tags.items():
        check_text("tags", key, MAX_TAG_KEY_CHARS, required=True)
        check_text(f"tags.{key}", value)


def _check_energy(energy: object) -> None:
    if energy == ():
        return
    if not isinstance(energy, tuple) or len(energy) > MAX_ENERGY_SHARES:
        raise InvalidRecord("energy", f"must be a tuple of at most {MAX_ENERGY_SHARES} shares")
    for share in energy:
        for name in ("domain", "sensor", "method"):
            check_text(f"energy.{name}", getattr(share, name), 32, required=True)
        for name in ("energy_uj", "interval_ns", "error_uj"):
            _check_int(f"energy.{name}", getattr(share, name), 0, INT64_MAX)


def _check_fields(record: UsageRecord) -> None:
    _check_int("seq", record.seq, 1, INT64_MAX)
    if record.kind not in _KINDS:
        raise InvalidRecord("kind", f"unknown record kind {record.kind!r}")
    if record.status not in _STATUSES:
        raise InvalidRecord("status", f"unknown status {record.status!r}")
    check_text("model", record.model, required=record.kind in (Kind.INFERENCE, Kind.SPAN))
    for name in _TEXTS[1:]:
        check_text(name, getattr(record, name))
    _check_int("start_unix_ns", record.start_unix_ns, MIN_START_UNIX_NS, MAX_START_UNIX_NS - 1)
    _check_int("duration_ns", record.duration_ns, 0, MAX_DURATION_NS)
    for name in _COUNTERS:
        _check_counter(name, getattr(record, name))
    if record.count == 0 and record.kind is not Kind.IDLE:
        raise InvalidRecord("count", "must be at least 1")
    _check_tags(record.tags)


def _check_extras(record: UsageRecord) -> None:
    _check_energy(record.energy)
    if record.memory is not None:
        for name in ("peak_rss_bytes", "peak_gpu_memory_bytes", "model_resident_bytes"):
            _check_int(f"memory.{name}", getattr(record.memory, name), 0, INT64_MAX)
    if record.server is not None:
        _check_server(record.server)


def _check_server(server: object) -> None:
    if not isinstance(server, ServerSide):
        raise InvalidRecord("server", "must be a ServerSide")
    for name in ("source", "method"):
        check_text(f"server.{name}", getattr(server, name), 32, required=True)
    for name in SERVER_SIDE_COUNTERS:
        _check_int(f"server.{name}", getattr(server, name), 0, INT64_MAX)
    if server.queue_ns + server.compute_ns > INT64_MAX:
        raise InvalidRecord("server", "its times add up past 2^63 - 1 ns")


def _checked(record: UsageRecord, *checks: Callable[[UsageRecord], None]) -> None:
    """Run checks on record; an InvalidRecord they raise names the record's seq."""
    try:
        for check in checks:
            check(record)
    except InvalidRecord as err:
        if err.seq is None and type(record.seq) is int:
            raise err.at(record.seq) from None
        raise


def validate(record: UsageRecord) -> None:
    """Raise InvalidRecord naming the first field that breaks the rules; return None if valid."""
    _checked(record, _check_fields, _check_extras)


def validate_all(records: Sequence[UsageRecord]) -> None:
    """validate() every record, in order: the same verdict and the same first error, faster.

    The collector checks every record it receives. Record by record that is a few dozen Python
    calls each; here the batch is checked column by column, with C-level operations over each
    column (and over the distinct values of the text columns, which repeat), and only a batch
    that is not plainly valid is walked record by record to name the fault. Energy shares,
    memory and server-side figures are checked on the records that carry them."""
    columns = list(zip(*map(_batch_fields_of, records)))
    if not columns:
        return
    if not _plainly_valid(columns):
        for record in records:
            validate(record)
        return
    for record, energy, memory, server in zip(records, columns[-3], columns[-2], columns[-1]):
        if energy or memory is not None or server is not None:
            _checked(record, _check_extras)


# What validate_all reads of each record; _plainly_valid unpacks the columns in this order.
_batch_fields_of = operator.attrgetter(
    "seq", "start_unix_ns", "duration_ns", *_COUNTERS, "kind", "status", *_TEXTS, "tags",
    "energy", "memory", "server",
)
_INTS = 3 + len(_COUNTERS)


def _plainly_valid(columns: list[tuple]) -> bool:
    """True when every record of the batch passes _check_fields; False means "look closer",
    not "invalid" (an idle record with count 0 is valid, tags in a Mapping that is not a dict
    too). Never raises: every comparison is guarded by a type check before it."""
    seqs, starts, durations, *counters = columns[:_INTS]
    kinds, statuses, *texts = columns[_INTS:_INTS + 2 + len(_TEXTS)]
    tags = columns[-4]
    if any(set(map(type, column)) != _INT_TYPE for column in columns[:_INTS]):
        return False
    return (
        min(seqs) >= 1 and max(seqs) <= INT64_MAX
        and min(starts) >= MIN_START_UNIX_NS and max(starts) < MAX_START_UNIX_NS
        and min(durations) >= 0 and max(durations) <= MAX_DURATION_NS
        and min(map(min, counters)) >= 0 and max(map(max, counters)) <= INT64_MAX
        and min(counters[_COUNTERS.index("count")]) >= 1
        and set(map(type, kinds)) == _KIND_TYPE and set(map(type, statuses)) == _STATUS_TYPE
        and all(set(map(type, column)) == _STR_TYPE for column in texts)
        and all(_plain_texts(set(column), MAX_TEXT_CHARS) for column in texts)
        and "" not in set(texts[0])
        and _plain_tags(tags)
    )


def _plain_texts(distinct: set[str], max_chars: int) -> bool:
    return max(map(len, distinct), default=0) <= max_chars and _CONTROL.isdisjoint("".join(distinct))


def _plain_tags(column: tuple) -> bool:
    if set(map(type, column)) != _DICT_TYPE:
        return False
    try:
        tag_sets = set(map(_items, column))
    except TypeError:  # a value that is not hashable, so not a string either
        return False
    keys = {key for tag_set in tag_sets for key, _ in tag_set}
    values = {value for tag_set in tag_sets for _, value in tag_set}
    return (
        max(map(len, tag_sets)) <= MAX_TAGS
        and set(map(type, keys)) <= _STR_TYPE and set(map(type, values)) <= _STR_TYPE
        and "" not in keys
        and _plain_texts(keys, MAX_TAG_KEY_CHARS) and _plain_texts(values, MAX_TEXT_CHARS)
    )


def _items(tags: dict[str, str]) -> tuple:
    return tuple(tags.items())
