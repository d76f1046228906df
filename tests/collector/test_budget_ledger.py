"""Budget spend kept on ingest: matching, exact threshold crossings, replays, periods rolling
over, budgets added, changed and deleted mid-period, and two replicas on one PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from collector.budgets import UJ_PER_WH
from collector.schema import records, webhook_deliveries
from collector.store import DeviceInfo, Store
from tests.collector.databases import postgres_url, run_together, store_url  # noqa: F401
from tests.collector.helpers import START_UNIX_NS, STREAM_ID, Clock, make_record

NOW = START_UNIX_NS + 3_600 * 10**9  # 2026-11-18T12:06:40Z: November 2026 in UTC
DAY_NS = 86_400 * 10**9
OTHER_STREAM = "f" * 32


@pytest.fixture
def clock():
    return Clock(NOW)


@pytest.fixture
def store(store_url, clock):  # noqa: F811
    with Store.open(store_url, clock=clock) as store:
        store.add_device("edge-1", site="lab")
        store.add_device("edge-2", site="home")
        yield store


def device_id(store: Store, name: str = "edge-1") -> str:
    return store.device(name).device_id


def ingest(store: Store, seqs, *, device: str = "edge-1", stream: str = STREAM_ID, **fields):
    return store.ingest(device_id(store, device), stream, DeviceInfo(), [make_record(seq, **fields) for seq in seqs])


def record_cost(store: Store) -> int:
    with store.engine.connect() as connection:
        costs = set(connection.execute(sa.select(records.c.cost_pico)).scalars())
    assert len(costs) == 1 and costs != {0}
    return costs.pop()


def money(picos: int) -> str:
    return f"{picos}e-12"


def thresholds_of(store: Store, name: str) -> list[str]:
    return [event.key for event in store.budget_events(budget=name) if event.kind == "threshold"]


def test_thresholds_fire_once_each_at_the_exact_crossing(store):
    ingest(store, [1])
    cost = record_cost(store)
    store.add_budget({"name": "b", "scope": "global", "period": "month", "amount": money(10 * cost)})
    assert store.budget("b").spent == cost  # started from the period's spend so far

    ingest(store, [2, 3, 4])
    assert thresholds_of(store, "b") == []  # 40 %
    ingest(store, [5])  # exactly 50 %
    assert thresholds_of(store, "b") == ["50"]
    ingest(store, [6, 7])
    assert thresholds_of(store, "b") == ["50"]  # 70 %
    ingest(store, [8])  # exactly 80 %
    assert thresholds_of(store, "b") == ["50", "80"]
    assert store.budget("b").state == "warning"
    ingest(store, [9, 10, 11])  # 110 %: crosses 100
    status = store.budget("b")
    assert thresholds_of(store, "b") == ["50", "80", "100"]
    assert (status.spent, str(status.percent), status.state) == (11 * cost, "110.00", "exceeded")
    event = store.budget_events(budget="b")[-1]
    assert event.details["threshold"] == 100 and event.details["budget"] == "b"


def test_a_replayed_batch_counts_once(store):
    ingest(store, [1])
    cost = record_cost(store)
    store.add_budget({"name": "b", "scope": "global", "period": "day", "amount": money(4 * cost)})
    ingest(store, [2, 3])
    ingest(store, [1, 2, 3, 4])  # a retry after a lost ack, with one new record
    assert store.budget("b").spent == 4 * cost
    assert thresholds_of(store, "b") == ["50", "80", "100"]


def test_scopes_count_only_their_records(store):
    ingest(store, [1])
    cost = record_cost(store)
    for name, scope in [("all", "global"), ("dev1", "device:edge-1"), ("dev2", "device:edge-2"),
                        ("lab", "site:lab"), ("home", "site:home"), ("resnet", "model:resnet50"),
                        ("bert", "model:bert"), ("search", "tag:project=search"), ("ads", "tag:project=ads")]:
        store.add_budget({"name": name, "scope": scope, "period": "month", "amount": "1000"})
    ingest(store, [2])
    ingest(store, [1], device="edge-2", model="bert", tags={"project": "ads", "user": "x"})
    spent = {status.budget.name: status.spent for status in store.list_budgets()}
    assert spent == {
        "all": 3 * cost, "dev1": 2 * cost, "dev2": cost, "lab": 2 * cost, "home": cost, "resnet": 2 * cost,
        "bert": cost, "search": 2 * cost, "ads": cost,
    }


def test_energy_budgets_count_microjoules(store):
    ingest(store, [1])
    with store.engine.connect() as connection:
        energy = connection.execute(sa.select(records.c.energy_uj)).scalar_one()
    assert energy > 0
    store.add_budget({"name": "e", "scope": "global", "period": "day", "unit": "energy",
                      "amount": str(Decimal(2 * energy) / UJ_PER_WH)})
    assert store.budget("e").budget.amount == 2 * energy
    ingest(store, [2])
    assert store.budget("e").state == "exceeded"
    assert thresholds_of(store, "e") == ["50", "80", "100"]


def test_a_new_period_starts_from_nothing(store, clock):
    ingest(store, [1])
    cost = record_cost(store)
    store.add_budget({"name": "b", "scope": "global", "period": "day", "amount": money(2 * cost)})
    ingest(store, [2])
    assert store.budget("b").state == "exceeded"

    clock.now += DAY_NS
    assert (store.budget("b").spent, store.budget("b").state) == (0, "ok")
    ingest(store, [3], start_unix_ns=START_UNIX_NS + DAY_NS)
    assert store.budget("b").spent == cost
    ingest(store, [4], start_unix_ns=START_UNIX_NS + DAY_NS)
    # The 100 % of each day, once per day.
    events = [(event.period_start_unix_ns, event.key) for event in store.budget_events(budget="b")]
    day = START_UNIX_NS // DAY_NS * DAY_NS
    assert events == [(day, "50"), (day, "80"), (day, "100"), (day + DAY_NS, "50"), (day + DAY_NS, "80"),
                      (day + DAY_NS, "100")]


def test_records_of_periods_before_a_budget_are_not_counted(store, clock):
    store.add_budget({"name": "b", "scope": "global", "period": "day", "amount": "1"})
    ingest(store, [1], start_unix_ns=START_UNIX_NS - DAY_NS)  # late, from yesterday
    assert store.budget("b").spent == 0
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM budget_spend WHERE records > 0").scalar() == 0


def test_an_update_recomputes_the_current_period(store):
    ingest(store, [1, 2])
    ingest(store, [1], device="edge-2")
    cost = record_cost(store)
    store.add_budget({"name": "b", "scope": "device:edge-1", "period": "month", "amount": money(10 * cost)})
    assert store.budget("b").spent == 2 * cost
    assert thresholds_of(store, "b") == []

    store.update_budget("b", {"name": "b", "scope": "global", "period": "week", "amount": money(4 * cost)})
    status = store.budget("b")
    assert (status.spent, status.budget.scope, status.budget.period) == (3 * cost, "global", "week")
    assert thresholds_of(store, "b") == ["50"]  # 75 %: reached by the change
    ingest(store, [3])
    assert thresholds_of(store, "b") == ["50", "80", "100"]


def test_a_deleted_budget_stops_counting(store):
    store.add_budget({"name": "b", "scope": "global", "period": "month", "amount": "100"})
    budget_id = store.budget("b").budget.budget_id
    store.delete_budget("b")
    assert store.budget("b") is None and store.list_budgets() == []
    ingest(store, [1])
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT sum(records) FROM budget_spend").scalar() == 0
    with pytest.raises(KeyError):
        store.delete_budget("b")
    store.add_budget({"name": "b", "scope": "global", "period": "month", "amount": "100"})  # the name is free
    assert store.budget("b").budget.budget_id != budget_id


def test_events_get_a_delivery_per_live_webhook(store):
    ingest(store, [1])
    cost = record_cost(store)
    live = store.add_webhook("https://hooks.example/a")
    revoked = store.add_webhook("http://hooks.example/b")
    store.revoke_webhook(revoked.webhook_id)
    store.add_budget({"name": "b", "scope": "global", "period": "month", "amount": money(2 * cost)})  # 50 % now
    ingest(store, [2])  # 80 and 100
    with store.engine.connect() as connection:
        deliveries = connection.execute(sa.select(webhook_deliveries.c.webhook_id, webhook_deliveries.c.attempts)).all()
    assert sorted(deliveries) == [(live.webhook_id, 0)] * 3


def test_budget_events_filters_and_refuses_bad_arguments(store):
    ingest(store, [1])
    cost = record_cost(store)
    store.add_budget({"name": "a", "scope": "global", "period": "month", "amount": money(cost)})
    store.add_budget({"name": "b", "scope": "global", "period": "month", "amount": money(100 * cost)})
    assert len(store.budget_events()) == 3
    assert store.budget_events(budget="b") == []
    assert len(store.budget_events(limit=2)) == 2
    assert store.budget_events(since_unix_ns=NOW + 1) == []
    with pytest.raises(KeyError):
        store.budget_events(budget="nope")
    with pytest.raises(ValueError):
        store.budget_events(limit=0)


def test_store_refuses_bad_budget_calls_and_changes_nothing(store):
    store.add_budget({"name": "b", "scope": "global", "period": "month", "amount": "1"})
    with pytest.raises(ValueError, match="already exists"):
        store.add_budget({"name": "b", "scope": "global", "period": "day", "amount": "2"})
    with pytest.raises(ValueError, match="amount"):
        store.update_budget("b", {"name": "b", "scope": "global", "period": "day", "amount": 2.5})
    with pytest.raises(KeyError):
        store.update_budget("nope", {"name": "b", "scope": "global", "period": "day", "amount": "2"})
    with pytest.raises(ValueError):
        store.add_webhook("ftp://example.com/x")
    with pytest.raises(KeyError):
        store.revoke_webhook("whk_nope")
    assert [status.budget.period for status in store.list_budgets()] == ["month"]
    assert store.list_webhooks() == []


@pytest.fixture
def replicas(postgres_url, clock):  # noqa: F811
    first = Store.open(postgres_url, clock=clock)
    second = Store.open(postgres_url, clock=clock)
    first.add_device("edge-1", site="lab")
    yield first, second
    first.close()
    second.close()


def test_two_replicas_store_each_crossing_once(replicas):
    first, second = replicas
    ingest(first, [1], stream=OTHER_STREAM)
    cost = record_cost(first)
    first.add_budget({"name": "b", "scope": "global", "period": "month", "amount": money(21 * cost)})
    device = device_id(first)
    for round_ in range(5):
        seqs = range(2 * round_ + 1, 2 * round_ + 3)
        batch = [make_record(seq) for seq in seqs]
        other = [make_record(100 + seq) for seq in seqs]
        # Each replica gets its own batch, and both get the same one.
        run_together([
            lambda batch=batch: first.ingest(device, STREAM_ID, DeviceInfo(), batch),
            lambda batch=batch: second.ingest(device, STREAM_ID, DeviceInfo(), batch),
            lambda other=other: second.ingest(device, OTHER_STREAM, DeviceInfo(), other),
        ])
    status = second.budget("b")
    assert status.spent == 21 * cost
    assert thresholds_of(second, "b") == ["50", "80", "100"]


def test_a_budget_added_during_ingest_counts_every_record_once(replicas):
    first, second = replicas
    ingest(first, [1])
    cost = record_cost(first)
    device = device_id(first)
    batches = [[make_record(seq) for seq in range(2 + 50 * i, 52 + 50 * i)] for i in range(4)]
    run_together([
        *(lambda batch=batch: second.ingest(device, STREAM_ID, DeviceInfo(), batch) for batch in batches),
        lambda: first.add_budget({"name": "b", "scope": "global", "period": "month", "amount": "1000"}),
    ])
    assert first.budget("b").spent == 201 * cost


def test_the_budget_commands(tmp_path, capsys, monkeypatch):
    import io
    import json

    from tests.collector.helpers import run_cli

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    (tmp_path / "b.toml").write_text('name = "b"\nscope = "model:resnet50"\nperiod = "day"\namount = "5"\n')
    code, out, _ = run_cli(capsys, "admin", "budget", "add", str(tmp_path / "b.toml"), "--db", db, "--json")
    assert code == 0 and json.loads(out)["budget"]["scope"] == "model:resnet50"
    monkeypatch.setattr("sys.stdin", io.StringIO('{"name": "b", "scope": "global", "period": "week", "amount": "7"}'))
    code, out, _ = run_cli(capsys, "admin", "budget", "update", "b", "-", "--db", db)
    assert code == 0 and "global" in out
    code, out, _ = run_cli(capsys, "admin", "budget", "list", "--db", db, "--json")
    assert [(b["budget"]["name"], b["budget"]["amount"], b["state"]) for b in json.loads(out)["budgets"]] == [
        ("b", "7.00", "ok")]
    code, out, _ = run_cli(capsys, "admin", "budget", "show", "b", "--db", db)
    assert code == 0 and "0.00 of 7.00" in out
    monkeypatch.setattr("sys.stdin", io.StringIO('{"name": "c", "scope": "global", "period": "day", "amount": 1.5}'))
    code, _, err = run_cli(capsys, "admin", "budget", "add", "-", "--db", db)
    assert code == 2 and "budget amount" in err
    assert run_cli(capsys, "admin", "budget", "delete", "b", "--db", db)[0] == 0
    code, _, err = run_cli(capsys, "admin", "budget", "show", "b", "--db", db)
    assert code == 2 and "no budget 'b'" in err
