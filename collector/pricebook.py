"""Price book documents: what an operator writes, checked once and turned into exact values.

    {"currency": "USD",
     "hardware": {"default": {"purchase": "1200.00", "residual": "0", "lifetime_years": 4,
                              "upkeep_per_year": "120.00", "cpu_cores": null}},
     "cloud": {"m5.xlarge": {"hourly": "0.192", "cpu_cores": 4}},
     "models": {"llama-3-8b": {"input_per_million": "0.05", "output_per_million": "0.08", "request": "0"}},
     "energy": {"default": {"kwh": "0.15", "pue": "1.0"},
                "berlin": {"kwh": "0.12", "pue": "1.3", "timezone": "Europe/Berlin",
                           "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"],
                                        "from": "08:00", "to": "20:00", "kwh": "0.30"}]}}}

Money is written as decimal strings: a JSON or TOML float cannot hold 0.1 exactly, so floats are
refused instead of being rounded silently. A device's `profile` names an entry of `hardware` or
`cloud`, its `site` an entry of `energy`; every book has a "default" of each, which prices the
devices whose own entry is missing.

Costs of a period rather than of an inference (collector.charges works them out per report):

     "idle": {"policy": "spread"},      # or "bucket"
     "monthly": {"licence": {"amount": "100.00", "model": "llama-3-8b"},
                 "storage": {"amount": "25.00", "device": "edge-01"}},
     "discounts": {"volume": {"tiers": [{"from": "0", "percent_off": "0"},
                                        {"from": "1000.00", "percent_off": "10"}]}}

`idle` says where the part of a device's amortized (or hourly) cost that no inference used
goes: spread over what used the device that day, by cost (default), or kept in an "(idle)"
bucket. A `monthly` cost belongs to a device, a model, or (naming neither) the whole fleet,
and is counted per calendar month (UTC). A discount's `tiers` are graduated brackets of a
calendar month's list spend (in the currency): the spend from one tier's `from` to the next
tier's is reduced by that tier's `percent_off`. A discount covers the usage of one `model`, of
one `device`, or (naming neither) everything that no narrower discount covers.

A site's time-of-use `windows` are in the local wall time of its `timezone` (IANA name, "UTC"
when omitted), so they follow daylight saving time: "08:00" is 08:00 on the clock on the wall,
whatever the UTC offset that day. Outside every window the site's `kwh` applies; a site without
`kwh` must cover the whole week with windows. Windows may not overlap, and one that crosses
midnight is written as two.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise

from collector.documents import DocumentError, exact_decimal, iana_timezone

# Names of devices, profiles and sites: safe in URLs, file names and report columns.
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
DEFAULT_KEY = "default"

# ISO 4217 codes in circulation (metals, test and fund-only codes left out).
CURRENCIES = frozenset(["AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG"])

# Bounds that keep the exact arithmetic small: no single price of a quadrillion or more, and
# nothing finer than 1e-18 of the currency (a millionth of the pico that costs are kept in).
_MAX_ADJUSTED_EXPONENT = 14
_MIN_EXPONENT = -18
_MAX_CPU_CORES = 65_535
_MAX_LIFETIME_YEARS = 100

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
_WALL_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class PriceBookError(DocumentError):
    """A price book document breaks the rules; `field` is the dotted path of the offending value."""

    document = "price book"


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    """Owned hardware, amortized linearly over its lifetime, plus yearly upkeep."""

    purchase: Decimal
    residual: Decimal
    lifetime_years: Decimal
    upkeep_per_year: Decimal
    cpu_cores: int | None


@dataclass(frozen=True, slots=True)
class CloudProfile:
    hourly: Decimal
    cpu_cores: int | None


@dataclass(frozen=True, slots=True)
class TariffWindow:
    """One day's stretch of a time-of-use tariff, in minutes of the local week: Monday 00:00 is
    0, and `end_minute` is exclusive (at most the next midnight)."""

    start_minute: int
    end_minute: int
    kwh: Decimal
    source: str  # the book path that wrote it, e.g. "energy.berlin.windows[0]"


@dataclass(frozen=True, slots=True)
class EnergyTariff:
    kwh: Decimal | None  # the price outside every window; None when the windows cover the week
    pue: Decimal
    timezone: str = "UTC"
    windows: tuple[TariffWindow, ...] = ()  # sorted by start_minute, never overlapping


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """What a model's use costs beyond the device: tokens, and a fee per request (a licence)."""

    input_per_million: Decimal  # per 1,000,000 input tokens
    output_per_million: Decimal
    request: Decimal  # per inference: a record that stands for `count` inferences pays `count` fees


NO_MODEL_PRICES = ModelPrices(Decimal(0), Decimal(0), Decimal(0))


IDLE_POLICIES = ("spread", "bucket")


@dataclass(frozen=True, slots=True)
class MonthlyCost:
    """A fixed cost per calendar month, of a device, a model, or (both None) the whole fleet."""

    name: str
    amount: Decimal
    device: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Tier:
    """From `start` (a month's list spend, in the currency) to the next tier's, `percent_off`."""

    start: Decimal
    percent_off: Decimal


@dataclass(frozen=True, slots=True)
class Discount:
    """Graduated brackets of a month's list spend, for one model, one device, or (both None)
    everything that no narrower discount covers."""

    name: str
    tiers: tuple[Tier, ...]  # by start; the first starts at 0
    device: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class PriceBook:
    currency: str
    hardware: Mapping[str, HardwareProfile]
    cloud: Mapping[str, CloudProfile]
    energy: Mapping[str, EnergyTariff]
    # By model name; "default" prices the models without an entry (nothing, when it is absent).
    models: Mapping[str, ModelPrices] = field(default_factory=dict)
    idle_policy: str = "spread"
    monthly: tuple[MonthlyCost, ...] = ()
    discounts: tuple[Discount, ...] = ()

    def discount_for(self, device: str, model: str) -> Discount | None:
        """The discount that covers a device's use of a model: the model's, else the device's,
        else the book's general one (None when there is none)."""
        by_scope = {(discount.device, discount.model): discount for discount in self.discounts}
        return by_scope.get((None, model)) or by_scope.get((device, None)) or by_scope.get((None, None))

    def model_prices(self, model: str) -> ModelPrices:
        return self.models.get(model) or self.models.get(DEFAULT_KEY) or NO_MODEL_PRICES


def parse_price_book(document: object) -> PriceBook:
    """Check a document and return its exact values; PriceBookError names the first fault."""
    table = _table(
        document, "", {"currency", "hardware", "cloud", "energy", "models", "idle", "monthly", "discounts"}
    )
    currency = table.get("currency")
    if type(currency) is not str or currency not in CURRENCIES:
        raise PriceBookError("currency", f"must be a 3-letter ISO 4217 code such as \"USD\", got {currency!r}")
    hardware = {key: _hardware(entry, f"hardware.{key}") for key, entry in _entries(table, "hardware")}
    cloud = {key: _cloud(entry, f"cloud.{key}") for key, entry in _entries(table, "cloud")}
    energy = {key: _energy(entry, f"energy.{key}") for key, entry in _entries(table, "energy")}
    both = sorted(hardware.keys() & cloud.keys())
    if both:
        raise PriceBookError(f"cloud.{both[0]}", "a profile is either hardware or cloud, not both")
    if DEFAULT_KEY not in hardware and DEFAULT_KEY not in cloud:
        raise PriceBookError("hardware", f"needs a {DEFAULT_KEY!r} profile (in hardware or cloud)")
    if DEFAULT_KEY not in energy:
        raise PriceBookError("energy", f"needs a {DEFAULT_KEY!r} site")
    models = {key: _model(entry, f"models.{key}") for key, entry in _entries(table, "models")}
    monthly = tuple(_monthly(key, entry, f"monthly.{key}") for key, entry in _entries(table, "monthly"))
    discounts = tuple(_discount(key, entry, f"discounts.{key}") for key, entry in _entries(table, "discounts"))
    _check_distinct_scopes(discounts)
    return PriceBook(currency, hardware, cloud, energy, models, _idle_policy(table), monthly, discounts)


def _idle_policy(table: Mapping[str, object]) -> str:
    idle = _table(table.get("idle", {}), "idle", {"policy"})
    policy = idle.get("policy", IDLE_POLICIES[0])
    if policy not in IDLE_POLICIES:
        raise PriceBookError("idle.policy", f"must be one of {', '.join(map(repr, IDLE_POLICIES))}, got {policy!r}")
    return policy


def _scope(table: Mapping[str, object], path: str) -> tuple[str | None, str | None]:
    """(device, model) of a monthly cost or a discount: at most one of them."""
    device, model = table.get("device"), table.get("model")
    for name, value in (("device", device), ("model", model)):
        if value is not None and (type(value) is not str or not NAME_PATTERN.fullmatch(value)):
            raise PriceBookError(f"{path}.{name}", "names are 1-64 characters of A-Z a-z 0-9 . _ -")
    if device is not None and model is not None:
        raise PriceBookError(f"{path}.model", "name a device or a model, not both")
    return device, model


def _monthly(name: str, entry: object, path: str) -> MonthlyCost:
    table = _table(entry, path, {"amount", "device", "model"})
    return MonthlyCost(name, _money(table, "amount", path, required=True), *_scope(table, path))


def _discount(name: str, entry: object, path: str) -> Discount:
    table = _table(entry, path, {"tiers", "device", "model"})
    value = table.get("tiers")
    if not isinstance(value, list) or not value:
        raise PriceBookError(f"{path}.tiers", "must be a non-empty list of {\"from\", \"percent_off\"}")
    tiers = []
    for index, tier in enumerate(value):
        tier_path = f"{path}.tiers[{index}]"
        tier_table = _table(tier, tier_path, {"from", "percent_off"})
        start = _money(tier_table, "from", tier_path, required=True)
        percent_off = _number(tier_table, "percent_off", tier_path, required=True)
        if percent_off > 100:
            raise PriceBookError(f"{tier_path}.percent_off", "must be from 0 to 100")
        if index == 0 and start != 0:
            raise PriceBookError(f"{tier_path}.from", "the first tier must start at \"0\"")
        if tiers and start <= tiers[-1].start:
            raise PriceBookError(f"{tier_path}.from", "tiers must start at increasing amounts")
        tiers.append(Tier(start, percent_off))
    return Discount(name, tuple(tiers), *_scope(table, path))


def _check_distinct_scopes(discounts: tuple[Discount, ...]) -> None:
    seen: dict[tuple[str | None, str | None], str] = {}
    for discount in discounts:
        scope = (discount.device, discount.model)
        if scope in seen:
            raise PriceBookError(
                f"discounts.{discount.name}", f"covers the same usage as discounts.{seen[scope]}: one discount per scope"
            )
        seen[scope] = discount.name


def _model(entry: object, path: str) -> ModelPrices:
    table = _table(entry, path, {"input_per_million", "output_per_million", "request"})
    return ModelPrices(
        _money(table, "input_per_million", path), _money(table, "output_per_million", path),
        _money(table, "request", path),
    )


def _hardware(entry: object, path: str) -> HardwareProfile:
    table = _table(entry, path, {"purchase", "residual", "lifetime_years", "upkeep_per_year", "cpu_cores"})
    purchase = _money(table, "purchase", path, required=True)
    residual = _money(table, "residual", path)
    if residual > purchase:
        raise PriceBookError(f"{path}.residual", "must not exceed the purchase price")
    lifetime_years = _number(table, "lifetime_years", path, required=True)
    if not 0 < lifetime_years <= _MAX_LIFETIME_YEARS:
        raise PriceBookError(f"{path}.lifetime_years", f"must be above 0 and at most {_MAX_LIFETIME_YEARS}")
    return HardwareProfile(
        purchase, residual, lifetime_years, _money(table, "upkeep_per_year", path), _cores(table, path)
    )


def _cloud(entry: object, path: str) -> CloudProfile:
    table = _table(entry, path, {"hourly", "cpu_cores"})
    return CloudProfile(_money(table, "hourly", path, required=True), _cores(table, path))


def _energy(entry: object, path: str) -> EnergyTariff:
    table = _table(entry, path, {"kwh", "pue", "timezone", "windows"})
    pue = _number(table, "pue", path, default=Decimal(1))
    # Power usage effectiveness is facility power over IT power: below 1 is impossible.
    if pue < 1:
        raise PriceBookError(f"{path}.pue", "must be at least 1")
    timezone = _timezone(table.get("timezone", "UTC"), f"{path}.timezone")
    windows = _windows(table.get("windows", []), f"{path}.windows")
    kwh = _money(table, "kwh", path, required=True) if "kwh" in table or not windows else None
    if kwh is None:
        _check_week_covered(windows, f"{path}.windows")
    return EnergyTariff(kwh, pue, timezone, windows)


def _timezone(value: object, field: str) -> str:
    iana_timezone(value, field, PriceBookError)
    return value


def _windows(value: object, path: str) -> tuple[TariffWindow, ...]:
    if not isinstance(value, list):
        raise PriceBookError(path, f"must be a list of windows, got {type(value).__name__}")
    windows = []
    for index, entry in enumerate(value):
        source = f"{path}[{index}]"
        table = _table(entry, source, {"days", "from", "to", "kwh"})
        days = table.get("days")
        if not isinstance(days, list) or not days or any(day not in DAYS for day in days):
            raise PriceBookError(f"{source}.days", f"must be a non-empty list of {', '.join(DAYS)}; got {days!r}")
        if len(set(days)) != len(days):
            raise PriceBookError(f"{source}.days", "names a day twice")
        start = _wall_minute(table.get("from"), f"{source}.from", end=False)
        end = _wall_minute(table.get("to"), f"{source}.to", end=True)
        if end <= start:
            raise PriceBookError(f"{source}.to", "must be after `from` (write a window across midnight as two)")
        kwh = _money(table, "kwh", source, required=True)
        for day in days:
            offset = DAYS.index(day) * MINUTES_PER_DAY
            windows.append((TariffWindow(offset + start, offset + end, kwh, source), index))
    windows.sort(key=lambda pair: pair[0].start_minute)
    for (before, before_index), (after, after_index) in pairwise(windows):
        if after.start_minute < before.end_minute:
            # Name the window written later: the one an operator most likely just added.
            (named, _), (other, _) = sorted(((before, before_index), (after, after_index)), key=lambda p: -p[1])
            raise PriceBookError(
                named.source, f"overlaps windows[{other.source.rsplit('[', 1)[-1]} on {_week_time(after.start_minute)}"
            )
    return tuple(window for window, _ in windows)


def _wall_minute(value: object, field: str, *, end: bool) -> int:
    """Minutes after midnight of an "HH:MM" wall-clock time; "24:00" ends a day."""
    if end and value == "24:00":
        return MINUTES_PER_DAY
    match = _WALL_TIME.fullmatch(value) if type(value) is str else None
    if match is None:
        latest = "24:00" if end else "23:59"
        raise PriceBookError(field, f"must be a time \"HH:MM\" from \"00:00\" to \"{latest}\", got {value!r}")
    return int(match[1]) * 60 + int(match[2])


def _check_week_covered(windows: tuple[TariffWindow, ...], path: str) -> None:
    covered = 0
    for window in (*windows, TariffWindow(MINUTES_PER_WEEK, MINUTES_PER_WEEK, Decimal(0), "")):
        if window.start_minute > covered:
            raise PriceBookError(
                path, f"leave {_week_time(covered)} to {_week_time(window.start_minute)} unpriced: "
                "cover the whole week, or give the site a `kwh` for the time outside the windows"
            )
        covered = window.end_minute


def _week_time(minute: int) -> str:
    day, rest = divmod(minute, MINUTES_PER_DAY)
    if day == 7:
        return "sun 24:00"
    return f"{DAYS[day]} {rest // 60:02d}:{rest % 60:02d}"


def _table(value: object, path: str, allowed: set[str]) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise PriceBookError(path, f"must be an object, got {type(value).__name__}")
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise PriceBookError(where, f"unknown key (expected one of: {', '.join(sorted(allowed))})")
    return value


def _entries(table: Mapping[str, object], section: str) -> list[tuple[str, object]]:
    entries = table.get(section, {})
    if not isinstance(entries, Mapping):
        raise PriceBookError(section, f"must be an object, got {type(entries).__name__}")
    for key in entries:
        if type(key) is not str or not NAME_PATTERN.fullmatch(key):
            raise PriceBookError(f"{section}.{key}", "names are 1-64 characters of A-Z a-z 0-9 . _ -")
    return list(entries.items())


def _money(table: Mapping[str, object], name: str, path: str, *, required: bool = False) -> Decimal:
    value = table.get(name)
    if value is None and not required:
        return Decimal(0)
    if type(value) is not str:
        hint = " (floats cannot hold money exactly)" if type(value) is float else ""
        raise PriceBookError(f"{path}.{name}", f"must be a decimal string such as \"1200.00\", got {value!r}{hint}")
    return _decimal(value, f"{path}.{name}")


def _number(
    table: Mapping[str, object], name: str, path: str, *, required: bool = False, default: Decimal = Decimal(0)
) -> Decimal:
    """A quantity that is not money: an integer or a decimal string, never a float."""
    value = table.get(name)
    if value is None and not required:
        return default
    if type(value) is int:
        value = str(value)
    if type(value) is not str:
        raise PriceBookError(f"{path}.{name}", f"must be an integer or a decimal string, got {value!r}")
    return _decimal(value, f"{path}.{name}")


def _decimal(text: str, field: str) -> Decimal:
    value = exact_decimal(text, field, PriceBookError)
    if value < 0:
        raise PriceBookError(field, "must not be negative")
    if value and (value.adjusted() > _MAX_ADJUSTED_EXPONENT or value.as_tuple().exponent < _MIN_EXPONENT):
        raise PriceBookError(field, f"{text!r} is out of range (below 1e15, at most 18 decimal places)")
    return value


def _cores(table: Mapping[str, object], path: str) -> int | None:
    value = table.get("cpu_cores")
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= _MAX_CPU_CORES:
        raise PriceBookError(f"{path}.cpu_cores", f"must be null or an integer from 1 to {_MAX_CPU_CORES}, got {value!r}")
    return value
