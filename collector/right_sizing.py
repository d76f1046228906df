"""Right-sizing evidence: the versions of one model side by side (each variant: version,
runtime, execution provider), with cost, energy and latency per inference over a range, and
what moving each variant's traffic to the cheapest one would save a month at the current
volume.

- Cost and energy per inference: the variant's records' cost (effective prices) and energy
  over its inferences (the records' count), from the hourly model usage (collector.
  model_usage): exact over any range of whole UTC hours, raw records pruned or not.
- Latency per inference: a record's wall duration over its count (one call: its duration).
  The mean is the summed durations over the inferences; p50 and p95 are nearest-rank
  percentiles of the records' per-inference latency, from the raw records still stored
  (`latency_records` says how many: 0 once the range is pruned, and the percentiles are null).
- Projection: a month is 30 days. A variant's monthly inferences are its inferences scaled
  from the range to 30 days; its monthly saving is those inferences times the difference
  between its cost per inference and the cheapest variant's, rounded half-even to the pico.
  The energy saving is worked out the same way (it may be negative: cheaper is not always
  leaner).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import sqlalchemy as sa

from agent.record import InvalidRecord, check_text
from collector.charges import DAY_NS, HOUR_NS
from collector.model_usage import COUNTED_KINDS, VARIANT_COLUMNS, sum_columns, summed
from collector.params import QueryError
from collector.pricing import decimal_text, div_round_half_even, picos_to_decimal
from collector.reports import rfc3339
from collector.schema import model_usage, records

MONTH_NS = 30 * DAY_NS
DEFAULT_DAYS = 30
PERCENTILES = (50, 95)
_PICO = Decimal("1e-12")


@dataclass(frozen=True, slots=True)
class RightSizingQuery:
    model: str
    since_unix_ns: int
    until_unix_ns: int


def right_sizing_query(model: object, since: int | None, until: int | None, *, now_unix_ns: int) -> RightSizingQuery:
    """Defaults: the 30 days up to the end of the current hour. QueryError if bad."""
    if type(model) is not str:
        raise QueryError("model", "model is required: the model whose versions to compare")
    try:
        check_text("model", model, required=True)
    except InvalidRecord as err:
        raise QueryError("model", f"model {err.reason}") from None
    # A refusal names what the caller gave: a default is no fault of theirs.
    at_fault = "since" if since is not None else "until"
    for field, value in (("since", since), ("until", until)):
        if value is not None and value % HOUR_NS:
            raise QueryError(field, f"{field} must be a whole UTC hour: model usage is kept per hour")
    until = -(-now_unix_ns // HOUR_NS) * HOUR_NS if until is None else until
    since = max(0, until - DEFAULT_DAYS * DAY_NS) if since is None else since
    if since >= until:
        raise QueryError(at_fault, "since must be before until")
    return RightSizingQuery(model, since, until)


def right_sizing(connection: sa.Connection, query: RightSizingQuery, *, currency: str) -> dict:
    """The comparison as the APIs answer it (JSON-ready); variants cheapest per inference first."""
    variant = [model_usage.c[name] for name in VARIANT_COLUMNS[1:]]
    select = sa.select(
        *variant, sa.func.sum(model_usage.c.records).label("records"),
        *sum_columns(("count", "cost_pico", "energy_uj", "duration_ns")),
    ).where(
        model_usage.c.model == query.model, model_usage.c.hour_unix_ns >= query.since_unix_ns,
        model_usage.c.hour_unix_ns < query.until_unix_ns,
    ).group_by(*variant)
    found = []
    for row in connection.execute(select):
        values = row._mapping
        inferences = summed(values, "count")
        if inferences:
            found.append((tuple(row[:3]), int(values["records"]), inferences, summed(values, "cost_pico"),
                          summed(values, "energy_uj"), summed(values, "duration_ns")))
    found.sort(key=lambda item: (Fraction(item[3], item[2]), item[0]))
    scale = Fraction(MONTH_NS, query.until_unix_ns - query.since_unix_ns)
    cheapest = found[0] if found else None
    variants = []
    total_saving = 0
    for key, records_, inferences, cost, energy, duration in found:
        saving = scale * (cost - Fraction(inferences * cheapest[3], cheapest[2]))
        energy_saving = scale * (energy - Fraction(inferences * cheapest[4], cheapest[2]))
        saving_pico = div_round_half_even(saving.numerator, saving.denominator)
        total_saving += saving_pico
        latency = _percentiles(connection, query, key)
        variants.append({
            **dict(zip(("version", "runtime", "execution_provider"), key)),
            "cheapest": key == cheapest[0],
            "records": records_,
            "inferences": inferences,
            "cost": decimal_text(picos_to_decimal(cost)),
            "energy_uj": energy,
            "cost_per_inference": _decimal(Fraction(cost, inferences) / 10**12, _PICO),
            "energy_uj_per_inference": _decimal(Fraction(energy, inferences), Decimal("0.001")),
            "mean_latency_ns": div_round_half_even(duration, inferences),
            **latency,
            "monthly_inferences": div_round_half_even((scale * inferences).numerator, (scale * inferences).denominator),
            "monthly_cost": decimal_text(picos_to_decimal(div_round_half_even((scale * cost).numerator,
                                                                                (scale * cost).denominator))),
            "monthly_saving": decimal_text(picos_to_decimal(saving_pico)),
            "monthly_energy_saving_uj": div_round_half_even(energy_saving.numerator, energy_saving.denominator),
        })
    return {
        "model": query.model,
        "currency": currency,
        "since": rfc3339(query.since_unix_ns),
        "until": rfc3339(query.until_unix_ns),
        "variants": variants,
        "monthly_saving": decimal_text(picos_to_decimal(total_saving)),
    }


def _decimal(value: Fraction, places: Decimal) -> str:
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return decimal_text(exact.quantize(places, rounding=ROUND_HALF_EVEN))


def _percentiles(connection: sa.Connection, query: RightSizingQuery, key: tuple) -> dict:
    """Nearest-rank percentiles of the raw records' latency per inference; the database sorts."""
    latency = (records.c.duration_ns / records.c.count).label("latency_ns")
    where = [
        records.c.model == query.model, *(records.c[name] == value for name, value in zip(VARIANT_COLUMNS[1:], key)),
        records.c.start_unix_ns >= query.since_unix_ns, records.c.start_unix_ns < query.until_unix_ns,
        records.c.kind.in_(COUNTED_KINDS), records.c.count > 0,
    ]
    stored = connection.execute(sa.select(sa.func.count()).select_from(records).where(*where)).scalar_one()
    answer = {"latency_records": stored}
    for percent in PERCENTILES:
        value = None
        if stored:
            rank = -(-percent * stored // 100)
            value = connection.execute(
                sa.select(latency).where(*where).order_by(latency).offset(rank - 1).limit(1)
            ).scalar_one()
        answer[f"p{percent}_latency_ns"] = None if value is None else int(value)
    return answer
