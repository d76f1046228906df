"""Energy tariffs with time-of-use windows in a site's local wall time, and PUE: a book's rules
name the offending field, and worked examples hold to the pico across window boundaries and
daylight saving changes (a record is priced at the rate in force at its start)."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
import sqlalchemy as sa

from agent.record import MIN_START_UNIX_NS, EnergyShare
from collector.pricebook import (
    EnergyTariff,
    PriceBookError,
    TariffWindow,
    parse_price_book,
)
from collector.pricing import device_rate, energy_cost_pico
from collector.schema import records
from collector.store import DeviceInfo
from tests.collector.helpers import STREAM_ID, make_record

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
# One watt-hour: 3,600 J. At P per kWh (PUE included) it costs P / 1000, that is P * 1e9 picos.
WH_UJ = 3_600 * 10**6
# Four stretches of Sunday night, to tell apart the wall-clock hours a DST change skips or repeats.
NIGHT_WINDOWS = [
    {"days": ["sun"], "from": "01:00", "to": "02:00", "kwh": "0.20"},
    {"days": ["sun"], "from": "02:00", "to": "03:00", "kwh": "0.30"},
    {"days": ["sun"], "from": "03:00", "to": "04:00", "kwh": "0.40"},
]
BOOK = {
    "currency": "EUR",
    "hardware": {"default": {"purchase": "1200.00", "lifetime_years": 4}},
    "energy": {
        "default": {"kwh": "0.15"},
        # Weekdays 08:00-20:00 at 0.30, else 0.12; the facility draws 1.5 times the IT load.
        "berlin": {"kwh": "0.12", "pue": "1.5", "timezone": "Europe/Berlin",
                   "windows": [{"days": WEEKDAYS, "from": "08:00", "to": "20:00", "kwh": "0.30"}]},
        "berlin-night": {"kwh": "0.10", "pue": "1.25", "timezone": "Europe/Berlin", "windows": NIGHT_WINDOWS},
        "newyork-night": {"kwh": "0.10", "pue": "1.25", "timezone": "America/New_York", "windows": NIGHT_WINDOWS},
    },
}
PARSED = parse_price_book(BOOK)


def unix_ns(utc: str) -> int:
    """Nanoseconds since the epoch of an ISO time in UTC, to the nanosecond."""
    whole, _, fraction = utc.partition(".")
    seconds = int(datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp())
    return seconds * 10**9 + int(fraction.ljust(9, "0")) if fraction else seconds * 10**9


def wh_picos(site: str, utc: str, energy_uj: int = WH_UJ) -> int:
    rate = device_rate(PARSED, 1, profile="default", site=site, reported_cpu_cores=4)
    return energy_cost_pico(rate, energy_uj, unix_ns(utc))


# Parsing


def test_a_site_with_windows_parses_to_minutes_of_the_local_week():
    tariff = PARSED.energy["berlin"]

    assert (tariff.kwh, tariff.pue, tariff.timezone) == (Decimal("0.12"), Decimal("1.5"), "Europe/Berlin")
    source = "energy.berlin.windows[0]"
    assert tariff.windows == tuple(
        TariffWindow(day * 1440 + 480, day * 1440 + 1200, Decimal("0.30"), source) for day in range(5)
    )


def test_a_flat_tariff_is_still_the_default_and_in_utc():
    assert PARSED.energy["default"] == EnergyTariff(Decimal("0.15"), Decimal(1), "UTC", ())


def test_windows_covering_the_whole_week_need_no_flat_price():
    site = {"windows": [
        {"days": WEEKDAYS, "from": "00:00", "to": "08:00", "kwh": "0.10"},
        {"days": WEEKDAYS, "from": "08:00", "to": "24:00", "kwh": "0.30"},
        {"days": ["sat", "sun"], "from": "00:00", "to": "24:00", "kwh": "0.05"},
    ]}

    tariff = parse_price_book(with_site(site)).energy["site"]

    assert tariff.kwh is None
    assert len(tariff.windows) == 12
    rate = device_rate(parse_price_book(with_site(site)), 1, profile="default", site="site", reported_cpu_cores=1)
    # Saturday 2026-11-28 12:00 UTC is 12:00 UTC (no timezone given): the weekend price.
    assert energy_cost_pico(rate, WH_UJ, unix_ns("2026-11-28T12:00:00")) == 50_000_000


def with_site(site: dict) -> dict:
    document = copy.deepcopy(BOOK)
    document["energy"]["site"] = site
    return document


def window(**fields) -> dict:
    return {"days": ["mon"], "from": "08:00", "to": "20:00", "kwh": "0.30", **fields}


@pytest.mark.parametrize(("site", "field", "words"), [
    # Overlaps, within a day and across windows; the later window is named.
    ({"kwh": "0.1", "windows": [window(), window(**{"from": "19:59", "to": "21:00"})]},
     "energy.site.windows[1]", "overlaps windows[0] on mon 19:59"),
    ({"kwh": "0.1", "windows": [window(days=WEEKDAYS), window(days=["sun", "wed"], **{"from": "00:00"})]},
     "energy.site.windows[1]", "overlaps windows[0] on wed 08:00"),
    # Gaps, when no flat price covers them.
    ({"windows": [window(days=["mon"], **{"from": "00:00", "to": "24:00"})]},
     "energy.site.windows", "leave tue 00:00 to sun 24:00 unpriced"),
    ({"windows": [window(days=[*WEEKDAYS, "sat", "sun"], **{"from": "00:00", "to": "23:59"})]},
     "energy.site.windows", "leave mon 23:59 to tue 00:00 unpriced"),
    ({"windows": []}, "energy.site.kwh", "decimal string"),
    # Times.
    ({"kwh": "0.1", "windows": [window(**{"from": "8:00"})]}, "energy.site.windows[0].from", "HH:MM"),
    ({"kwh": "0.1", "windows": [window(**{"from": "24:00"})]}, "energy.site.windows[0].from", "HH:MM"),
    ({"kwh": "0.1", "windows": [window(to="24:01")]}, "energy.site.windows[0].to", "HH:MM"),
    ({"kwh": "0.1", "windows": [window(to="12:60")]}, "energy.site.windows[0].to", "HH:MM"),
    ({"kwh": "0.1", "windows": [window(to=1200)]}, "energy.site.windows[0].to", "HH:MM"),
    ({"kwh": "0.1", "windows": [window(**{"from": "20:00", "to": "08:00"})]},
     "energy.site.windows[0].to", "across midnight as two"),
    ({"kwh": "0.1", "windows": [window(to="08:00")]}, "energy.site.windows[0].to", "must be after"),
    # Days.
    ({"kwh": "0.1", "windows": [window(days=[])]}, "energy.site.windows[0].days", "non-empty list"),
    ({"kwh": "0.1", "windows": [window(days="mon")]}, "energy.site.windows[0].days", "non-empty list"),
    ({"kwh": "0.1", "windows": [window(days=["Monday"])]}, "energy.site.windows[0].days", "non-empty list"),
    ({"kwh": "0.1", "windows": [window(days=["mon", "mon"])]}, "energy.site.windows[0].days", "twice"),
    # Window prices, keys and shapes.
    ({"kwh": "0.1", "windows": [window(kwh=0.3)]}, "energy.site.windows[0].kwh", "floats cannot hold money"),
    ({"kwh": "0.1", "windows": [window(kwh="-0.3")]}, "energy.site.windows[0].kwh", "negative"),
    ({"kwh": "0.1", "windows": [{"days": ["mon"], "from": "08:00", "to": "20:00"}]},
     "energy.site.windows[0].kwh", "decimal string"),
    ({"kwh": "0.1", "windows": [window(price="0.3")]}, "energy.site.windows[0].price", "unknown key"),
    ({"kwh": "0.1", "windows": {"mon": "0.3"}}, "energy.site.windows", "list of windows"),
    ({"kwh": "0.1", "windows": ["08:00-20:00"]}, "energy.site.windows[0]", "must be an object"),
    # Time zones.
    ({"kwh": "0.1", "timezone": "Europe/Atlantis"}, "energy.site.timezone", "not a known IANA time zone"),
    ({"kwh": "0.1", "timezone": "../etc/passwd"}, "energy.site.timezone", "not a known IANA time zone"),
    ({"kwh": "0.1", "timezone": ""}, "energy.site.timezone", "IANA time zone name"),
    ({"kwh": "0.1", "timezone": 1}, "energy.site.timezone", "IANA time zone name"),
    # PUE.
    ({"kwh": "0.1", "pue": "0.999"}, "energy.site.pue", "at least 1"),
])
def test_a_bad_site_is_refused_naming_the_field(site, field, words):
    with pytest.raises(PriceBookError) as caught:
        parse_price_book(with_site(site))

    assert caught.value.field == field
    assert words in caught.value.reason


def test_windows_that_touch_do_not_overlap():
    site = {"kwh": "0.1", "windows": [window(), window(**{"from": "20:00", "to": "24:00"}),
                                      window(days=["tue"], **{"from": "00:00", "to": "01:00"})]}

    assert len(parse_price_book(with_site(site)).energy["site"].windows) == 3


# Pricing: one watt-hour costs the price per kWh (PUE included) times 1e9 picos.


@pytest.mark.parametrize(("utc", "picos"), [
    # Monday 2026-11-23, CET (UTC+1): 08:00 local is 07:00 UTC. Peak 0.30 * 1.5 = 0.45.
    ("2026-11-23T06:59:59.999999999", 180_000_000),  # 07:59:59.999999999: off-peak 0.12 * 1.5
    ("2026-11-23T06:59:59.999", 180_000_000),
    ("2026-11-23T07:00:00", 450_000_000),  # 08:00 sharp: peak
    ("2026-11-23T18:59:59.999", 450_000_000),  # 19:59:59.999: still peak
    ("2026-11-23T19:00:00", 180_000_000),  # 20:00: the window's end is exclusive
    # Monday 2026-07-06, CEST (UTC+2): 08:00 local is 06:00 UTC.
    ("2026-07-06T05:59:59.999", 180_000_000),
    ("2026-07-06T06:00:00", 450_000_000),
    # Saturday 2026-11-28, 11:00 local: weekends are off-peak all day.
    ("2026-11-28T10:00:00", 180_000_000),
    # Sunday 23:59 UTC is Monday 00:59 local: off-peak, and the week wraps around.
    ("2026-11-22T23:59:00", 180_000_000),
])
def test_weekday_peak_hours_are_local_wall_time(utc, picos):
    assert wh_picos("berlin", utc) == picos


@pytest.mark.parametrize(("site", "utc", "picos"), [
    # Europe/Berlin springs forward on Sunday 2026-03-29 at 01:00 UTC: 02:00 CET becomes 03:00 CEST,
    # so the 02:00-03:00 window never happens that day.
    ("berlin-night", "2026-03-29T00:00:00", 250_000_000),  # 01:00 CET: 0.20 * 1.25
    ("berlin-night", "2026-03-29T00:59:59.999", 250_000_000),  # 01:59:59.999 CET
    ("berlin-night", "2026-03-29T01:00:00", 500_000_000),  # 03:00 CEST: 0.40 * 1.25
    ("berlin-night", "2026-03-29T01:59:59.999", 500_000_000),  # 03:59:59.999 CEST
    ("berlin-night", "2026-03-29T02:00:00", 125_000_000),  # 04:00 CEST: outside, 0.10 * 1.25
    # It falls back on Sunday 2026-10-25 at 01:00 UTC: 03:00 CEST becomes 02:00 CET, so the
    # 02:00-03:00 window lasts two real hours.
    ("berlin-night", "2026-10-24T23:59:59.999", 250_000_000),  # 01:59:59.999 CEST
    ("berlin-night", "2026-10-25T00:00:00", 375_000_000),  # 02:00 CEST: 0.30 * 1.25
    ("berlin-night", "2026-10-25T00:59:59.999", 375_000_000),  # 02:59:59.999 CEST
    ("berlin-night", "2026-10-25T01:00:00", 375_000_000),  # 02:00 CET, the second time
    ("berlin-night", "2026-10-25T01:59:59.999", 375_000_000),  # 02:59:59.999 CET
    ("berlin-night", "2026-10-25T02:00:00", 500_000_000),  # 03:00 CET
    # America/New_York springs forward on Sunday 2026-03-08 at 07:00 UTC: 02:00 EST -> 03:00 EDT.
    ("newyork-night", "2026-03-08T06:59:59.999", 250_000_000),  # 01:59:59.999 EST
    ("newyork-night", "2026-03-08T07:00:00", 500_000_000),  # 03:00 EDT
    # It falls back on Sunday 2026-11-01 at 06:00 UTC: 02:00 EDT -> 01:00 EST; 01:00-02:00 twice.
    ("newyork-night", "2026-11-01T04:59:59.999", 125_000_000),  # 00:59:59.999 EDT
    ("newyork-night", "2026-11-01T05:00:00", 250_000_000),  # 01:00 EDT
    ("newyork-night", "2026-11-01T06:00:00", 250_000_000),  # 01:00 EST, the second time
    ("newyork-night", "2026-11-01T06:59:59.999", 250_000_000),  # 01:59:59.999 EST
    ("newyork-night", "2026-11-01T07:00:00", 375_000_000),  # 02:00 EST
])
def test_windows_follow_daylight_saving_changes(site, utc, picos):
    assert wh_picos(site, utc) == picos


@pytest.mark.parametrize(("energy_uj", "picos"), [
    # 0.45 per kWh is 0.125 picos per µJ: 4 µJ is exactly half a pico (to the even 0), 12 µJ is
    # 1.5 (to the even 2), 7 µJ is 0.875.
    (1, 0), (4, 0), (7, 1), (12, 2), (20, 2), (28, 4),
])
def test_a_window_price_is_rounded_half_even_once(energy_uj, picos):
    assert round(Fraction(energy_uj, 10**6) / 3_600_000 * Fraction("0.45") * 10**12) == picos
    assert wh_picos("berlin", "2026-11-23T07:00:00", energy_uj) == picos


def test_a_time_of_use_rate_needs_the_records_start():
    rate = device_rate(PARSED, 1, profile="default", site="berlin", reported_cpu_cores=4)

    with pytest.raises(TypeError):
        energy_cost_pico(rate, WH_UJ)


def test_ingest_prices_each_record_at_the_window_of_its_start(store):
    book_id = store.add_price_book(BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
    new = store.add_device("edge-berlin", site="berlin")
    one_wh = (EnergyShare("cpu", WH_UJ, "rapl", "cpu-time", 100_000_000, 0),)
    starts = ["2026-11-23T06:59:59.999", "2026-11-23T07:00:00", "2026-11-28T10:00:00"]
    batch = [make_record(seq, start_unix_ns=unix_ns(utc), cpu_time_ns=0, energy=one_wh)
             for seq, utc in enumerate(starts, 1)]

    store.ingest(new.device_id, STREAM_ID, DeviceInfo(cpu_cores=4), batch)

    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(records.c.seq, records.c.price_book_id, records.c.energy_cost_pico, records.c.cost_pico)
            .order_by(records.c.seq)
        ).all()
    assert [tuple(row) for row in rows] == [
        (1, book_id, 180_000_000, 180_000_000),
        (2, book_id, 450_000_000, 450_000_000),
        (3, book_id, 180_000_000, 180_000_000),
    ]


README_TOML = """
currency = "EUR"

[hardware.default]
purchase = "1200.00"
lifetime_years = 4

[energy.default]
kwh = "0.25"

[energy.berlin]                 # a site with time-of-use prices
timezone = "Europe/Berlin"      # IANA name; windows are in its wall time (DST included)
pue = "1.3"                     # energy billed = measured x PUE
kwh = "0.12"                    # outside every window

[[energy.berlin.windows]]
days = ["mon", "tue", "wed", "thu", "fri"]
from = "08:00"
to = "20:00"                    # exclusive; "24:00" ends the day
kwh = "0.30"
"""


def test_the_readme_example_parses_and_prices_a_peak_watt_hour():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    book = parse_price_book(tomllib.loads(README_TOML))
    rate = device_rate(book, 1, profile="default", site="berlin", reported_cpu_cores=4)

    # Monday 2026-11-23 08:00 CET: 0.30 * 1.3 = 0.39 per kWh, 0.00039 per Wh.
    assert energy_cost_pico(rate, WH_UJ, unix_ns("2026-11-23T07:00:00")) == 390_000_000
    assert energy_cost_pico(rate, WH_UJ, unix_ns("2026-11-23T06:59:59.999")) == 156_000_000
