"""Opening the device buffer in the daemon: a corrupt file is quarantined, not used.

    buffer = open_checked(config.buffer_path, max_bytes=round(config.buffer_max_mb * MIB))

`PRAGMA quick_check` finds a truncated file and damaged pages; agent.wal_check finds a WAL whose
committed transactions SQLite would silently skip (a garbage or bit-flipped WAL). Either way the
files are renamed aside (`buffer.db.corrupt-20260101T120000Z`, never deleted, for whoever wants
to recover them), a new buffer with a new stream_id takes the path, and the loss is reported
with a number: how many records the corrupt file held as far as SQLite can still read them
(or "unknown"), in the log and as a gap record in the new stream (agent.rollup.lost_record). The new
stream is what makes it safe: the old file's seqs may have reached the collector, and the new
file would hand them out again.

The rename is done holding the old file's write lock, and app processes check, under that lock,
that their connection still has the file at the path (Buffer.transaction), so no record is
written to the quarantined file after it was counted. A file that cannot be checked now (another
process holds a lock for longer than the busy timeout) is opened as it is; nothing here waits
for longer than that, and nothing loops.

The loss is reported once, through a crash or a full disk in between: before the files move, a
note (`buffer.db.corrupt-20260101T120000Z.unreported`, holding the reason) is written beside
where they go. Once a buffer is open at the path, each note whose files did move becomes a gap
record, in one transaction with a meta key naming the moved file, and then the note is deleted;
the key keeps a note that outlived its report (a crash before the delete) from being reported
twice. A note whose files never moved (a crash before the rename) is deleted unreported: the
file at the path is still corrupt, and is quarantined again under a note of its own.
"""

from __future__ import annotations

import glob
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.buffer import Buffer
from agent.files import write_atomically
from agent.record import MAX_START_UNIX_NS, MIN_START_UNIX_NS
from agent.rollup import CORRUPT_BUFFER, lost_record
from agent.wal_check import wal_damage

logger = logging.getLogger(__name__)

_SIDE_FILES = ("", "-wal", "-shm")
# Beside a quarantined file while its loss is not reported yet; the meta key that says it is.
_NOTE = ".unreported"
_REPORTED_KEY = "quarantine_reported:"
_QUICK_CHECK_LINES = 3


@dataclass(frozen=True, slots=True)
class Quarantined:
    path: Path  # where the corrupt database file went (its -wal and -shm beside it)
    reason: str
    lost_records: int | None  # records it held, as far as they can be read; None: unknown


def open_checked(
    path: str | Path,
    *,
    max_bytes: int | None = None,
    busy_timeout_ms: int = 10_000,
    wall_ns: Callable[[], int] = time.time_ns,
) -> Buffer:
    """Buffer.open, after quarantining the file at path if it is corrupt, and with the losses
    of quarantined files reported in it (report_losses). Raises what Buffer.open and
    Buffer.replace raise (a full disk among them): a loss not reported yet is reported by the
    next call that gets through."""
    path = Path(path)
    quarantine_if_corrupt(path, busy_timeout_ms=busy_timeout_ms, wall_ns=wall_ns)
    buffer = Buffer.open(path, max_bytes=max_bytes, busy_timeout_ms=busy_timeout_ms)
    try:
        report_losses(buffer, wall_ns())
    except BaseException:
        buffer.close()
        raise
    return buffer


def quarantine_if_corrupt(
    path: Path, *, busy_timeout_ms: int = 10_000, wall_ns: Callable[[], int] = time.time_ns
) -> Quarantined | None:
    """Move the buffer at path aside if it is corrupt, leaving a note of the loss to report;
    what was moved, or None."""
    if not _has_content(path):
        return None
    conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False)
    try:
        reason = _corruption(conn, path)
        if reason is None:
            return None
        if not conn.in_transaction:
            _try_to_lock(conn)
        moved = _move_aside(path, reason, wall_ns())
    finally:
        try:
            conn.close()  # ends the transaction, if any: the lock is let go only now
        except sqlite3.Error:
            pass
    lost = _count_records(moved)
    logger.error(
        "buffer %s is corrupt (%s): moved to %s; the records it held (%s, as far as they can be"
        " read) will not be shipped; a new buffer, with a new stream, starts and reports the loss",
        path, reason, moved, "unknown" if lost is None else lost,
    )
    return Quarantined(moved, reason, lost)


def report_losses(buffer: Buffer, now_ns: int) -> list[Quarantined]:
    """Report the loss of every file quarantined from the buffer's path whose note is still
    there: a gap record in the buffer's stream, the counters and the meta key that says it
    is done, in one transaction; then the note goes. What was reported."""
    path = buffer.path
    reported = []
    for note in sorted(path.parent.glob(f"{glob.escape(path.name)}.corrupt-*{_NOTE}")):
        moved = note.with_name(note.name[: -len(_NOTE)])
        key = _REPORTED_KEY + moved.name
        if moved.exists() and buffer.meta(key) is None:
            quarantined = Quarantined(moved, _read_note(note), _count_records(moved))
            start_ns = min(max(now_ns, MIN_START_UNIX_NS), MAX_START_UNIX_NS - 1)  # one the collector takes
            gap = lost_record(start_unix_ns=start_ns, lost=quarantined.lost_records, reason=CORRUPT_BUFFER)
            buffer.replace([], [gap], {"quarantined_files": 1, "gap_records": 1}, meta={key: str(now_ns)})
            logger.warning(
                "the loss of the records of %s (%s; it was corrupt: %s) is reported to the collector as a gap record",
                moved, "unknown" if quarantined.lost_records is None else quarantined.lost_records, quarantined.reason,
            )
            reported.append(quarantined)
        note.unlink(missing_ok=True)
    return reported


def _has_content(path: Path) -> bool:
    return any(_size(path.with_name(path.name + suffix)) for suffix in _SIDE_FILES[:2])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _corruption(conn: sqlite3.Connection, path: Path) -> str | None:
    """What is wrong with the file; None when nothing is, or when it cannot be told now. Leaves
    the write lock taken when it finds the WAL damaged, so that the files move under it."""
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            return "; ".join(" ".join(str(row[0]).split()) for row in rows[:_QUICK_CHECK_LINES])
        # Writers must not append to the WAL, nor start it over, while it is read.
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.DatabaseError as err:
        if is_corrupt(err):
            return str(err)
        # Busy for longer than the timeout, or not a file SQLite can open: Buffer.open says.
        logger.warning("cannot check buffer %s now (%s): opening it unchecked", path, err)
        return None
    damage = wal_damage(path.with_name(path.name + "-wal"))
    if damage is None:
        conn.execute("ROLLBACK")
    return damage


def is_corrupt(err: sqlite3.Error) -> bool:
    """Whether err says the file is damaged or is no database (not: locked, unreadable)."""
    name = getattr(err, "sqlite_errorname", None)
    if name is not None:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    return any(text in str(err) for text in ("malformed", "not a database"))


def _try_to_lock(conn: sqlite3.Connection) -> None:
    """Take the write lock of a corrupt file, if SQLite can: app processes then write to it no
    more once it is moved (see Buffer.transaction)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as err:
        logger.debug("cannot lock the corrupt buffer before moving it: %s", err)


def _move_aside(path: Path, reason: str, now_ns: int) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_ns // 10**9))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    attempt = 1
    while any(target.with_name(target.name + suffix).exists() for suffix in (*_SIDE_FILES, _NOTE)):
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{attempt}")
        attempt += 1
    write_atomically(target.with_name(target.name + _NOTE), reason + "\n")
    _sync_directory(path.parent)  # the note is there before the files move
    for suffix in _SIDE_FILES:
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.rename(source, target.with_name(target.name + suffix))
    _sync_directory(path.parent)
    return target


def _sync_directory(directory: Path) -> None:
    """Make the renames durable (a power loss must not bring the corrupt file back)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_note(note: Path) -> str:
    try:
        return note.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return "unknown"


def _count_records(path: Path) -> int | None:
    """Records in a quarantined buffer, as far as SQLite can read them; None if it cannot read
    any (how many there were is not known). Read-only: a read-write connection would fold the
    WAL into the file and delete it."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT count(*) FROM records").fetchone()[0] or None
        finally:
            conn.close()
    except sqlite3.Error:
        return None
