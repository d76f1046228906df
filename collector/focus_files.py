"""Writing the FOCUS export (collector.focus) to a file: CSV or Parquet, atomically.

The file appears complete or not at all: rows go to a temporary file beside the target, which
is synced and renamed over it only when every row is written; any failure removes it and
leaves what was at the target untouched.

CSV: a header of the column names, nulls as empty fields, money and quantities as plain
decimals (never exponents, always with a point: "0.000000001234", "12.0"), times as RFC 3339
UTC ("2026-11-18T11:00:00Z"). Parquet (pyarrow, the `parquet` extra): decimal128(38, scale)
for Decimal columns, so amounts stay exact, timestamp[ns, UTC] for times, int64 and strings.
"""

from __future__ import annotations

import csv
import itertools
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

from collector.books import PriceBooks
from collector.costing import run_report
from collector.database import transaction
from collector.focus import (
    COLUMN_NAMES,
    COLUMNS,
    DATETIME,
    DECIMAL,
    DEFAULT_ORG,
    FOCUS_VERSION,
    INTEGER,
    MONEY_SCALE,
    PERIOD_GROUP_BY,
    Column,
    ExportScope,
    charge_groups,
    charge_query,
    focus_row,
    period_rows,
    picos,
)
from collector.reports import CostQuery, check_range
from collector.retention import check_raw_range, raw_cutoff
from collector.schema import devices

FORMATS = ("csv", "parquet")
PARQUET_BATCH_ROWS = 8_192
# Rows read from the database at a time.
CHUNK_ROWS = 1_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_ORG_CHARS = 256
_BILLED = COLUMN_NAMES.index("BilledCost")


class RowWriter(Protocol):
    def write(self, row: tuple) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ExportSummary:
    path: Path
    file_format: str
    rows: int
    records: int
    currency: str
    billed_cost: Decimal  # the sum of BilledCost: what `report costs` totals over the range

    def to_json(self) -> dict:
        return {
            "out": str(self.path), "format": self.file_format, "rows": self.rows, "records": self.records,
            "currency": self.currency, "billed_cost": f"{self.billed_cost:f}",
        }


def export_focus(
    engine: sa.Engine,
    path: Path,
    *,
    file_format: str,
    since_unix_ns: int | None = None,
    until_unix_ns: int | None = None,
    org: str = DEFAULT_ORG,
    progress: Callable[[int, int], None] | None = None,
    progress_every: int = 10_000,
    now_unix_ns: int | None = None,
) -> ExportSummary:
    """Write the FOCUS rows of the records whose start is in [since, until) to `path`, then the
    rows of the period costs (idle, fixed, discounts) of the days of the range, as `report
    costs` counts them until `now_unix_ns` (default: now).
    progress(rows, records) is called every `progress_every` rows (0: never). ValueError for a
    bad range, format or org, before anything is written."""
    check_range(since_unix_ns, until_unix_ns)
    if file_format not in FORMATS:
        raise ValueError(f"unknown format {file_format!r} (expected one of: {', '.join(FORMATS)})")
    check_org(org)
    open_writer = _parquet_writer if file_format == "parquet" else _csv_writer
    rows = records = billed_pico = 0
    with transaction(engine) as connection:
        # The export reads raw records: none may be missing for retention (collector.retention).
        check_raw_range(raw_cutoff(connection), since_unix_ns, "the FOCUS export")
        books = PriceBooks()
        scope = ExportScope(books.currency(connection), since_unix_ns, until_unix_ns, org)
        query = charge_query(connection.dialect.name, since_unix_ns, until_unix_ns)
        result = connection.execute(query.execution_options(yield_per=CHUNK_ROWS))
        with _replacing(path) as temporary, open_writer(temporary) as writer:
            usage = ((focus_row(group, scope), group.records) for group in charge_groups(result))
            period = ((row, 0) for row in _period_rows(connection, books, scope, now_unix_ns))
            for row, row_records in itertools.chain(usage, period):
                writer.write(row)
                rows += 1
                records += row_records
                billed_pico += int(row[_BILLED].scaleb(MONEY_SCALE))
                if progress is not None and progress_every and rows % progress_every == 0:
                    progress(rows, records)
            # Again after the read, before the file is put in place: a prune may have committed meanwhile.
            check_raw_range(raw_cutoff(connection), since_unix_ns, "the FOCUS export")
    return ExportSummary(path, file_format, rows, records, scope.currency, picos(billed_pico))


def _period_rows(
    connection: sa.Connection, books: PriceBooks, scope: ExportScope, now_unix_ns: int | None
) -> Iterator[tuple]:
    """The rows of the period costs, from the report they project (collector.focus.period_rows)."""
    query = CostQuery(PERIOD_GROUP_BY, scope.since_unix_ns, scope.until_unix_ns, "day")
    report = run_report(connection, books, query, now_unix_ns=time.time_ns() if now_unix_ns is None else now_unix_ns)
    device_ids = dict(connection.execute(sa.select(devices.c.name, devices.c.device_id)).all())
    for group in report.groups:
        yield from period_rows(group, scope, device_ids)


def check_org(org: str) -> None:
    if type(org) is not str or not org.strip() or len(org) > MAX_ORG_CHARS or not org.isprintable():
        raise ValueError(f"org {org!r} is invalid: 1-{MAX_ORG_CHARS} printable characters, not only spaces")


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A new temporary path beside `path`, renamed over it if the block succeeds, removed if not."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # Created here, not by mkstemp: its mode 0600 would outlive the rename; this one is 0666
    # less the umask, as for any file the user writes.
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX; elsewhere there is nothing to open)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# CSV


def csv_cell(column: Column, value: object) -> str:
    if value is None:
        return ""
    if column.type == DATETIME:
        return rfc3339(value)
    if column.type == DECIMAL:
        text = f"{value:f}"
        # A point even in whole quantities, so that readers take the column for decimals.
        return text if "." in text else f"{text}.0"
    return str(value)


def rfc3339(unix_ns: int) -> str:
    """'2026-11-18T11:00:00Z'; a fraction of a second only where there is one (a range bound)."""
    seconds, ns = divmod(unix_ns, 10**9)
    text = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ns:09d}".rstrip("0") + "Z" if ns else f"{text}Z"


class _CsvWriter:
    def __init__(self, file) -> None:
        self._file = file
        self._csv = csv.writer(file)
        self._csv.writerow(COLUMN_NAMES)

    def write(self, row: tuple) -> None:
        self._csv.writerow([csv_cell(column, value) for column, value in zip(COLUMNS, row)])

    def close(self) -> None:
        self._file.flush()


@contextmanager
def _csv_writer(path: Path) -> Iterator[RowWriter]:
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = _CsvWriter(file)
        yield writer
        writer.close()


# Parquet


def parquet_schema():
    import pyarrow as pa

    types = {
        DATETIME: lambda column: pa.timestamp("ns", tz="UTC"),
        DECIMAL: lambda column: pa.decimal128(38, column.scale),
        INTEGER: lambda column: pa.int64(),
    }
    fields = [pa.field(column.name, types.get(column.type, lambda _: pa.string())(column)) for column in COLUMNS]
    return pa.schema(fields, metadata={"focus_version": FOCUS_VERSION, "generator": "infermeter export focus"})


class _ParquetWriter:
    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self._schema = parquet_schema()
        self._writer = pq.ParquetWriter(str(path), self._schema)
        self._batch: list[tuple] = []

    def write(self, row: tuple) -> None:
        self._batch.append(row)
        if len(self._batch) >= PARQUET_BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        columns = list(zip(*self._batch))
        arrays = [pa.array(values, type=field.type) for values, field in zip(columns, self._schema)]
        self._writer.write_batch(pa.record_batch(arrays, schema=self._schema))
        self._batch = []

    def close(self) -> None:
        if self._batch:
            self._flush()
        self._writer.close()

    def abort(self) -> None:
        self._writer.close()


@contextmanager
def _parquet_writer(path: Path) -> Iterator[RowWriter]:
    writer = _ParquetWriter(path)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.close()
