"""Pricing: what a record cost, in picos (1e-12 of the currency), exactly.

Why picos: a 100 µs inference on a 1,200-dollar box costs about 1e-9 dollars; micro-units
would round it to 0, and a million such zeros are still 0. Each cost component of a record is
rounded half-even once, to an integer number of picos; sums of picos are then exact.

The rates of one (price book, device) pair are turned into integer ratios once, so pricing a
record is a multiply and a divmod per component, with no Decimal or Fraction on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from math import lcm

from collector.pricebook import DEFAULT_KEY, CloudProfile, HardwareProfile, PriceBook

PICOS_PER_UNIT = 10**12
NS_PER_S = 10**9
SECONDS_PER_YEAR = 365 * 86_400
SECONDS_PER_HOUR = 3_600
UJ_PER_KWH = 3_600_000 * 10**6  # 1 kWh = 3.6e6 J, 1 J = 1e6 µJ


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
class DeviceRate:
    """How one price book prices one device, and why (kept on every record it prices).

    Compute picos = round_half_even((cpu_time_ns * cpu_num + gpu_time_ns * gpu_num) / compute_den):
    the CPU share of the device is cpu_time / cores, the GPU share is gpu_time (one GPU).
    Energy picos = round_half_even(energy_uj * energy_num / energy_den).
    """

    price_book_id: int
    profile: str  # the book entry that priced compute (the device's, or "default")
    site: str  # the book entry that priced energy
    cpu_cores: int  # the divisor of the CPU share
    compute_per_device_s: Fraction
    energy_per_kwh: Fraction  # tariff times PUE
    note: str  # "" when the device's own entries priced it; otherwise what stood in
    cpu_num: int
    gpu_num: int
    compute_den: int
    energy_num: int
    energy_den: int


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
    energy_per_kwh = Fraction(energy.kwh) * Fraction(energy.pue)

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


def energy_cost_pico(rate: DeviceRate, energy_uj: int) -> int:
    return div_round_half_even(energy_uj * rate.energy_num, rate.energy_den)


def picos_to_decimal(picos: int) -> Decimal:
    """An exact Decimal amount of the currency (a string round-trip never rounds)."""
    return Decimal(f"{picos}e-12")


def decimal_text(amount: Decimal) -> str:
    """Plain notation ("0.000000001234"), never exponents, for JSON and tables."""
    return f"{amount:f}"
