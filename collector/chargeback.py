"""Chargeback per department and project, and the untagged costs behind it, made from one cost
report (collector.reports, collector.costing) and the tag policy (collector.tag_policy).

Both read the report grouped by device, model and every tag they judge (the policy's required
tags, then the chargeback's own), so each group is one set of tags on one device and model:

- **Chargeback**: a line per value of the chargeback tags (`department`, `project` by
  default). A group whose records fail the policy, or lack a chargeback tag, goes to the
  `(untagged)` line instead; the report's `(idle)` and `(fixed)` groups (what no usage took)
  keep lines of their own. Each line carries its usage, its share of volume discounts, idle
  capacity and monthly fixed costs, as the report allocated them (the price book's idle
  policy), so the lines add up to the report's total for the period, to the pico.
- **Untagged costs**: the groups that fail the policy, summed per device and model, with the
  number of records missing each tag or carrying a value it does not allow (and those values),
  so that the owners of the device or model can fix them.

Amounts are added as integer picos (the report's decimals carry exactly 12 places).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from collector.charges import FIXED_LABEL, IDLE_LABEL
from collector.pricing import decimal_text, picos_to_decimal
from collector.reports import CostGroup, CostReport, rfc3339
from collector.tag_policy import DISALLOWED, MISSING, TagPolicy

UNTAGGED_LABEL = "(untagged)"
DEFAULT_BY = ("department", "project")
MAX_BY = 4
# Disallowed values shown per device, model and tag: enough to see the typo.
MAX_VALUES_SHOWN = 20
LINE_KINDS = ("tagged", "untagged", "idle", "fixed")
CSV_COLUMNS = (
    "kind", "records", "inferences", "list_cost", "discount", "usage_cost", "idle_cost", "fixed_cost", "total_cost",
)


def report_keys(policy: TagPolicy, by: Sequence[str] = ()) -> tuple[str, ...]:
    """The group keys of the report that both views read: device, model, the required tags
    (sorted), then the chargeback tags the policy does not require."""
    tags = sorted(policy.required) + [key for key in by if key not in policy.required]
    return ("device", "model", *(f"tag:{key}" for key in tags))


@dataclass(slots=True)
class _Amounts:
    """Sums in picos (records and inferences as counts)."""

    records: int = 0
    inferences: int = 0
    list_pico: int = 0
    discount_pico: int = 0
    idle_pico: int = 0
    fixed_pico: int = 0

    @classmethod
    def of(cls, group: CostGroup) -> _Amounts:
        return cls(
            group.records, group.inferences, _picos(group.list_cost), _picos(group.discount),
            _picos(group.idle_cost), _picos(group.fixed_cost),
        )

    def add(self, other: _Amounts) -> None:
        self.records += other.records
        self.inferences += other.inferences
        self.list_pico += other.list_pico
        self.discount_pico += other.discount_pico
        self.idle_pico += other.idle_pico
        self.fixed_pico += other.fixed_pico

    @property
    def usage_pico(self) -> int:
        return self.list_pico - self.discount_pico

    @property
    def total_pico(self) -> int:
        return self.usage_pico + self.idle_pico + self.fixed_pico

    def to_json(self) -> dict:
        return {
            "records": self.records,
            "inferences": self.inferences,
            "list_cost": _text(self.list_pico),
            "discount": _text(self.discount_pico),
            "usage_cost": _text(self.usage_pico),
            "idle_cost": _text(self.idle_pico),
            "fixed_cost": _text(self.fixed_pico),
            "total_cost": _text(self.total_pico),
        }


def chargeback(
    report: CostReport, policy: TagPolicy, by: Sequence[str], *, since_unix_ns: int | None, until_unix_ns: int | None
) -> dict:
    """The chargeback of the period the report covers (JSON-ready; None: an open end), its
    lines costliest first, then (untagged), (idle) and (fixed)."""
    lines: dict[tuple[str, tuple[str, ...]], _Amounts] = {}
    whole = _Amounts()
    for group in report.groups:
        amounts = _Amounts.of(group)
        whole.add(amounts)
        for kind, values, part in _line_parts(report, group, amounts, policy, by):
            lines.setdefault((kind, values), _Amounts()).add(part)
    ordered = sorted(lines.items(), key=lambda item: (LINE_KINDS.index(item[0][0]), -item[1].total_pico, item[0][1]))
    return {
        **_range(since_unix_ns, until_unix_ns),
        "currency": report.currency,
        "by": list(by),
        "policy_version": policy.version,
        "lines": [
            {"kind": kind, "tags": dict(zip(by, values)), **amounts.to_json()} for (kind, values), amounts in ordered
        ],
        **whole.to_json(),
    }


def _line_parts(
    report: CostReport, group: CostGroup, amounts: _Amounts, policy: TagPolicy, by: Sequence[str]
) -> list[tuple[str, tuple[str, ...], _Amounts]]:
    """(line kind, chargeback tag values, the amounts of the group that go there)."""
    if group.records:
        tags = _group_tags(report, group)
        values = tuple(tags.get(key, "") for key in by)
        if policy.violations(tags) or not all(values):
            return [("untagged", (UNTAGGED_LABEL,) * len(by), amounts)]
        return [("tagged", values, amounts)]
    # What no usage took: a bucket holds idle capacity or a monthly cost, each kept apart.
    parts = []
    if amounts.idle_pico:
        parts.append(("idle", (IDLE_LABEL,) * len(by), _Amounts(idle_pico=amounts.idle_pico)))
    if amounts.fixed_pico:
        parts.append(("fixed", (FIXED_LABEL,) * len(by), _Amounts(fixed_pico=amounts.fixed_pico)))
    return parts


def chargeback_csv(answer: dict) -> str:
    """The chargeback's lines as CSV: the period (empty: an open end), the chargeback tags, the
    line's kind and amounts (exact decimal strings), and the currency; no total row (the lines
    add up to it)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period_start", "period_end", *answer["by"], *CSV_COLUMNS, "currency"])
    for line in answer["lines"]:
        writer.writerow([
            answer["since"] or "", answer["until"] or "", *(_cell(line["tags"][key]) for key in answer["by"]),
            *(line[column] for column in CSV_COLUMNS), answer["currency"],
        ])
    return out.getvalue()


def _cell(text: str) -> str:
    """A tag value as a CSV cell that spreadsheets show as text: one that starts like a
    formula gets a leading apostrophe."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@dataclass(slots=True)
class _TagFaults:
    missing: int = 0  # records without the tag
    disallowed: int = 0  # records with a value the policy does not allow
    values: set[str] = field(default_factory=set)  # those values

    def to_json(self) -> dict:
        return {MISSING: self.missing, DISALLOWED: self.disallowed, "values": sorted(self.values)[:MAX_VALUES_SHOWN]}


@dataclass(slots=True)
class _Untagged:
    amounts: _Amounts = field(default_factory=_Amounts)
    tags: dict[str, _TagFaults] = field(default_factory=dict)


def untagged(report: CostReport, policy: TagPolicy, *, since_unix_ns: int | None, until_unix_ns: int | None) -> dict:
    """Where records fail the policy (JSON-ready): per device and model, their costs and, per
    tag, how many records miss it or carry a value it does not allow; costliest first."""
    found: dict[tuple[str, str], _Untagged] = {}
    whole, failing = _Amounts(), _Amounts()
    for group in report.groups:
        amounts = _Amounts.of(group)
        whole.add(amounts)
        tags = _group_tags(report, group)
        violations = policy.violations(tags) if group.records else {}
        if not violations:
            continue
        failing.add(amounts)
        entry = found.setdefault((group.key[0], group.key[1]), _Untagged())
        entry.amounts.add(amounts)
        for key, why in violations.items():
            faults = entry.tags.setdefault(key, _TagFaults())
            if why == MISSING:
                faults.missing += group.records
            else:
                faults.disallowed += group.records
                faults.values.add(tags[key])
    ordered = sorted(found.items(), key=lambda item: (-item[1].amounts.total_pico, item[0]))
    return {
        **_range(since_unix_ns, until_unix_ns),
        "currency": report.currency,
        "policy": policy.to_json(),
        "records": whole.records,
        "untagged_records": failing.records,
        "usage_cost": _text(whole.usage_pico),
        "untagged_usage_cost": _text(failing.usage_pico),
        "total_cost": _text(whole.total_pico),
        "untagged_cost": _text(failing.total_pico),
        "groups": [
            {
                "device": device, "model": model, **entry.amounts.to_json(),
                "tags": {key: faults.to_json() for key, faults in sorted(entry.tags.items())},
            }
            for (device, model), entry in ordered
        ],
    }


def _range(since_unix_ns: int | None, until_unix_ns: int | None) -> dict:
    return {
        "since": None if since_unix_ns is None else rfc3339(since_unix_ns),
        "until": None if until_unix_ns is None else rfc3339(until_unix_ns),
        "since_unix_ns": since_unix_ns,
        "until_unix_ns": until_unix_ns,
    }


def _group_tags(report: CostReport, group: CostGroup) -> dict[str, str]:
    return {key[4:]: value for key, value in zip(report.group_by, group.key) if key.startswith("tag:")}


def _picos(value: Decimal) -> int:
    return int(value.scaleb(12))


def _text(picos: int) -> str:
    return decimal_text(picos_to_decimal(picos))
