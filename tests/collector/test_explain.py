"""`infermeter report explain STREAM:SEQ` and Store.explain_record: how a stored record's cost
follows from its price book, every figure exact and equal to what ingest stored."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from agent.record import EnergyShare
from collector.store import DeviceInfo, Store
from tests.collector.helpers import STREAM_ID, make_record
from tests.collector.helpers import run_cli as run
from tests.collector.test_time_of_use import WH_UJ, unix_ns

BOOK = {
    "currency": "USD",
    "hardware": {"default": {"purchase": "1200.00", "lifetime_years": 4, "upkeep_per_year": "120.00",
                             "cpu_cores": 4}},
    "cloud": {"m5.xlarge": {"hourly": "0.192", "cpu_cores": 4}},
    "models": {"resnet50": {"input_per_million": "0.05", "output_per_million": "0.08", "request": "0.000001"}},
    "energy": {
        "default": {"kwh": "0.15"},
        "berlin": {"kwh": "0.12", "pue": "1.5", "timezone": "Europe/Berlin",
                   "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "20:00",
                                "kwh": "0.30"}]},
    },
}
BOOK_FROM = unix_ns("2026-01-01T00:00:00")
ONE_WH = (EnergyShare("cpu", WH_UJ, "rapl", "cpu-time", 100_000_000, 0),)
# Monday 2026-11-23 08:00 in Berlin (07:00 UTC): the weekday window.
PEAK = unix_ns("2026-11-23T07:00:00")
# 420.00 a year over 31,536,000 s; 1.5 ms of CPU over the book's 4 cores (not the reported 8).
COMPUTE_EXACT = Fraction(1_500_000, 4 * 10**9) * Fraction(420, 31_536_000) * 10**12


@pytest.fixture
def db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    with Store.open(url) as store:
        book_id = store.add_price_book(BOOK, effective_from_unix_ns=BOOK_FROM)
        assert book_id == 2
        device = store.add_device("edge-berlin", site="berlin")
        store.ingest(device.device_id, STREAM_ID, DeviceInfo(cpu_cores=8), [
            make_record(1, start_unix_ns=PEAK, cpu_time_ns=1_500_000, energy=ONE_WH, input_tokens=1_000,
                        output_tokens=500),
        ])
        cloud = store.add_device("vm-1", profile="m5.xlarge")
        store.ingest(cloud.device_id, STREAM_ID, DeviceInfo(cpu_cores=4), [
            make_record(1, start_unix_ns=PEAK, cpu_time_ns=1_000_000, energy=()),
        ])
    monkeypatch.setenv("INFERMETER_DB", url)
    return url


def test_a_record_is_explained_component_by_component(db):
    with Store.open(db) as store:
        explanation = store.explain_record(STREAM_ID, 1, device="edge-berlin")

    assert round(COMPUTE_EXACT) == 4994
    assert explanation == {
        "record": {
            "device": "edge-berlin", "device_id": explanation["record"]["device_id"], "stream_id": STREAM_ID,
            "seq": 1, "model": "resnet50", "model_version": "3", "start_unix_ns": PEAK,
            "profile": "default", "site": "berlin", "server": None,
        },
        "currency": "USD",
        "price_book": {"id": 2, "effective_from_unix_ns": BOOK_FROM},
        "compute": {
            "profile": "default", "kind": "hardware", "purchase": "1200.00", "residual": "0",
            "lifetime_years": "4", "upkeep_per_year": "120.00", "rate_per_device_s": "7/525600",
            "cpu_cores": 4, "cpu_time_ns": 1_500_000, "gpu_time_ns": 0, "cpu_share_device_s": "0.000375",
            "exact_picos": f"{COMPUTE_EXACT.numerator}/{COMPUTE_EXACT.denominator}",
            "picos": 4994, "cost": "0.000000004994",
        },
        "energy": {
            "site": "berlin", "timezone": "Europe/Berlin", "tariff": "energy.berlin.windows[0]",
            "kwh": "0.3", "pue": "1.5", "billed_per_kwh": "0.45", "energy_uj": WH_UJ,
            "exact_picos": "450000000", "picos": 450_000_000, "cost": "0.000450000000",
        },
        # 1,000 tokens in at 0.05 per 1M and 500 out at 0.08: 9e-5; one request at 1e-6.
        "tokens": {
            "model": "resnet50", "entry": "resnet50", "input_per_million": "0.05", "output_per_million": "0.08",
            "input_tokens": 1_000, "output_tokens": 500,
            "exact_picos": "90000000", "picos": 90_000_000, "cost": "0.000090000000",
        },
        "requests": {
            "request": "0.000001", "count": 1, "exact_picos": "1000000", "picos": 1_000_000, "cost": "0.000001000000",
        },
        "total": {"picos": 541_004_994, "cost": "0.000541004994"},
        "note": "",
        "discount": None,
        "matches_stored": True,
    }


def test_a_cloud_record_off_the_windows_is_explained_with_its_hourly_rate(db):
    with Store.open(db) as store:
        explanation = store.explain_record(STREAM_ID, 1, device="vm-1")

    # 0.192 an hour over 4 cores, 1 ms: 13,333.33 picos.
    assert explanation["compute"] | {"exact_picos": None} == {
        "profile": "m5.xlarge", "kind": "cloud", "hourly": "0.192", "rate_per_device_s": "1/18750",
        "cpu_cores": 4, "cpu_time_ns": 1_000_000, "gpu_time_ns": 0, "cpu_share_device_s": "0.00025",
        "exact_picos": None, "picos": 13_333, "cost": "0.000000013333",
    }
    assert explanation["energy"]["tariff"] == "kwh"
    assert explanation["energy"]["picos"] == 0
    assert explanation["tokens"]["picos"] == 0
    assert explanation["requests"]["picos"] == 1_000_000
    assert explanation["total"]["picos"] == 1_013_333
    assert explanation["matches_stored"] is True


def test_a_stream_id_on_two_devices_needs_the_device(db):
    with Store.open(db) as store, pytest.raises(LookupError, match="more than one device"):
        store.explain_record(STREAM_ID, 1)


def test_report_explain_prints_the_derivation(db, capsys):
    code, out, err = run(capsys, "report", "explain", f"{STREAM_ID}:1", "--device", "edge-berlin")

    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"record {STREAM_ID}:1 of device edge-berlin, model resnet50 3, started 2026-11-23 07:00:00 UTC",
        "price book 2, effective from 2026-01-01 00:00:00 UTC (USD)",
        "compute  profile default (hardware: purchase 1200.00, residual 0, lifetime 4 years, upkeep 120.00 a year)",
        "         rate per device-second 7/525600",
        "         CPU share 1500000 ns / 4 cores = 0.000375 device-s; GPU 0 ns",
        f"         exact {COMPUTE_EXACT.numerator}/{COMPUTE_EXACT.denominator} picos -> 4994 picos = 0.000000004994",
        "energy   site berlin (Europe/Berlin), tariff energy.berlin.windows[0]: 0.3 per kWh x PUE 1.5 = 0.45 per kWh",
        f"         {WH_UJ} µJ: exact 450000000 picos -> 450000000 picos = 0.000450000000",
        "tokens   model resnet50 (book entry resnet50): 1000 in x 0.05 + 500 out x 0.08 per 1M",
        "         exact 90000000 picos -> 90000000 picos = 0.000090000000",
        "requests 1 x 0.000001: exact 1000000 picos -> 1000000 picos = 0.000001000000",
        "total    541004994 picos = 0.000541004994 USD (list cost)",
    ]


def test_report_explain_json_is_the_stores_explanation(db, capsys):
    code, out, _ = run(capsys, "report", "explain", f"{STREAM_ID}:1", "--device", "vm-1", "--json")

    assert code == 0
    with Store.open(db) as store:
        assert json.loads(out) == store.explain_record(STREAM_ID, 1, device="vm-1")


@pytest.mark.parametrize(("argv", "exit_code", "words"), [
    ((f"{STREAM_ID}:9",), 1, f"no record {STREAM_ID}:9"),
    ((f"{STREAM_ID}:1", "--device", "edge-9"), 1, "of device 'edge-9'"),
    ((f"{STREAM_ID}:1",), 1, "name one with --device"),
    ((STREAM_ID,), 2, "is not STREAM:SEQ"),
    ((f"{STREAM_ID}:x",), 2, "is not STREAM:SEQ"),
    ((":1",), 2, "is not STREAM:SEQ"),
])
def test_report_explain_refuses_what_it_cannot_find(db, capsys, argv, exit_code, words):
    code, out, err = run(capsys, "report", "explain", *argv)

    assert (code, out) == (exit_code, "")
    assert words in err
