"""`infermeter export focus`: FOCUS rows from a store with records across devices, models,
sites, hours, price books and tag orders, through the real root CLI, on SQLite and PostgreSQL;
checked with the FinOps Foundation's focus-validator, and against `report costs` to the pico.

focus-validator 1.0.0 validates FOCUS 0.5, 1.0-preview and 1.0, not 1.1 or 1.2: the files are
checked against its 1.0 rules, and its known departures from FOCUS 1.0 are named below."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from agent.cli import build_parser
from agent.record import MIN_START_UNIX_NS, EnergyShare, Kind, validate
from collector import focus_files
from collector.focus import COLUMN_NAMES, COLUMNS, NS_PER_HOUR, month_of
from collector.focus_files import csv_cell, rfc3339
from collector.store import DeviceInfo, Store
from tests.collector.databases import store_url  # noqa: F401
from tests.collector.helpers import START_UNIX_NS, STREAM_ID, make_record
from tests.collector.helpers import run_cli as run

H0 = START_UNIX_NS // NS_PER_HOUR * NS_PER_HOUR  # 2026-11-18T11:00:00Z
H1, H2, H3 = (H0 + n * NS_PER_HOUR for n in (1, 2, 3))
BOOK = {
    "currency": "EUR",
    "hardware": {
        "default": {"purchase": "1200.00", "lifetime_years": 4, "upkeep_per_year": "120.00"},
        "jetson": {"purchase": "699.00", "residual": "99.00", "lifetime_years": "3.5", "cpu_cores": 6},
    },
    "cloud": {"m5.xlarge": {"hourly": "0.192", "cpu_cores": 4}},
    "energy": {"default": {"kwh": "0.15"}, "lab": {"kwh": "0.31", "pue": "1.35"}},
}
# From half past the second hour: dearer energy, so the rows of that hour split by price.
DEARER = {**BOOK, "energy": {"default": {"kwh": "0.40"}, "lab": {"kwh": "0.52", "pue": "1.35"}}}
SEARCH, SEARCH_REORDERED = {"project": "search", "user": "alice"}, {"user": "alice", "project": "search"}
ADS = {"project": "ads"}
TWO_SENSORS = (EnergyShare("cpu", 40_000, "rapl", "cpu-time"), EnergyShare("gpu", 90_000, "nvml", "gpu-time"))

# focus-validator 1.0.0's "1.0" rules still use FOCUS 1.0-preview column names: its Required
# checks look for Provider, Publisher, InvoiceIssuer (FOCUS 1.0 and 1.2: ProviderName,
# PublisherName, InvoiceIssuerName) and ResourceID (a misspelling of ResourceId), and its
# SkuPriceId check reads ChargeType (renamed ChargeCategory in FOCUS 1.0) and fails on a
# KeyError without it. The export keeps the FOCUS 1.2 names; the "validator's view" renames
# those four columns and copies ChargeCategory to ChargeType, so that every check runs on our
# values.
VALIDATOR_NAMES = {"ProviderName": "Provider", "PublisherName": "Publisher", "InvoiceIssuerName": "InvoiceIssuer",
                   "ResourceId": "ResourceID"}
NAME_GAP = {"Provider_Required", "Publisher_Required", "InvoiceIssuer_Required", "ResourceID_Required",
            "SkuPriceId_Nullable"}
# It also reads Parquet through pandas and requires float64 for Decimal columns: decimal128
# (exact) comes back as Python Decimals, which its dtype check refuses.
PARQUET_DECIMAL_GAP = {
    f"{name}_IsDecimal" for name in ("BilledCost", "ConsumedQuantity", "ContractedCost", "ContractedUnitPrice",
                                     "EffectiveCost", "ListCost", "ListUnitPrice", "PricingQuantity")
}


def records_of(device: int) -> list:
    """Records of one device over three hours, with every kind and the edges of the hours."""
    made = []

    def add(start_unix_ns: int, **fields) -> None:
        made.append(make_record(len(made) + 1, start_unix_ns=start_unix_ns, **fields))

    for hour in (H0, H1, H2):
        groups = [("resnet50", "3", SEARCH), ("resnet50", "3", SEARCH_REORDERED), ("bert", "1", ADS),
                  ("resnet50", "4", SEARCH)]
        for minute, (model, version, tags) in enumerate(groups):
            add(hour + (minute * 7 + device) * 60 * 10**9, model=model, model_version=version, tags=tags,
                cpu_time_ns=1_500_000 + 1_000 * minute + device)
        add(hour + 40 * 60 * 10**9, model="resnet50", model_version="3", tags=SEARCH, gpu_time_ns=900_000,
            energy=TWO_SENSORS)
        add(hour + 41 * 60 * 10**9, model="bert", model_version="1", tags=ADS, energy=())
    add(H1 - 1, model="bert", model_version="1", tags=ADS)  # the last ns of the first hour
    add(H1, model="bert", model_version="1", tags=ADS)  # the first of the second
    add(H0 + 50 * 60 * 10**9, kind=Kind.IDLE, model="", model_version="", count=0, cpu_time_ns=0, tags={"site": "x"},
        energy=(EnergyShare("cpu", 3_000_000, "rapl", "baseline"),))
    add(H1 + 5 * 60 * 10**9, kind=Kind.ROLLUP, model="resnet50", model_version="3", count=50, cpu_time_ns=75_000_000,
        tags=SEARCH)
    add(H2 + 30 * 60 * 10**9, kind=Kind.SPAN, model="my-llm", model_version="", input_tokens=120, output_tokens=512,
        runtime="", tags={"user": "bob"})
    for record in made:
        validate(record)
    return made


def fill(store: Store) -> None:
    store.add_price_book(BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
    store.add_price_book(DEARER, effective_from_unix_ns=H1 + NS_PER_HOUR // 2)
    for number, (profile, site) in enumerate([("jetson", "lab"), ("m5.xlarge", "default"), ("default", "paris")], 1):
        device = store.add_device(f"edge-{number}", profile=profile, site=site)
        store.ingest(device.device_id, STREAM_ID, DeviceInfo(f"edge-{number}", 8, "linux", "0.1.0"), records_of(number))


@pytest.fixture
def fleet(store_url):  # noqa: F811
    with Store.open(store_url) as store:
        fill(store)
        yield store


@pytest.fixture
def sqlite_fleet(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'fleet.db'}") as store:
        fill(store)
        yield store


def url(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def export(capsys, store: Store, out: Path, *args: str) -> dict:
    code, stdout, err = run(capsys, "export", "focus", "--db", url(store), "--out", str(out), "--json", *args)
    assert code == 0, err
    return json.loads(stdout)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def usage(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows of the records (not of idle, fixed costs or discounts)."""
    return [row for row in rows if row["x_CostKind"] == "usage"]


def total(rows: list[dict[str, str]], column: str) -> Decimal:
    return sum((Decimal(row[column]) for row in rows), Decimal(0))


# What the rows hold


def test_rows_are_per_hour_device_model_version_kind_tags_and_price(capsys, tmp_path, fleet):
    export(capsys, fleet, tmp_path / "focus.csv")
    rows = usage(read_csv(tmp_path / "focus.csv"))

    keys = [(row["ChargePeriodStart"], row["x_Device"], row["x_Model"], row["x_ModelVersion"], row["x_RecordKind"],
             row["Tags"], row["SkuPriceId"]) for row in rows]
    assert len(keys) == len(set(keys))
    # Per device: 3 hours x 3 inference rows (resnet50 3 with either tag order is one row),
    # plus 2 for the second hour's later records (another price book), roll-up and span (idle
    # energy is in the idle rows).
    assert len(rows) == 3 * (3 * 3 + 2 + 1 + 1)
    first = [row for row in rows if row["x_Device"] == "edge-1" and row["ChargePeriodStart"] == rfc3339(H0)]
    search = next(row for row in first if row["x_Model"] == "resnet50" and row["x_ModelVersion"] == "3")
    assert search["Tags"] == '{"project":"search","user":"alice"}'
    assert search["x_Records"] == "3" and search["x_Inferences"] == "3" and search["ConsumedQuantity"] == "3.0"
    assert search["x_EnergyMethod"] == "nvml:gpu-time,rapl:cpu-time"
    assert search["x_EnergyJoules"] == "0.140000"  # 5,000 + 5,000 + 40,000 + 90,000 µJ
    assert search["x_GpuTimeSeconds"] == "0.000900000"
    for row in rows:
        parts = ("x_ComputeCost", "x_EnergyCost", "x_TokenCost", "x_RequestCost")
        assert sum(Decimal(row[name]) for name in parts) == Decimal(row["BilledCost"])
        assert row["BilledCost"] == row["EffectiveCost"] == row["ContractedCost"] == row["ListCost"]
        assert len(row["BilledCost"].partition(".")[2]) == 12  # picos, never exponents
        assert (row["ChargeCategory"], row["ChargeFrequency"], row["ChargeClass"]) == ("Usage", "Usage-Based", "")
        assert (row["ServiceCategory"], row["ServiceSubcategory"]) == ("AI and Machine Learning", "Machine Learning")
        assert (row["ProviderName"], row["PublisherName"], row["InvoiceIssuerName"]) == ("infermeter",) * 3
        assert row["BillingCurrency"] == "EUR"
        assert (row["BillingPeriodStart"], row["BillingPeriodEnd"]) == ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
        assert row["ResourceName"] == row["x_Device"] and row["ResourceId"].startswith("dev_")
        assert isinstance(json.loads(row["Tags"]), dict)
    sites = {row["x_Device"]: (row["RegionId"], row["SkuId"]) for row in rows}
    assert sites == {"edge-1": ("lab", "jetson/lab"), "edge-2": ("default", "m5.xlarge/default"),
                     "edge-3": ("paris", "default/paris")}
    kinds = {row["x_RecordKind"]: row for row in rows if row["x_Device"] == "edge-2"}
    assert "idle" not in kinds
    assert kinds["rollup"]["x_Inferences"] == "50"
    assert kinds["span"]["ChargeDescription"] == "Metered span my-llm on device edge-2"
    books = {row["SkuPriceId"].partition("/")[0] for row in rows if row["ChargePeriodStart"] == rfc3339(H1)}
    assert len(books) == 2


def test_idle_capacity_and_energy_are_rows_of_their_own_per_day_device_and_model(capsys, tmp_path, fleet):
    export(capsys, fleet, tmp_path / "focus.csv", "--until", str(H3))
    rows = [row for row in read_csv(tmp_path / "focus.csv") if row["x_CostKind"] != "usage"]

    assert {row["x_CostKind"] for row in rows} == {"idle"}  # the book has no fixed costs or discounts
    report = fleet.costs(group_by=("device", "site", "model", "version"), granularity="day", until_unix_ns=H3)
    idle = defaultdict(Decimal)
    for row in rows:
        assert (row["ChargeCategory"], row["ChargeFrequency"]) == ("Usage", "Usage-Based")
        assert row["BilledCost"] == row["EffectiveCost"] == row["ListCost"] == row["ContractedCost"]
        assert row["ChargeDescription"].startswith(f"Idle capacity and idle energy of device {row['x_Device']}")
        assert row["ResourceName"] == row["x_Device"] and row["x_RecordKind"] == ""
        idle[row["x_Device"], row["RegionId"], row["x_Model"], row["x_ModelVersion"]] += Decimal(row["BilledCost"])
    assert idle == {group.key: group.idle_cost for group in report.groups}


def test_billed_cost_adds_up_to_report_costs_to_the_pico(capsys, tmp_path, fleet):
    ranges = [(None, None), (H0, H2), (H0 + 17 * 60 * 10**9 + 1, H2 + 33 * 60 * 10**9), (H1, H1), (H3, None)]
    for since, until in ranges:
        args = [*(["--since", str(since)] if since is not None else []),
                *(["--until", str(until)] if until is not None else [])]
        summary = export(capsys, fleet, tmp_path / "focus.csv", *args)
        every = read_csv(tmp_path / "focus.csv")
        rows = usage(every)
        report = fleet.costs(since_unix_ns=since, until_unix_ns=until)

        assert total(every, "BilledCost") == total(every, "EffectiveCost") == report.total_cost
        assert total(rows, "BilledCost") == report.list_cost
        assert Decimal(summary["billed_cost"]) == report.total_cost and summary["currency"] == report.currency
        assert summary["rows"] == len(every)
        assert summary["records"] == sum(int(row["x_Records"]) for row in rows) == report.total_records
        assert sum(int(row["x_Inferences"]) for row in rows) == report.total_inferences
        by_group = fleet.costs(group_by=("model", "device", "tag:project"), since_unix_ns=since, until_unix_ns=until)
        sums: dict[tuple, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
        for row in rows:
            key = (row["x_Model"], row["x_Device"], json.loads(row["Tags"]).get("project", ""))
            for i, column in enumerate(("BilledCost", "x_ComputeCost", "x_EnergyCost")):
                sums[key][i] += Decimal(row[column])
        assert {key: tuple(value) for key, value in sums.items()} == {
            group.key: (group.list_cost, group.compute_cost, group.energy_cost)
            for group in by_group.groups if group.records
        }
        energy = sum(Decimal(row["x_EnergyJoules"]) for row in rows)
        assert energy * 10**6 == sum(group.energy_uj for group in by_group.groups)


def test_charge_periods_are_half_open_hours_cut_to_the_range(capsys, tmp_path, sqlite_fleet):
    export(capsys, sqlite_fleet, tmp_path / "all.csv")
    edges = [row for row in read_csv(tmp_path / "all.csv")
             if row["x_Device"] == "edge-1" and row["x_Model"] == "bert" and row["SkuPriceId"].startswith("2/")]
    # The record at H1 - 1 ns is the first hour's, the one at H1 the second's (with the
    # record of its minute 15; those of minute 41 have the next price book).
    assert {(row["ChargePeriodStart"], row["ChargePeriodEnd"], row["x_Records"]) for row in edges} == {
        (rfc3339(H0), rfc3339(H1), "3"), (rfc3339(H1), rfc3339(H2), "2")
    }

    since, until = H0 + 30 * 60 * 10**9 + 500_000_000, H1
    export(capsys, sqlite_fleet, tmp_path / "cut.csv", "--since", str(since), "--until", rfc3339(until))
    rows = read_csv(tmp_path / "cut.csv")
    assert {(row["ChargePeriodStart"], row["ChargePeriodEnd"]) for row in rows} == {
        ("2026-11-18T11:30:00.5Z", "2026-11-18T12:00:00Z")
    }
    bert = next(row for row in rows if row["x_Device"] == "edge-1" and row["x_Model"] == "bert")
    assert bert["x_Records"] == "2"  # the record at H1 is outside [since, H1)


@pytest.mark.parametrize(
    "bounds",
    [
        ("--since", "2026-11-18"),
        ("--since", "2026-11-18T12:30:00+01:00", "--until", "2026-11-18T13:15:00Z"),
        ("--since", "2026-11-18t11:20:00.000000001z"),
        ("--until", str(H2 + 1)),
        ("--since", "2026-11-19"),
    ],
)
def test_since_and_until_read_as_report_costs_reads_them(capsys, tmp_path, sqlite_fleet, bounds):
    summary = export(capsys, sqlite_fleet, tmp_path / "focus.csv", *bounds)
    code, out, err = run(capsys, "report", "costs", "--db", url(sqlite_fleet), "--json", *bounds)

    assert code == 0, err
    report = json.loads(out)
    assert summary["billed_cost"] == report["total_cost"]
    assert summary["records"] == report["total_records"]
    assert total(read_csv(tmp_path / "focus.csv"), "BilledCost") == Decimal(report["total_cost"])


def test_an_empty_store_exports_a_header(capsys, tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'empty.db'}") as store:
        summary = export(capsys, store, tmp_path / "focus.csv")

    assert summary["rows"] == 0 and summary["billed_cost"] == "0.000000000000"
    assert (tmp_path / "focus.csv").read_text().splitlines() == [",".join(COLUMN_NAMES)]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "focus.csv").stat().st_mode & 0o777 == 0o666 & ~umask  # not a temporary file's 0600


# The FOCUS validator


def validator_failures(path: Path, monkeypatch) -> set[str]:
    """The names of the focus-validator's FOCUS 1.0 checks that fail (or error) on a file."""
    pytest.importorskip("focus_validator", reason="the FOCUS validator is in the test extra")
    import focus_validator
    from focus_validator.config_objects.common import ChecklistObjectStatus
    from focus_validator.validator import Validator

    # It reads its currency codes from a path relative to the folder above its package.
    monkeypatch.chdir(Path(focus_validator.__file__).parent.parent)
    validator = Validator(data_filename=str(path), output_destination=None, output_type="console", rules_version="1.0")
    validator.load()
    result = validator.spec_rules.validate(validator.focus_data)
    assert len(result.checklist) > 100  # the rules did load
    bad = (ChecklistObjectStatus.FAILED, ChecklistObjectStatus.ERRORED)
    return {name for name, check in result.checklist.items() if check.status in bad}


def validators_view_csv(path: Path, view: Path) -> Path:
    rows = read_csv(path)
    with open(view, "w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, [*(VALIDATOR_NAMES.get(name, name) for name in COLUMN_NAMES), "ChargeType"])
        writer.writeheader()
        for row in rows:
            renamed = {VALIDATOR_NAMES.get(name, name): value for name, value in row.items()}
            writer.writerow({**renamed, "ChargeType": row["ChargeCategory"]})
    return view


def test_csv_passes_the_focus_validator(capsys, tmp_path, sqlite_fleet, monkeypatch):
    export(capsys, sqlite_fleet, tmp_path / "focus.csv")

    assert validator_failures(tmp_path / "focus.csv", monkeypatch) == NAME_GAP
    view = validators_view_csv(tmp_path / "focus.csv", tmp_path / "view.csv")
    assert validator_failures(view, monkeypatch) == set()


def test_fixed_cost_purchases_and_discount_credits_pass_the_validator_and_add_up(capsys, tmp_path, monkeypatch):
    with Store.open(f"sqlite:///{tmp_path / 'fleet.db'}") as store:
        fill(store)
        store.add_price_book({
            **DEARER, "idle": {"policy": "bucket"},
            "monthly": {"support": {"amount": "300"}, "storage": {"amount": "30", "device": "edge-2"}},
            "discounts": {"all": {"tiers": [{"from": "0", "percent_off": "20"}]}},
        }, effective_from_unix_ns=MIN_START_UNIX_NS + 1)
        summary = export(capsys, store, tmp_path / "focus.csv", "--until", str(H3))
        report = store.costs(until_unix_ns=H3)

    rows = read_csv(tmp_path / "focus.csv")
    by_kind = defaultdict(list)
    for row in rows:
        by_kind[row["x_CostKind"]].append(row)
    assert {row["ChargeCategory"] for row in by_kind["fixed"]} == {"Purchase"}
    assert {row["ChargeCategory"] for row in by_kind["discount"]} == {"Credit"}
    assert all(Decimal(row["BilledCost"]) < 0 and Decimal(row["ListCost"]) == 0 for row in by_kind["discount"])
    assert -total(by_kind["discount"], "BilledCost") == report.discount > 0
    assert total(by_kind["fixed"], "BilledCost") == report.fixed_cost > 0
    assert total(rows, "BilledCost") == Decimal(summary["billed_cost"]) == report.total_cost
    view = validators_view_csv(tmp_path / "focus.csv", tmp_path / "view.csv")
    assert validator_failures(view, monkeypatch) == set()


def test_parquet_holds_the_csv_values_exactly_and_passes_the_validator_but_for_decimals(
    capsys, tmp_path, sqlite_fleet, monkeypatch
):
    pa = pytest.importorskip("pyarrow", reason="Parquet output needs the parquet extra")
    import pyarrow.parquet as pq

    export(capsys, sqlite_fleet, tmp_path / "focus.csv", "--since", "2026-11-18T11:30:00Z")
    summary = export(capsys, sqlite_fleet, tmp_path / "focus.parquet", "--since", "2026-11-18T11:30:00Z")
    table = pq.read_table(tmp_path / "focus.parquet")

    assert summary["format"] == "parquet" and table.num_rows == summary["rows"] > 0
    assert table.schema.field("BilledCost").type == pa.decimal128(38, 12)
    assert table.schema.field("ChargePeriodStart").type == pa.timestamp("ns", tz="UTC")
    columns = {name: table.column(name).cast(pa.int64()) if column.type == "datetime" else table.column(name)
               for name, column in zip(COLUMN_NAMES, COLUMNS)}
    from_parquet = [
        [csv_cell(column, columns[column.name][i].as_py()) for column in COLUMNS] for i in range(table.num_rows)
    ]
    assert from_parquet == [list(row.values()) for row in read_csv(tmp_path / "focus.csv")]

    assert validator_failures(tmp_path / "focus.parquet", monkeypatch) == NAME_GAP | PARQUET_DECIMAL_GAP
    view = table.rename_columns([VALIDATOR_NAMES.get(name, name) for name in table.column_names])
    view = view.append_column("ChargeType", table.column("ChargeCategory"))
    pq.write_table(view, tmp_path / "view.parquet")
    assert validator_failures(tmp_path / "view.parquet", monkeypatch) == PARQUET_DECIMAL_GAP


# The command


def test_progress_lines_go_to_stderr(capsys, tmp_path, sqlite_fleet):
    code, out, err = run(capsys, "export", "focus", "--db", url(sqlite_fleet), "--out", str(tmp_path / "f.csv"),
                         "--progress-every", "10")

    assert code == 0
    rows = len(read_csv(tmp_path / "f.csv"))
    lines = err.splitlines()
    # A line every 10 rows, and one with the rows in all at the end.
    assert lines == [f"infermeter: export focus: {n} rows" for n in [*range(10, rows, 10), rows]]
    # The idle energy records are priced in the idle rows, with the capacity no record used.
    assert out.startswith(f"wrote {rows} FOCUS 1.2 rows ({3 * (len(records_of(1)) - 1)} records, ")
    assert out.endswith(f" EUR billed) to {tmp_path / 'f.csv'}\n")


@pytest.mark.parametrize(
    "args",
    [
        ("--since", "yesterday"),
        ("--since", "2026-12-01", "--until", "2026-11-01"),
        ("--until", "2026-02-30"),
        ("--format", "xlsx"),
        ("--org", ""),
        ("--org", "bad\nname"),
        ("--progress-every", "-1"),
        ("--db", "mysql+nodriver://x/y"),
    ],
)
def test_bad_input_exits_2_and_leaves_the_file_as_it_was(capsys, tmp_path, sqlite_fleet, args):
    out = tmp_path / "focus.csv"
    out.write_text("what was there\n")
    argv = ["export", "focus", "--db", url(sqlite_fleet), "--out", str(out), *args]

    code, stdout, err = run(capsys, *argv)

    assert code == 2 and stdout == ""
    assert err.startswith("infermeter: ") or "error:" in err
    assert out.read_text() == "what was there\n"
    assert not list(tmp_path.glob(".focus.csv.*"))


@pytest.mark.parametrize("where", ["folder", "missing folder"])
def test_an_output_path_that_cannot_be_a_file_exits_2(capsys, tmp_path, sqlite_fleet, where):
    out = tmp_path if where == "folder" else tmp_path / "missing" / "focus.csv"

    code, stdout, err = run(capsys, "export", "focus", "--db", url(sqlite_fleet), "--out", str(out))

    assert (code, stdout) == (2, "") and err.startswith("infermeter: --out ") and err.count("\n") == 1
    assert not (tmp_path / "missing").exists()


def test_a_failure_while_writing_leaves_no_file(capsys, tmp_path, sqlite_fleet, monkeypatch):
    out = tmp_path / "focus.csv"
    out.write_text("what was there\n")
    written = []
    focus_row = focus_files.focus_row

    def failing(group, scope):
        if len(written) == 5:
            raise OSError(28, "No space left on device")
        written.append(group)
        return focus_row(group, scope)

    monkeypatch.setattr(focus_files, "focus_row", failing)

    code, stdout, err = run(capsys, "export", "focus", "--db", url(sqlite_fleet), "--out", str(out))

    assert (code, stdout) == (1, "") and "No space left on device" in err
    assert out.read_text() == "what was there\n"
    assert not list(tmp_path.glob(".focus.csv.*"))


def test_a_missing_database_exits_1_and_is_not_created(capsys, tmp_path):
    code, stdout, err = run(capsys, "export", "focus", "--db", f"sqlite:///{tmp_path / 'none.db'}",
                            "--out", str(tmp_path / "focus.csv"))

    assert (code, stdout) == (1, "") and "no collector database" in err
    assert list(tmp_path.iterdir()) == []


def test_parquet_without_pyarrow_says_how_to_install_it(capsys, tmp_path, sqlite_fleet, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "pyarrow" else find_spec(name, *rest)
    )

    code, stdout, err = run(capsys, "export", "focus", "--db", url(sqlite_fleet), "--out", str(tmp_path / "f.parquet"))

    assert (code, stdout) == (1, "")
    assert err == "infermeter: Parquet output needs pyarrow: pip install 'infermeter[parquet]' (or --format csv)\n"
    assert not (tmp_path / "f.parquet").exists()


def test_help_has_examples(capsys):
    for argv in (["export"], ["export", "focus"]):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([*argv, "--help"])
        assert exit_.value.code == 0
    assert "examples:\n  infermeter export focus --out costs.csv" in capsys.readouterr().out


def test_the_command_module_imports_only_the_standard_library():
    code = (
        "import sys; import collector.export_cli; "
        "print(sorted(m for m in ('sqlalchemy', 'pyarrow', 'collector.focus', 'grpc') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# Helpers


def test_times_and_decimals_as_written():
    assert rfc3339(H0) == "2026-11-18T11:00:00Z"
    assert rfc3339(H0 + 1) == "2026-11-18T11:00:00.000000001Z"
    assert month_of(H0) == (1_793_491_200 * 10**9, 1_796_083_200 * 10**9)  # 2026-11-01, 2026-12-01
    december = month_of(1_798_675_200 * 10**9 - 1)  # the last ns of 2026
    assert [rfc3339(edge) for edge in december] == ["2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"]
    money, quantity = (next(c for c in COLUMNS if c.name == name) for name in ("BilledCost", "ConsumedQuantity"))
    assert csv_cell(money, Decimal("0e-12")) == "0.000000000000"
    assert csv_cell(money, Decimal("123456789e-12")) == "0.000123456789"
    assert csv_cell(quantity, Decimal(12)) == "12.0"
    assert csv_cell(money, None) == ""
