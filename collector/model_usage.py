"""What each model variant did, kept on ingest: hourly sums per device, variant (model, version,
runtime, execution provider) and tag set (the model_usage table), and where each variant runs
with its first and last record start (model_deployments).

The cost roll-ups (collector.rollups) have no execution provider, token or batch sums, and raw
records are pruned (collector.retention): these two tables are the registry's memory, and what
right-sizing and KPI units read. Ingest adds the rows it actually inserted, in the same
transaction, so a replayed batch adds nothing; re-pricing adds its cost differences
(add_cost_differences). Idle energy and gap records belong to no model and are left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from agent.record import Kind
from collector.bulk import add_rows
from collector.rollups import HOUR_NS, canonical_tags
from collector.rows import RECORD_COLUMNS
from collector.schema import (
    MODEL_USAGE_SUMS,
    ROLLUP_SPLIT,
    model_deployments,
    model_usage,
)

COUNTED_KINDS = (int(Kind.INFERENCE), int(Kind.SPAN), int(Kind.ROLLUP))
VARIANT_COLUMNS = ("model", "model_version", "runtime", "execution_provider")
USAGE_KEY = ("hour_unix_ns", "device_id", "group_sha256")
USAGE_COLUMNS = (*USAGE_KEY, *VARIANT_COLUMNS, "tags", "records",
                 *(f"{name}_{part}" for name in MODEL_USAGE_SUMS for part in ("hi", "lo")))
_SUMS_AT = USAGE_COLUMNS.index("records") + 1
_COST_SUM = MODEL_USAGE_SUMS.index("cost_pico")
_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_AT = {name: RECORD_COLUMNS.index(name) for name in RECORD_COLUMNS}
_SUM_AT = tuple(_AT[name] for name in MODEL_USAGE_SUMS)


def variant_sha256(model: str, model_version: str, runtime: str, execution_provider: str) -> str:
    """The key of a variant in model_deployments."""
    return hashlib.sha256(_json([model, model_version, runtime, execution_provider]).encode()).hexdigest()


def usage_rows(rows: Iterable[tuple]) -> list[tuple]:
    """The model_usage rows (USAGE_COLUMNS order, sorted by key) that add the priced rows
    `rows` (collector.rows.priced_rows' tuples) to the table."""
    kind, start, device_id, model, version, runtime, provider, tags = (_AT[name] for name in (
        "kind", "start_unix_ns", "device_id", "model", "model_version", "runtime", "execution_provider", "tags"))
    count, cost, energy, duration, batch, input_tokens, output_tokens = _SUM_AT
    # One pass, unrolled as collector.rollups does: this runs for every record ingested.
    sums: dict[tuple, list[int]] = {}
    for row in rows:
        if row[kind] not in COUNTED_KINDS or not row[model]:
            continue
        at = row[start]
        key = (at - at % HOUR_NS, row[device_id], row[model], row[version], row[runtime], row[provider], row[tags])
        acc = sums.get(key)
        if acc is None:
            sums[key] = [1, row[count], row[cost], row[energy], row[duration], row[batch], row[input_tokens],
                         row[output_tokens]]
        else:
            acc[0] += 1
            acc[1] += row[count]
            acc[2] += row[cost]
            acc[3] += row[energy]
            acc[4] += row[duration]
            acc[5] += row[batch]
            acc[6] += row[input_tokens]
            acc[7] += row[output_tokens]
    # Tag sets that differ only in key order are one group.
    canonical: dict[str, str] = {}
    merged: dict[tuple, tuple[tuple, list[int]]] = {}
    for (hour, device, *variant, tag_set), acc in sums.items():
        tag_set = canonical.get(tag_set) or canonical.setdefault(tag_set, canonical_tags(tag_set))
        group = (*variant, tag_set)
        key = (hour, device, hashlib.sha256(_json(group).encode()).hexdigest())
        found = merged.get(key)
        merged[key] = (group, acc if found is None else [a + b for a, b in zip(found[1], acc)])
    return [
        (*key, *group, acc[0], *(part for total in acc[1:] for part in divmod(total, ROLLUP_SPLIT)))
        for key, (group, acc) in sorted(merged.items())
    ]


def deployment_rows(rows: Iterable[tuple]) -> list[dict]:
    """The model_deployments rows of the priced rows: per device and variant, the earliest and
    latest record start; sorted by key, the order ingest locks them in."""
    spans: dict[tuple, list[int]] = {}
    kind, start, device_id, model, version, runtime, provider = (_AT[name] for name in (
        "kind", "start_unix_ns", "device_id", "model", "model_version", "runtime", "execution_provider"))
    for row in rows:
        if row[kind] not in COUNTED_KINDS or not row[model]:
            continue
        key = (row[device_id], row[model], row[version], row[runtime], row[provider])
        at = row[start]
        span = spans.get(key)
        if span is None:
            spans[key] = [at, at]
        elif at < span[0]:
            span[0] = at
        elif at > span[1]:
            span[1] = at
    placed = [
        {"device_id": key[0], "variant_sha256": variant_sha256(*key[1:]), **dict(zip(VARIANT_COLUMNS, key[1:])),
         "first_start_unix_ns": first, "last_start_unix_ns": last}
        for key, (first, last) in spans.items()
    ]
    return sorted(placed, key=lambda row: (row["device_id"], row["variant_sha256"]))


def add_usage(connection: sa.Connection, rows: Sequence[tuple]) -> None:
    """Add the newly inserted priced rows to both tables, in the caller's transaction."""
    if not rows:
        return
    add_rows(
        connection, model_usage, USAGE_COLUMNS, USAGE_KEY, usage_rows(rows),
        counters=("records",), split_counters=MODEL_USAGE_SUMS, split=ROLLUP_SPLIT,
    )
    placed = deployment_rows(rows)
    if placed:
        connection.execute(_deployment_upsert(connection.dialect.name), placed)


def _deployment_upsert(dialect: str) -> sa.Insert:
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model_deployments)
    # Scalar min/max of two values: SQLite's two-argument min()/max(), PostgreSQL's LEAST/GREATEST.
    least, greatest = (sa.func.least, sa.func.greatest) if dialect == "postgresql" else (sa.func.min, sa.func.max)
    return insert.on_conflict_do_update(
        index_elements=["device_id", "variant_sha256"],
        set_={
            "first_start_unix_ns": least(model_deployments.c.first_start_unix_ns, insert.excluded.first_start_unix_ns),
            "last_start_unix_ns": greatest(model_deployments.c.last_start_unix_ns, insert.excluded.last_start_unix_ns),
        },
    )


def add_cost_differences(connection: sa.Connection, old_rows: Sequence[tuple], new_rows: Sequence[tuple]) -> None:
    """After re-pricing: add to model_usage what turns the old rows' costs into the new rows'
    (the same records, only prices differ). A negative difference is written as hi < 0 and
    0 <= lo < ROLLUP_SPLIT, which collector.bulk.add_rows adds with the carry."""
    old = {row[:len(USAGE_KEY)]: row for row in usage_rows(old_rows)}
    differences = []
    for row in usage_rows(new_rows):
        before = old[row[:len(USAGE_KEY)]]
        at = _SUMS_AT + 2 * _COST_SUM
        difference = (row[at] - before[at]) * ROLLUP_SPLIT + row[at + 1] - before[at + 1]
        if difference:
            parts = [0] * (2 * len(MODEL_USAGE_SUMS))
            parts[2 * _COST_SUM:2 * _COST_SUM + 2] = divmod(difference, ROLLUP_SPLIT)
            differences.append((*row[:_SUMS_AT - 1], 0, *parts))
    if differences:
        add_rows(
            connection, model_usage, USAGE_COLUMNS, USAGE_KEY, differences,
            counters=("records",), split_counters=MODEL_USAGE_SUMS, split=ROLLUP_SPLIT,
        )


def summed(row: sa.RowMapping, name: str) -> int:
    """A sum selected as NAME_hi and NAME_lo (see sum_columns) put back together."""
    return int(row[f"{name}_hi"]) * ROLLUP_SPLIT + int(row[f"{name}_lo"])


def sum_columns(names: Sequence[str] = MODEL_USAGE_SUMS) -> list[sa.Label]:
    """SUMs of model_usage's split columns, labelled NAME_hi and NAME_lo: the parts never pass
    int64 (SQLite's SUM raises on overflow) and summed() adds them exactly."""
    return [
        sa.func.sum(model_usage.c[f"{name}_{part}"]).label(f"{name}_{part}") for name in names for part in ("hi", "lo")
    ]
