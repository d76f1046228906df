"""Budgets: the document an operator writes, its scope, its periods, and where a spend stands.

A budget caps the list cost (`cost_pico`) of the records whose start falls in a period, or
their `energy_uj` for an energy budget, over the records its scope covers: `global`,
`device:NAME`, `model:NAME`, `site:NAME` (the record's site) or `tag:KEY=VALUE`. Periods are a
day, a week (from Monday) or a month, from local midnight in the budget's timezone, so a day
may last 23 or 25 hours. Amounts are exact integers: picos of the collector's currency, or µJ.

Money is written as a decimal string, as in price books: a JSON or TOML float cannot hold 0.1
exactly, so floats are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from agent.record import MAX_TAG_KEY_CHARS, MAX_TEXT_CHARS
from collector.documents import DocumentError, exact_decimal, iana_timezone
from collector.pricebook import NAME_PATTERN
from collector.pricing import PICOS_PER_UNIT, decimal_text, picos_to_decimal

PERIODS = ("day", "week", "month")
UNITS = ("money", "energy")
ACTIONS = ("alert", "throttle", "block")
SCOPE_KINDS = ("global", "device", "model", "site", "tag")
STATES = ("ok", "warning", "exceeded")
DEFAULT_THRESHOLDS = (50, 80, 100)
UJ_PER_WH = 3_600_000_000
INT64_MAX = 2**63 - 1
MAX_THRESHOLDS = 20
MAX_THRESHOLD_PERCENT = 1000
MAX_THROTTLE_PER_SECOND = Decimal(1_000_000)
_FIELDS = ("name", "scope", "period", "timezone", "amount", "unit", "thresholds", "action", "throttle_per_second")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PERCENT = _CENTS = Decimal("0.01")
_WH_DIGITS = Decimal("1e-12")
_NS_PER_S = 10**9
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class BudgetError(DocumentError):
    """A budget document breaks the rules; `field` is the dotted path of the offending value."""

    document = "budget"


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """A parsed budget document."""

    name: str
    scope_kind: str
    scope_value: str  # "" for global; "KEY=VALUE" for a tag
    period: str
    timezone: str
    unit: str
    amount: int  # picos for money, µJ for energy
    thresholds: tuple[int, ...]
    action: str
    throttle_per_second: Decimal | None

    @property
    def scope(self) -> str:
        return scope_text(self.scope_kind, self.scope_value)


@dataclass(frozen=True, slots=True)
class Budget:
    budget_id: str
    name: str
    scope_kind: str
    scope_value: str
    period: str
    timezone: str
    unit: str
    amount: int
    thresholds: tuple[int, ...]
    action: str
    throttle_per_second: Decimal | None
    created_unix_ns: int
    updated_unix_ns: int

    @classmethod
    def from_spec(cls, spec: BudgetSpec, budget_id: str, *, created_unix_ns: int, updated_unix_ns: int) -> Budget:
        return cls(
            budget_id, *(getattr(spec, f.name) for f in fields(BudgetSpec)),
            created_unix_ns=created_unix_ns, updated_unix_ns=updated_unix_ns,
        )

    @property
    def scope(self) -> str:
        return scope_text(self.scope_kind, self.scope_value)

    @property
    def tag(self) -> tuple[str, str]:
        """(key, value) of a tag scope."""
        key, _, value = self.scope_value.partition("=")
        return key, value

    def to_json(self) -> dict:
        """The document form, with the id and times, and the amount as a decimal string."""
        return {
            "budget_id": self.budget_id, "name": self.name, "scope": self.scope, "period": self.period,
            "timezone": self.timezone, "amount": amount_text(self.unit, self.amount), "unit": self.unit,
            "thresholds": list(self.thresholds), "action": self.action,
            "throttle_per_second": None if self.throttle_per_second is None else decimal_text(self.throttle_per_second),
            "created_unix_ns": self.created_unix_ns, "updated_unix_ns": self.updated_unix_ns,
        }


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget and where its current period's spend stands."""

    budget: Budget
    period_start_unix_ns: int
    period_end_unix_ns: int
    spent: int  # picos or µJ, as the budget's unit
    percent: Decimal  # of the amount, rounded down to hundredths
    state: str

    @property
    def remaining(self) -> int:
        return max(0, self.budget.amount - self.spent)

    def to_json(self) -> dict:
        unit = self.budget.unit
        return {
            "budget": self.budget.to_json(),
            "period_start_unix_ns": self.period_start_unix_ns, "period_end_unix_ns": self.period_end_unix_ns,
            "spent": amount_text(unit, self.spent), "remaining": amount_text(unit, self.remaining),
            "percent": decimal_text(self.percent), "state": self.state,
        }


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    event_id: int
    budget_id: str
    budget_name: str
    period_start_unix_ns: int
    kind: str  # "threshold", "forecast", "anomaly"
    key: str
    created_unix_ns: int
    details: dict

    def to_json(self) -> dict:
        return {
            "event_id": self.event_id, "budget_id": self.budget_id, "budget": self.budget_name,
            "period_start_unix_ns": self.period_start_unix_ns, "kind": self.kind, "key": self.key,
            "created_unix_ns": self.created_unix_ns, "details": self.details,
        }


# Parsing


def parse_budget(document: Mapping) -> BudgetSpec:
    """The budget a document describes; BudgetError names the first offending field."""
    if not isinstance(document, Mapping):
        raise BudgetError("", f"must be an object, got {type(document).__name__}")
    for name in document:
        if name not in _FIELDS:
            raise BudgetError(str(name), f"unknown field; the fields are {', '.join(_FIELDS)}")
    name = _name(document.get("name"))
    scope_kind, scope_value = parse_scope(document.get("scope"))
    period = _choice(document, "period", PERIODS, None)
    zone = _timezone(document.get("timezone", "UTC"))
    unit = _choice(document, "unit", UNITS, "money")
    amount = _amount(document.get("amount"), unit)
    thresholds = _thresholds(document.get("thresholds", list(DEFAULT_THRESHOLDS)))
    action = _choice(document, "action", ACTIONS, "alert")
    throttle = _throttle(document.get("throttle_per_second"), action)
    return BudgetSpec(name, scope_kind, scope_value, period, zone, unit, amount, thresholds, action, throttle)


def parse_scope(text: object) -> tuple[str, str]:
    """(kind, value) of a scope such as "tag:project=search"; BudgetError("scope", ...) if bad."""
    if type(text) is not str:
        raise BudgetError("scope", f"must be a string such as \"global\" or \"tag:project=search\", got {text!r}")
    if text == "global":
        return "global", ""
    kind, colon, value = text.partition(":")
    if not colon or kind not in SCOPE_KINDS[1:]:
        raise BudgetError("scope", f"{text!r} is not one of global, device:NAME, model:NAME, site:NAME, tag:KEY=VALUE")
    if kind in ("device", "site") and not NAME_PATTERN.fullmatch(value):
        raise BudgetError("scope", f"{kind} name {value!r} is invalid: use 1-64 characters of A-Z a-z 0-9 . _ -")
    if kind == "model":
        _text("scope", value, MAX_TEXT_CHARS, what="model name")
    if kind == "tag":
        key, equals, tag_value = value.partition("=")
        if not equals:
            raise BudgetError("scope", f"{text!r}: a tag scope is tag:KEY=VALUE")
        _text("scope", key, MAX_TAG_KEY_CHARS, what="tag key")
        _text("scope", tag_value, MAX_TEXT_CHARS, what="tag value", empty=True)
    return kind, value


def scope_text(kind: str, value: str) -> str:
    return "global" if kind == "global" else f"{kind}:{value}"


def _name(value: object) -> str:
    if value is None:
        raise BudgetError("name", "is required")
    if type(value) is not str or not NAME_PATTERN.fullmatch(value):
        raise BudgetError("name", f"{value!r} is invalid: use 1-64 characters of A-Z a-z 0-9 . _ -")
    return value


def _text(field: str, value: str, max_chars: int, *, what: str, empty: bool = False) -> None:
    if not value and not empty:
        raise BudgetError(field, f"the {what} must not be empty")
    if len(value) > max_chars:
        raise BudgetError(field, f"the {what} is {len(value)} characters long; the limit is {max_chars}")
    if _CONTROL.search(value):
        raise BudgetError(field, f"the {what} contains control characters")


def _choice(document: Mapping, name: str, choices: tuple[str, ...], default: str | None) -> str:
    value = document.get(name, default)
    if value is None:
        raise BudgetError(name, f"is required: one of {', '.join(choices)}")
    if value not in choices or type(value) is not str:
        raise BudgetError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _timezone(value: object) -> str:
    iana_timezone(value, "timezone", BudgetError)
    return value


def _decimal(field: str, value: object, example: str) -> Decimal:
    if type(value) is int:
        value = str(value)
    if type(value) is not str:
        hint = " (floats cannot hold amounts exactly)" if type(value) is float else ""
        raise BudgetError(field, f"must be a decimal string such as \"{example}\", got {value!r}{hint}")
    number = exact_decimal(value, field, BudgetError)
    if number <= 0:
        raise BudgetError(field, "must be more than 0")
    return number


def _amount(value: object, unit: str) -> int:
    if value is None:
        raise BudgetError("amount", "is required")
    number = _decimal("amount", value, "250.00")
    scale, smallest = (PICOS_PER_UNIT, "1e-12 of the currency") if unit == "money" else (UJ_PER_WH, "1 µJ")
    exact = number * scale
    if exact != exact.to_integral_value():
        raise BudgetError("amount", f"{value!r} is finer than {smallest}")
    if exact > INT64_MAX:
        limit = picos_to_decimal(INT64_MAX) if unit == "money" else Decimal(INT64_MAX) / UJ_PER_WH
        raise BudgetError("amount", f"{value!r} is more than the largest amount, {limit:.0f}")
    return int(exact)


def _thresholds(value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_THRESHOLDS:
        raise BudgetError("thresholds", f"must be a list of 1 to {MAX_THRESHOLDS} percents such as [50, 80, 100]")
    for i, percent in enumerate(value):
        if type(percent) is not int or not 1 <= percent <= MAX_THRESHOLD_PERCENT:
            raise BudgetError(f"thresholds.{i}", f"must be an integer percent from 1 to {MAX_THRESHOLD_PERCENT}, got {percent!r}")
        if i and percent <= value[i - 1]:
            raise BudgetError(f"thresholds.{i}", "thresholds must strictly increase")
    return tuple(value)


def _throttle(value: object, action: str) -> Decimal | None:
    if action != "throttle":
        if value is not None:
            raise BudgetError("throttle_per_second", "is only for the throttle action")
        return None
    if value is None:
        raise BudgetError("throttle_per_second", "is required for the throttle action")
    rate = _decimal("throttle_per_second", value, "2")
    if rate > MAX_THROTTLE_PER_SECOND:
        raise BudgetError("throttle_per_second", f"must be at most {MAX_THROTTLE_PER_SECOND}")
    return rate


# Periods


@lru_cache(maxsize=256)
def zone_info(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def period_bounds(budget: Budget | BudgetSpec, at_unix_ns: int) -> tuple[int, int]:
    """[start, end) in UTC ns of the budget's period that holds the instant `at_unix_ns`."""
    zone = zone_info(budget.timezone)
    local = datetime.fromtimestamp(at_unix_ns // _NS_PER_S, zone).date()
    first = _period_first_day(budget.period, local)
    return _midnight_ns(first, zone), _midnight_ns(_next_first_day(budget.period, first), zone)


def _period_first_day(period: str, day: date) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_first_day(period: str, first: date) -> date:
    if period == "day":
        return first + timedelta(days=1)
    if period == "week":
        return first + timedelta(days=7)
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _midnight_ns(day: date, zone: ZoneInfo) -> int:
    # fold=0: a midnight that a DST jump skips maps to the jump's instant; a repeated one to
    # its first occurrence.
    local = datetime(day.year, day.month, day.day, tzinfo=zone)
    return (local - _EPOCH) // timedelta(seconds=1) * _NS_PER_S


# State


def budget_state(budget: Budget, spent: int) -> tuple[Decimal, str]:
    """(percent of the amount spent, rounded down to hundredths; state)."""
    exceeded = spent >= budget.amount
    warned = any(spent * 100 >= threshold * budget.amount for threshold in budget.thresholds if threshold < 100)
    percent = (Decimal(spent) * 100 / Decimal(budget.amount)).quantize(_PERCENT, rounding=ROUND_DOWN)
    return percent, "exceeded" if exceeded else "warning" if warned else "ok"


def crossed_thresholds(budget: Budget, before: int, after: int) -> list[int]:
    """The thresholds that a spend going from `before` to `after` reaches (exactly 80 % reaches 80)."""
    return [
        threshold for threshold in budget.thresholds
        if before * 100 < threshold * budget.amount <= after * 100
    ]


def amount_text(unit: str, amount: int) -> str:
    """An amount as a decimal string: of the currency for money, of Wh for energy."""
    if unit == "money":  # at least cents: "250.00", "0.000125"
        money = picos_to_decimal(amount).normalize()
        return decimal_text(money if money.as_tuple().exponent < -2 else money.quantize(_CENTS))
    # Rounded to 1e-12 Wh: an amount parsed from a document is exact there.
    wh = (Decimal(amount) / UJ_PER_WH).quantize(_WH_DIGITS)
    return decimal_text(wh.normalize() if wh else Decimal(0))
