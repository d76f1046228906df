"""Server-side figures (a Triton server's queue and compute times joined on the device) travel
in the record and are stored with their provenance; bad ones reject the batch and store nothing."""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from infermeter.v1 import ingest_pb2_grpc

from agent.codec import record_from_proto, record_to_proto
from agent.record import INT64_MAX, InvalidRecord, ServerSide, validate
from collector.cli import format_explanation
from collector.schema import records
from collector.store import Store
from tests.collector.databases import store_url  # noqa: F401
from tests.collector.helpers import STREAM_ID, ServersThread, make_record, push_request

SERVER = ServerSide(
    queue_ns=120_000, compute_input_ns=30_000, compute_infer_ns=2_100_000, compute_output_ns=40_000,
    gpu_memory_bytes=512 * 2**20, source="triton-statistics", method="batch-share", interval_ns=1_000_000_000,
)


def triton_record(seq: int, server: ServerSide | None = SERVER):
    return make_record(seq, runtime="triton", model="double", execution_provider="grpc", server=server)


def push(channel, request, token: str):
    stub = ingest_pb2_grpc.IngestStub(channel)
    return stub.Push(request, metadata=[("authorization", f"Bearer {token}")], timeout=30)


def test_server_side_figures_survive_the_codec():
    record = triton_record(1)

    assert record_from_proto(record_to_proto(record)) == record
    assert record_from_proto(record_to_proto(triton_record(2, None))).server is None


def test_server_side_figures_are_stored_with_their_provenance(store_url):  # noqa: F811
    store = Store.open(store_url)
    try:
        device = store.add_device("edge-1")
        with ServersThread(store) as servers, grpc.insecure_channel(servers.grpc_address) as channel:
            reply = push(channel, push_request([triton_record(1), triton_record(2, None)]), device.token)
        with store.engine.connect() as connection:
            stored = dict(connection.execute(sa.select(records.c.seq, records.c.server).order_by(records.c.seq)).all())
    finally:
        store.close()

    assert reply.inserted == 2
    assert stored == {
        1: {
            "queue_ns": 120_000, "compute_input_ns": 30_000, "compute_infer_ns": 2_100_000, "compute_output_ns": 40_000,
            "gpu_memory_bytes": 512 * 2**20, "source": "triton-statistics", "method": "batch-share",
            "interval_ns": 1_000_000_000,
        },
        2: None,
    }


BAD = {
    "no-source": {"source": ""},
    "no-method": {"method": ""},
    "control-in-source": {"source": "triton\x00"},
    "long-method": {"method": "m" * 33},
    "queue-past-int64": {"queue_ns": INT64_MAX + 1},
    "times-adding-past-int64": {"queue_ns": INT64_MAX, "compute_infer_ns": 1},
}


@pytest.mark.parametrize("fields", BAD.values(), ids=BAD.keys())
def test_bad_server_side_figures_reject_the_batch_and_store_nothing(store, device, channel, fields):
    message = record_to_proto(triton_record(1))
    for name, value in fields.items():
        setattr(message.server, name, value)

    with pytest.raises(grpc.RpcError) as caught:
        push(channel, push_request([message]), device.token)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "server" in caught.value.details()
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(records)).scalar() == 0


def test_validate_names_the_server_field():
    record = triton_record(3, ServerSide(queue_ns=-1, source="triton-statistics", method="batch-share"))

    with pytest.raises(InvalidRecord, match="server.queue_ns"):
        validate(record)


def test_explain_shows_what_the_server_did(store_url):  # noqa: F811
    store = Store.open(store_url)
    try:
        device = store.add_device("edge-1")
        with ServersThread(store) as servers, grpc.insecure_channel(servers.grpc_address) as channel:
            push(channel, push_request([triton_record(1), triton_record(2, None)]), device.token)
        joined = store.explain_record(STREAM_ID, 1)
        alone = store.explain_record(STREAM_ID, 2)
    finally:
        store.close()

    assert joined["record"]["server"]["compute_infer_ns"] == 2_100_000
    assert joined["record"]["server"]["source"] == "triton-statistics"
    assert alone["record"]["server"] is None
    lines = format_explanation(joined).splitlines()
    assert lines[2] == (
        "server   queue 120000 ns, compute input 30000 ns, infer 2100000 ns, output 40000 ns, GPU memory "
        "536870912 bytes (triton-statistics, batch-share over 1000000000 ns)"
    )
    assert not any(line.startswith("server") for line in format_explanation(alone).splitlines())
