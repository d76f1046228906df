"""FOCUS cost and usage rows from the priced records (FinOps Open Cost and Usage Specification 1.2).

One row per charge period (a UTC hour), device, model, model version, record kind, tag set and
price (the price book, hardware profile and site that priced the records). The rows are a
projection of the stored costs, not a second computation: every amount is a sum of the
records' integer picos, written as an exact decimal, so BilledCost over a range adds up to
`report costs` over the same range to the pico. Records are charged to the hour they started
in, as the report counts them; the first and last hour are cut to the export's range.

Streaming: the database groups and orders the rows and they are read in chunks (a server-side
cursor on PostgreSQL), so memory holds a chunk, not the records. Tag sets are compared as sets:
the same tags stored in another order are one row.

Column values: None is null; DateTime columns are Unix ns; Decimal columns are Decimals whose
exponent is the column's scale, so CSV text and Parquet decimal128 are exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import sqlalchemy as sa

from agent.record import Kind
from collector.charges import FIXED_LABEL, IDLE_LABEL
from collector.reports import CostGroup
from collector.schema import devices, records

FOCUS_VERSION = "1.2"
NS_PER_HOUR = 3_600 * 10**9
DEFAULT_ORG = "infermeter"
CONSUMED_UNIT = "Inferences"
SERVICE_CATEGORY = "AI and Machine Learning"
SERVICE_SUBCATEGORY = "Machine Learning"
SERVICE_NAME = "Inference"
RESOURCE_TYPE = "Device"
BILLING_ACCOUNT_TYPE = "Collector"

STRING, DATETIME, DECIMAL, INTEGER = "string", "datetime", "decimal", "integer"
MONEY_SCALE = 12  # picos
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# SQLite's SUM of BIGINTs raises on int64 overflow: each sum is taken in two parts (as the report does).
_SPLIT = 1_000_000
_SUMMED = (
    "count", "cost_pico", "list_cost_pico", "compute_cost_pico", "energy_cost_pico", "energy_uj", "cpu_time_ns",
    "gpu_time_ns", "token_cost_pico", "request_cost_pico",
)
_KEY = ("hour", "device_id", "model", "model_version", "kind", "site", "profile", "price_book_id")
# Records of idle energy are priced in the idle rows (period_rows), with the idle capacity.
_NOT_IDLE = records.c.kind != int(Kind.IDLE)
# The report that the period rows project: per UTC day, by what FOCUS rows name.
PERIOD_GROUP_BY = ("device", "site", "model", "version")


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # STRING, DATETIME, DECIMAL or INTEGER
    scale: int = 0  # digits after the point, for DECIMAL


def _columns(*specs: tuple) -> tuple[Column, ...]:
    return tuple(Column(*spec) for spec in specs)


# FOCUS 1.2 columns in alphabetical order, then infermeter's own (x_). Always-null columns are
# there because the validator requires them or FOCUS defines them for charges like these.
COLUMNS = _columns(
    ("AvailabilityZone", STRING),
    ("BilledCost", DECIMAL, MONEY_SCALE),
    ("BillingAccountId", STRING),
    ("BillingAccountName", STRING),
    ("BillingAccountType", STRING),
    ("BillingCurrency", STRING),
    ("BillingPeriodEnd", DATETIME),
    ("BillingPeriodStart", DATETIME),
    ("ChargeCategory", STRING),
    ("ChargeClass", STRING),
    ("ChargeDescription", STRING),
    ("ChargeFrequency", STRING),
    ("ChargePeriodEnd", DATETIME),
    ("ChargePeriodStart", DATETIME),
    ("CommitmentDiscountCategory", STRING),
    ("CommitmentDiscountId", STRING),
    ("CommitmentDiscountName", STRING),
    ("CommitmentDiscountQuantity", DECIMAL, 0),
    ("CommitmentDiscountStatus", STRING),
    ("CommitmentDiscountType", STRING),
    ("CommitmentDiscountUnit", STRING),
    ("ConsumedQuantity", DECIMAL, 0),
    ("ConsumedUnit", STRING),
    ("ContractedCost", DECIMAL, MONEY_SCALE),
    ("ContractedUnitPrice", DECIMAL, MONEY_SCALE),
    ("EffectiveCost", DECIMAL, MONEY_SCALE),
    ("InvoiceIssuerName", STRING),
    ("ListCost", DECIMAL, MONEY_SCALE),
    ("ListUnitPrice", DECIMAL, MONEY_SCALE),
    ("PricingCategory", STRING),
    ("PricingQuantity", DECIMAL, 0),
    ("PricingUnit", STRING),
    ("ProviderName", STRING),
    ("PublisherName", STRING),
    ("RegionId", STRING),
    ("RegionName", STRING),
    ("ResourceId", STRING),
    ("ResourceName", STRING),
    ("ResourceType", STRING),
    ("ServiceCategory", STRING),
    ("ServiceName", STRING),
    ("ServiceSubcategory", STRING),
    ("SkuId", STRING),
    ("SkuPriceId", STRING),
    ("SubAccountId", STRING),
    ("SubAccountName", STRING),
    ("SubAccountType", STRING),
    ("Tags", STRING),
    ("x_Model", STRING),
    ("x_ModelVersion", STRING),
    ("x_Device", STRING),
    ("x_RecordKind", STRING),
    ("x_CostKind", STRING),
    ("x_Inferences", INTEGER),
    ("x_Records", INTEGER),
    ("x_ComputeCost", DECIMAL, MONEY_SCALE),
    ("x_EnergyCost", DECIMAL, MONEY_SCALE),
    ("x_TokenCost", DECIMAL, MONEY_SCALE),
    ("x_RequestCost", DECIMAL, MONEY_SCALE),
    ("x_EnergyJoules", DECIMAL, 6),
    ("x_EnergyMethod", STRING),
    ("x_CpuTimeSeconds", DECIMAL, 9),
    ("x_GpuTimeSeconds", DECIMAL, 9),
)
COLUMN_NAMES = tuple(column.name for column in COLUMNS)


@dataclass(frozen=True, slots=True)
class ExportScope:
    """What an export covers and how it names the parties: records whose start is in
    [since, until) (None: open), priced in `currency`; `org` is the provider, publisher,
    invoice issuer and billing account."""

    currency: str
    since_unix_ns: int | None = None
    until_unix_ns: int | None = None
    org: str = DEFAULT_ORG


@dataclass(slots=True)
class ChargeGroup:
    """The sums of one output row, over one or more of the query's groups (tag order aside)."""

    key: tuple  # the _KEY values
    device_name: str
    tags: str  # the tag set as canonical JSON: keys sorted
    records: int = 0
    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_SUMMED, 0))
    energy_methods: set[str] = field(default_factory=set)  # "sensor:method"

    @property
    def hour_start_unix_ns(self) -> int:
        return self.key[0] * NS_PER_HOUR

    def add(self, row: sa.Row) -> None:
        values = row._mapping
        self.records += values["records"]
        for name in _SUMMED:
            self.sums[name] += int(values[f"{name}_hi"]) * _SPLIT + int(values[f"{name}_lo"])


def charge_query(dialect: str, since_unix_ns: int | None, until_unix_ns: int | None) -> sa.Select:
    """The sums per group of _KEY and raw tag text, with the device's name, one row per distinct
    energy (sensor, method) of the group (sensor NULL when none), ordered so that a group's rows,
    and the groups that differ only in tag order, come together."""
    totals = _totals(since_unix_ns, until_unix_ns).subquery("totals")
    methods = _energy_methods(dialect, since_unix_ns, until_unix_ns).subquery("methods")
    same_group = sa.and_(*(totals.c[name] == methods.c[name] for name in (*_KEY, "tags")))
    return (
        sa.select(totals, devices.c.name.label("device_name"), methods.c.sensor, methods.c.method)
        .select_from(
            totals.join(devices, devices.c.device_id == totals.c.device_id).outerjoin(methods, same_group)
        )
        .order_by(
            totals.c.hour, devices.c.name, *(totals.c[name] for name in _KEY[2:]), totals.c.tags,
            methods.c.sensor, methods.c.method,
        )
    )


def _keys() -> list[sa.ColumnElement]:
    # The hour as a literal: PostgreSQL matches GROUP BY expressions by text, and a bound
    # parameter would make the select's expression and the GROUP BY's two different ones.
    hour = records.c.start_unix_ns // sa.literal_column(str(NS_PER_HOUR), sa.BigInteger)
    return [
        hour.label("hour"),
        *(records.c[name] for name in _KEY[1:]),
        # The JSON as stored (PostgreSQL's json type has no equality to group by).
        sa.cast(records.c.tags, sa.Text).label("tags"),
    ]


def _in_range(query: sa.Select, since_unix_ns: int | None, until_unix_ns: int | None) -> sa.Select:
    if since_unix_ns is not None:
        query = query.where(records.c.start_unix_ns >= since_unix_ns)
    if until_unix_ns is not None:
        query = query.where(records.c.start_unix_ns < until_unix_ns)
    return query


def _totals(since_unix_ns: int | None, until_unix_ns: int | None) -> sa.Select:
    keys = _keys()
    sums = []
    for name in _SUMMED:
        column = records.c[name]
        sums += [sa.func.sum(column // _SPLIT).label(f"{name}_hi"), sa.func.sum(column % _SPLIT).label(f"{name}_lo")]
    query = sa.select(*keys, sa.func.count().label("records"), *sums).select_from(records).where(_NOT_IDLE)
    return _in_range(query, since_unix_ns, until_unix_ns).group_by(*keys)


def _energy_methods(dialect: str, since_unix_ns: int | None, until_unix_ns: int | None) -> sa.Select:
    """The distinct (sensor, method) of the energy shares of each group's records."""
    if dialect == "postgresql":
        shares = sa.func.json_array_elements(records.c.energy).table_valued("value", joins_implicitly=True)
        sensor, method = (shares.c.value.op("->>")(name) for name in ("sensor", "method"))
    else:
        shares = sa.func.json_each(records.c.energy).table_valued("value", joins_implicitly=True)
        sensor, method = (sa.func.json_extract(shares.c.value, f"$.{name}") for name in ("sensor", "method"))
    query = (
        sa.select(*_keys(), sensor.label("sensor"), method.label("method"))
        .select_from(records, shares)
        .where(records.c.energy.is_not(None), _NOT_IDLE)
        .distinct()
    )
    return _in_range(query, since_unix_ns, until_unix_ns)


def charge_groups(rows: Iterable[sa.Row]) -> Iterator[ChargeGroup]:
    """The output rows' sums from charge_query's rows, in its order: a group's rows (one per
    energy method) are summed once, and groups whose tags differ only in order are merged."""
    block_key = None
    block: dict[str, ChargeGroup] = {}  # the groups of one _KEY, by canonical tags
    previous = None  # (key, raw tags) of the row before: a group's further rows add only a method
    canonical: dict[str, str] = {}
    for row in rows:
        key = tuple(row._mapping[name] for name in _KEY)
        if key != block_key:
            yield from block.values()
            block, block_key = {}, key
        tags = canonical.get(row.tags)
        if tags is None:
            if len(canonical) > 10_000:  # tag sets repeat hour after hour; bound the cache all the same
                canonical.clear()
            tags = canonical[row.tags] = canonical_tags(row.tags)
        group = block.get(tags)
        if group is None:
            group = block[tags] = ChargeGroup(key, row.device_name, tags)
        if (key, row.tags) != previous:
            group.add(row)
            previous = (key, row.tags)
        if row.sensor is not None:
            group.energy_methods.add(f"{row.sensor}:{row.method}")
    yield from block.values()


def canonical_tags(text: str) -> str:
    tags = json.loads(text)
    return json.dumps(dict(sorted(tags.items())), ensure_ascii=False, separators=(",", ":"))


def focus_row(group: ChargeGroup, scope: ExportScope) -> tuple:
    """The row's values in COLUMNS order; the columns not named here are null (no zones,
    commitment discounts, sub-accounts or unit prices: see README, FOCUS export)."""
    _, device_id, model, version, kind, site, profile, book_id = group.key
    sums = group.sums
    cost = picos(sums["cost_pico"])
    inferences = Decimal(sums["count"])
    values = {
        **_parties_and_periods(scope, group.hour_start_unix_ns, NS_PER_HOUR),
        "BilledCost": cost,
        "ChargeCategory": "Usage",
        "ChargeDescription": charge_description(kind, model, version, group.device_name),
        "ChargeFrequency": "Usage-Based",
        "ConsumedQuantity": inferences,
        "ConsumedUnit": CONSUMED_UNIT,
        # No negotiated or commitment discounts yet: what was charged is the contracted cost.
        "ContractedCost": cost,
        "EffectiveCost": cost,
        "ListCost": picos(sums["list_cost_pico"]),
        "PricingCategory": "Standard",
        "PricingQuantity": inferences,
        "PricingUnit": CONSUMED_UNIT,
        "RegionId": site,
        "RegionName": site,
        "ResourceId": device_id,
        "ResourceName": group.device_name,
        "ResourceType": RESOURCE_TYPE,
        "SkuId": f"{profile}/{site}",
        "SkuPriceId": f"{book_id}/{profile}/{site}",
        "Tags": group.tags,
        "x_Model": model,
        "x_ModelVersion": version,
        "x_Device": group.device_name,
        "x_RecordKind": kind_name(kind),
        "x_CostKind": "usage",
        "x_Inferences": sums["count"],
        "x_Records": group.records,
        "x_ComputeCost": picos(sums["compute_cost_pico"]),
        "x_EnergyCost": picos(sums["energy_cost_pico"]),
        "x_TokenCost": picos(sums["token_cost_pico"]),
        "x_RequestCost": picos(sums["request_cost_pico"]),
        "x_EnergyJoules": Decimal(f"{sums['energy_uj']}e-6"),
        "x_EnergyMethod": ",".join(sorted(group.energy_methods)) or None,
        "x_CpuTimeSeconds": Decimal(f"{sums['cpu_time_ns']}e-9"),
        "x_GpuTimeSeconds": Decimal(f"{sums['gpu_time_ns']}e-9"),
    }
    return tuple(values.get(name) for name in COLUMN_NAMES)


_PERIOD_COSTS = (
    # (cost kind, the CostGroup field, ChargeCategory, ChargeFrequency, sign)
    ("idle", "idle_cost", "Usage", "Usage-Based", 1),
    ("fixed", "fixed_cost", "Purchase", "Recurring", 1),
    ("discount", "discount", "Credit", "Usage-Based", -1),
)


def period_rows(group: CostGroup, scope: ExportScope, device_ids: Mapping[str, str]) -> Iterator[tuple]:
    """The rows of a day's period costs (collector.charges) in one group of the PERIOD_GROUP_BY
    report: idle capacity and idle energy, monthly fixed costs, volume discounts (a credit:
    negative), each a row when not zero. Cells no usage took name "(idle)" or "(fixed)" for
    what they are not known by."""
    device, site, model, version = group.key
    for cost_kind, field_name, category, frequency, sign in _PERIOD_COSTS:
        amount = sign * getattr(group, field_name)
        if not amount:
            continue
        amount = amount.quantize(Decimal(1).scaleb(-MONEY_SCALE))
        values = {
            **_parties_and_periods(scope, group.period_start_unix_ns, 24 * NS_PER_HOUR),
            "BilledCost": amount,
            "ChargeCategory": category,
            "ChargeDescription": period_description(cost_kind, device, model),
            "ChargeFrequency": frequency,
            "ContractedCost": amount,
            "EffectiveCost": amount,
            # A discount is off the list: its row lists nothing.
            "ListCost": amount if sign > 0 else picos(0),
            "RegionId": site,
            "RegionName": site,
            "ResourceId": device_ids.get(device),
            "ResourceName": device if device in device_ids else None,
            "ResourceType": RESOURCE_TYPE if device in device_ids else None,
            "SkuId": cost_kind,
            "SkuPriceId": f"{cost_kind}/{device}/{model}",
            "Tags": "{}",
            "x_Model": model,
            "x_ModelVersion": version,
            "x_Device": device,
            "x_CostKind": cost_kind,
        }
        if category == "Usage":
            values |= {"ConsumedQuantity": Decimal(0), "ConsumedUnit": CONSUMED_UNIT, "PricingCategory": "Standard",
                       "PricingQuantity": Decimal(0), "PricingUnit": CONSUMED_UNIT}
        yield tuple(values.get(name) for name in COLUMN_NAMES)


def period_description(cost_kind: str, device: str, model: str) -> str:
    on = f"device {device}" if device not in (IDLE_LABEL, FIXED_LABEL) else "the fleet"
    share = f", the share of model {model}" if model not in (IDLE_LABEL, FIXED_LABEL) else ""
    if cost_kind == "idle":
        return f"Idle capacity and idle energy of {on}{share}"
    if cost_kind == "fixed":
        return f"Monthly fixed costs of {on}{share}"
    return f"Volume discount on {on}{share}"


def _parties_and_periods(scope: ExportScope, start_unix_ns: int, length_ns: int) -> dict:
    """The columns every row shares: who bills whom for what service, the billing month, and
    the charge period [start, start + length) cut to the export's range."""
    charge_start, charge_end = start_unix_ns, start_unix_ns + length_ns
    if scope.since_unix_ns is not None:
        charge_start = max(charge_start, scope.since_unix_ns)
    if scope.until_unix_ns is not None:
        charge_end = min(charge_end, scope.until_unix_ns)
    billing_start, billing_end = month_of(start_unix_ns)
    return {
        "BillingAccountId": scope.org,
        "BillingAccountName": scope.org,
        "BillingAccountType": BILLING_ACCOUNT_TYPE,
        "BillingCurrency": scope.currency,
        "BillingPeriodEnd": billing_end,
        "BillingPeriodStart": billing_start,
        "ChargePeriodEnd": charge_end,
        "ChargePeriodStart": charge_start,
        "InvoiceIssuerName": scope.org,
        "ProviderName": scope.org,
        "PublisherName": scope.org,
        "ServiceCategory": SERVICE_CATEGORY,
        "ServiceName": SERVICE_NAME,
        "ServiceSubcategory": SERVICE_SUBCATEGORY,
    }


def picos(amount_pico: int) -> Decimal:
    """An exact amount with MONEY_SCALE digits after the point (0 too: 0E-12)."""
    return Decimal(f"{amount_pico}e-{MONEY_SCALE}")


def month_of(unix_ns: int) -> tuple[int, int]:
    """[start, end) of the UTC calendar month holding unix_ns, in Unix ns."""
    moment = datetime.fromtimestamp(unix_ns // 10**9, timezone.utc)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return _unix_ns(start), _unix_ns(end)


def _unix_ns(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(seconds=1) * 10**9


def kind_name(kind: int) -> str:
    try:
        return Kind(kind).name.lower()
    except ValueError:  # a kind newer than this collector
        return str(kind)


def charge_description(kind: int, model: str, version: str, device: str) -> str:
    named = f"{model} (version {version})" if version else model
    if kind == Kind.INFERENCE:
        return f"Inference with model {named} on device {device}"
    if kind == Kind.SPAN:
        return f"Metered span {named} on device {device}"
    if kind == Kind.ROLLUP:
        return f"Inference with model {named} on device {device}, rolled up by the device"
    if kind == Kind.IDLE:
        return f"Idle energy of device {device}: measured, used by no record"
    if kind == Kind.GAP:
        return f"Work on device {device} whose records the device dropped, keeping their sums"
    return f"Usage of record kind {kind} on device {device}"
