"""Switching an SQLite file to WAL when several processes open it at once: shared by the device
buffer and the collector's SQLite store."""

from __future__ import annotations

import sqlite3
import time

# 50 tries with a linearly growing pause: about 1.3 s in all, far beyond any real race.
_ATTEMPTS = 50


def enable_wal(connection: sqlite3.Connection | sqlite3.Cursor) -> None:
    """Switch the file to WAL (a no-op once it is). Switching a new file takes an exclusive
    lock, and a connection that races another one's switch gets SQLITE_BUSY at once: SQLite
    skips the busy timeout where waiting could deadlock. The other's switch is what was wanted,
    so try again; the next try finds WAL on."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if attempt == _ATTEMPTS or not is_busy(err):
                raise
            time.sleep(0.001 * attempt)


def is_busy(err: sqlite3.Error) -> bool:
    """Whether err is SQLITE_BUSY ("database is locked")."""
    name = getattr(err, "sqlite_errorname", None)
    if name is None:  # Python 3.10 has no error names
        return "database is locked" in str(err)
    return name.startswith("SQLITE_BUSY")
