"""Workload classes: each model's business criticality (customer-facing / internal), latency
class (real-time / batch) and scaling behaviour (steady / elastic).

Two sources, per dimension: an operator's setting for the model (the workload_classes table),
or the record's own tag of the same name (`criticality=customer-facing`, `latency=batch`,
`scaling=elastic`). The operator's setting wins: a class is a governance decision that budgets
and reports rely on, and a tag is whatever the application sent, so the setting corrects a
wrong or missing tag without touching code on the devices. Neither, or a tag value that is no
class: "unclassified".

Reports group by a dimension with the key `class:DIMENSION` (collector.reports), forecasts take
the scope `class:DIMENSION=VALUE` (collector.spend_series): both work on the hourly roll-ups,
whose rows carry the model and the tag set, so a class set today regroups all history.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from agent.record import InvalidRecord, check_text
from collector.params import QueryError
from collector.schema import workload_classes

DIMENSIONS: dict[str, tuple[str, ...]] = {
    "criticality": ("customer-facing", "internal"),
    "latency": ("real-time", "batch"),
    "scaling": ("steady", "elastic"),
}
UNCLASSIFIED = "unclassified"
KEY_PREFIX = "class:"
MAX_CLASSES = 10_000


@dataclass(frozen=True, slots=True)
class WorkloadClass:
    """An operator's classes for a model; None leaves the dimension to the records' tags."""

    model: str
    criticality: str | None = None
    latency: str | None = None
    scaling: str | None = None
    updated_unix_ns: int = 0

    def to_json(self) -> dict:
        return {"model": self.model, "criticality": self.criticality, "latency": self.latency,
                "scaling": self.scaling, "updated_unix_ns": self.updated_unix_ns}


def check_dimension(key: str) -> str:
    """The dimension of a group key `class:DIMENSION`; ValueError if it names none."""
    dimension = key[len(KEY_PREFIX):]
    if dimension not in DIMENSIONS:
        raise ValueError(f"group key {key!r}: the class dimension must be one of {', '.join(DIMENSIONS)}")
    return dimension


def class_column(key: str, table: sa.Table) -> sa.ColumnElement[str]:
    """The class of `table`'s rows (records or roll-ups: a model and a tags column) for the
    group key `class:DIMENSION`: the operator's setting for the row's model, else the row's tag
    when it is a class of that dimension, else "unclassified"."""
    dimension = check_dimension(key)
    tag = table.c.tags[dimension].as_string()
    set_by_admin = (
        sa.select(workload_classes.c[dimension]).where(workload_classes.c.model == table.c.model).scalar_subquery()
    )
    return sa.func.coalesce(set_by_admin, sa.case((tag.in_(DIMENSIONS[dimension]), tag), else_=UNCLASSIFIED))


def parse_class(model: object, values: dict, *, updated_unix_ns: int = 0) -> WorkloadClass:
    """A WorkloadClass from a request: the model and, per dimension, a class or None (null:
    left to the tags). QueryError naming the field at fault; at least one class is required."""
    if type(model) is not str:
        raise QueryError("model", "model must be a string")
    try:
        check_text("model", model, required=True)
    except InvalidRecord as err:
        raise QueryError("model", f"model {err.reason}") from None
    unknown = sorted(set(values) - set(DIMENSIONS))
    if unknown:
        raise QueryError(unknown[0], f"unknown field {unknown[0]!r} (expected: {', '.join(DIMENSIONS)})")
    for dimension, value in values.items():
        if value is not None and value not in DIMENSIONS[dimension]:
            allowed = " or ".join(DIMENSIONS[dimension])
            raise QueryError(dimension, f"{dimension} must be {allowed} (or null: left to the tags), not {value!r}")
    if all(values.get(dimension) is None for dimension in DIMENSIONS):
        raise QueryError("criticality", f"set at least one of {', '.join(DIMENSIONS)} (to clear a model's classes, delete them)")
    return WorkloadClass(model, *(values.get(dimension) for dimension in DIMENSIONS), updated_unix_ns)


def set_class(connection: sa.Connection, chosen: WorkloadClass, *, now_unix_ns: int) -> WorkloadClass:
    """Insert or replace the model's classes."""
    values = {dimension: getattr(chosen, dimension) for dimension in DIMENSIONS} | {"updated_unix_ns": now_unix_ns}
    updated = connection.execute(
        sa.update(workload_classes).where(workload_classes.c.model == chosen.model).values(values)
    ).rowcount
    if not updated:
        count = connection.execute(sa.select(sa.func.count()).select_from(workload_classes)).scalar_one()
        if count >= MAX_CLASSES:
            raise QueryError("model", f"at most {MAX_CLASSES:,} models can have classes set")
        connection.execute(sa.insert(workload_classes).values(model=chosen.model, **values))
    return WorkloadClass(chosen.model, *(values[dimension] for dimension in DIMENSIONS), now_unix_ns)


def delete_class(connection: sa.Connection, model: str) -> bool:
    """Forget the model's classes (its records' tags decide again); False if none were set."""
    return bool(connection.execute(sa.delete(workload_classes).where(workload_classes.c.model == model)).rowcount)


def list_classes(connection: sa.Connection) -> list[WorkloadClass]:
    rows = connection.execute(sa.select(workload_classes).order_by(workload_classes.c.model))
    return [WorkloadClass(row.model, row.criticality, row.latency, row.scaling, row.updated_unix_ns) for row in rows]
