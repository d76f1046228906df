"""The device buffer: one SQLite file per device, the local bus between app processes and the
daemon.

App processes append records (the Meter's flusher); the daemon reads them in seq order, ships
them and deletes only what the collector acknowledged. WAL lets readers and the single writer
of the moment proceed together; `BEGIN IMMEDIATE` takes the write lock up front so two writers
queue on `busy_timeout` instead of failing half-way; `synchronous=FULL` makes a commit survive
power loss. Seqs come from `INTEGER PRIMARY KEY AUTOINCREMENT`, so they are never reused, and
because SQLite has one writer at a time, the committed seqs are always a gap-free prefix
order-wise: a reader never sees seq N+1 committed before seq N.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.record import EnergyShare, Kind, Memory, Status, UsageRecord
from agent.sqlite_wal import enable_wal

logger = logging.getLogger(__name__)

# A record's columns, as shipped (seq first; an append leaves seq to SQLite).
_RECORD_COLUMNS = (
    "seq", "kind", "model", "model_version", "runtime", "execution_provider", "batch_size",
    "input_bytes", "output_bytes", "input_tokens", "output_tokens", "start_unix_ns",
    "duration_ns", "cpu_time_ns", "status", "error_type", "tags", "pid", "count",
    "gpu_time_ns", "energy", "memory",
)
# Columns an append writes, in the order of the row tuples it takes: the record's, then what
# the device keeps for attributing energy to it (never shipped): its start on CLOCK_MONOTONIC,
# the boot that clock belongs to, and whether attribution is done with it.
APPEND_COLUMNS = (*_RECORD_COLUMNS[1:], "start_mono_ns", "boot", "attributed")
_INSERT_SQL = (
    f"INSERT INTO records ({', '.join(APPEND_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(APPEND_COLUMNS))})"
)

_RECORD_TABLE_BODY = """
    kind INTEGER NOT NULL,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL DEFAULT '',
    runtime TEXT NOT NULL DEFAULT '',
    execution_provider TEXT NOT NULL DEFAULT '',
    batch_size INTEGER NOT NULL DEFAULT 0,
    input_bytes INTEGER NOT NULL DEFAULT 0,
    output_bytes INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    start_unix_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    cpu_time_ns INTEGER NOT NULL DEFAULT 0,
    status INTEGER NOT NULL,
    error_type TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '{}',
    pid INTEGER NOT NULL DEFAULT 0,
    count INTEGER NOT NULL DEFAULT 1,
    gpu_time_ns INTEGER NOT NULL DEFAULT 0,
    energy TEXT,
    memory TEXT
"""

# Each entry moves the schema from version i to i+1 (PRAGMA user_version). Append, never edit.
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, {_RECORD_TABLE_BODY});
    -- Records the collector refused as invalid: kept for inspection, never shipped again.
    CREATE TABLE rejected (
        seq INTEGER PRIMARY KEY, {_RECORD_TABLE_BODY},
        reason TEXT NOT NULL, rejected_unix_ns INTEGER NOT NULL
    );
    """,
    # Energy attribution. Records get their monotonic start and boot; rows that predate this
    # have neither and count as attributed (with no energy). Samples are what the daemon's
    # sampler read (t_ns: the pass, read_ns: the sensor's own reading); writers are app processes with a metered call running for long, which
    # attribution must wait for.
    """
    ALTER TABLE records ADD COLUMN start_mono_ns INTEGER;
    ALTER TABLE records ADD COLUMN boot INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE records ADD COLUMN attributed INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX records_unattributed ON records (seq) WHERE attributed = 0;
    CREATE TABLE energy_samples (
        boot INTEGER NOT NULL, t_ns INTEGER NOT NULL, sensor TEXT NOT NULL,
        domain TEXT NOT NULL, source TEXT NOT NULL, energy_uj INTEGER NOT NULL,
        error_uj INTEGER NOT NULL, read_ns INTEGER NOT NULL, PRIMARY KEY (boot, t_ns, sensor)
    ) WITHOUT ROWID;
    CREATE TABLE activity_samples (
        boot INTEGER NOT NULL, t_ns INTEGER NOT NULL, cpu_busy_ns INTEGER,
        gpu_busy_ns INTEGER, PRIMARY KEY (boot, t_ns)
    ) WITHOUT ROWID;
    CREATE TABLE memory_samples (
        boot INTEGER NOT NULL, t_ns INTEGER NOT NULL, pid INTEGER NOT NULL,
        rss_bytes INTEGER, gpu_memory_bytes INTEGER, PRIMARY KEY (boot, t_ns, pid)
    ) WITHOUT ROWID;
    CREATE TABLE writers (
        boot INTEGER NOT NULL, pid INTEGER NOT NULL, in_flight_since_ns INTEGER NOT NULL,
        PRIMARY KEY (boot, pid)
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class BufferError(Exception):
    """The buffer file cannot be used (newer schema, not a buffer, unreadable)."""


@dataclass(frozen=True, slots=True)
class BufferStats:
    path: str
    stream_id: str
    schema_version: int
    records: int
    first_seq: int | None
    last_seq: int | None
    rejected: int
    file_bytes: int


def encode_tags(tags: dict[str, str]) -> str:
    return json.dumps(tags, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def encode_energy(energy: Sequence[EnergyShare]) -> str | None:
    """[[domain, energy_uj, sensor, method, interval_ns, error_uj], ...] as JSON. Written by
    hand from its parts (the daemon encodes one per record): the texts through json, once
    each, the integers as they are."""
    if not energy:
        return None
    return "[" + ",".join(
        f"[{_json_text(s.domain)},{int(s.energy_uj)},{_json_text(s.sensor)},{_json_text(s.method)},"
        f"{int(s.interval_ns)},{int(s.error_uj)}]"
        for s in energy
    ) + "]"


@functools.lru_cache(maxsize=256)
def _json_text(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def encode_memory(memory: Memory | None) -> str | None:
    if memory is None:
        return None
    return f"[{int(memory.peak_rss_bytes)},{int(memory.peak_gpu_memory_bytes)},{int(memory.model_resident_bytes)}]"


def row_from_record(record: UsageRecord) -> tuple:
    """The append row (APPEND_COLUMNS order) for a record made elsewhere; its seq is ignored.
    It has no monotonic start on this device, so there is nothing to attribute to it."""
    return (
        int(record.kind), record.model, record.model_version, record.runtime,
        record.execution_provider, record.batch_size, record.input_bytes, record.output_bytes,
        record.input_tokens, record.output_tokens, record.start_unix_ns, record.duration_ns,
        record.cpu_time_ns, int(record.status), record.error_type, encode_tags(dict(record.tags)),
        record.pid, record.count, record.gpu_time_ns, encode_energy(record.energy),
        encode_memory(record.memory), None, 0, 1,
    )


_KINDS = {kind.value: kind for kind in Kind}
_STATUSES = {status.value: status for status in Status}


def _records_from_rows(rows: Iterable[Sequence]) -> list[UsageRecord]:
    """Records of buffer rows. Records with the same tags share one decoded dict (records never
    change their tags), so a batch decodes each distinct tag set once."""
    tags_cache: dict[str, dict[str, str]] = {}
    records = []
    for row in rows:
        tags = tags_cache.get(row[16])
        if tags is None:
            tags = tags_cache[row[16]] = json.loads(row[16])
        records.append(_record_from_row(row, tags))
    return records


def _record_from_row(row: Sequence, tags: dict[str, str]) -> UsageRecord:
    (seq, kind, model, model_version, runtime, provider, batch_size, input_bytes, output_bytes,
     input_tokens, output_tokens, start_unix_ns, duration_ns, cpu_time_ns, status, error_type,
     _, pid, count, gpu_time_ns, energy, memory) = row
    return UsageRecord(  # positional, in declaration order: the shipper reads every record
        seq, _KINDS.get(kind, kind), model, start_unix_ns, duration_ns, model_version, runtime,
        provider, batch_size, input_bytes, output_bytes, input_tokens, output_tokens,
        cpu_time_ns, _STATUSES.get(status, status), error_type, tags, pid, count, gpu_time_ns,
        tuple(EnergyShare(*share) for share in json.loads(energy)) if energy else (),
        Memory(*json.loads(memory)) if memory else None,
    )


def _connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE itself.
    conn = sqlite3.connect(
        path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise BufferError(
                f"{path} has buffer schema {version}, newer than this infermeter's "
                f"{SCHEMA_VERSION}: upgrade infermeter on this device"
            )
        if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise BufferError(f"{path} is an SQLite file but not an infermeter buffer")
        for script in MIGRATIONS[version:]:
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
        if version == 0:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('stream_id', ?), ('created_unix_ns', ?)",
                (secrets.token_hex(16), str(time.time_ns())),
            )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if version < SCHEMA_VERSION:
        logger.info("buffer %s: schema %d -> %d", path, version, SCHEMA_VERSION)


class Buffer:
    """One connection to the device buffer. Safe to share between threads (transactions take
    a lock); open one per process."""

    def __init__(self, conn: sqlite3.Connection, path: Path, stream_id: str) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.path = path
        self.stream_id = stream_id

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True, busy_timeout_ms: int = 10_000) -> Buffer:
        """Open (creating and migrating if needed) the buffer at path. create=False, for those
        who only look: BufferError when there is no buffer there (no file, or an empty one),
        and nothing is created."""
        path = Path(path)
        if not create and (not path.is_file() or path.stat().st_size == 0):
            raise BufferError(f"no buffer at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = _connect(path, busy_timeout_ms)
            try:
                _migrate(conn, path)
                # Only once the file is known to be a buffer: WAL is a lasting change to the
                # file, and an SQLite file that is not ours must be left as it was.
                enable_wal(conn)
                stream_id = conn.execute(
                    "SELECT value FROM meta WHERE key = 'stream_id'"
                ).fetchone()[0]
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as err:
            raise BufferError(f"cannot open buffer {path}: {err}") from err
        return cls(conn, path, stream_id)

    def append(self, rows: Iterable[tuple]) -> int:
        """Insert rows (APPEND_COLUMNS order) in one transaction; return the last seq used
        (0 when rows was empty)."""
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return 0
        with self.transaction() as conn:
            conn.executemany(_INSERT_SQL, rows)
            return conn.execute("SELECT last_insert_rowid()").fetchone()[0]

    def read(self, *, after_seq: int = 0, limit: int = 1000, attributed_only: bool = False) -> list[UsageRecord]:
        """Up to limit records with seq > after_seq, in seq order; attributed_only: only those
        before the first record still waiting for its energy (what may be shipped)."""
        bound = " AND seq < (SELECT coalesce(min(seq), 9223372036854775807) FROM records WHERE attributed = 0)"
        cursor = self._conn.execute(
            f"SELECT {', '.join(_RECORD_COLUMNS)} FROM records WHERE seq > ?"
            f"{bound if attributed_only else ''} ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return _records_from_rows(cursor)

    def query(self, sql: str, parameters: Sequence = ()) -> list[tuple]:
        """Rows of a read-only statement (for the modules that keep their own tables here)."""
        return self._conn.execute(sql, parameters).fetchall()


    def mark_long_call(self, boot: int, pid: int, since_ns: int | None) -> None:
        """Record that process pid has a metered call running since since_ns (monotonic), or,
        with None, that it has none any more (agent.energy waits for such calls)."""
        with self.transaction() as conn:
            if since_ns is None:
                conn.execute("DELETE FROM writers WHERE boot = ? AND pid = ?", (boot, pid))
            else:
                conn.execute("INSERT OR REPLACE INTO writers VALUES (?, ?, ?)", (boot, pid, since_ns))

    def delete_through(self, seq: int) -> int:
        """Delete every record with seq <= seq (the collector acknowledged them)."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM records WHERE seq <= ?", (seq,)).rowcount

    def reject(self, seqs: Sequence[int], reason: str) -> int:
        """Move records out of the shipping queue into `rejected`, keeping them for inspection."""
        marks = ", ".join("?" * len(seqs))
        columns = ", ".join(_RECORD_COLUMNS)
        with self.transaction() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO rejected ({columns}, reason, rejected_unix_ns) "
                f"SELECT {columns}, ?, ? FROM records WHERE seq IN ({marks})",
                (reason, time.time_ns(), *seqs),
            )
            return conn.execute(f"DELETE FROM records WHERE seq IN ({marks})", tuple(seqs)).rowcount

    def rejected(self, *, limit: int = 1000) -> list[tuple[UsageRecord, str]]:
        cursor = self._conn.execute(
            f"SELECT {', '.join(_RECORD_COLUMNS)}, reason FROM rejected ORDER BY seq LIMIT ?",
            (limit,),
        )
        rows = cursor.fetchall()
        return list(zip(_records_from_rows(row[:-1] for row in rows), (row[-1] for row in rows)))

    def stats(self) -> BufferStats:
        count, first, last = self._conn.execute(
            "SELECT count(*), min(seq), max(seq) FROM records"
        ).fetchone()
        rejected = self._conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
        file_bytes = sum(
            p.stat().st_size
            for p in (self.path, self.path.with_name(self.path.name + "-wal"))
            if p.exists()
        )
        return BufferStats(
            path=str(self.path), stream_id=self.stream_id, schema_version=SCHEMA_VERSION,
            records=count, first_seq=first, last_seq=last, rejected=rejected,
            file_bytes=file_bytes,
        )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE), committed when the block ends without an
        exception; also for the modules that keep their own tables here."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
