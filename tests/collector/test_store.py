"""collector.store.Store on a real SQLite file and a real PostgreSQL database: devices and their
tokens, idempotent ingest, pricing of stored rows, price books by effective date, and the cost
report's groups and exact sums."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from fractions import Fraction

import pytest
import sqlalchemy as sa

from agent.record import INT64_MAX, MAX_START_UNIX_NS, MIN_START_UNIX_NS, InvalidRecord
from collector.pricebook import PriceBookError, parse_price_book
from collector.pricing import compute_cost_pico, device_rate, energy_cost_pico
from collector.schema import device_tokens, devices, price_books, records
from collector.store import DeviceAuth, DeviceInfo, IngestResult, Store
from collector.tokens import new_device_token
from tests.collector.databases import DIALECTS, new_database, store_url  # noqa: F401
from tests.collector.helpers import START_UNIX_NS, STREAM_ID, make_record

REPORTED = DeviceInfo(hostname="edge-1", cpu_cores=4, platform="linux-x86_64", agent_version="0.1.0")
# One pico per ns of CPU time (3.6 an hour is 1e-3 a second, over one core) and one pico per µJ
# (3.6 per kWh is 1e-12 per µJ): a record's cost is cpu_time_ns + energy_uj picos.
PICO_PER_NS_BOOK = {
    "currency": "USD",
    "cloud": {"default": {"hourly": "3.6", "cpu_cores": 1}},
    "energy": {"default": {"kwh": "3.6"}},
}
FLEET_BOOK = {
    "currency": "USD",
    "hardware": {
        "default": {"purchase": "1200.00", "lifetime_years": 4, "upkeep_per_year": "120.00"},
        "jetson": {"purchase": "699.00", "residual": "99.00", "lifetime_years": "3.5"},
    },
    "cloud": {"m5.xlarge": {"hourly": "0.192", "cpu_cores": 4}},
    "energy": {"default": {"kwh": "0.15"}, "lab": {"kwh": "0.31", "pue": "1.35"}},
}
DEFAULT_BOOK_ID = 1  # the book the first migration adds, effective from 2000-01-01


@pytest.fixture
def store(store_url):  # noqa: F811
    with Store.open(store_url) as store:
        yield store


@pytest.fixture(scope="module", params=DIALECTS)
def untouched(request, tmp_path_factory):
    """A store with one device, for the tests of what must be refused and change nothing: they
    share it, and each checks that every table is as it was."""
    with new_database(request.param, tmp_path_factory.mktemp("untouched")) as url, Store.open(url) as store:
        device = store.add_device("edge-1")
        cheap_book(store)
        yield store, device


def snapshot(store: Store) -> dict[str, list[tuple]]:
    return {table.name: table_rows(store, table) for table in (devices, device_tokens, price_books, records)}


def table_rows(store: Store, table: sa.Table, *columns: str) -> list[tuple]:
    """The rows of `table` (only `columns`, if given), in primary key order."""
    selected = [table.c[name] for name in columns] if columns else list(table.c)
    query = sa.select(*selected).order_by(*table.primary_key.columns)
    with store.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def stored_prices(store: Store) -> dict[int, tuple]:
    """seq -> how the stored row was priced."""
    rows = table_rows(
        store, records, "seq", "price_book_id", "price_cpu_cores", "compute_cost_pico", "energy_cost_pico",
        "cost_pico", "list_cost_pico", "pricing_note",
    )
    return {row[0]: row[1:] for row in rows}


def cheap_book(store: Store) -> int:
    """Price everything from 2000-01-01 at one pico per CPU ns and per µJ."""
    return store.add_price_book(PICO_PER_NS_BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)


# Devices and tokens


def test_a_new_device_gets_a_token_of_which_only_the_sha256_is_stored(store):
    new = store.add_device("edge-1", profile="jetson", site="lab")

    assert new.name == "edge-1" and new.token.startswith("imd_") and new.device_id.startswith("dev_")
    assert table_rows(store, device_tokens, "token_sha256", "device_id") == [
        (hashlib.sha256(new.token.encode()).hexdigest(), new.device_id)
    ]
    stored = repr(table_rows(store, device_tokens) + table_rows(store, devices))
    assert new.token not in stored and new.token[4:] not in stored
    [row] = store.list_devices()
    assert (row.device_id, row.name, row.profile, row.site, row.revoked, row.records, row.last_seen_unix_ns) == (
        new.device_id, "edge-1", "jetson", "lab", False, 0, 0
    )


def test_every_device_gets_its_own_id_and_token(store):
    first, second = store.add_device("edge-1"), store.add_device("edge-2")

    assert first.device_id != second.device_id and first.token != second.token
    assert [row.name for row in store.list_devices()] == ["edge-1", "edge-2"]


def test_a_taken_name_is_refused_and_changes_nothing(untouched):
    store, _ = untouched
    before = snapshot(store)

    with pytest.raises(ValueError, match="a device named 'edge-1' already exists"):
        store.add_device("edge-1", profile="other")

    assert snapshot(store) == before


@pytest.mark.parametrize("field", ["name", "profile", "site"])
@pytest.mark.parametrize("value", ["", "edge 1", "e" * 65, "édge", "edge/1", "edge\n", None, 7])
def test_an_invalid_name_profile_or_site_is_refused_and_changes_nothing(untouched, field, value):
    store, _ = untouched
    names = {"name": "edge-9", "profile": "default", "site": "default", field: value}
    before = snapshot(store)

    with pytest.raises(ValueError, match=f"device {field} .* is invalid"):
        store.add_device(names.pop("name"), **names)

    assert snapshot(store) == before


def test_a_token_authenticates_its_device(store, device):
    store.add_device("edge-2")

    assert store.authenticate(device.token) == DeviceAuth(device.device_id, "edge-1", False)


@pytest.mark.parametrize("token", [
    "", "Bearer imd_x", "imd_", "imd_" + "é" * 43, "imd_" + "A" * 200, "IMD_" + "A" * 43, None, 12, b"imd_abc",
])
def test_a_malformed_token_authenticates_nobody(untouched, token):
    store, _ = untouched

    assert store.authenticate(token) is None


def test_a_wrong_token_authenticates_nobody(untouched):
    store, device = untouched

    assert store.authenticate(new_device_token()) is None
    assert store.authenticate(device.token[:-1] + ("A" if device.token[-1] != "A" else "B")) is None


def test_a_revoked_device_still_authenticates_flagged_as_revoked(store, device):
    assert store.authenticate(device.token).revoked is False  # now in the cache

    store.revoke_device(device.device_id)

    assert store.authenticate(device.token) == DeviceAuth(device.device_id, "edge-1", True)
    assert [row.revoked for row in store.list_devices()] == [True]


def test_another_replica_sees_a_revocation_once_its_cache_entry_expires(store_url, store, device):  # noqa: F811
    with Store.open(store_url, auth_cache_ttl_s=0) as replica:
        assert replica.authenticate(device.token).revoked is False

        store.revoke_device(device.device_id)

        assert replica.authenticate(device.token).revoked is True


def test_revoking_twice_keeps_the_first_revocation(store, device):
    store.revoke_device(device.device_id)
    [first] = table_rows(store, devices, "revoked_unix_ns")

    store.revoke_device(device.device_id)

    assert table_rows(store, devices, "revoked_unix_ns") == [first]


def test_revoking_an_unknown_device_is_a_key_error(untouched):
    store, _ = untouched
    before = snapshot(store)

    with pytest.raises(KeyError, match="dev_0000000000000000"):
        store.revoke_device("dev_0000000000000000")

    assert snapshot(store) == before


# Ingest


def test_the_same_batch_twice_is_stored_and_counted_once(store, device):
    batch = [make_record(seq) for seq in range(1, 51)]

    first = store.ingest(device.device_id, STREAM_ID, REPORTED, batch)
    report = store.costs(period_costs=False, )
    prices = stored_prices(store)
    second = store.ingest(device.device_id, STREAM_ID, REPORTED, batch)

    assert first == IngestResult(inserted=50, duplicates=0, acked_through_seq=50)
    assert second == IngestResult(inserted=0, duplicates=50, acked_through_seq=50)
    assert [row.records for row in store.list_devices()] == [50]
    assert store.costs(period_costs=False, ) == report and report.total_records == 50
    assert stored_prices(store) == prices


def test_a_batch_overlapping_a_stored_one_adds_only_its_new_records(store, device):
    store.ingest(device.device_id, STREAM_ID, REPORTED, [make_record(seq) for seq in range(1, 61)])

    result = store.ingest(device.device_id, STREAM_ID, REPORTED, [make_record(seq) for seq in range(41, 101)])

    assert result == IngestResult(inserted=40, duplicates=20, acked_through_seq=100)
    assert [row.records for row in store.list_devices()] == [100]
    assert [seq for seq, in table_rows(store, records, "seq")] == list(range(1, 101))


def test_the_same_seq_on_another_stream_or_device_is_a_new_record(store, device):
    other = store.add_device("edge-2")
    batch = [make_record(1), make_record(2)]

    results = [
        store.ingest(device.device_id, STREAM_ID, REPORTED, batch),
        store.ingest(device.device_id, "f" * 32, REPORTED, batch),
        store.ingest(other.device_id, STREAM_ID, REPORTED, batch),
    ]

    assert [result.inserted for result in results] == [2, 2, 2]
    assert [row.records for row in store.list_devices()] == [4, 2]


def test_ingest_records_what_the_device_reports_and_keeps_what_it_leaves_out(store, device):
    store.ingest(device.device_id, STREAM_ID, REPORTED, [make_record(1)])

    result = store.ingest(device.device_id, STREAM_ID, DeviceInfo(hostname="edge-1b"), [])

    assert result == IngestResult(inserted=0, duplicates=0, acked_through_seq=0)
    [row] = store.list_devices()
    assert (row.hostname, row.cpu_cores, row.platform, row.agent_version, row.records) == (
        "edge-1b", 4, "linux-x86_64", "0.1.0", 1
    )
    assert row.last_seen_unix_ns > 0


def test_a_batch_for_an_unknown_device_is_refused(untouched):
    store, _ = untouched
    before = snapshot(store)

    with pytest.raises(ValueError, match="no device 'dev_0000000000000000'"):
        store.ingest("dev_0000000000000000", STREAM_ID, REPORTED, [make_record(1)])

    assert snapshot(store) == before


@pytest.mark.parametrize(("stream_id", "info", "field"), [
    ("", REPORTED, "stream_id"),
    ("s" * 129, REPORTED, "stream_id"),
    ("abc\x00", REPORTED, "stream_id"),
    (STREAM_ID, DeviceInfo(hostname="a\nb"), "device.hostname"),
    (STREAM_ID, DeviceInfo(cpu_cores=-1), "device.cpu_cores"),
    (STREAM_ID, DeviceInfo(cpu_cores=65_536), "device.cpu_cores"),
    (STREAM_ID, DeviceInfo(cpu_cores=True), "device.cpu_cores"),
])
def test_a_bad_stream_id_or_device_info_is_refused_and_stores_nothing(untouched, stream_id, info, field):
    store, device = untouched
    before = snapshot(store)

    with pytest.raises(InvalidRecord) as caught:
        store.ingest(device.device_id, stream_id, info, [make_record(1)])

    assert caught.value.field == field
    assert snapshot(store) == before


def test_a_record_costing_more_than_a_bigint_refuses_the_whole_batch(untouched):
    store, device = untouched
    # One pico per ns and per µJ: INT64_MAX ns plus the record's energy is past INT64_MAX picos.
    batch = [make_record(1, cpu_time_ns=1_000), make_record(2, cpu_time_ns=INT64_MAX)]
    before = snapshot(store)

    with pytest.raises(InvalidRecord) as caught:
        store.ingest(device.device_id, STREAM_ID, REPORTED, batch)

    assert (caught.value.seq, caught.value.field) == (2, "cpu_time_ns")
    assert snapshot(store) == before


# Pricing of stored rows


def test_stored_rows_are_priced_with_the_devices_profile_site_and_cores(store):
    book_id = store.add_price_book(FLEET_BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
    book = parse_price_book(FLEET_BOOK)
    fleet = [
        # (name, profile, site, reported cores)
        ("jetson-1", "jetson", "lab", 6),
        ("vm-1", "m5.xlarge", "lab", 16),  # the book's 4 cores win over the 16 reported
        ("box-1", "default", "default", 0),  # no core count anywhere: one core
        ("stray-1", "orin", "attic", 8),  # neither profile nor site in the book: defaults
    ]
    batch = [make_record(seq, cpu_time_ns=seq * 1_234_567, energy=make_record(1).energy * (seq % 3))
             for seq in range(1, 31)]

    for name, profile, site, cores in fleet:
        new = store.add_device(name, profile=profile, site=site)
        store.ingest(new.device_id, name, DeviceInfo(cpu_cores=cores), batch)

    for name, profile, site, cores in fleet:
        rate = device_rate(book, book_id, profile=profile, site=site, reported_cpu_cores=cores)
        with store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(records.c.seq, records.c.profile, records.c.site, records.c.price_book_id,
                          records.c.price_cpu_cores, records.c.compute_cost_pico, records.c.energy_cost_pico,
                          records.c.cost_pico, records.c.list_cost_pico, records.c.pricing_note)
                .where(records.c.stream_id == name).order_by(records.c.seq)
            ).all()
        expected = []
        for record in batch:
            compute = compute_cost_pico(rate, record.cpu_time_ns, record.gpu_time_ns)
            energy = energy_cost_pico(rate, record.energy_uj)
            # The row keeps the device's own keys; the note says which defaults stood in.
            expected.append((record.seq, profile, site, book_id, rate.cpu_cores, compute, energy,
                             compute + energy, compute + energy, rate.note))
        assert [tuple(row) for row in rows] == expected, name
    notes = dict(set(table_rows(store, records, "stream_id", "pricing_note")))
    assert notes["vm-1"] == "" and notes["jetson-1"] == ""
    assert notes["box-1"] == "CPU core count unknown; the CPU share is taken over 1 core"
    assert "profile 'orin' is not in price book" in notes["stray-1"] and "site 'attic'" in notes["stray-1"]


def test_the_default_book_prices_a_box_at_420_a_year_over_its_reported_cores(store, device):
    # 1200.00 over 4 years plus 120.00 a year, over the 4 reported cores; 0.15 per kWh.
    store.ingest(device.device_id, STREAM_ID, REPORTED, [make_record(1, cpu_time_ns=10**9, energy=())])
    store.ingest(device.device_id, STREAM_ID, REPORTED, [make_record(2, cpu_time_ns=0)])

    prices = stored_prices(store)
    assert prices[1][:4] == (DEFAULT_BOOK_ID, 4, round(Fraction(420 * 10**12, 4 * 365 * 86_400)), 0)
    # 5,000 µJ at 0.15 per kWh: 5e-3 / 3.6e6 * 0.15 * 1e12 = 208.33 picos.
    assert prices[2][2:4] == (0, 208)


# Price books


def test_a_record_before_a_books_effective_date_is_priced_by_the_older_book(store, device):
    switch = make_record(50).start_unix_ns
    newer = store.add_price_book(PICO_PER_NS_BOOK, effective_from_unix_ns=switch)

    store.ingest(device.device_id, STREAM_ID, REPORTED, [make_record(seq) for seq in range(1, 101)])

    prices = stored_prices(store)
    assert {seq for seq, price in prices.items() if price[0] == DEFAULT_BOOK_ID} == set(range(1, 50))
    assert {seq for seq, price in prices.items() if price[0] == newer} == set(range(50, 101))
    record = make_record(50)
    assert prices[50][4] == record.cpu_time_ns + record.energy_uj


def test_of_two_books_effective_at_the_same_time_the_newer_prices(store, device):
    store.add_price_book(FLEET_BOOK, effective_from_unix_ns=START_UNIX_NS)
    newer = store.add_price_book(PICO_PER_NS_BOOK, effective_from_unix_ns=START_UNIX_NS)

    store.ingest(device.device_id, STREAM_ID, REPORTED, [make_record(1)])

    assert stored_prices(store)[1][0] == newer


def test_a_new_book_does_not_reprice_stored_records(store, device):
    store.ingest(device.device_id, STREAM_ID, REPORTED, [make_record(1)])
    before = store.costs(period_costs=False, )

    cheap_book(store)
    store.ingest(device.device_id, STREAM_ID, REPORTED, [make_record(1), make_record(2)])

    prices = stored_prices(store)
    assert (prices[1][0], prices[2][0]) == (DEFAULT_BOOK_ID, DEFAULT_BOOK_ID + 1)
    assert store.costs(period_costs=False, until_unix_ns=make_record(2).start_unix_ns) == before


def test_price_books_are_listed_oldest_first_with_their_documents(store):
    book_id = store.add_price_book(FLEET_BOOK, effective_from_unix_ns=START_UNIX_NS)

    listed = store.list_price_books()

    assert [(book.id, book.effective_from_unix_ns, book.currency) for book in listed] == [
        (DEFAULT_BOOK_ID, MIN_START_UNIX_NS, "USD"), (book_id, START_UNIX_NS, "USD"),
    ]
    assert listed[1].document == FLEET_BOOK


@pytest.mark.parametrize("effective_from", [MIN_START_UNIX_NS - 1, MAX_START_UNIX_NS, -1, True, 1.7e18, "2026"])
def test_a_book_effective_outside_2000_to_2100_is_refused(untouched, effective_from):
    store, _ = untouched
    before = snapshot(store)

    with pytest.raises(PriceBookError) as caught:
        store.add_price_book(PICO_PER_NS_BOOK, effective_from_unix_ns=effective_from)

    assert caught.value.field == "effective_from_unix_ns"
    assert snapshot(store) == before


@pytest.mark.parametrize("effective_from", [MIN_START_UNIX_NS, MAX_START_UNIX_NS - 1])
def test_a_book_effective_at_either_end_of_the_range_is_accepted(store, effective_from):
    book_id = store.add_price_book(PICO_PER_NS_BOOK, effective_from_unix_ns=effective_from)

    assert store.list_price_books()[-1].id == book_id


def test_an_invalid_book_is_refused_and_not_stored(untouched):
    store, _ = untouched
    before = snapshot(store)

    with pytest.raises(PriceBookError) as caught:
        store.add_price_book({**PICO_PER_NS_BOOK, "energy": {"default": {"kwh": 0.1}}},
                             effective_from_unix_ns=START_UNIX_NS)

    assert caught.value.field == "energy.default.kwh"
    assert snapshot(store) == before


def test_the_currency_may_change_before_any_record_with_a_book_effective_from_2000(store, device):
    euro = store.add_price_book({**PICO_PER_NS_BOOK, "currency": "EUR"}, effective_from_unix_ns=MIN_START_UNIX_NS)

    store.ingest(device.device_id, STREAM_ID, REPORTED, [make_record(1)])

    assert store.costs(period_costs=False, ).currency == "EUR"
    # The older books, in dollars, are history: they price nothing.
    assert stored_prices(store)[1][0] == euro


def test_a_currency_change_effective_after_2000_is_refused(untouched):
    store, _ = untouched  # no record is stored in it
    before = snapshot(store)

    with pytest.raises(PriceBookError) as caught:
        store.add_price_book({**PICO_PER_NS_BOOK, "currency": "EUR"}, effective_from_unix_ns=START_UNIX_NS)

    assert caught.value.field == "currency"
    assert "must be effective from" in caught.value.reason
    assert snapshot(store) == before


def test_a_currency_change_after_records_are_stored_is_refused(store, device):
    store.ingest(device.device_id, STREAM_ID, REPORTED, [make_record(1)])

    with pytest.raises(PriceBookError) as caught:
        store.add_price_book({**PICO_PER_NS_BOOK, "currency": "EUR"}, effective_from_unix_ns=MIN_START_UNIX_NS)

    assert caught.value.field == "currency"
    assert "records are already priced in USD" in caught.value.reason
    assert store.costs(period_costs=False, ).currency == "USD" and len(store.list_price_books()) == 1


# The cost report

# (device, site, stream) x records: model, version, runtime, tags, cpu_time_ns; no energy, so that
# with PICO_PER_NS_BOOK a record's cost is its cpu_time_ns in picos.
MIXED = [
    ("edge-1", {"model": "resnet50", "model_version": "3", "runtime": "onnxruntime",
                "tags": {"project": "search", "team": "vision"}, "cpu_time_ns": 100}),
    ("edge-1", {"model": "resnet50", "model_version": "4", "runtime": "onnxruntime",
                "tags": {"project": "search"}, "cpu_time_ns": 20}),
    ("edge-1", {"model": "bert", "model_version": "1", "runtime": "triton",
                "tags": {"project": "ads", "team": ""}, "cpu_time_ns": 3_000}),
    ("edge-2", {"model": "resnet50", "model_version": "3", "runtime": "onnxruntime",
                "tags": {"project": "поиск", "team": "数据 ✓"}, "cpu_time_ns": 400}),
    ("edge-2", {"model": "bert", "model_version": "1", "runtime": "triton", "tags": {}, "cpu_time_ns": 5}),
]


@pytest.fixture(scope="module", params=DIALECTS)
def mixed(request, tmp_path_factory):
    """A store holding the MIXED records, shared by the tests that only read reports: edge-1 at
    site "default", edge-2 at site "lab" (not in the book, so priced as "default", but reported
    as "lab")."""
    with new_database(request.param, tmp_path_factory.mktemp("mixed")) as url, Store.open(url) as store:
        cheap_book(store)
        ids = {name: store.add_device(name, site=site).device_id for name, site in [("edge-1", "default"),
                                                                                    ("edge-2", "lab")]}
        for seq, (name, fields) in enumerate(MIXED, start=1):
            store.ingest(ids[name], STREAM_ID, REPORTED, [make_record(seq, energy=(), **fields)])
        yield store


def picos(amount: int) -> Decimal:
    return Decimal(amount) / 10**12


@pytest.mark.parametrize(("group_by", "expected"), [
    ((), [((), 5, 3_525)]),
    (("model",), [(("bert",), 2, 3_005), (("resnet50",), 3, 520)]),
    (("version",), [(("1",), 2, 3_005), (("3",), 2, 500), (("4",), 1, 20)]),
    (("device",), [(("edge-1",), 3, 3_120), (("edge-2",), 2, 405)]),
    (("site",), [(("default",), 3, 3_120), (("lab",), 2, 405)]),
    (("runtime",), [(("triton",), 2, 3_005), (("onnxruntime",), 3, 520)]),
    (("tag:project",), [(("ads",), 1, 3_000), (("поиск",), 1, 400), (("search",), 2, 120), (("",), 1, 5)]),
    # A record without the tag, and one with it empty, both group under "".
    (("tag:team",), [(("",), 3, 3_025), (("数据 ✓",), 1, 400), (("vision",), 1, 100)]),
    (("model", "device"), [
        (("bert", "edge-1"), 1, 3_000), (("resnet50", "edge-2"), 1, 400), (("resnet50", "edge-1"), 2, 120),
        (("bert", "edge-2"), 1, 5),
    ]),
    (("tag:project", "version", "runtime"), [
        (("ads", "1", "triton"), 1, 3_000), (("поиск", "3", "onnxruntime"), 1, 400),
        (("search", "3", "onnxruntime"), 1, 100), (("search", "4", "onnxruntime"), 1, 20),
        (("", "1", "triton"), 1, 5),
    ]),
])
def test_costs_are_summed_exactly_by_group_most_expensive_first(mixed, group_by, expected):
    report = mixed.costs(period_costs=False, group_by=group_by)

    assert [(group.key, group.records, group.cost) for group in report.groups] == [
        (key, count, picos(cost)) for key, count, cost in expected
    ]
    assert (report.group_by, report.currency, report.total_cost, report.total_records) == (
        group_by, "USD", picos(3_525), 5
    )
    assert all(group.cost == group.compute_cost == picos(group.cpu_time_ns) for group in report.groups)


def test_a_unicode_tag_name_can_be_grouped_by(store, device):
    store.ingest(device.device_id, STREAM_ID, REPORTED, [
        make_record(1, tags={"équipe": "vision"}), make_record(2, tags={"équipe": "語彙"}), make_record(3, tags={}),
    ])

    report = store.costs(period_costs=False, group_by=["tag:équipe"])

    assert sorted(group.key for group in report.groups) == [("",), ("vision",), ("語彙",)]


def test_sums_beyond_int64_are_exact(store, device):
    cheap_book(store)
    cpu_time_ns = 4 * 10**18  # 4e18 picos a record; three are past INT64_MAX (9.2e18)
    store.ingest(device.device_id, STREAM_ID, REPORTED, [
        make_record(seq, cpu_time_ns=cpu_time_ns + seq, energy=(), count=2**62)
        for seq in (1, 2, 3)
    ])

    report = store.costs(period_costs=False, group_by=("model",))

    total = 3 * cpu_time_ns + 6
    assert total > INT64_MAX
    [group] = report.groups
    assert (group.cost, group.compute_cost, group.cpu_time_ns, group.inferences) == (
        picos(total), picos(total), total, 3 * 2**62
    )
    assert report.total_cost == Decimal("12000000.000000000006")
    assert report.total_inferences == 3 * 2**62


def test_costs_count_the_records_whose_start_is_in_the_half_open_range(mixed):
    def seqs(**bounds) -> int:
        return mixed.costs(period_costs=False, **bounds).total_records

    start = {seq: make_record(seq).start_unix_ns for seq in range(1, 6)}

    assert seqs(since_unix_ns=start[2], until_unix_ns=start[4]) == 2  # seqs 2 and 3
    assert seqs(since_unix_ns=start[2]) == 4
    assert seqs(until_unix_ns=start[2]) == 1
    assert seqs(since_unix_ns=start[5] + 1) == 0
    assert seqs(since_unix_ns=start[3], until_unix_ns=start[3]) == 0


def test_an_empty_report_has_no_groups_and_costs_nothing(mixed):
    report = mixed.costs(period_costs=False, group_by=("model",), since_unix_ns=MAX_START_UNIX_NS)

    assert (report.groups, report.total_cost, report.total_records, report.total_inferences) == ([], 0, 0, 0)


@pytest.mark.parametrize(("bounds", "message"), [
    ({"since_unix_ns": START_UNIX_NS + 1, "until_unix_ns": START_UNIX_NS}, "is after"),
    ({"since_unix_ns": "2026-01-01"}, "since_unix_ns must be an integer"),
    ({"until_unix_ns": 1.5e18}, "until_unix_ns must be an integer"),
    ({"until_unix_ns": True}, "until_unix_ns must be an integer"),
])
def test_a_bad_range_is_a_value_error(mixed, bounds, message):
    with pytest.raises(ValueError, match=message):
        mixed.costs(period_costs=False, **bounds)


@pytest.mark.parametrize("group_by", [
    ("cost",), ("Model",), ("tag:",), ("tag:a\"b",), ("tag:a\x00b",), ("tag:" + "k" * 129,), ("model", "model"),
    ("model", None), "model",
])
def test_an_unknown_group_key_is_a_value_error(mixed, group_by):
    with pytest.raises(ValueError, match="group"):
        mixed.costs(period_costs=False, group_by=group_by)
