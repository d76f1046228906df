"""FinOps insights on SQLite and PostgreSQL, each report against totals worked out by hand from
a small seeded fleet: workload classes (admin over tags) in cost reports and forecasts, KPIs
with cost per unit and ROI, the model registry with its sprawl flags, and right-sizing with
its projected monthly saving. The registry and right-sizing keep their figures through
re-pricing, replayed batches and raw-record retention."""

from __future__ import annotations

import calendar
from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command

from agent.record import MIN_START_UNIX_NS, EnergyShare
from collector import insights_ops, kpis, model_registry, right_sizing, workload_classes
from collector.admin_ops import Refused
from collector.database import alembic_config, migrate, transaction
from collector.params import QueryError, Scope, parse_scope
from collector.spend_series import daily_series
from collector.store import DeviceInfo, Store
from tests.collector.databases import DIALECTS, new_database
from tests.collector.helpers import Clock, make_record


def utc_ns(year: int, month: int, day: int = 1, hour: int = 0, minute: int = 0) -> int:
    return calendar.timegm((year, month, day, hour, minute, 0)) * 10**9


NOW = utc_ns(2026, 12, 1)
NOVEMBER = (utc_ns(2026, 11, 1), NOW)
MS = 10**6
# Compute is free and energy costs 1 pico per µJ, so a record costs its energy_uj in picos; the
# fraud model carries a licence of 30 a month.
BOOK = {"currency": "USD", "cloud": {"default": {"hourly": "0", "cpu_cores": 1}},
        "energy": {"default": {"kwh": "3.6"}}, "monthly": {"licence": {"amount": "30", "model": "fraud"}}}
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
# device, seq, model, version, provider, start, duration, count, energy µJ, tags
RECORDS = [
    ("edge-1", 1, "fraud", "0.9", CPU, utc_ns(2026, 11, 1), 50 * MS, 1, 5_000, {}),
    ("edge-1", 2, "fraud", "2", CPU, utc_ns(2026, 11, 10, 9), 10 * MS, 1, 3_000, {}),
    ("edge-1", 3, "fraud", "2", CPU, utc_ns(2026, 11, 10, 9, 1), 20 * MS, 1, 3_000, {}),
    ("edge-1", 4, "fraud", "2", CPU, utc_ns(2026, 11, 10, 9, 2), 30 * MS, 1, 3_000, {}),
    ("edge-1", 5, "fraud", "2", CPU, utc_ns(2026, 11, 10, 9, 3), 40 * MS, 1, 3_000, {}),
    ("edge-1", 6, "fraud", "1", CPU, utc_ns(2026, 11, 28, 12), 50 * MS, 1, 5_000, {}),
    ("edge-1", 7, "fraud", "2-int8", CPU, utc_ns(2026, 11, 29, 8), 5 * MS, 1, 1_000, {}),
    ("edge-1", 8, "fraud", "2-int8", CPU, utc_ns(2026, 11, 29, 8, 1), 7 * MS, 1, 1_000, {}),
    ("gpu-1", 1, "fraud", "2", CUDA, utc_ns(2026, 11, 30, 1), 6 * MS, 2, 4_000, {}),
    ("gpu-1", 2, "fraud", "2", CUDA, utc_ns(2026, 11, 30, 2), 10 * MS, 2, 4_000, {}),
    ("gpu-1", 3, "recsys", "5", CUDA, utc_ns(2026, 11, 15, 10), 8 * MS, 1, 7_000,
     {"feature": "reco", "criticality": "internal", "latency": "real-time"}),
    ("gpu-1", 4, "recsys", "5", CUDA, utc_ns(2026, 11, 15, 11), 8 * MS, 1, 7_000,
     {"feature": "reco", "criticality": "internal", "latency": "real-time"}),
]
TOKENS = {("gpu-1", 3): (100, 10), ("gpu-1", 4): (50, 20)}


def seed(store: Store) -> None:
    store.add_price_book(BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
    for name in ("edge-1", "gpu-1"):
        device = store.add_device(name)
        store.ingest(device.device_id, "s1", DeviceInfo(cpu_cores=1), batch(name))


def batch(device: str) -> list:
    return [
        make_record(
            seq, model=model, model_version=version, execution_provider=provider, start_unix_ns=start,
            duration_ns=duration, count=count, cpu_time_ns=0, tags=tags,
            input_tokens=TOKENS.get((name, seq), (0, 0))[0], output_tokens=TOKENS.get((name, seq), (0, 0))[1],
            energy=(EnergyShare("cpu", energy, "rapl", "cpu-time", 100_000_000, 50),),
        )
        for name, seq, model, version, provider, start, duration, count, energy, tags in RECORDS if name == device
    ]


@pytest.fixture(scope="module", params=DIALECTS)
def fleet(request, tmp_path_factory):
    with new_database(request.param, tmp_path_factory.mktemp("insights")) as url, \
            Store.open(url, clock=Clock(NOW)) as store:
        seed(store)
        with transaction(store.engine, write=True) as connection:
            workload_classes.set_class(connection, workload_classes.WorkloadClass("fraud", "customer-facing"),
                                       now_unix_ns=NOW)
            workload_classes.set_class(connection, workload_classes.WorkloadClass("recsys", latency="batch"),
                                       now_unix_ns=NOW)
        yield store


@pytest.fixture(params=DIALECTS)
def fresh(request, tmp_path):
    with new_database(request.param, tmp_path) as url, Store.open(url, clock=Clock(NOW)) as store:
        seed(store)
        yield store


def picos(amount: str) -> int:
    return int(Decimal(amount) * 10**12)


# Workload classes


def test_reports_group_by_class_with_the_admin_setting_over_the_tags(fleet):
    # fraud: set customer-facing by the admin; recsys: tagged internal.
    report = fleet.costs(group_by=("class:criticality",), since_unix_ns=NOVEMBER[0], until_unix_ns=NOVEMBER[1])
    usage = {group.key: picos(str(group.list_cost)) for group in report.groups}
    assert usage == {("customer-facing",): 32_000, ("internal",): 14_000}
    # recsys is tagged latency=real-time, but the admin set batch; fraud has neither: unclassified.
    report = fleet.costs(group_by=("class:latency", "model"), period_costs=False, from_records=True)
    assert {group.key: group.inferences for group in report.groups} == {
        ("unclassified", "fraud"): 12, ("batch", "recsys"): 2,
    }


def test_forecast_series_of_a_class_scope_is_its_models_daily_spend(fleet):
    scope = parse_scope("class:criticality=internal")
    assert scope == Scope("class", "criticality=internal")
    series = daily_series(fleet, scope, since=date(2026, 11, 1), until=date(2026, 12, 1))
    assert sum(series.spend.amounts_pico) == 14_000
    assert series.spend.amounts_pico[14] == 14_000  # 15 November
    with pytest.raises(QueryError, match="no workload class scope"):
        parse_scope("class:criticality=vip")


def test_class_settings_are_checked(fleet):
    with pytest.raises(QueryError) as raised:
        workload_classes.parse_class("fraud", {"criticality": "vip"})
    assert raised.value.field == "criticality"
    with pytest.raises(QueryError, match="at least one"):
        workload_classes.parse_class("fraud", {"latency": None})
    with pytest.raises(ValueError, match="dimension"):
        fleet.costs(group_by=("class:colour",))
    listed = insights_ops.list_classes(fleet)["classes"]
    assert [(row["model"], row["criticality"], row["latency"]) for row in listed] == [
        ("fraud", "customer-facing", None), ("recsys", None, "batch"),
    ]


# KPIs


def test_kpi_report_gives_cost_per_unit_and_roi(fleet):
    insights_ops.add_kpi(fleet, kpis.parse_kpi(
        {"name": "fraud-checks", "unit": "fraud check", "model": "fraud", "value_per_unit": "0.5"}))
    insights_ops.add_kpi(fleet, kpis.parse_kpi(
        {"name": "recos", "unit": "recommendation", "tag": "feature=reco", "measure": "tokens",
         "value_per_unit": "0.000000001"}))
    try:
        report = insights_ops.kpi_report(fleet, kpis.kpi_query(*NOVEMBER, "month", now_unix_ns=NOW))
        by_name = {kpi["name"]: kpi for kpi in report["kpis"]}
        # fraud: 12 inferences; usage 32,000 picos plus the whole month's licence of 30.
        fraud = by_name["fraud-checks"]["total"]
        assert fraud == {"units": 12, "cost": "30.000000032000", "cost_per_unit": "2.500000002667",
                         "value": "6.000000000000", "roi": "-24.000000032000"}
        assert [period["period"] for period in by_name["fraud-checks"]["periods"]] == ["2026-11-01T00:00:00Z"]
        # recsys: 180 tokens for 14,000 picos, worth 1,000 picos each.
        recos = by_name["recos"]["total"]
        assert recos == {"units": 180, "cost": "0.000000014000", "cost_per_unit": "0.000000000078",
                         "value": "0.000000180000", "roi": "0.000000166000"}
        daily = insights_ops.kpi_report(fleet, kpis.kpi_query(*NOVEMBER, "day", now_unix_ns=NOW))
        recos_days = next(kpi for kpi in daily["kpis"] if kpi["name"] == "recos")["periods"]
        assert [(period["period"], period["units"]) for period in recos_days] == [("2026-11-15T00:00:00Z", 180)]
        with pytest.raises(Refused):
            insights_ops.add_kpi(fleet, kpis.parse_kpi({"name": "recos", "unit": "x", "model": "m"}))
    finally:
        insights_ops.delete_kpi(fleet, "fraud-checks")
        insights_ops.delete_kpi(fleet, "recos")


@pytest.mark.parametrize(("document", "field"), [
    ({"name": "a b", "unit": "u", "model": "m"}, "name"),
    ({"name": "k", "unit": "", "model": "m"}, "unit"),
    ({"name": "k", "unit": "u"}, "model"),
    ({"name": "k", "unit": "u", "model": "m", "tag": "a=b"}, "model"),
    ({"name": "k", "unit": "u", "tag": "nokey"}, "tag"),
    ({"name": "k", "unit": "u", "model": "m", "measure": "watts"}, "measure"),
    ({"name": "k", "unit": "u", "model": "m", "value_per_unit": "-1"}, "value_per_unit"),
    ({"name": "k", "unit": "u", "model": "m", "value_per_unit": 0.5}, "value_per_unit"),
    ({"name": "k", "unit": "u", "model": "m", "value_per_unit": "0.0000000000001"}, "value_per_unit"),
    ({"name": "k", "unit": "u", "model": "m", "colour": "red"}, "colour"),
])
def test_bad_kpis_are_refused_naming_the_field(document, field):
    with pytest.raises(QueryError) as raised:
        kpis.parse_kpi(document)
    assert raised.value.field == field


def test_kpi_ranges_are_whole_hours():
    with pytest.raises(QueryError) as raised:
        kpis.kpi_query(NOVEMBER[0] + 1, NOVEMBER[1], "day", now_unix_ns=NOW)
    assert raised.value.field == "since"
    assert kpis.kpi_query(None, None, None, now_unix_ns=NOW + 1) == kpis.KpiQuery(NOW, NOW + 3_600 * 10**9, "month")


# The model registry


def test_registry_lists_variants_with_devices_cost_and_flags(fleet):
    answer = insights_ops.model_registry_report(fleet, model_registry.registry_query())
    assert [model["model"] for model in answer["models"]] == ["fraud", "recsys"]
    fraud = answer["models"][0]
    assert fraud["latest_version"] == "2-int8"
    assert fraud["active_versions"] == ["1", "2", "2-int8"]
    assert fraud["sprawl"] is True
    assert fraud["outdated_in_production"] == ["1"]
    assert fraud["devices"] == ["edge-1", "gpu-1"]
    assert (fraud["inferences"], fraud["cost"], fraud["energy_uj"]) == (12, "0.000000032000", 32_000)
    variants = {(v["version"], v["execution_provider"]): v for v in fraud["variants"]}
    assert set(variants) == {("0.9", CPU), ("1", CPU), ("2", CPU), ("2", CUDA), ("2-int8", CPU)}
    old = variants["0.9", CPU]
    assert (old["active"], old["outdated"], old["first_seen"]) == (False, False, "2026-11-01T00:00:00Z")
    cuda = variants["2", CUDA]
    assert (cuda["devices"], cuda["records"], cuda["inferences"], cuda["cost"]) == (["gpu-1"], 2, 4, "0.000000008000")
    assert (cuda["first_seen"], cuda["last_seen"]) == ("2026-11-30T01:00:00Z", "2026-11-30T02:00:00Z")
    assert variants["2", CPU]["outdated"] is False  # the same release as 2-int8
    recsys = answer["models"][1]
    assert (recsys["sprawl"], recsys["outdated_in_production"]) == (False, [])
    # A shorter window: only 2 (CUDA, 30 Nov) and 2-int8 (29 Nov) ran in the last 2 days.
    narrow = insights_ops.model_registry_report(fleet, model_registry.registry_query("2", "2", "fraud"))
    assert [model["model"] for model in narrow["models"]] == ["fraud"]
    assert narrow["models"][0]["active_versions"] == ["2", "2-int8"]
    assert narrow["models"][0]["outdated_in_production"] == []


def test_versions_compare_by_release():
    ordered = ["0.9", "1", "2", "2-int8", "9", "10", "10.1"]
    assert sorted(["10", "2-int8", "0.9", "10.1", "1", "9", "2"], key=model_registry.version_key) == ordered
    assert model_registry.release("2-int8") == model_registry.release("2") == (2,)
    assert model_registry.release("v3.1") == (3, 1)
    assert model_registry.release("latest") is None
    with pytest.raises(QueryError):
        model_registry.registry_query("0")


# Right-sizing


def test_right_sizing_compares_variants_and_projects_the_saving(fleet):
    query = right_sizing.right_sizing_query("fraud", *NOVEMBER, now_unix_ns=NOW)
    answer = insights_ops.right_sizing_report(fleet, query)
    rows = {(v["version"], v["execution_provider"]): v for v in answer["variants"]}
    assert (answer["variants"][0]["version"], answer["variants"][0]["execution_provider"]) == ("2-int8", CPU)
    cheapest = rows["2-int8", CPU]
    assert (cheapest["cheapest"], cheapest["cost_per_inference"], cheapest["monthly_saving"]) == (
        True, "0.000000001000", "0.000000000000")
    fp32 = rows["2", CPU]
    assert fp32["cost_per_inference"] == "0.000000003000"
    assert fp32["energy_uj_per_inference"] == "3000.000"
    assert (fp32["mean_latency_ns"], fp32["p50_latency_ns"], fp32["p95_latency_ns"]) == (25 * MS, 20 * MS, 40 * MS)
    # November is 30 days: the monthly volume is the range's; 4 x (3,000 - 1,000) picos.
    assert (fp32["monthly_inferences"], fp32["monthly_saving"], fp32["monthly_energy_saving_uj"]) == (
        4, "0.000000008000", 8_000)
    cuda = rows["2", CUDA]
    # Two records of 2 calls each: 3 ms and 5 ms per inference.
    assert (cuda["inferences"], cuda["cost_per_inference"], cuda["mean_latency_ns"]) == (4, "0.000000002000", 4 * MS)
    assert (cuda["p50_latency_ns"], cuda["p95_latency_ns"], cuda["latency_records"]) == (3 * MS, 5 * MS, 2)
    assert cuda["monthly_saving"] == "0.000000004000"
    # 8,000 + 4,000 + 4,000 (0.9) + 4,000 (1)
    assert answer["monthly_saving"] == "0.000000020000"
    # Half a month of the same work: twice the monthly volume.
    half = insights_ops.right_sizing_report(
        fleet, right_sizing.right_sizing_query("fraud", utc_ns(2026, 11, 16), NOW, now_unix_ns=NOW))
    assert half["monthly_saving"] == "0.000000016000"  # 2 x (CUDA 4,000 + "1" 4,000)


def test_right_sizing_queries_are_checked():
    with pytest.raises(QueryError) as raised:
        right_sizing.right_sizing_query(None, None, None, now_unix_ns=NOW)
    assert raised.value.field == "model"
    with pytest.raises(QueryError):
        right_sizing.right_sizing_query("fraud", NOW, NOW, now_unix_ns=NOW)
    default = right_sizing.right_sizing_query("fraud", None, None, now_unix_ns=NOW)
    assert (default.since_unix_ns, default.until_unix_ns) == (NOW - 30 * 86_400 * 10**9, NOW)


# What the figures survive


def test_registry_survives_replays_repricing_and_retention(fresh):
    edge = fresh.device("edge-1")
    replay = fresh.ingest(edge.device_id, "s1", DeviceInfo(cpu_cores=1), batch("edge-1"))
    assert replay.inserted == 0
    before = insights_ops.model_registry_report(fresh, model_registry.registry_query())
    assert before["models"][0]["cost"] == "0.000000032000"
    # Energy at twice the price, re-priced: every cost doubles, in the registry too.
    fresh.add_price_book({**BOOK, "energy": {"default": {"kwh": "7.2"}}}, effective_from_unix_ns=MIN_START_UNIX_NS)
    fresh.reprice()
    after = insights_ops.model_registry_report(fresh, model_registry.registry_query())
    assert after["models"][0]["cost"] == "0.000000064000"
    assert after["models"][1]["cost"] == "0.000000028000"
    fresh.prune_records(before_unix_ns=utc_ns(2026, 11, 20))
    pruned = insights_ops.model_registry_report(fresh, model_registry.registry_query())
    assert pruned == after
    sizing = insights_ops.right_sizing_report(fresh, right_sizing.right_sizing_query("fraud", *NOVEMBER, now_unix_ns=NOW))
    fp32 = next(v for v in sizing["variants"] if (v["version"], v["execution_provider"]) == ("2", CPU))
    assert (fp32["cost_per_inference"], fp32["mean_latency_ns"]) == ("0.000000006000", 25 * MS)
    assert (fp32["latency_records"], fp32["p50_latency_ns"]) == (0, None)
    with transaction(fresh.engine) as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM records")).scalar_one() == 5


def test_the_migration_fills_the_model_tables_from_the_records_stored_before(fresh):
    def tables() -> list[list[tuple]]:
        with transaction(fresh.engine) as connection:
            return [
                [tuple(row) for row in connection.execute(sa.text(f"SELECT {columns} FROM {table} ORDER BY {order}"))]
                for table, columns, order in (
                    ("model_usage", "*", "hour_unix_ns, device_id, group_sha256"),
                    ("model_deployments", "*", "device_id, variant_sha256"),
                )
            ]

    made_by_ingest = tables()
    assert len(made_by_ingest[0]) == 8 and len(made_by_ingest[1]) == 6
    with transaction(fresh.engine, write=True) as connection:
        command.downgrade(alembic_config(connection), "0008")
    with fresh.engine.connect() as connection:
        assert not sa.inspect(connection).has_table("model_usage")
    migrate(fresh.engine)
    assert tables() == made_by_ingest
