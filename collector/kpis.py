"""Business KPIs: the work of a model, or of a tag, counted in a business unit ("fraud check",
"recommendation"), optionally worth a value per unit, and the report of what a unit costs and
what the work returned (ROI) per period.

A KPI unit is, as its `measure` says:
- inferences: one metered call (the records' count; an agent roll-up record stands for many);
- batch_items: one item of a batch (the batch size the call reported; 0 when it reported none);
- input_tokens, output_tokens, or tokens (input + output): one token.

The cost of a KPI in a period is the total cost of its model's (or tag's) group in the cost
report of that period (collector.costing): usage at effective prices, plus its share of idle
capacity and monthly fixed costs. Units come from the hourly model usage (collector.
model_usage), so both survive raw-record retention; the range is therefore whole UTC hours.
cost_per_unit is the cost over the units, rounded half-even to the pico; value is the units
times value_per_unit and roi value less cost, both exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

import sqlalchemy as sa

from agent.record import INT64_MAX, MAX_TAG_KEY_CHARS, InvalidRecord, check_text
from collector.charges import DAY_NS, HOUR_NS, month_start
from collector.model_usage import sum_columns, summed
from collector.params import QueryError
from collector.pricebook import NAME_PATTERN
from collector.pricing import PICOS_PER_UNIT, decimal_text, picos_to_decimal
from collector.reports import GRANULARITIES, rfc3339
from collector.schema import kpis, model_usage

MEASURES = {
    "inferences": ("count",),
    "batch_items": ("batch_size",),
    "input_tokens": ("input_tokens",),
    "output_tokens": ("output_tokens",),
    "tokens": ("input_tokens", "output_tokens"),
}
MAX_KPIS = 1_000
_FIELDS = ("name", "unit", "measure", "model", "tag", "value_per_unit")
_PICO = Decimal("1e-12")
_MAX_VALUE = decimal_text(picos_to_decimal(INT64_MAX))


@dataclass(frozen=True, slots=True)
class Kpi:
    name: str
    unit: str
    measure: str
    model: str | None = None  # exactly one of model and tag (KEY, VALUE)
    tag: tuple[str, str] | None = None
    value_per_unit_pico: int | None = None
    created_unix_ns: int = 0

    @property
    def group_key(self) -> str:
        """The cost report's group key that the KPI's cost is a group of."""
        return "model" if self.model is not None else f"tag:{self.tag[0]}"

    def to_json(self) -> dict:
        value = None if self.value_per_unit_pico is None else decimal_text(picos_to_decimal(self.value_per_unit_pico))
        return {"name": self.name, "unit": self.unit, "measure": self.measure, "model": self.model,
                "tag": None if self.tag is None else f"{self.tag[0]}={self.tag[1]}", "value_per_unit": value,
                "created_unix_ns": self.created_unix_ns}


def parse_kpi(document: object) -> Kpi:
    """A KPI from its JSON document {"name", "unit", "measure", "model" | "tag": "KEY=VALUE",
    "value_per_unit"?}; QueryError naming the field at fault."""
    if not isinstance(document, Mapping):
        raise QueryError(None, "the KPI must be a JSON object", code="invalid_body")
    unknown = sorted(set(document) - set(_FIELDS))
    if unknown:
        raise QueryError(unknown[0], f"unknown field {unknown[0]!r} (expected: {', '.join(_FIELDS)})")
    name = document.get("name")
    if type(name) is not str or not NAME_PATTERN.fullmatch(name):
        raise QueryError("name", f"name must be 1-64 characters of A-Z a-z 0-9 . _ -, not {name!r}")
    unit = _text(document.get("unit"), "unit")
    measure = document.get("measure", "inferences")
    if type(measure) is not str or measure not in MEASURES:
        raise QueryError("measure", f"measure must be one of {', '.join(MEASURES)}, not {measure!r}")
    model, tag = document.get("model"), document.get("tag")
    if (model is None) == (tag is None):
        raise QueryError("model", "give exactly one of model (a model name) and tag (KEY=VALUE)")
    if tag is not None:
        key, equals, value = tag.partition("=") if type(tag) is str else ("", "", "")
        if not equals:
            raise QueryError("tag", f"tag must be KEY=VALUE, not {tag!r}")
        tag = (_text(key, "tag", MAX_TAG_KEY_CHARS), _text(value, "tag"))
        if '"' in tag[0]:
            raise QueryError("tag", "a tag key with a double quote cannot be reported on")
    else:
        model = _text(model, "model")
    return Kpi(name, unit, measure, model, tag, _value_picos(document.get("value_per_unit")))


def _text(value: object, field: str, max_chars: int = 256) -> str:
    try:
        check_text(field, value, max_chars, required=True)
    except InvalidRecord as err:
        raise QueryError(field, f"{field} {err.reason}") from None
    return value


def _value_picos(value: object) -> int | None:
    """A value per unit: a decimal string or an integer, >= 0, to the pico."""
    if value is None:
        return None
    try:
        amount = Decimal(value) if type(value) in (str, int) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount < 0:
        raise QueryError("value_per_unit", f"value_per_unit must be a decimal string >= 0, not {value!r}")
    # Compared before quantize(): a value past Decimal's precision cannot be quantized.
    if amount * PICOS_PER_UNIT > INT64_MAX:
        raise QueryError("value_per_unit", f"value_per_unit {value!r} is too large (at most {_MAX_VALUE})")
    if amount != amount.quantize(_PICO):
        raise QueryError("value_per_unit", f"value_per_unit {value!r} has more than 12 decimals (picos)")
    return int(amount * PICOS_PER_UNIT)


# Storage


def add_kpi(connection: sa.Connection, kpi: Kpi, *, now_unix_ns: int) -> Kpi | None:
    """Store a new KPI; None when one of that name exists."""
    if connection.execute(sa.select(kpis.c.name).where(kpis.c.name == kpi.name)).first() is not None:
        return None
    if connection.execute(sa.select(sa.func.count()).select_from(kpis)).scalar_one() >= MAX_KPIS:
        raise QueryError("name", f"at most {MAX_KPIS:,} KPIs can be defined")
    connection.execute(sa.insert(kpis).values(
        name=kpi.name, unit=kpi.unit, measure=kpi.measure, model=kpi.model,
        tag_key=kpi.tag[0] if kpi.tag else None, tag_value=kpi.tag[1] if kpi.tag else None,
        value_per_unit_pico=kpi.value_per_unit_pico, created_unix_ns=now_unix_ns,
    ))
    return Kpi(kpi.name, kpi.unit, kpi.measure, kpi.model, kpi.tag, kpi.value_per_unit_pico, now_unix_ns)


def list_kpis(connection: sa.Connection) -> list[Kpi]:
    return [
        Kpi(row.name, row.unit, row.measure, row.model, None if row.tag_key is None else (row.tag_key, row.tag_value),
            row.value_per_unit_pico, row.created_unix_ns)
        for row in connection.execute(sa.select(kpis).order_by(kpis.c.name))
    ]


def delete_kpi(connection: sa.Connection, name: str) -> bool:
    return bool(connection.execute(sa.delete(kpis).where(kpis.c.name == name)).rowcount)


# The report


@dataclass(frozen=True, slots=True)
class KpiQuery:
    """Whole UTC hours [since, until), per granularity period."""

    since_unix_ns: int
    until_unix_ns: int
    granularity: str = "month"


def kpi_query(since: int | None, until: int | None, granularity: str | None, *, now_unix_ns: int) -> KpiQuery:
    """Defaults: from the start of the current UTC month to the end of the current hour, per month."""
    # A refusal names what the caller gave: a default is no fault of theirs.
    at_fault = "since" if since is not None else "until"
    until = -(-now_unix_ns // HOUR_NS) * HOUR_NS if until is None else until
    since = month_start(now_unix_ns) if since is None else since
    for field, value in (("since", since), ("until", until)):
        if value % HOUR_NS:
            raise QueryError(field, f"{field} must be a whole UTC hour: KPI units are kept per hour")
    if since > until:
        raise QueryError(at_fault, "since is after until")
    granularity = "month" if granularity is None else granularity
    if granularity not in GRANULARITIES:
        raise QueryError("granularity", f"granularity must be one of {', '.join(GRANULARITIES)}, not {granularity!r}")
    return KpiQuery(since, until, granularity)


def units_by_period(connection: sa.Connection, kpi: Kpi, query: KpiQuery) -> dict[int, int]:
    """The KPI's units per period start."""
    size = HOUR_NS if query.granularity == "hour" else DAY_NS
    bucket = (model_usage.c.hour_unix_ns - model_usage.c.hour_unix_ns % size).label("bucket")
    names = MEASURES[kpi.measure]
    select = sa.select(bucket, *sum_columns(names)).where(
        model_usage.c.hour_unix_ns >= query.since_unix_ns, model_usage.c.hour_unix_ns < query.until_unix_ns,
    )
    if kpi.model is not None:
        select = select.where(model_usage.c.model == kpi.model)
    else:
        select = select.where(model_usage.c.tags[kpi.tag[0]].as_string() == kpi.tag[1])
    units: dict[int, int] = {}
    for row in connection.execute(select.group_by(bucket)):
        start = int(row.bucket)
        period = month_start(start) if query.granularity == "month" else start
        units[period] = units.get(period, 0) + sum(summed(row._mapping, name) for name in names)
    return units


def period_json(kpi: Kpi, units: int, cost: Decimal) -> dict:
    """A period's (or the total's) units, cost, cost per unit, value and ROI; money as exact
    decimal strings, null where there is nothing to divide by or no value per unit."""
    per_unit = (cost / units).quantize(_PICO, rounding=ROUND_HALF_EVEN) if units else None
    value = None if kpi.value_per_unit_pico is None else picos_to_decimal(kpi.value_per_unit_pico * units)
    return {
        "units": units,
        "cost": decimal_text(cost),
        "cost_per_unit": None if per_unit is None else decimal_text(per_unit),
        "value": None if value is None else decimal_text(value),
        "roi": None if value is None else decimal_text(value - cost),
    }


def kpi_json(kpi: Kpi, units: dict[int, int], costs: dict[int, Decimal]) -> dict:
    """A KPI's report: its definition, each period with units or cost, and the range's total."""
    periods = sorted(set(units) | set(costs))
    return {
        **kpi.to_json(),
        "periods": [
            {"period": rfc3339(period), **period_json(kpi, units.get(period, 0), costs.get(period, Decimal(0)))}
            for period in periods
        ],
        "total": period_json(kpi, sum(units.values()), sum(costs.values(), Decimal(0))),
    }


def costs_by_period(groups: list, kpi: Kpi) -> dict[int, Decimal]:
    """The KPI's total cost per period from a cost report grouped by its group key."""
    wanted = kpi.model if kpi.model is not None else kpi.tag[1]
    costs: dict[int, Decimal] = {}
    for group in groups:
        if group.key == (wanted,):
            costs[group.period_start_unix_ns] = costs.get(group.period_start_unix_ns, Decimal(0)) + group.total_cost
    return costs
