"""The device buffer: one SQLite file per device, the local bus between app processes and the
daemon.

App processes append records (the Meter's flusher); the daemon reads them in seq order, ships
them and deletes only what the collector acknowledged. WAL lets readers and the single writer
of the moment proceed together; `BEGIN IMMEDIATE` takes the write lock up front so two writers
queue on `busy_timeout` instead of failing half-way; `synchronous=FULL` makes a commit survive
power loss. Seqs come from `INTEGER PRIMARY KEY AUTOINCREMENT`, so they are never reused, and
because SQLite has one writer at a time, the committed seqs are always a gap-free prefix
order-wise: a reader never sees seq N+1 committed before seq N.

The file has a byte cap (`max_bytes`, kept in the meta table so that every process that opens
the buffer obeys the daemon's setting): every connection sets `max_page_count` from it, so no
writer can grow the database past it (SQLITE_FULL instead), and bounds the WAL with
`wal_autocheckpoint` and `journal_size_limit` to the share of the cap kept for it. Room is made
by agent.compaction, in the daemon; agent.quarantine deals with a file that is corrupt.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.record import EnergyShare, Kind, Memory, ServerSide, Status, UsageRecord
from agent.sqlite_wal import enable_wal, is_busy

logger = logging.getLogger(__name__)

# A record's columns, as shipped (seq first; an append leaves seq to SQLite).
_RECORD_COLUMNS = (
    "seq", "kind", "model", "model_version", "runtime", "execution_provider", "batch_size",
    "input_bytes", "output_bytes", "input_tokens", "output_tokens", "start_unix_ns",
    "duration_ns", "cpu_time_ns", "status", "error_type", "tags", "pid", "count",
    "gpu_time_ns", "energy", "memory",
)
# What a read returns: the record's columns and what the server-side join added (agent.triton_join).
_READ_COLUMNS = (*_RECORD_COLUMNS, "server")
# Columns an append writes, in the order of the row tuples it takes: the record's, then what
# the device keeps for attributing energy to it (never shipped): its start on CLOCK_MONOTONIC,
# the boot that clock belongs to, and whether attribution is done with it.
APPEND_COLUMNS = (*_RECORD_COLUMNS[1:], "start_mono_ns", "boot", "attributed")
_INSERT_SQL = (
    f"INSERT INTO records ({', '.join(APPEND_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(APPEND_COLUMNS))})"
)
# The same, under a given seq (roll-ups and gap records take the seq of a record they replace).
_INSERT_AT_SQL = (
    f"INSERT INTO records (seq, {', '.join(APPEND_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(APPEND_COLUMNS) + 1))})"
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
    # Budgets (agent.budget_store): the collector's last word on each budget that can apply to
    # the device, with the spend the device counted since (in the budget's unit), and the
    # price hints that spend is estimated with. When the reply came and how far the records
    # are counted live in the meta table.
    """
    CREATE TABLE budget_state (
        budget_id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL,
        action TEXT NOT NULL, state TEXT NOT NULL, currency TEXT NOT NULL, unit TEXT NOT NULL,
        lease_remaining INTEGER NOT NULL, throttle_per_second REAL NOT NULL,
        period_end_unix_ns INTEGER NOT NULL, message TEXT NOT NULL,
        spent INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE price_hints (
        model TEXT NOT NULL, runtime TEXT NOT NULL, currency TEXT NOT NULL,
        cost_per_inference_pico INTEGER NOT NULL, energy_per_inference_uj INTEGER NOT NULL,
        PRIMARY KEY (model, runtime)
    ) WITHOUT ROWID;
    """,
    # Server-side figures (agent.triton_join): the record's share of what its inference server
    # reported, as JSON (encode_server); NULL until joined, and for records of other runtimes.
    """
    ALTER TABLE records ADD COLUMN server TEXT;
    ALTER TABLE rejected ADD COLUMN server TEXT;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

MIB = 1024 * 1024
DEFAULT_MAX_BYTES = 256 * MIB  # AgentConfig.buffer_max_mb's default
# The WAL's share of the cap: a sixteenth, at least 4 pages, at most SQLite's default
# checkpoint size (1000 pages, 4 MiB at the usual page size).
_WAL_SHARE = 16
_WAL_MIN_PAGES = 4
_WAL_MAX_PAGES = 1000
# Below this many pages the schema alone would not fit.
_MIN_PAGES = 32
_SEQ_MAX = 9223372036854775807
# On a disk with less room than the cap, appends leave this many WAL shares of it free.
DISK_RESERVE_WALS = 4

# Counters kept in the meta table (`counter:NAME`), added to in the transaction that did the work.
COUNTERS = (
    "compactions", "rolled_up_records", "rollups_written", "dropped_records", "dropped_units",
    "gap_records", "quarantined_files",
)


class BufferError(Exception):
    """The buffer file cannot be used (newer schema, not a buffer, unreadable)."""


class BufferMoved(BufferError):
    """The file this connection writes to is no longer the buffer at its path (it was
    quarantined): reopen."""


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


@dataclass(frozen=True, slots=True)
class BufferUsage:
    """How full the buffer is. used_bytes: the pages that hold data (free pages are reused
    before the file grows); db_max_bytes: what max_page_count lets the database reach (the
    cap less the WAL's share); file_bytes: the database and WAL files as they are on disk."""

    used_bytes: int
    db_bytes: int
    db_max_bytes: int
    max_bytes: int
    page_size: int
    file_bytes: int


@dataclass(frozen=True, slots=True)
class BufferCounters:
    """What has been done to keep the buffer under its cap (for `infermeter agent status`).
    rolled_up_records: records replaced by roll-ups; dropped_records: records dropped (their
    sums kept in gap records), dropped_units: the units (counts) they stood for."""

    compactions: int = 0
    rolled_up_records: int = 0
    rollups_written: int = 0
    dropped_records: int = 0
    dropped_units: int = 0
    gap_records: int = 0
    quarantined_files: int = 0


@dataclass(frozen=True, slots=True)
class Limits:
    """The pragmas a cap of max_bytes comes to, for a page size."""

    max_bytes: int
    page_size: int
    max_page_count: int
    wal_pages: int

    @property
    def wal_bytes(self) -> int:
        return self.wal_pages * self.page_size


def limits_for(max_bytes: int, page_size: int, disk_bytes: int | None = None) -> Limits:
    """The WAL's share is of the cap, or of the file system when that is smaller: a WAL that
    filled the disk before its checkpoint would leave no room for the checkpoint either."""
    room = max_bytes if disk_bytes is None else min(max_bytes, disk_bytes)
    wal_pages = min(max(room // _WAL_SHARE // page_size, _WAL_MIN_PAGES), _WAL_MAX_PAGES)
    max_page_count = max((max_bytes - wal_pages * page_size) // page_size, _MIN_PAGES)
    return Limits(max_bytes, page_size, max_page_count, wal_pages)


def is_full(err: BaseException) -> bool:
    """Whether err is SQLite's "database or disk is full" (the cap, or ENOSPC)."""
    name = getattr(err, "sqlite_errorname", None)
    if name is not None:
        return name.startswith("SQLITE_FULL")
    return isinstance(err, sqlite3.Error) and "database or disk is full" in str(err)


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


_scan_json = json.scanner.make_scanner(json.JSONDecoder())


def decode_json(text: str) -> object:
    """A JSON text this module encoded (a record's tags, energy, memory or server-side parts),
    decoded by the json module's own C scanner without the checks json.loads makes around it
    (about a third of the time): the daemon decodes several per record. ValueError if it is
    not JSON."""
    try:
        return _scan_json(text, 0)[0]
    except StopIteration:
        raise ValueError(f"not JSON: {text[:40]!r}") from None


def encode_memory(memory: Memory | None) -> str | None:
    if memory is None:
        return None
    return f"[{int(memory.peak_rss_bytes)},{int(memory.peak_gpu_memory_bytes)},{int(memory.model_resident_bytes)}]"


def encode_server(server: ServerSide | None) -> str | None:
    """[queue_ns, compute_input_ns, compute_infer_ns, compute_output_ns, gpu_memory_bytes,
    source, method, interval_ns] as JSON."""
    if server is None:
        return None
    return json.dumps([
        server.queue_ns, server.compute_input_ns, server.compute_infer_ns, server.compute_output_ns,
        server.gpu_memory_bytes, server.source, server.method, server.interval_ns,
    ], separators=(",", ":"))


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
            tags = tags_cache[row[16]] = decode_json(row[16])
        records.append(_record_from_row(row, tags))
    return records


def _record_from_row(row: Sequence, tags: dict[str, str]) -> UsageRecord:
    (seq, kind, model, model_version, runtime, provider, batch_size, input_bytes, output_bytes,
     input_tokens, output_tokens, start_unix_ns, duration_ns, cpu_time_ns, status, error_type,
     _, pid, count, gpu_time_ns, energy, memory, server) = row
    return UsageRecord(  # positional, in declaration order: the shipper reads every record
        seq, _KINDS.get(kind, kind), model, start_unix_ns, duration_ns, model_version, runtime,
        provider, batch_size, input_bytes, output_bytes, input_tokens, output_tokens,
        cpu_time_ns, _STATUSES.get(status, status), error_type, tags, pid, count, gpu_time_ns,
        tuple(EnergyShare(*share) for share in decode_json(energy)) if energy else (),
        Memory(*decode_json(memory)) if memory else None,
        ServerSide(*decode_json(server)) if server else None,
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
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if version < SCHEMA_VERSION:
        logger.info("buffer %s: schema %d -> %d", path, version, SCHEMA_VERSION)


class Buffer:
    """One connection to the device buffer. Safe to share between threads (transactions take
    a lock); open one per process."""

    def __init__(self, conn: sqlite3.Connection, path: Path, stream_id: str, limits: Limits | None = None) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.path = path
        self.stream_id = stream_id
        self.limits = limits if limits is not None else _apply_limits(conn, DEFAULT_MAX_BYTES)
        self._file_id = _file_id(path)
        self._full_since: float | None = None
        self._max_pages = self.limits.max_page_count

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        create: bool = True,
        busy_timeout_ms: int = 10_000,
        max_bytes: int | None = None,
    ) -> Buffer:
        """Open (creating and migrating if needed) the buffer at path. create=False, for those
        who only look: BufferError when there is no buffer there (no file, or an empty one),
        and nothing is created. max_bytes: the cap, which the buffer keeps for every other
        process that opens it (the daemon passes its setting); None: the cap kept in the
        buffer (DEFAULT_MAX_BYTES if none was ever set)."""
        path = Path(path)
        if not create and (not path.is_file() or path.stat().st_size == 0):
            raise BufferError(f"no buffer at {path}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_group_writable(path)
        try:
            conn = _connect(path, busy_timeout_ms)
            try:
                _migrate(conn, path)
                # Only once the file is known to be a buffer: WAL is a lasting change to the
                # file, and an SQLite file that is not ours must be left as it was.
                enable_wal(conn)
                stream_id = _meta(conn, "stream_id")
                limits = _apply_limits(conn, _cap(conn, path, max_bytes), path)
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as err:
            raise BufferError(f"cannot open buffer {path}: {err}") from err
        return cls(conn, path, stream_id, limits)

    def append(self, rows: Iterable[tuple]) -> int:
        """Insert rows (APPEND_COLUMNS order) in one transaction; return the last seq used
        (0 when rows was empty)."""
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return 0
        self._leave_disk_reserve()
        with self.transaction() as conn:
            conn.executemany(_INSERT_SQL, rows)
            return conn.execute("SELECT last_insert_rowid()").fetchone()[0]

    def room_bytes(self, free: int | None) -> int:
        """What the database may grow to, with free bytes left on its disk (None: unknown):
        its cap (less the WAL's share), or, on a disk with less room than that, its size now
        plus the free space but DISK_RESERVE_WALS WAL shares: kept for the daemon's
        checkpoints and compaction, which make room."""
        page_size = self.limits.page_size
        room_pages = self.limits.max_page_count
        if free is not None and free < (room_pages + DISK_RESERVE_WALS * self.limits.wal_pages) * page_size:
            page_count = self._conn.execute("PRAGMA page_count").fetchone()[0]
            spare_pages = max(free // page_size - DISK_RESERVE_WALS * self.limits.wal_pages, 0)
            room_pages = min(room_pages, page_count + spare_pages)
        return room_pages * page_size

    def _leave_disk_reserve(self) -> None:
        """Bound this connection's max_page_count by room_bytes (a no-op while the disk has
        room for the whole cap): appends fail with SQLITE_FULL while the disk still has the
        reserve, instead of taking the last of it."""
        pages = self.room_bytes(disk_free_bytes(self.path)) // self.limits.page_size
        if pages != self._max_pages:
            # SQLite keeps it at least at the database's size.
            self._max_pages = self._conn.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0]

    def read(self, *, after_seq: int = 0, limit: int = 1000, attributed_only: bool = False) -> list[UsageRecord]:
        """Up to limit records with seq > after_seq, in seq order; attributed_only: only those
        before the first record still waiting for its energy (what may be shipped)."""
        bound = f" AND seq < (SELECT coalesce(min(seq), {_SEQ_MAX}) FROM records WHERE attributed = 0)"
        cursor = self._conn.execute(
            f"SELECT {', '.join(_READ_COLUMNS)} FROM records WHERE seq > ?"
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
        """Delete every record with seq <= seq (the collector acknowledged them). On a full
        disk this deletes nothing and returns 0 (logged once per streak): the records are
        shipped again, and the collector counts them once."""
        with self._unless_full("delete acknowledged records"):
            with self.transaction() as conn:
                return conn.execute("DELETE FROM records WHERE seq <= ?", (seq,)).rowcount
        return 0

    def reject(self, seqs: Sequence[int], reason: str) -> int:
        """Move records out of the shipping queue into `rejected`, keeping them for inspection.
        On a full disk they stay where they are (0; logged once per streak)."""
        marks = ", ".join("?" * len(seqs))
        columns = ", ".join(_READ_COLUMNS)
        with self._unless_full("set aside rejected records"):
            with self.transaction() as conn:
                conn.execute(
                    f"INSERT OR REPLACE INTO rejected ({columns}, reason, rejected_unix_ns) "
                    f"SELECT {columns}, ?, ? FROM records WHERE seq IN ({marks})",
                    (reason, time.time_ns(), *seqs),
                )
                return conn.execute(f"DELETE FROM records WHERE seq IN ({marks})", tuple(seqs)).rowcount
        return 0

    def replace(
        self,
        seqs: Sequence[int],
        records: Sequence[UsageRecord],
        counters: dict[str, int] | None = None,
        *,
        meta: Mapping[str, str] | None = None,
    ) -> list[int]:
        """In one transaction, delete the records with these seqs, then insert records (each
        under its own seq, which must be free once they are deleted; seq 0: the next one), add
        to the counters (COUNTERS) and set the meta keys given. Deleting first is what lets
        this work on a full file: the inserts take the pages the deletes freed. The seqs the
        records got."""
        with self.transaction() as conn:
            conn.executemany("DELETE FROM records WHERE seq = ?", [(seq,) for seq in seqs])
            inserted = []
            for record in records:
                row = row_from_record(record)
                if record.seq:
                    conn.execute(_INSERT_AT_SQL, (record.seq, *row))
                    inserted.append(record.seq)
                else:
                    conn.execute(_INSERT_SQL, row)
                    inserted.append(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
            add_counters(conn, counters or {})
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list((meta or {}).items()))
        return inserted

    def meta(self, key: str) -> str | None:
        """A value of the meta table (the stream id, the cap, what replace() set), or None."""
        return _meta(self._conn, key)

    def counters(self) -> BufferCounters:
        rows = self._conn.execute("SELECT key, value FROM meta WHERE key LIKE 'counter:%'").fetchall()
        values = {key.removeprefix("counter:"): int(value) for key, value in rows}
        return BufferCounters(**{name: values.get(name, 0) for name in COUNTERS})

    def usage(self) -> BufferUsage:
        page_count, free_pages = self._conn.execute(
            "SELECT * FROM pragma_page_count(), pragma_freelist_count()"
        ).fetchone()
        # The connection's own limit: a cap lowered below the file's size leaves it at the size.
        max_page_count = self._conn.execute("PRAGMA max_page_count").fetchone()[0]
        page_size = self.limits.page_size
        return BufferUsage(
            used_bytes=(page_count - free_pages) * page_size, db_bytes=page_count * page_size,
            db_max_bytes=max_page_count * page_size, max_bytes=self.limits.max_bytes,
            page_size=page_size, file_bytes=self._file_bytes(),
        )

    def rejected(self, *, limit: int = 1000) -> list[tuple[UsageRecord, str]]:
        cursor = self._conn.execute(
            f"SELECT {', '.join(_READ_COLUMNS)}, reason FROM rejected ORDER BY seq LIMIT ?",
            (limit,),
        )
        rows = cursor.fetchall()
        return list(zip(_records_from_rows(row[:-1] for row in rows), (row[-1] for row in rows)))

    def stats(self) -> BufferStats:
        count, first, last = self._conn.execute(
            "SELECT count(*), min(seq), max(seq) FROM records"
        ).fetchone()
        rejected = self._conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
        return BufferStats(
            path=str(self.path), stream_id=self.stream_id, schema_version=SCHEMA_VERSION,
            records=count, first_seq=first, last_seq=last, rejected=rejected,
            file_bytes=self._file_bytes(),
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
        exception; also for the modules that keep their own tables here. BufferMoved when the
        path names another file than the one this connection has open: the daemon moved a
        corrupt file aside, under this same lock, so a write that gets the lock after that
        cannot land in the file that is no longer shipped."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if _file_id(self.path) != self._file_id:
                    raise BufferMoved(f"{self.path} is not the file this connection opened any more")
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                # SQLite rolls some failures back itself (SQLITE_FULL may end the transaction);
                # a COMMIT that failed (no room for the WAL) leaves it open.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _file_bytes(self) -> int:
        return sum(
            p.stat().st_size
            for p in (self.path, self.path.with_name(self.path.name + "-wal"))
            if p.exists()
        )

    @contextmanager
    def _unless_full(self, action: str) -> Iterator[None]:
        """Swallow a full-disk error of the block: logged when a streak starts and ends."""
        try:
            yield
        except sqlite3.Error as err:
            if not is_full(err):
                raise
            if self._full_since is None:
                self._full_since = time.monotonic()
                logger.warning("buffer %s is full: cannot %s (%s); retrying", self.path, action, err)
            return
        if self._full_since is not None:
            logger.info(
                "buffer %s has room again after %.1f s", self.path, time.monotonic() - self._full_since
            )
            self._full_since = None


def add_counters(conn: sqlite3.Connection, deltas: dict[str, int]) -> None:
    """Add to the counters in the meta table, inside the caller's transaction."""
    unknown = set(deltas) - set(COUNTERS)
    if unknown:
        raise ValueError(f"unknown buffer counters: {sorted(unknown)}")
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
        " SET value = CAST(CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER) AS TEXT)",
        [(f"counter:{name}", str(delta)) for name, delta in deltas.items() if delta],
    )


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def _cap(conn: sqlite3.Connection, path: Path, max_bytes: int | None) -> int:
    """The cap to obey: max_bytes, kept in the buffer for the other processes when it is new,
    or the one kept there."""
    kept = _meta(conn, "max_bytes")
    if max_bytes is None:
        return int(kept) if kept else DEFAULT_MAX_BYTES
    if kept != str(max_bytes):
        try:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('max_bytes', ?)", (str(max_bytes),))
        except sqlite3.OperationalError as err:  # full or locked: this connection obeys it anyway
            if not (is_full(err) or is_busy(err)):
                raise
            logger.warning("buffer %s: cannot keep its cap of %d bytes (%s)", path, max_bytes, err)
        else:
            logger.info("buffer %s: capped at %d bytes", path, max_bytes)
    return max_bytes


def _apply_limits(conn: sqlite3.Connection, max_bytes: int, path: Path | None = None) -> Limits:
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    try:
        disk_bytes = shutil.disk_usage(path.parent).total if path is not None else None
    except OSError:
        disk_bytes = None
    limits = limits_for(max_bytes, page_size, disk_bytes)
    conn.execute(f"PRAGMA max_page_count = {limits.max_page_count}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {limits.wal_pages}")
    conn.execute(f"PRAGMA journal_size_limit = {limits.wal_bytes}")
    return limits


def _create_group_writable(path: Path) -> None:
    """Create the buffer file, if there is none, with mode 0660 whatever the umask: the daemon
    and the apps that meter run as different users of one group, and each may be the one that
    creates the file (SQLite would make it 0644 less the umask, which locks the others out).
    Its WAL and shared-memory files take the database file's mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o660)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o660)
    finally:
        os.close(fd)


def disk_free_bytes(path: Path) -> int | None:
    """Bytes left on the file system of the buffer at path; None when that cannot be told."""
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return None


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
