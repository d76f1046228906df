"""Pricing: what a record cost, in picos (1e-12 of the currency), exactly.

Why picos: a 100 µs inference on a 1,200-dollar box costs about 1e-9 dollars; micro-units
would round it to 0, and a million such zeros are still 0. Each cost component of a record is
rounded half-even once, to an integer number of picos; sums of picos are then exact.

The rates of one (price book, device) pair are turned into integer ratios once, so pricing a
record is a multiply and a divmod per component, with no Decimal or Fraction on the hot path.

Energy under a time-of-use tariff is priced at the rate in force at the record's start, in the
site's local wall time: a record is a single inference, far shorter than a tariff window, so
splitting its energy across a boundary would cost a division per record for no visible change.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from math import lcm
from zoneinfo import ZoneInfo

from collector.pricebook import (
    DEFAULT_KEY,
    MINUTES_PER_DAY,
    CloudProfile,
    EnergyTariff,
    HardwareProfile,
    ModelPrices,
    PriceBook,
)

PICOS_PER_UNIT = 10**12
NS_PER_S = 10**9
SECONDS_PER_YEAR = 365 * 86_400
SECONDS_PER_HOUR = 3_600
UJ_PER_KWH = 3_600_000 * 10**6  # 1 kWh = 3.6e6 J, 1 J = 1e6 µJ
TOKENS_PER_MILLION = 10**6


def hardware_rate_per_device_s(profile: HardwareProfile) -> Fraction:
    """Currency per second of the whole device: straight-line amortization plus upkeep."""
    # Subtract as Fractions: Decimal arithmetic rounds to 28 digits, and a book's amounts may have more.
    amortized = (Fraction(profile.purchase) - Fraction(profile.residual)) / (
        Fraction(profile.lifetime_years) * SECONDS_PER_YEAR
    )
    return amortized + Fraction(profile.upkeep_per_year) / SECONDS_PER_YEAR


def cloud_rate_per_device_s(profile: CloudProfile) -> Fraction:
    return Fraction(profile.hourly) / SECONDS_PER_HOUR


@dataclass(frozen=True, slots=True)
class EnergyPeriod:
    """A stretch of the local week at one price per kWh (PUE included); `source` is the book
    path of the window, or "kwh" for the site's price outside its windows."""

    start_minute: int
    per_kwh: Fraction
    source: str
    num: int  # picos = round_half_even(energy_uj * num / den)
    den: int


@dataclass(frozen=True, slots=True)
class TimeOfUse:
    """A site's week of energy prices, looked up by a record's start in the site's wall time."""

    timezone: str
    periods: tuple[EnergyPeriod, ...]  # the whole week, by start_minute; the first starts at 0

    def period_at(self, start_unix_ns: int) -> EnergyPeriod:
        local = datetime.fromtimestamp(start_unix_ns // NS_PER_S, ZoneInfo(self.timezone))
        minute = local.weekday() * MINUTES_PER_DAY + local.hour * 60 + local.minute
        index = bisect_right(self.periods, minute, key=_start_minute) - 1
        return self.periods[index]


def _start_minute(period: EnergyPeriod) -> int:
    return period.start_minute


def _energy_period(start_minute: int, per_kwh: Fraction, source: str) -> EnergyPeriod:
    coef = per_kwh * PICOS_PER_UNIT / UJ_PER_KWH
    return EnergyPeriod(start_minute, per_kwh, source, coef.numerator, coef.denominator)


def time_of_use(tariff: EnergyTariff) -> TimeOfUse | None:
    """The site's week as periods (the gaps between windows at the site's `kwh`), or None for a
    flat tariff."""
    if not tariff.windows:
        return None
    pue = Fraction(tariff.pue)
    outside = None if tariff.kwh is None else Fraction(tariff.kwh) * pue
    periods = []
    covered = 0
    for window in tariff.windows:
        if window.start_minute > covered:  # a gap: only possible when the site has a `kwh`
            periods.append(_energy_period(covered, outside, "kwh"))
        periods.append(_energy_period(window.start_minute, Fraction(window.kwh) * pue, window.source))
        covered = window.end_minute
    if covered < 7 * MINUTES_PER_DAY:
        periods.append(_energy_period(covered, outside, "kwh"))
    return TimeOfUse(tariff.timezone, tuple(periods))


@dataclass(frozen=True, slots=True)
class ModelRate:
    """A model's token and request prices as integer ratios:
    token picos = round_half_even((input_tokens * input_num + output_tokens * output_num) / token_den),
    request picos = round_half_even(count * request_num / request_den)."""

    input_num: int
    output_num: int
    token_den: int
    request_num: int
    request_den: int


def model_rate(prices: ModelPrices) -> ModelRate:
    # picos per token = price per 1e6 tokens * PICOS_PER_UNIT / 1e6
    input_coef = Fraction(prices.input_per_million) * PICOS_PER_UNIT / TOKENS_PER_MILLION
    output_coef = Fraction(prices.output_per_million) * PICOS_PER_UNIT / TOKENS_PER_MILLION
    token_den = lcm(input_coef.denominator, output_coef.denominator)
    request_coef = Fraction(prices.request) * PICOS_PER_UNIT
    return ModelRate(
        input_coef.numerator * (token_den // input_coef.denominator),
        output_coef.numerator * (token_den // output_coef.denominator),
        token_den, request_coef.numerator, request_coef.denominator,
    )


def token_cost_pico(rate: ModelRate, input_tokens: int, output_tokens: int) -> int:
    return div_round_half_even(input_tokens * rate.input_num + output_tokens * rate.output_num, rate.token_den)


def request_cost_pico(rate: ModelRate, count: int) -> int:
    return div_round_half_even(count * rate.request_num, rate.request_den)


@dataclass(frozen=True, slots=True)
class DeviceRate:
    """How one price book prices one device, and why (kept on every record it prices).

    Compute picos = round_half_even((cpu_time_ns * cpu_num + gpu_time_ns * gpu_num) / compute_den):
    the CPU share of the device is cpu_time / cores, the GPU share is gpu_time (one GPU).
    Energy picos = round_half_even(energy_uj * energy_num / energy_den), or with the num and den
    of the time-of-use period in force at the record's start when `time_of_use` is set.
    """

    price_book_id: int
    profile: str  # the book entry that priced compute (the device's, or "default")
    site: str  # the book entry that priced energy
    cpu_cores: int  # the divisor of the CPU share
    compute_per_device_s: Fraction
    energy_per_kwh: Fraction  # tariff times PUE (outside the windows; 0 if they cover the week)
    note: str  # "" when the device's own entries priced it; otherwise what stood in
    cpu_num: int
    gpu_num: int
    compute_den: int
    energy_num: int
    energy_den: int
    time_of_use: TimeOfUse | None = None
    # Token and request prices by model name, and for the models without an entry.
    models: Mapping[str, ModelRate] = field(default_factory=dict)
    default_model: ModelRate = ModelRate(0, 0, 1, 0, 1)

    def model_rate(self, model: str) -> ModelRate:
        return self.models.get(model) or self.default_model

    def energy_ratio_at(self, start_unix_ns: int) -> tuple[int, int]:
        """(num, den) of the energy price in force at a record's start."""
        if self.time_of_use is None:
            return self.energy_num, self.energy_den
        period = self.time_of_use.period_at(start_unix_ns)
        return period.num, period.den


def device_rate(
    book: PriceBook, price_book_id: int, *, profile: str, site: str, reported_cpu_cores: int
) -> DeviceRate:
    """The rate of a device with this `profile` and `site` (falling back to the book's
    "default" entries, and saying so in `note`)."""
    notes = []
    if profile not in book.hardware and profile not in book.cloud:
        notes.append(f"profile {profile!r} is not in price book {price_book_id}; priced as {DEFAULT_KEY!r}")
        profile = DEFAULT_KEY
    if site not in book.energy:
        notes.append(f"site {site!r} is not in price book {price_book_id}; priced as {DEFAULT_KEY!r}")
        site = DEFAULT_KEY
    if profile in book.hardware:
        entry = book.hardware[profile]
        compute_per_device_s = hardware_rate_per_device_s(entry)
    else:
        entry = book.cloud[profile]
        compute_per_device_s = cloud_rate_per_device_s(entry)
    cpu_cores = entry.cpu_cores or reported_cpu_cores
    if not cpu_cores:
        notes.append("CPU core count unknown; the CPU share is taken over 1 core")
        cpu_cores = 1
    # No GPU rates in price books yet: a profile's GPU rate per device-second plugs in here.
    gpu_per_device_s = Fraction(0)
    energy = book.energy[site]
    energy_per_kwh = Fraction(energy.kwh or 0) * Fraction(energy.pue)

    # picos = ns * (currency / s) * PICOS_PER_UNIT / NS_PER_S, the CPU part over the cores.
    cpu_coef = compute_per_device_s * PICOS_PER_UNIT / (NS_PER_S * cpu_cores)
    gpu_coef = gpu_per_device_s * PICOS_PER_UNIT / NS_PER_S
    compute_den = lcm(cpu_coef.denominator, gpu_coef.denominator)
    energy_coef = energy_per_kwh * PICOS_PER_UNIT / UJ_PER_KWH
    return DeviceRate(
        price_book_id=price_book_id,
        profile=profile,
        site=site,
        cpu_cores=cpu_cores,
        compute_per_device_s=compute_per_device_s,
        energy_per_kwh=energy_per_kwh,
        note="; ".join(notes),
        cpu_num=cpu_coef.numerator * (compute_den // cpu_coef.denominator),
        gpu_num=gpu_coef.numerator * (compute_den // gpu_coef.denominator),
        compute_den=compute_den,
        energy_num=energy_coef.numerator,
        energy_den=energy_coef.denominator,
        time_of_use=time_of_use(energy),
        models={name: model_rate(prices) for name, prices in book.models.items()},
        default_model=model_rate(book.model_prices(DEFAULT_KEY)),
    )


def div_round_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to the nearest integer, ties to even (non-negative inputs)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = remainder * 2
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient


def compute_cost_pico(rate: DeviceRate, cpu_time_ns: int, gpu_time_ns: int) -> int:
    return div_round_half_even(cpu_time_ns * rate.cpu_num + gpu_time_ns * rate.gpu_num, rate.compute_den)


def energy_cost_pico(rate: DeviceRate, energy_uj: int, start_unix_ns: int | None = None) -> int:
    """The energy cost of a record; `start_unix_ns` is needed under a time-of-use tariff."""
    if rate.time_of_use is not None and start_unix_ns is None:
        raise TypeError("a time-of-use tariff prices energy by the record's start: pass start_unix_ns")
    num, den = rate.energy_ratio_at(start_unix_ns or 0)
    return div_round_half_even(energy_uj * num, den)


def picos_to_decimal(picos: int) -> Decimal:
    """An exact Decimal amount of the currency (a string round-trip never rounds)."""
    return Decimal(f"{picos}e-12")


def decimal_text(amount: Decimal) -> str:
    """Plain notation ("0.000000001234"), never exponents, for JSON and tables."""
    return f"{amount:f}"


def fraction_text(value: Fraction) -> str:
    """An exact rational as "n/d" (or "n" when whole), for explanations."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def exact_text(value: Fraction) -> str:
    """A rational as a plain decimal when it has a finite one (its denominator is 2^a 5^b),
    else as "n/d"."""
    places, scaled = 0, value
    while scaled.denominator != 1 and places <= 80:
        places += 1
        scaled = value * 10**places
    if scaled.denominator != 1:
        return fraction_text(value)
    return decimal_text(Decimal(scaled.numerator).scaleb(-places))


def _component(exact_picos: Fraction, picos: int) -> dict:
    return {"exact_picos": exact_text(exact_picos), "picos": picos, "cost": decimal_text(picos_to_decimal(picos))}


def explain_cost(
    book: PriceBook, rate: DeviceRate, *, cpu_time_ns: int, gpu_time_ns: int, energy_uj: int, start_unix_ns: int,
    model: str = "", input_tokens: int = 0, output_tokens: int = 0, count: int = 1,
) -> dict:
    """How a record's cost follows from a book: each input, each component's exact value in
    picos and its rounding, and the total (JSON-ready; amounts as exact decimal strings)."""
    if rate.profile in book.hardware:
        entry = book.hardware[rate.profile]
        profile = {
            "kind": "hardware", "purchase": str(entry.purchase), "residual": str(entry.residual),
            "lifetime_years": str(entry.lifetime_years), "upkeep_per_year": str(entry.upkeep_per_year),
        }
    else:
        profile = {"kind": "cloud", "hourly": str(book.cloud[rate.profile].hourly)}
    cpu_share_s = Fraction(cpu_time_ns, NS_PER_S * rate.cpu_cores)
    compute_exact = Fraction(cpu_time_ns * rate.cpu_num + gpu_time_ns * rate.gpu_num, rate.compute_den)
    compute = {
        "profile": rate.profile, **profile,
        "rate_per_device_s": exact_text(rate.compute_per_device_s),
        "cpu_cores": rate.cpu_cores, "cpu_time_ns": cpu_time_ns, "gpu_time_ns": gpu_time_ns,
        "cpu_share_device_s": exact_text(cpu_share_s),
        **_component(compute_exact, compute_cost_pico(rate, cpu_time_ns, gpu_time_ns)),
    }
    tariff = book.energy[rate.site]
    if rate.time_of_use is None:
        source, per_kwh = "kwh", rate.energy_per_kwh
    else:
        period = rate.time_of_use.period_at(start_unix_ns)
        source, per_kwh = period.source, period.per_kwh
    energy_num, energy_den = rate.energy_ratio_at(start_unix_ns)
    energy_picos = div_round_half_even(energy_uj * energy_num, energy_den)
    energy = {
        "site": rate.site, "timezone": tariff.timezone, "tariff": source,
        "kwh": exact_text(per_kwh / Fraction(tariff.pue)), "pue": str(tariff.pue),
        "billed_per_kwh": exact_text(per_kwh), "energy_uj": energy_uj,
        **_component(Fraction(energy_uj * energy_num, energy_den), energy_picos),
    }
    entry = DEFAULT_KEY if model not in book.models and DEFAULT_KEY in book.models else model
    entry = entry if entry in book.models else None
    prices = book.model_prices(model)
    model_rate = rate.model_rate(model)
    tokens = {
        "model": model, "entry": entry,
        "input_per_million": str(prices.input_per_million), "output_per_million": str(prices.output_per_million),
        "input_tokens": input_tokens, "output_tokens": output_tokens,
        **_component(
            Fraction(input_tokens * model_rate.input_num + output_tokens * model_rate.output_num, model_rate.token_den),
            token_cost_pico(model_rate, input_tokens, output_tokens),
        ),
    }
    requests = {
        "request": str(prices.request), "count": count,
        **_component(Fraction(count * model_rate.request_num, model_rate.request_den),
                     request_cost_pico(model_rate, count)),
    }
    total = compute["picos"] + energy_picos + tokens["picos"] + requests["picos"]
    return {
        "compute": compute, "energy": energy, "tokens": tokens, "requests": requests,
        "total": {"picos": total, "cost": decimal_text(picos_to_decimal(total))},
    }
