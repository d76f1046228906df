"""Hourly cost roll-ups (the cost_rollups table): the records' sums per UTC hour, device and
group (model, version, runtime, site, kind and tag set).

Ingest adds the rows it actually inserted, in the same transaction as the inserts, so a replayed
batch adds nothing and two replicas storing the same batch add it once; reports then read an
hour of a device's work as a row per group. Sums are exact integers: each is stored as a high
and a low part (collector.schema.ROLLUP_SPLIT), since a few records' BIGINTs may pass int64.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from collector.bulk import add_rows
from collector.rows import RECORD_COLUMNS
from collector.schema import ROLLUP_SPLIT, ROLLUP_SUMS, cost_rollups, records

HOUR_NS = 3_600 * 10**9
ROLLUP_KEY = ("hour_unix_ns", "device_id", "group_sha256")
_GROUP_COLUMNS = ("model", "model_version", "runtime", "site", "kind", "tags")
SPLIT_SUMS = tuple(f"{name}_{part}" for name in ROLLUP_SUMS for part in ("hi", "lo"))
# The order of the values in a row from rollup_rows.
ROLLUP_COLUMNS = (*ROLLUP_KEY, *_GROUP_COLUMNS, "records", *SPLIT_SUMS)

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


def add_to_rollups(connection: sa.Connection, rows: Sequence[tuple]) -> None:
    """Add the newly inserted priced rows to the roll-ups, in the caller's transaction."""
    if rows:
        add_rows(
            connection, cost_rollups, ROLLUP_COLUMNS, ROLLUP_KEY, rollup_rows(rows),
            counters=("records",), split_counters=ROLLUP_SUMS, split=ROLLUP_SPLIT,
        )


def rebuild_rollups(connection: sa.Connection, *, page_groups: int = 10_000) -> int:
    """Replace the roll-ups with the sums of the stored records (after records were written
    another way, e.g. a bulk load); returns the roll-up rows written. The sums are made by the
    database, in parts that cannot pass int64, and only the groups travel."""
    connection.execute(sa.delete(cost_rollups))
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
        add_rows(
            connection, cost_rollups, ROLLUP_COLUMNS, ROLLUP_KEY, written[first:first + page_groups],
            counters=("records",), split_counters=ROLLUP_SUMS, split=ROLLUP_SPLIT,
        )
    return len(written)
