"""collector.pricing: rates per device-second and per kWh, exactly, and costs in picos that are
the exact value rounded half-even once; exact Fractions are the oracle throughout."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.record import INT64_MAX
from collector.pricebook import CloudProfile, HardwareProfile, parse_price_book
from collector.pricing import (
    cloud_rate_per_device_s,
    compute_cost_pico,
    device_rate,
    div_round_half_even,
    energy_cost_pico,
    hardware_rate_per_device_s,
    picos_to_decimal,
)

SECONDS_PER_YEAR = 365 * 24 * 3600
PICOS = 10**12
JOULES_PER_KWH = 3_600_000
BOOK_ID = 7

BOOK = parse_price_book({
    "currency": "USD",
    "hardware": {
        "default": {"purchase": "1200.00", "residual": "0", "lifetime_years": 4, "upkeep_per_year": "120.00"},
        "jetson": {"purchase": "1200.00", "residual": "200.00", "lifetime_years": 4, "upkeep_per_year": "120.00",
                   "cpu_cores": 8},
    },
    "cloud": {"m5.xlarge": {"hourly": "0.192", "cpu_cores": 4}, "tiny": {"hourly": "0.0018", "cpu_cores": 1}},
    "energy": {"default": {"kwh": "0.15", "pue": "1.2"}, "cheap": {"kwh": "0.0018"}},
})


def exact_compute_picos(per_device_s: Fraction, cores: int, cpu_time_ns: int) -> Fraction:
    return Fraction(cpu_time_ns, 10**9) / cores * per_device_s * PICOS


def exact_energy_picos(per_kwh: Fraction, energy_uj: int) -> Fraction:
    return Fraction(energy_uj, 10**6) / JOULES_PER_KWH * per_kwh * PICOS


def test_a_box_is_amortized_over_its_lifetime_plus_upkeep_per_device_second():
    # 1200.00 over 4 years is 300.00 a year, plus 120.00 upkeep: 420.00 a year.
    assert hardware_rate_per_device_s(BOOK.hardware["default"]) == Fraction(420, SECONDS_PER_YEAR)
    # The residual value is not amortized: (1200 - 200) / 4 + 120 = 370 a year.
    assert hardware_rate_per_device_s(BOOK.hardware["jetson"]) == Fraction(370, SECONDS_PER_YEAR)


def test_amortization_keeps_every_digit_of_the_amounts():
    # 32 significant digits: more than Decimal's default context would keep in a subtraction.
    purchase, residual = Decimal("12345678901234.123456789012345678"), Decimal("0.1")
    profile = HardwareProfile(purchase, residual, Decimal("2.5"), Decimal("0.000000000000000001"), None)

    expected = (Fraction(purchase) - Fraction(residual)) / (Fraction(5, 2) * SECONDS_PER_YEAR) + Fraction(
        1, 10**18 * SECONDS_PER_YEAR
    )
    assert hardware_rate_per_device_s(profile) == expected


def test_a_cloud_rate_per_hour_becomes_a_rate_per_second():
    assert cloud_rate_per_device_s(CloudProfile(Decimal("0.192"), 4)) == Fraction(192, 1000 * 3600)
    assert cloud_rate_per_device_s(CloudProfile(Decimal("3.6"), None)) == Fraction(1, 1000)


def test_energy_is_priced_per_kwh_times_the_pue():
    rate = device_rate(BOOK, BOOK_ID, profile="default", site="default", reported_cpu_cores=4)

    assert rate.energy_per_kwh == Fraction(15, 100) * Fraction(12, 10)
    # One kWh is 3.6e12 µJ: it costs the tariff times the PUE, 0.18.
    assert energy_cost_pico(rate, 3_600_000 * 10**6) == 180_000_000_000
    # One joule: 0.18 / 3.6e6 = 5e-8.
    assert energy_cost_pico(rate, 10**6) == 50_000


@pytest.mark.parametrize(("profile", "cores", "cpu_time_ns", "picos"), [
    # 420 a year over 4 cores, 1.5 ms of CPU: 1.5e-3 / 4 * 420 / 31,536,000 * 1e12 = 4994.29 -> 4994.
    ("default", 4, 1_500_000, 4994),
    # One core for one second: 420e12 / 31,536,000 = 13,318,112.63 -> 13,318,113.
    ("default", 1, 10**9, 13_318_113),
    # 0.192 an hour over 4 cores, 1 ms: 1e-3 / 4 * 0.192 / 3600 * 1e12 = 13,333.33 -> 13,333.
    ("m5.xlarge", 4, 1_000_000, 13_333),
    # 0.0018 an hour is half a pico per µs: exact halves round to the even neighbour.
    ("tiny", 1, 1_000, 0),
    ("tiny", 1, 3_000, 2),
    ("tiny", 1, 5_000, 2),
    ("tiny", 1, 7_000, 4),
    ("tiny", 1, 2_000, 1),
    ("tiny", 1, 1, 0),
])
def test_compute_cost_is_the_exact_value_rounded_half_even(profile, cores, cpu_time_ns, picos):
    rate = device_rate(BOOK, BOOK_ID, profile=profile, site="default", reported_cpu_cores=cores)

    exact = exact_compute_picos(rate.compute_per_device_s, cores, cpu_time_ns)
    assert round(exact) == picos  # round() of a Fraction is half-even: the oracle
    assert compute_cost_pico(rate, cpu_time_ns, 0) == picos


@pytest.mark.parametrize(("energy_uj", "picos"), [(1_000, 0), (3_000, 2), (5_000, 2), (7_000, 4), (7_001, 4)])
def test_energy_cost_is_the_exact_value_rounded_half_even(energy_uj, picos):
    # 0.0018 per kWh is half a pico per mJ.
    rate = device_rate(BOOK, BOOK_ID, profile="default", site="cheap", reported_cpu_cores=1)

    assert round(exact_energy_picos(rate.energy_per_kwh, energy_uj)) == picos
    assert energy_cost_pico(rate, energy_uj) == picos


@pytest.mark.parametrize(("numerator", "denominator", "quotient"), [
    (0, 3, 0), (1, 2, 0), (3, 2, 2), (5, 2, 2), (7, 2, 4), (10, 4, 2), (14, 4, 4),
    (1, 3, 0), (2, 3, 1), (49, 10, 5), (51, 10, 5), (2**64 + 1, 2, 2**63), (2**64 + 3, 2, 2**63 + 2),
])
def test_div_round_half_even_rounds_to_nearest_and_ties_to_even(numerator, denominator, quotient):
    assert div_round_half_even(numerator, denominator) == quotient
    assert quotient == round(Fraction(numerator, denominator))


def test_a_device_priced_by_its_own_entries_has_no_note():
    rate = device_rate(BOOK, BOOK_ID, profile="jetson", site="cheap", reported_cpu_cores=8)

    assert (rate.price_book_id, rate.profile, rate.site, rate.note) == (BOOK_ID, "jetson", "cheap", "")


def test_a_profile_and_site_missing_from_the_book_fall_back_to_default_and_say_so():
    rate = device_rate(BOOK, BOOK_ID, profile="orin-agx", site="lab-9", reported_cpu_cores=4)

    assert (rate.profile, rate.site) == ("default", "default")
    assert rate.note == (
        "profile 'orin-agx' is not in price book 7; priced as 'default'; "
        "site 'lab-9' is not in price book 7; priced as 'default'"
    )
    assert replace(rate, note="") == device_rate(BOOK, BOOK_ID, profile="default", site="default", reported_cpu_cores=4)


def test_an_unknown_core_count_prices_the_cpu_share_over_one_core_and_says_so():
    rate = device_rate(BOOK, BOOK_ID, profile="default", site="default", reported_cpu_cores=0)

    assert rate.cpu_cores == 1
    assert rate.note == "CPU core count unknown; the CPU share is taken over 1 core"
    assert compute_cost_pico(rate, 10**9, 0) == round(exact_compute_picos(Fraction(420, SECONDS_PER_YEAR), 1, 10**9))


@pytest.mark.parametrize(("profile", "reported", "used"), [("jetson", 2, 8), ("m5.xlarge", 16, 4), ("default", 6, 6)])
def test_cpu_cores_from_the_book_override_the_reported_count(profile, reported, used):
    rate = device_rate(BOOK, BOOK_ID, profile=profile, site="default", reported_cpu_cores=reported)

    assert (rate.cpu_cores, rate.note) == (used, "")
    exact = exact_compute_picos(rate.compute_per_device_s, used, 123_456_789)
    assert compute_cost_pico(rate, 123_456_789, 0) == round(exact)


def test_picos_become_an_exact_decimal_amount():
    assert picos_to_decimal(1) == Decimal("0.000000000001")
    assert picos_to_decimal(INT64_MAX * 10) == Decimal("92233720.368547758070")
    assert f"{picos_to_decimal(4994):f}" == "0.000000004994"


# Amounts a book may hold: below 1e15, at most 18 decimal places, every digit significant.
_places = st.integers(0, 18)
amounts = _places.flatmap(
    lambda places: st.integers(0, 10 ** (15 + places) - 1).map(lambda units: Decimal(f"{units}e-{places}"))
)


@st.composite
def price_books(draw) -> dict:
    purchase, residual = sorted((draw(amounts), draw(amounts)), reverse=True)
    lifetime = draw(st.integers(1, 100 * 1000).map(lambda thousandths: Decimal(thousandths) / 1000))
    cores = draw(st.none() | st.integers(1, 65_535))
    if draw(st.booleans()):
        compute = {"hardware": {"default": {
            "purchase": str(purchase), "residual": str(residual), "lifetime_years": str(lifetime),
            "upkeep_per_year": str(draw(amounts)), "cpu_cores": cores,
        }}}
    else:
        compute = {"cloud": {"default": {"hourly": str(purchase), "cpu_cores": cores}}}
    pue = draw(st.integers(10**18, 100 * 10**18).map(lambda units: Decimal(f"{units}e-18")))
    return {"currency": "USD", **compute, "energy": {"default": {"kwh": str(draw(amounts)), "pue": str(pue)}}}


def exact_rate_per_device_s(document: dict) -> Fraction:
    """The book's rate per device-second, from its strings alone."""
    if "hardware" in document:
        entry = document["hardware"]["default"]
        per_year = (Fraction(entry["purchase"]) - Fraction(entry["residual"])) / Fraction(entry["lifetime_years"])
        return (per_year + Fraction(entry["upkeep_per_year"])) / SECONDS_PER_YEAR
    return Fraction(document["cloud"]["default"]["hourly"]) / 3600


@settings(max_examples=300, deadline=None)
@given(
    document=price_books(),
    reported_cores=st.integers(0, 65_535),
    cpu_time_ns=st.integers(0, INT64_MAX),
    gpu_time_ns=st.integers(0, INT64_MAX),
    energy_uj=st.integers(0, INT64_MAX),
)
def test_costs_are_the_exact_value_rounded_half_even_for_any_valid_rate(
    document, reported_cores, cpu_time_ns, gpu_time_ns, energy_uj
):
    rate = device_rate(parse_price_book(document), 1, profile="default", site="default",
                       reported_cpu_cores=reported_cores)
    entry = document.get("hardware", document.get("cloud"))["default"]
    cores = entry["cpu_cores"] or reported_cores or 1
    tariff = document["energy"]["default"]

    assert rate.cpu_cores == cores
    # No GPU rates in price books yet: GPU time costs nothing.
    expected_compute = round(exact_compute_picos(exact_rate_per_device_s(document), cores, cpu_time_ns))
    assert compute_cost_pico(rate, cpu_time_ns, gpu_time_ns) == expected_compute
    expected_energy = round(exact_energy_picos(Fraction(tariff["kwh"]) * Fraction(tariff["pue"]), energy_uj))
    assert energy_cost_pico(rate, energy_uj) == expected_energy
