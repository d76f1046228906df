"""Token prices per model (input and output per 1M tokens) and fees per request: each a cost
component of its own, rounded half-even once per record, stored, summed into cost_pico and the
hourly roll-ups, and reported."""

from __future__ import annotations

import copy
import csv
from decimal import Decimal
from fractions import Fraction

import pytest
import sqlalchemy as sa
from alembic import command

from agent.record import MIN_START_UNIX_NS
from collector.database import alembic_config, migrate, transaction
from collector.pricebook import ModelPrices, PriceBookError, parse_price_book
from collector.pricing import (
    device_rate,
    model_rate,
    request_cost_pico,
    token_cost_pico,
)
from collector.schema import records
from collector.store import DeviceInfo
from tests.collector.helpers import (
    STREAM_ID,
    make_record,
    recomputed_rollups,
    stored_rollups,
)
from tests.collector.helpers import run_cli as run

BOOK = {
    "currency": "USD",
    "cloud": {"default": {"hourly": "3.6", "cpu_cores": 1}},  # one pico per CPU ns
    "energy": {"default": {"kwh": "3.6"}},  # one pico per µJ
    "models": {
        "llama-3-8b": {"input_per_million": "0.05", "output_per_million": "0.08"},
        "licensed": {"request": "0.000001"},  # 1,000,000 picos an inference
        "halves": {"input_per_million": "0.0000005", "output_per_million": "0.0000005"},  # half a pico a token
        "default": {"request": "0.0000000000005"},  # half a pico an inference
    },
}
PARSED = parse_price_book(BOOK)


def rate_of(model: str):
    return device_rate(PARSED, 1, profile="default", site="default", reported_cpu_cores=1).model_rate(model)


def test_models_parse_to_exact_prices_and_missing_ones_are_zero():
    assert PARSED.models["llama-3-8b"] == ModelPrices(Decimal("0.05"), Decimal("0.08"), Decimal(0))
    assert PARSED.model_prices("licensed") == ModelPrices(Decimal(0), Decimal(0), Decimal("0.000001"))
    # A model without an entry has the default's prices, and a book without one prices nothing.
    assert PARSED.model_prices("resnet50") == PARSED.models["default"]
    flat = parse_price_book({k: v for k, v in BOOK.items() if k != "models"})
    assert flat.model_prices("resnet50") == ModelPrices(Decimal(0), Decimal(0), Decimal(0))


@pytest.mark.parametrize(("entry", "field"), [
    ({"input_per_million": 0.05}, "models.m.input_per_million"),
    ({"output_per_million": "-1"}, "models.m.output_per_million"),
    ({"request": "NaN"}, "models.m.request"),
    ({"per_token": "1"}, "models.m.per_token"),
    ("0.05", "models.m"),
])
def test_a_bad_model_entry_is_refused_naming_the_field(entry, field):
    document = copy.deepcopy(BOOK)
    document["models"]["m"] = entry

    with pytest.raises(PriceBookError) as caught:
        parse_price_book(document)

    assert caught.value.field == field


def test_a_bad_model_name_is_refused():
    document = copy.deepcopy(BOOK)
    document["models"]["my model"] = {}

    with pytest.raises(PriceBookError) as caught:
        parse_price_book(document)

    assert caught.value.field == "models.my model"


@pytest.mark.parametrize(("model", "input_tokens", "output_tokens", "picos"), [
    # 1,000 in at 0.05 per 1M is 5e-5; 500 out at 0.08 per 1M is 4e-5: 9e-5 in all.
    ("llama-3-8b", 1_000, 500, 90_000_000),
    ("llama-3-8b", 1, 0, 50_000),
    ("llama-3-8b", 0, 0, 0),
    # Half a pico a token: rounded once over input and output together, ties to even.
    ("halves", 1, 0, 0),
    ("halves", 1, 1, 1),
    ("halves", 3, 0, 2),
    ("halves", 5, 0, 2),
    ("halves", 2, 5, 4),
    ("licensed", 10**6, 10**6, 0),
])
def test_token_cost_is_the_exact_value_rounded_half_even_once(model, input_tokens, output_tokens, picos):
    prices = PARSED.model_prices(model)
    exact = (input_tokens * Fraction(prices.input_per_million) + output_tokens * Fraction(prices.output_per_million)) \
        / 10**6 * 10**12
    assert round(exact) == picos
    assert token_cost_pico(rate_of(model), input_tokens, output_tokens) == picos


@pytest.mark.parametrize(("model", "count", "picos"), [
    ("licensed", 1, 1_000_000), ("licensed", 7, 7_000_000), ("llama-3-8b", 5, 0),
    # The default entry's half a pico: 1 -> 0, 3 -> 2 (1.5 to even), 5 -> 2 (2.5 to even).
    ("resnet50", 1, 0), ("resnet50", 3, 2), ("resnet50", 5, 2),
])
def test_a_request_fee_is_paid_per_inference_rounded_half_even(model, count, picos):
    assert request_cost_pico(rate_of(model), count) == picos


def test_model_rate_of_free_prices_costs_nothing():
    rate = model_rate(ModelPrices(Decimal(0), Decimal(0), Decimal(0)))

    assert token_cost_pico(rate, 10**12, 10**12) == 0
    assert request_cost_pico(rate, 10**9) == 0


def test_ingest_stores_token_and_request_costs_in_cost_and_the_rollups(store):
    store.add_price_book(BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
    device = store.add_device("edge-1")
    batch = [
        make_record(1, model="llama-3-8b", input_tokens=1_000, output_tokens=500, cpu_time_ns=7, energy=()),
        make_record(2, model="licensed", count=3, cpu_time_ns=0, energy=()),
        make_record(3, model="resnet50", count=3, cpu_time_ns=0, energy=()),
    ]

    store.ingest(device.device_id, STREAM_ID, DeviceInfo(cpu_cores=1), batch)

    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(records.c.seq, records.c.compute_cost_pico, records.c.token_cost_pico,
                      records.c.request_cost_pico, records.c.cost_pico, records.c.list_cost_pico)
            .order_by(records.c.seq)
        ).all()
    assert [tuple(row) for row in rows] == [
        (1, 7, 90_000_000, 0, 90_000_007, 90_000_007),
        (2, 0, 0, 3_000_000, 3_000_000, 3_000_000),
        (3, 0, 0, 2, 2, 2),
    ]
    assert stored_rollups(store) == recomputed_rollups(store)
    report = store.costs(period_costs=False, group_by=("model",)).to_json()
    by_model = {group["key"][0]: group for group in report["groups"]}
    assert (by_model["llama-3-8b"]["token_cost"], by_model["llama-3-8b"]["request_cost"]) == ("0.000090000000", "0.000000000000")
    assert by_model["licensed"]["request_cost"] == "0.000003000000"
    assert report["total_cost"] == "0.000093000009"
    # The roll-ups give the same report as the records.
    assert store.costs(period_costs=False, group_by=("model",), from_records=True).to_json() == report


def test_the_migration_gives_rows_stored_before_no_token_or_request_cost(store, device):
    store.ingest(device.device_id, STREAM_ID, DeviceInfo(cpu_cores=4), [make_record(seq) for seq in range(1, 6)])
    before = store.costs(period_costs=False, group_by=("model",))
    with transaction(store.engine, write=True) as connection:
        command.downgrade(alembic_config(connection), "0003")
    with store.engine.connect() as connection:
        assert "token_cost_pico" not in {column["name"] for column in sa.inspect(connection).get_columns("records")}

    migrate(store.engine)

    with store.engine.connect() as connection:
        costs = connection.execute(sa.select(records.c.token_cost_pico, records.c.request_cost_pico)).all()
    assert [tuple(row) for row in costs] == [(0, 0)] * 5
    assert stored_rollups(store) == recomputed_rollups(store)
    assert store.costs(period_costs=False, group_by=("model",)) == before


def test_the_focus_export_carries_token_and_request_costs(store, capsys, tmp_path):
    store.add_price_book(BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
    device = store.add_device("edge-1")
    store.ingest(device.device_id, STREAM_ID, DeviceInfo(cpu_cores=1), [
        make_record(1, model="llama-3-8b", input_tokens=1_000, output_tokens=500, cpu_time_ns=7, energy=()),
        make_record(2, model="licensed", count=3, cpu_time_ns=0, energy=()),
    ])
    out = tmp_path / "focus.csv"

    code, _, err = run(capsys, "export", "focus", "--db", store.engine.url.render_as_string(hide_password=False),
                       "--out", str(out))

    assert code == 0, err
    with open(out, encoding="utf-8", newline="") as file:
        rows = {row["x_Model"]: row for row in csv.DictReader(file) if row["x_CostKind"] == "usage"}
    assert (rows["llama-3-8b"]["x_TokenCost"], rows["llama-3-8b"]["BilledCost"]) == ("0.000090000000", "0.000090000007")
    assert (rows["licensed"]["x_RequestCost"], rows["licensed"]["x_TokenCost"]) == ("0.000003000000", "0.000000000000")
