"""The budgets and price hints of Push replies, over a real gRPC server."""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from infermeter.v1 import ingest_pb2_grpc

from collector.schema import records
from collector.store import Store
from tests.collector.helpers import (
    START_UNIX_NS,
    ServersThread,
    bearer_metadata,
    make_record,
    push_request,
)

NOW = START_UNIX_NS + 3_600 * 10**9


@pytest.fixture
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'collector.db'}", clock=lambda: NOW) as store:
        yield store


@pytest.fixture
def devices(store):
    return {name: store.add_device(name, site=site) for name, site in
            [("edge-1", "lab"), ("edge-2", "lab"), ("edge-3", "home"), ("edge-4", "home")]}


@pytest.fixture
def push(store, devices):
    with ServersThread(store) as servers, grpc.insecure_channel(servers.grpc_address) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)

        def push(records, device="edge-1", **fields):
            return stub.Push(push_request(records, **fields), metadata=bearer_metadata(devices[device].token), timeout=10)

        yield push


def cost_of_one(store) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(records.c.cost_pico).limit(1)).scalar_one()


def by_name(reply) -> dict:
    return {state.name: state for state in reply.budgets}


def test_an_empty_push_gets_no_budgets_and_no_hints_on_a_new_collector(push):
    reply = push([])
    assert (reply.inserted, reply.acked_through_seq, list(reply.budgets), list(reply.price_hints)) == (0, 0, [], [])


def test_the_reply_lists_the_budgets_that_can_apply_with_leases(store, push):
    push([make_record(1)])
    cost = cost_of_one(store)
    amount = 100 * cost
    text = f"{amount}e-12"
    for name, scope in [("all", "global"), ("mine", "device:edge-1"), ("theirs", "device:edge-3"),
                        ("lab", "site:lab"), ("home", "site:home"), ("resnet", "model:resnet50"),
                        ("search", "tag:project=search")]:
        store.add_budget({"name": name, "scope": scope, "period": "month", "amount": text, "action": "block"})
    store.add_budget({"name": "slow", "scope": "global", "period": "day", "amount": f"{cost}e-12",
                      "action": "throttle", "throttle_per_second": "2.5"})
    store.add_budget({"name": "watts", "scope": "global", "period": "day", "unit": "energy", "amount": "1"})

    states = by_name(push([]))
    assert set(states) == {"all", "mine", "lab", "resnet", "search", "slow", "watts"}
    remaining = amount - cost
    assert states["all"].lease_remaining_pico == remaining // 4  # four live devices
    assert states["mine"].lease_remaining_pico == remaining
    assert states["lab"].lease_remaining_pico == remaining // 2
    assert states["search"].scope == "tag:project=search"
    assert (states["all"].state, states["all"].action, states["all"].currency) == ("ok", "block", "USD")
    slow = states["slow"]
    assert (slow.state, slow.lease_remaining_pico, slow.throttle_per_second) == ("exceeded", 0, 2.5)
    assert slow.period_end_unix_ns == (NOW // (86_400 * 10**9) + 1) * 86_400 * 10**9
    assert slow.message.startswith("budget slow: ") and slow.message.endswith("(100 %) spent today")
    with store.engine.connect() as connection:
        energy = connection.execute(sa.select(records.c.energy_uj)).scalar_one()
    watts = states["watts"]
    assert (watts.unit, watts.lease_remaining_pico) == ("energy", 0)
    assert watts.lease_remaining_uj == (3_600_000_000 - energy) // 4

    assert "theirs" in by_name(push([], device="edge-3"))


def test_budget_changes_reach_the_next_push(store, push):
    push([make_record(1)])
    store.add_budget({"name": "b", "scope": "device:edge-1", "period": "month", "amount": "1000", "action": "block"})
    assert by_name(push([]))["b"].state == "ok"

    cost = cost_of_one(store)
    store.update_budget("b", {"name": "b", "scope": "device:edge-1", "period": "month", "amount": f"{cost}e-12",
                              "action": "block"})
    state = by_name(push([]))["b"]
    assert (state.state, state.lease_remaining_pico) == ("exceeded", 0)

    store.delete_budget("b")
    assert list(push([]).budgets) == []


def test_the_spend_of_a_push_is_in_its_own_reply(store, push):
    push([make_record(1)])
    cost = cost_of_one(store)
    store.add_budget({"name": "b", "scope": "global", "period": "month", "amount": f"{4 * cost}e-12"})
    assert by_name(push([make_record(2)]))["b"].state == "warning"
    assert by_name(push([make_record(3), make_record(4)]))["b"].state == "exceeded"
    assert by_name(push([make_record(3), make_record(4)]))["b"].state == "exceeded"  # a replay adds nothing
    assert store.budget("b").spent == 4 * cost


def test_price_hints_per_model_from_the_last_day(store, push):
    push([make_record(1), make_record(2), make_record(3, model="bert", count=4)])
    reply = push([])
    hints = {hint.model: hint for hint in reply.price_hints}
    assert set(hints) == {"resnet50", "bert"}
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(records.c.model, records.c.cost_pico, records.c.energy_uj, records.c.count)).all()
    resnet = [row for row in rows if row.model == "resnet50"]
    assert hints["resnet50"].cost_per_inference_pico == sum(row.cost_pico for row in resnet) // 2
    assert hints["resnet50"].energy_per_inference_uj == sum(row.energy_uj for row in resnet) // 2
    bert = next(row for row in rows if row.model == "bert")
    assert hints["bert"].cost_per_inference_pico == round(bert.cost_pico / 4)
    assert (hints["bert"].runtime, hints["bert"].currency) == ("onnxruntime", "USD")
    # Another device ran nothing.
    assert list(push([], device="edge-2").price_hints) == []
