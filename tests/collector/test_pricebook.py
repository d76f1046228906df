"""collector.pricebook.parse_price_book: a valid book becomes exact Decimals, and every rule it
enforces names the offending value by its dotted path."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from collector.pricebook import (
    CloudProfile,
    EnergyTariff,
    HardwareProfile,
    PriceBookError,
    parse_price_book,
)

BOOK = {
    "currency": "EUR",
    "hardware": {
        "default": {"purchase": "1200.00", "residual": "200.00", "lifetime_years": 4, "upkeep_per_year": "120.00",
                    "cpu_cores": 8},
        "jetson": {"purchase": "499.99", "lifetime_years": "2.5"},
    },
    "cloud": {"m5.xlarge": {"hourly": "0.192", "cpu_cores": 4}},
    "energy": {"default": {"kwh": "0.15", "pue": "1.2"}, "lab-2": {"kwh": "0.3"}},
}
_DELETE = object()


def book_with(path: str, value: object) -> dict:
    """BOOK with the value at `path` replaced (or deleted, for _DELETE). The path is dotted as
    in PriceBookError.field; profile names may contain dots, so the name is everything between
    the section and the last part."""
    document = copy.deepcopy(BOOK)
    target = document
    if path.count(".") >= 2:
        section, rest = path.split(".", 1)
        name, path = rest.rsplit(".", 1)
        target = target[section].setdefault(name, {})
    elif "." in path:
        section, path = path.split(".", 1)
        target = target.setdefault(section, {})
    if value is _DELETE:
        del target[path]
    else:
        target[path] = value
    return document


def test_a_valid_book_parses_to_exact_decimals():
    book = parse_price_book(BOOK)

    assert book.currency == "EUR"
    assert book.hardware == {
        "default": HardwareProfile(Decimal("1200.00"), Decimal("200.00"), Decimal(4), Decimal("120.00"), 8),
        "jetson": HardwareProfile(Decimal("499.99"), Decimal(0), Decimal("2.5"), Decimal(0), None),
    }
    assert book.cloud == {"m5.xlarge": CloudProfile(Decimal("0.192"), 4)}
    assert book.energy == {
        "default": EnergyTariff(Decimal("0.15"), Decimal("1.2")),
        "lab-2": EnergyTariff(Decimal("0.3"), Decimal(1)),
    }
    # The very digits written, not the nearest binary float.
    assert str(book.cloud["m5.xlarge"].hourly) == "0.192"
    assert book.cloud["m5.xlarge"].hourly != Decimal(0.192)


@pytest.mark.parametrize(("path", "value"), [
    ("hardware.default.residual", "1200.00"),  # residual may equal the purchase price
    ("hardware.default.lifetime_years", 100),
    ("hardware.default.lifetime_years", "0.5"),
    ("hardware.default.cpu_cores", 1),
    ("hardware.default.cpu_cores", 65_535),
    ("hardware.default.cpu_cores", None),
    ("energy.default.pue", "1"),
    ("energy.default.kwh", "0"),
    ("energy.default.kwh", " 0.15 "),
    ("cloud.m5.xlarge.hourly", "999999999999999.999999999999999999"),  # largest and finest allowed
    ("cloud.m5.xlarge.hourly", "1e-18"),
    ("cloud.m5.xlarge.hourly", "0E-30"),  # zero has no magnitude to bound
    ("currency", "JPY"),
    ("hardware.a-Z_0-9", {"purchase": "1", "lifetime_years": 1}),
    ("hardware." + "x" * 64, {"purchase": "1", "lifetime_years": 1}),
])
def test_values_at_the_edge_of_the_rules_are_accepted(path, value):
    parse_price_book(book_with(path, value))


def test_the_default_profile_may_be_a_cloud_profile():
    document = {"currency": "USD", "cloud": {"default": {"hourly": "3.6"}}, "energy": {"default": {"kwh": "0.1"}}}

    book = parse_price_book(document)

    assert book.hardware == {}
    assert book.cloud == {"default": CloudProfile(Decimal("3.6"), None)}


@pytest.mark.parametrize("path", [
    "hardware.default.purchase", "hardware.default.residual", "hardware.default.upkeep_per_year",
    "cloud.m5.xlarge.hourly", "energy.default.kwh",
])
def test_a_float_for_money_is_refused_with_the_reason(path):
    with pytest.raises(PriceBookError) as caught:
        parse_price_book(book_with(path, 0.1))

    assert caught.value.field == path
    assert "floats cannot hold money exactly" in str(caught.value)


@pytest.mark.parametrize(("path", "value"), [("hardware.default.purchase", 1200), ("energy.default.kwh", None)])
def test_money_that_is_not_a_string_is_refused_without_the_float_hint(path, value):
    with pytest.raises(PriceBookError) as caught:
        parse_price_book(book_with(path, value))

    assert caught.value.field == path
    assert "decimal string" in caught.value.reason
    assert "float" not in caught.value.reason


@pytest.mark.parametrize(("path", "value", "field"), [
    # Unknown keys, at every level.
    ("rebates", {}, "rebates"),
    ("hardware.default.price", "1", "hardware.default.price"),
    ("cloud.m5.xlarge.spot", "0.05", "cloud.m5.xlarge.spot"),
    ("energy.default.tariff", "0.1", "energy.default.tariff"),
    # Sections and entries that are not objects.
    ("hardware", [], "hardware"),
    ("cloud", "m5.xlarge", "cloud"),
    ("energy", None, "energy"),
    ("hardware.default", "1200.00", "hardware.default"),
    ("cloud.m5.xlarge", ["0.192"], "cloud.m5.xlarge"),
    ("energy.default", 0.15, "energy.default"),
    # Profile and site names.
    ("hardware.edge box", {"purchase": "1", "lifetime_years": 1}, "hardware.edge box"),
    ("hardware." + "x" * 65, {"purchase": "1", "lifetime_years": 1}, "hardware." + "x" * 65),
    ("cloud.ürün", {"hourly": "1"}, "cloud.ürün"),
    ("energy.", {"kwh": "1"}, "energy."),
    ("energy.lab/2", {"kwh": "1"}, "energy.lab/2"),
    # A "default" of each kind is required.
    ("hardware.default", _DELETE, "hardware"),
    ("energy.default", _DELETE, "energy"),
    # One profile name, two kinds.
    ("cloud.jetson", {"hourly": "0.1"}, "cloud.jetson"),
    # Amortization.
    ("hardware.default.residual", "1200.01", "hardware.default.residual"),
    ("hardware.default.purchase", _DELETE, "hardware.default.purchase"),
    ("hardware.default.lifetime_years", _DELETE, "hardware.default.lifetime_years"),
    ("hardware.default.lifetime_years", 0, "hardware.default.lifetime_years"),
    ("hardware.default.lifetime_years", "0.0", "hardware.default.lifetime_years"),
    ("hardware.default.lifetime_years", 101, "hardware.default.lifetime_years"),
    ("hardware.default.lifetime_years", "100.5", "hardware.default.lifetime_years"),
    ("hardware.default.lifetime_years", 4.0, "hardware.default.lifetime_years"),
    ("hardware.default.lifetime_years", True, "hardware.default.lifetime_years"),
    # Power usage effectiveness is at least 1.
    ("energy.default.pue", "0.99", "energy.default.pue"),
    ("energy.default.pue", 0, "energy.default.pue"),
    ("energy.default.pue", 1.2, "energy.default.pue"),
    # Negative amounts.
    ("hardware.default.purchase", "-1200.00", "hardware.default.purchase"),
    ("hardware.default.upkeep_per_year", "-0.01", "hardware.default.upkeep_per_year"),
    ("cloud.m5.xlarge.hourly", "-0.192", "cloud.m5.xlarge.hourly"),
    ("energy.default.kwh", "-0.15", "energy.default.kwh"),
    # Not finite, or not a number at all.
    ("energy.default.kwh", "NaN", "energy.default.kwh"),
    ("energy.default.kwh", "sNaN", "energy.default.kwh"),
    ("cloud.m5.xlarge.hourly", "Infinity", "cloud.m5.xlarge.hourly"),
    ("cloud.m5.xlarge.hourly", "-Infinity", "cloud.m5.xlarge.hourly"),
    ("hardware.default.purchase", "inf", "hardware.default.purchase"),
    ("energy.default.pue", "NaN", "energy.default.pue"),
    ("hardware.default.purchase", "12 dollars", "hardware.default.purchase"),
    ("hardware.default.purchase", "", "hardware.default.purchase"),
    ("hardware.default.purchase", "0x10", "hardware.default.purchase"),
    # Out of range: a quadrillion or more, or finer than 1e-18.
    ("hardware.default.purchase", "1e15", "hardware.default.purchase"),
    ("hardware.default.purchase", "1000000000000000", "hardware.default.purchase"),
    ("cloud.m5.xlarge.hourly", "1E+400", "cloud.m5.xlarge.hourly"),
    ("energy.default.kwh", "0.0000000000000000001", "energy.default.kwh"),
    ("energy.default.kwh", "1e-19", "energy.default.kwh"),
    ("energy.default.pue", "1e15", "energy.default.pue"),
    # Currency codes.
    ("currency", "usd", "currency"),
    ("currency", "US", "currency"),
    ("currency", "EURO", "currency"),
    ("currency", "XAU", "currency"),  # gold: not a currency in circulation
    ("currency", 978, "currency"),
    ("currency", _DELETE, "currency"),
    # CPU cores.
    ("hardware.default.cpu_cores", True, "hardware.default.cpu_cores"),
    ("hardware.default.cpu_cores", 0, "hardware.default.cpu_cores"),
    ("hardware.default.cpu_cores", -4, "hardware.default.cpu_cores"),
    ("hardware.default.cpu_cores", 65_536, "hardware.default.cpu_cores"),
    ("cloud.m5.xlarge.cpu_cores", "4", "cloud.m5.xlarge.cpu_cores"),
    ("cloud.m5.xlarge.cpu_cores", 4.0, "cloud.m5.xlarge.cpu_cores"),
])
def test_a_book_that_breaks_a_rule_is_refused_naming_the_field(path, value, field):
    with pytest.raises(PriceBookError) as caught:
        parse_price_book(book_with(path, value))

    assert caught.value.field == field
    assert str(caught.value) == f"price book {field}: {caught.value.reason}"


@pytest.mark.parametrize("document", [None, [], "USD", 42])
def test_a_document_that_is_not_an_object_is_refused(document):
    with pytest.raises(PriceBookError) as caught:
        parse_price_book(document)

    assert caught.value.field == ""
    assert str(caught.value).startswith("price book: must be an object")


def test_a_price_book_error_is_a_value_error():
    assert issubclass(PriceBookError, ValueError)
