"""Cost roll-ups: the records' sums per UTC hour (cost_rollups) and per UTC day
(cost_rollups_daily), device and group (model, version, runtime, site, kind and tag set).

Ingest adds the rows it actually inserted, in the same transaction as the inserts, so a replayed
batch adds nothing and two replicas storing the same batch add it once; reports then read a day
or an hour of a device's work as a row per group. Every change to the hours goes to the days in
the same call (add_rollups), so a day always equals the sum of its hours. Sums are exact
integers: each is stored as a high and a low part (collector.schema.ROLLUP_SPLIT), since a few
records' BIGINTs may pass int64.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from collector.bulk import add_rows
from collector.rows import RECORD_COLUMNS
from collector.schema import (
    ROLLUP_SPLIT,
    ROLLUP_SUMS,
    cost_rollups,
    cost_rollups_daily,
    records,
)

HOUR_NS = 3_600 * 10**9
DAY_NS = 24 * HOUR_NS
ROLLUP_KEY = ("hour_unix_ns", "device_id", "group_sha256")
DAILY_KEY = ("day_unix_ns", "device_id", "group_sha256")
_GROUP_COLUMNS = ("model", "model_version", "runtime", "site", "kind", "tags")
SPLIT_SUMS = tuple(f"{name}_{part}" for name in ROLLUP_SUMS for part in ("hi", "lo"))
# The order of the values in a row from rollup_rows.
ROLLUP_COLUMNS = (*ROLLUP_KEY, *_GROUP_COLUMNS, "records", *SPLIT_SUMS)
# A daily row has its values in the same places.
DAILY_COLUMNS = (*DAILY_KEY, *_GROUP_COLUMNS, "records", *SPLIT_SUMS)
_RECORDS_AT = ROLLUP_COLUMNS.index("records")

_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_AT = {name: RECORD_COLUMNS.index(name) for name in RECORD_COLUMNS}


def group_sha256(model: str, model_version: str, runtime: str, site: str, kind: int, tags_json: str) -> str:
    """The roll-up's key for a group; tags_json as canonical_tags makes it."""
    return hashlib.sha256(_json([model, model_version, runtime, site, kind, tags_json]).encode()).hexdigest()


def canonical_tags(tags_json: str) -> str:
    """The tag set as JSON with its keys sorted, so that one set is one group whatever the order
    the device sent it in."""
    return _json(dict(sorted(json.loads(tags_json).items())))


def rollup_rows(rows: Iterable[tuple]) -> list[tuple]:
    """The roll-up rows (ROLLUP_COLUMNS order, sorted by key) that add the priced rows `rows`
    (collector.rows.priced_rows' tuples) to the roll-ups."""
    start, device_id, model, version, runtime, site, kind, tags = (
        _AT[name] for name in ("start_unix_ns", "device_id", "model", "model_version", "runtime", "site", "kind", "tags")
    )
    count, cost, compute, energy_cost, energy_uj, duration, cpu_time, token, request = (
        _AT[name] for name in ROLLUP_SUMS
    )
    # One pass, with the sums in a list per group: this runs for every record ingested.
    sums: dict[tuple, list[int]] = {}
    for row in rows:
        at = row[start]
        key = (at - at % HOUR_NS, row[device_id], row[model], row[version], row[runtime], row[site], row[kind], row[tags])
        acc = sums.get(key)
        if acc is None:
            sums[key] = [1, row[count], row[cost], row[compute], row[energy_cost], row[energy_uj], row[duration],
                         row[cpu_time], row[token], row[request]]
        else:
            acc[0] += 1
            acc[1] += row[count]
            acc[2] += row[cost]
            acc[3] += row[compute]
            acc[4] += row[energy_cost]
            acc[5] += row[energy_uj]
            acc[6] += row[duration]
            acc[7] += row[cpu_time]
            acc[8] += row[token]
            acc[9] += row[request]
    return _keyed_rows((key, acc[0], acc[1:]) for key, acc in sums.items())


def _keyed_rows(groups: Iterable[tuple[tuple, int, Sequence[int]]]) -> list[tuple]:
    """Roll-up rows from ((hour, device_id, model, version, runtime, site, kind, tags JSON),
    records, sums) with the tags in any key order: groups whose tag sets differ only in order are
    merged. Sorted by key, so that concurrent writers lock roll-up rows in one order (no deadlock)."""
    canonical: dict[str, str] = {}
    merged: dict[tuple, list] = {}
    for (hour, device_id, model, version, runtime, site, kind, tags), count, sums in groups:
        tags = canonical.get(tags) or canonical.setdefault(tags, canonical_tags(tags))
        key = (hour, device_id, group_sha256(model, version, runtime, site, kind, tags))
        entry = merged.get(key)
        if entry is None:
            merged[key] = [(model, version, runtime, site, kind, tags), count, list(sums)]
        else:
            entry[1] += count
            entry[2] = [a + b for a, b in zip(entry[2], sums)]
    return [
        (*key, *group, count, *(part for total in sums for part in divmod(total, ROLLUP_SPLIT)))
        for key, (group, count, sums) in sorted(merged.items())
    ]


def daily_rows(hourly: Iterable[tuple]) -> list[tuple]:
    """The daily rows (DAILY_COLUMNS order, sorted by key) that add what the hourly roll-up rows
    `hourly` (ROLLUP_COLUMNS order; differences may be negative) add to the hours."""
    merged: dict[tuple, list] = {}
    for row in hourly:
        key = (row[0] - row[0] % DAY_NS, row[1], row[2])
        sums = [row[at] * ROLLUP_SPLIT + row[at + 1] for at in range(_RECORDS_AT + 1, len(row), 2)]
        entry = merged.get(key)
        if entry is None:
            merged[key] = [row[3:_RECORDS_AT], row[_RECORDS_AT], sums]
        else:
            entry[1] += row[_RECORDS_AT]
            entry[2] = [a + b for a, b in zip(entry[2], sums)]
    return [
        (*key, *group, count, *(part for total in sums for part in divmod(total, ROLLUP_SPLIT)))
        for key, (group, count, sums) in sorted(merged.items())
    ]


def add_rollups(connection: sa.Connection, hourly: Sequence[tuple]) -> None:
    """Add roll-up rows (ROLLUP_COLUMNS order, sorted by key) to the hours and their days, in
    the caller's transaction; hours first, then days, in key order: concurrent writers lock
    rows in one order."""
    if not hourly:
        return
    add_rows(
        connection, cost_rollups, ROLLUP_COLUMNS, ROLLUP_KEY, hourly,
        counters=("records",), split_counters=ROLLUP_SUMS, split=ROLLUP_SPLIT,
    )
    add_rows(
        connection, cost_rollups_daily, DAILY_COLUMNS, DAILY_KEY, daily_rows(hourly),
        counters=("records",), split_counters=ROLLUP_SUMS, split=ROLLUP_SPLIT,
    )


def add_to_rollups(connection: sa.Connection, rows: Sequence[tuple]) -> None:
    """Add the newly inserted priced rows to the roll-ups, in the caller's transaction."""
    if rows:
        add_rollups(connection, rollup_rows(rows))


def rebuild_rollups(connection: sa.Connection, *, page_groups: int = 10_000) -> int:
    """Replace the roll-ups with the sums of the stored records (after records were written
    another way, e.g. a bulk load); returns the roll-up rows written. The sums are made by the
    database, in parts that cannot pass int64, and only the groups travel."""
    connection.execute(sa.delete(cost_rollups))
    connection.execute(sa.delete(cost_rollups_daily))
    hour = records.c.start_unix_ns - records.c.start_unix_ns % HOUR_NS
    # As stored: PostgreSQL's json type has no equality, and SQLAlchemy would decode the JSON.
    tags = sa.cast(records.c.tags, sa.Text)
    sums = [
        part for name in ROLLUP_SUMS
        for part in (sa.func.sum(records.c[name] // ROLLUP_SPLIT), sa.func.sum(records.c[name] % ROLLUP_SPLIT))
    ]
    keys = [hour, records.c.device_id, records.c.model, records.c.model_version, records.c.runtime,
            records.c.site, records.c.kind, tags]
    result = connection.execute(sa.select(*keys, sa.func.count(), *sums).group_by(*keys))
    groups = []
    for row in result:
        parts = [int(value) for value in row[len(keys) + 1:]]
        groups.append((tuple(row[:len(keys)]), row[len(keys)], [
            hi * ROLLUP_SPLIT + lo for hi, lo in zip(parts[::2], parts[1::2])
        ]))
    written = _keyed_rows(groups)
    for first in range(0, len(written), page_groups):
        add_rollups(connection, written[first:first + page_groups])
    return len(written)
