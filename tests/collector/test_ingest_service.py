"""infermeter.v1.Ingest/Push over a real channel to the real server on loopback: what is acked
is stored exactly once, and every bad input gets its exact status and stores nothing."""

from __future__ import annotations

import grpc
import pytest
from infermeter.v1 import ingest_pb2, ingest_pb2_grpc, usage_pb2

from agent.record import INT64_MAX
from collector.store import Store, StoreUnavailable
from tests.collector.helpers import (
    START_UNIX_NS,
    ServersThread,
    make_record,
    push_request,
)

PUSH = "/infermeter.v1.Ingest/Push"


def push(channel, request, token: str, **kwargs) -> ingest_pb2.PushResponse:
    stub = ingest_pb2_grpc.IngestStub(channel)
    return stub.Push(request, metadata=[("authorization", f"Bearer {token}")], timeout=30, **kwargs)


def status_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


def stored_records(store: Store) -> int:
    return store.costs(period_costs=False, ).total_records


def test_a_good_batch_is_acked_after_it_is_stored(store, device, channel):
    reply = push(channel, push_request([make_record(seq) for seq in (1, 2, 5)]), device.token)

    assert (reply.acked_through_seq, reply.inserted, reply.duplicates) == (5, 3, 0)
    report = store.costs(period_costs=False, group_by=("device", "tag:project")).to_json()
    assert [(g["key"], g["records"]) for g in report["groups"]] == [(["edge-1", "search"], 3)]


def test_the_records_belong_to_the_device_of_the_token(store, device, channel):
    other = store.add_device("edge-2")

    push(channel, push_request([make_record(1)]), other.token)

    report = store.costs(period_costs=False, group_by=("device",)).to_json()
    assert [(g["key"], g["records"]) for g in report["groups"]] == [(["edge-2"], 1)]


def test_the_same_batch_again_is_all_duplicates_and_counted_once(store, device, channel):
    request = push_request([make_record(seq) for seq in range(1, 101)])
    push(channel, request, device.token)
    before = store.costs(period_costs=False, ).to_json()

    reply = push(channel, request, device.token)

    assert (reply.acked_through_seq, reply.inserted, reply.duplicates) == (100, 0, 100)
    assert store.costs(period_costs=False, ).to_json() == before
    assert before["total_records"] == 100


def test_a_full_batch_of_10000_records_is_accepted(store, device, channel):
    reply = push(channel, push_request([make_record(seq) for seq in range(1, 10_001)]), device.token)

    assert (reply.acked_through_seq, reply.inserted) == (10_000, 10_000)
    assert stored_records(store) == 10_000


@pytest.mark.parametrize(
    "metadata",
    [
        [],
        [("authorization", "")],
        [("authorization", "Bearer")],
        [("authorization", "Bearer ")],
        [("authorization", "Basic dXNlcjpwYXNz")],
        [("authorization", "Bearer two words")],
        [("authorization", "Bearer not-a-token-of-this-collector")],
    ],
    ids=["missing", "empty", "no-token", "blank-token", "basic", "two-words", "unknown"],
)
def test_a_call_without_a_valid_token_is_unauthenticated(store, device, channel, metadata):
    stub = ingest_pb2_grpc.IngestStub(channel)

    code = status_of(lambda: stub.Push(push_request([make_record(1)]), metadata=metadata, timeout=10))

    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert stored_records(store) == 0


def test_two_authorization_entries_are_unauthenticated(store, device, channel):
    stub = ingest_pb2_grpc.IngestStub(channel)
    metadata = [("authorization", f"Bearer {device.token}"), ("authorization", "Bearer other")]

    code = status_of(lambda: stub.Push(push_request([make_record(1)]), metadata=metadata, timeout=10))

    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert stored_records(store) == 0


def test_the_bearer_scheme_is_case_insensitive(store, device, channel):
    stub = ingest_pb2_grpc.IngestStub(channel)

    reply = stub.Push(push_request([make_record(1)]), metadata=[("authorization", f"bearer {device.token}")], timeout=10)

    assert reply.inserted == 1


def test_a_revoked_device_is_permission_denied(store, device, channel):
    store.revoke_device(device.device_id)

    code = status_of(lambda: push(channel, push_request([make_record(1)]), device.token))

    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert stored_records(store) == 0


def _record(seq: int = 1, **fields) -> usage_pb2.UsageRecord:
    """A raw protobuf record, so fields can hold what the domain dataclass never would."""
    message = push_request([make_record(1)]).records[0]
    message.seq = seq
    for name, value in fields.items():
        setattr(message, name, value)
    return message


def _with_tags(**tags) -> usage_pb2.UsageRecord:
    message = _record()
    message.tags.update(tags)
    return message


BAD_BATCHES = {
    "empty-with-seqs": lambda: push_request([], first_seq=1, last_seq=1),
    "10001-records": lambda: push_request([make_record(seq) for seq in range(1, 10_002)]),
    "duplicate-seqs": lambda: push_request([make_record(1), make_record(2), make_record(2)]),
    "backwards-seqs": lambda: push_request([make_record(3), make_record(2)]),
    "first-seq-mismatch": lambda: push_request([make_record(1), make_record(2)], first_seq=2),
    "last-seq-mismatch": lambda: push_request([make_record(1), make_record(2)], last_seq=3),
    "seq-0": lambda: push_request([_record(0)]),
    "seq-2^63": lambda: push_request([_record(INT64_MAX + 1)]),
    "seq-2^64-1": lambda: push_request([_record(2**64 - 1)]),
    "start-1970": lambda: push_request([_record(start_unix_ns=0)]),
    # int64 Unix ns end in 2262, so "year 9999" arrives as the largest value there is.
    "start-2262": lambda: push_request([_record(start_unix_ns=INT64_MAX)]),
    "start-2200": lambda: push_request([_record(start_unix_ns=7_258_118_400 * 10**9)]),
    "negative-start": lambda: push_request([_record(start_unix_ns=-1)]),
    "nul-in-model": lambda: push_request([_record(model="resnet\x0050")]),
    "control-in-tag": lambda: push_request([_with_tags(project="a\x1bb")]),
    "1mb-model": lambda: push_request([_record(model="m" * 1_000_000)]),
    "1mb-tag": lambda: push_request([_with_tags(project="v" * 1_000_000)]),
    "unknown-kind": lambda: push_request([_record(kind=99)]),
    "unknown-status": lambda: push_request([_record(status=7)]),
    "unspecified-kind": lambda: push_request([_record(kind=0)]),
    "empty-model": lambda: push_request([_record(model="")]),
    "count-0": lambda: push_request([_record(count=0)]),
    "bad-stream-id": lambda: push_request([make_record(1)], stream_id="0123456789ABCDEF0123456789ABCDEF"),
    "short-stream-id": lambda: push_request([make_record(1)], stream_id="0123"),
    "nul-in-hostname": lambda: push_request([make_record(1)], device=ingest_pb2.DeviceInfo(hostname="a\x00b")),
    # No partial batch: one bad record among good ones rejects them all.
    "bad-record-last": lambda: push_request([*(make_record(seq) for seq in range(1, 100)), _record(100, model="")]),
}


@pytest.mark.parametrize("make_request", BAD_BATCHES.values(), ids=BAD_BATCHES.keys())
def test_a_bad_batch_is_invalid_argument_and_stores_nothing(store, device, channel, make_request):
    code = status_of(lambda: push(channel, make_request(), device.token))

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert stored_records(store) == 0


def test_the_rejection_names_the_seq_and_the_field(device, channel):
    with pytest.raises(grpc.RpcError) as caught:
        push(channel, push_request([make_record(1), _record(2, model="a\x00b")]), device.token)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "record seq 2: model: contains control characters"


@pytest.mark.parametrize("data", [b"\xff\xff\xff\xff", b"garbage bytes", b"\x0a\xff"], ids=["ff", "text", "truncated"])
def test_garbage_bytes_are_invalid_argument(store, device, channel, data):
    raw = channel.unary_unary(PUSH)  # no serializers: the bytes go as they are

    code = status_of(lambda: raw(data, metadata=[("authorization", f"Bearer {device.token}")], timeout=10))

    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert stored_records(store) == 0


def test_an_oversized_message_is_resource_exhausted(store, device, channel):
    raw = channel.unary_unary(PUSH)

    code = status_of(lambda: raw(b"\x00" * (17 * 1024 * 1024), metadata=[("authorization", f"Bearer {device.token}")], timeout=30))

    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stored_records(store) == 0


class FailingStore(Store):
    """The real store, but ingest fails the way the test asks."""

    error: Exception = StoreUnavailable("database is locked")

    def ingest(self, *args, **kwargs):
        raise self.error


@pytest.mark.parametrize("error", [StoreUnavailable("disk full"), RuntimeError("a bug")], ids=["unavailable", "bug"])
def test_store_failures_are_unavailable_and_store_nothing(tmp_path, error, caplog):
    failing = FailingStore.open(f"sqlite:///{tmp_path / 'failing.db'}")
    failing.error = error
    device = failing.add_device("edge-1")
    try:
        with ServersThread(failing) as running, grpc.insecure_channel(running.grpc_address) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                push(channel, push_request([make_record(1)]), device.token)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "Traceback" not in caught.value.details()
        assert stored_records(failing) == 0
    finally:
        failing.close()


def test_a_minimal_batch_is_accepted(store, device, channel):
    """A minimal valid batch: no device info, no energy, no memory."""
    request = ingest_pb2.PushRequest(
        stream_id="f" * 32, first_seq=7, last_seq=7,
        records=[usage_pb2.UsageRecord(seq=7, kind=1, model="m", start_unix_ns=START_UNIX_NS, status=1, count=1)],
    )

    reply = push(channel, request, device.token)

    assert (reply.acked_through_seq, reply.inserted) == (7, 1)
