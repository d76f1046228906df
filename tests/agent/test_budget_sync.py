"""End to end on the device: a real daemon (build_daemon) pushing to a real gRPC Ingest server
on loopback that answers with budget states, and a Meter on the same buffer enforcing them,
online, offline (the lease runs down) and after a heartbeat (an empty push) brings a change."""

from __future__ import annotations

import time
from concurrent import futures

import grpc
import pytest
from infermeter.v1 import ingest_pb2, ingest_pb2_grpc

from agent import BudgetExceeded
from agent.buffer import Buffer
from agent.config import AgentConfig
from agent.daemon import build_daemon
from agent.exporter import open_channel
from collector.demo.model import OUTPUT_NAME
from tests.agent.budget_helpers import HOUR_NS, PICOS

pytest.importorskip("onnxruntime")


class BudgetingIngest(ingest_pb2_grpc.IngestServicer):
    """Takes each push as the collector does (an empty one, with first_seq and last_seq 0, is a
    heartbeat and acknowledges nothing), and answers with `budgets` and `hints` (protobuf
    messages). The agent's tests run without the collector's dependencies, hence no
    collector.ingest_service here."""

    def __init__(self) -> None:
        self.budgets: list[ingest_pb2.BudgetState] = []
        self.hints: list[ingest_pb2.PriceHint] = []
        self.pushes: list[ingest_pb2.PushRequest] = []

    def Push(self, request, context):
        seqs = [record.seq for record in request.records]
        if (request.first_seq, request.last_seq) != ((seqs[0], seqs[-1]) if seqs else (0, 0)):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first_seq and last_seq do not match the records")
        self.pushes.append(request)
        return ingest_pb2.PushResponse(
            acked_through_seq=request.last_seq, inserted=len(seqs),
            budgets=self.budgets, price_hints=self.hints,
        )


def _state(name: str, *, state: str = "ok", lease_pico: int = 100 * PICOS, scope: str = "global",
           message: str = "") -> ingest_pb2.BudgetState:
    return ingest_pb2.BudgetState(
        budget_id=f"bgt_{name}", name=name, scope=scope, action="block", state=state, currency="USD",
        lease_remaining_pico=lease_pico, unit="money", period_end_unix_ns=time.time_ns() + HOUR_NS,
        message=message,
    )


@pytest.fixture
def ingest():
    servicer = BudgetingIngest()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    ingest_pb2_grpc.add_IngestServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, server, port
    server.stop(None)


@pytest.fixture
def device(ingest, buffer_path):
    _, _, port = ingest
    config = AgentConfig(
        buffer_path=buffer_path, collector_address=f"127.0.0.1:{port}", token="device-token",
        # A heartbeat is due at every round with nothing to ship.
        energy_enabled=False, heartbeat_s=1e-9, timeout_s=2.0,
    )
    buffer = Buffer.open(buffer_path)
    channel = open_channel(config)
    yield build_daemon(config, buffer, channel, None)
    channel.close()
    buffer.close()


def test_an_exceeded_budget_in_a_reply_blocks_the_next_call(ingest, device, meter, tiny_session, feed):
    servicer, _, _ = ingest
    sess = meter.wrap_onnx(tiny_session, model="tiny")
    sess.run([OUTPUT_NAME], feed)
    meter.flush()
    servicer.budgets = [_state("search-monthly", state="exceeded", lease_pico=0, scope="tag:project=search",
                               message="budget search-monthly: 251.20 of 250.00 USD (100 %) spent this month")]
    device.run_once()
    assert len(servicer.pushes) == 1

    meter.flush()  # the flusher's round sees the new state
    with pytest.raises(BudgetExceeded, match=r"^budget search-monthly \(tag:project=search\) is exceeded: 251.20"):
        sess.run([OUTPUT_NAME], feed)


def test_offline_the_lease_runs_out_as_records_are_written(ingest, device, meter, tiny_session, feed):
    servicer, server, _ = ingest
    servicer.budgets = [_state("fleet", lease_pico=3 * PICOS)]
    servicer.hints = [ingest_pb2.PriceHint(model="tiny", runtime="onnxruntime", currency="USD",
                                           cost_per_inference_pico=PICOS)]
    sess = meter.wrap_onnx(tiny_session, model="tiny")
    sess.run([OUTPUT_NAME], feed)
    meter.flush()
    device.run_once()  # shipped: the lease of 3 USD starts after this record
    meter.flush()

    server.stop(None)  # the collector is gone
    for _ in range(2):
        sess.run([OUTPUT_NAME], feed)
        meter.flush()
        device.run_once()  # cannot ship; counts what was written
        meter.flush()
    sess.run([OUTPUT_NAME], feed)  # 3 USD counted only after this one
    meter.flush()
    device.run_once()
    meter.flush()
    with pytest.raises(BudgetExceeded, match=r"lease of 3.00 USD is spent and the collector has not been reached"):
        sess.run([OUTPUT_NAME], feed)
    assert len(servicer.pushes) == 1
    with Buffer.open(meter.buffer_path) as buffer:
        assert buffer.stats().records == 3  # kept for when the collector is back


def test_a_budget_raised_reaches_an_idle_device_by_heartbeat(ingest, device, meter, tiny_session, feed):
    servicer, _, _ = ingest
    sess = meter.wrap_onnx(tiny_session, model="tiny")
    sess.run([OUTPUT_NAME], feed)
    meter.flush()
    servicer.budgets = [_state("fleet", state="exceeded", lease_pico=0)]
    device.run_once()
    meter.flush()
    with pytest.raises(BudgetExceeded):
        sess.run([OUTPUT_NAME], feed)

    servicer.budgets = [_state("fleet", lease_pico=50 * PICOS)]  # raised
    device.run_once()  # nothing to ship: a heartbeat
    assert len(servicer.pushes) == 2
    heartbeat = servicer.pushes[1]
    assert (len(heartbeat.records), heartbeat.first_seq, heartbeat.last_seq) == (0, 0, 0)
    meter.flush()
    sess.run([OUTPUT_NAME], feed)

    servicer.budgets = [_state("fleet", state="exceeded", lease_pico=0)]
    meter.flush()
    device.run_once()  # ships the last call's record, learns it is exceeded again
    meter.flush()
    with pytest.raises(BudgetExceeded):
        sess.run([OUTPUT_NAME], feed)
    servicer.budgets = []  # removed
    device.run_once()  # a heartbeat again
    meter.flush()
    sess.run([OUTPUT_NAME], feed)
    assert meter.budgets.enforcer is None


def test_a_device_that_never_shipped_learns_its_budgets_by_heartbeat(ingest, device, meter, tiny_session, feed):
    servicer, _, _ = ingest
    servicer.budgets = [_state("fleet", state="exceeded", lease_pico=0)]
    device.run_once()  # an empty buffer: a heartbeat
    assert [len(push.records) for push in servicer.pushes] == [0]
    sess = meter.wrap_onnx(tiny_session, model="tiny")  # reads the state before its first call
    with pytest.raises(BudgetExceeded, match=r"^budget fleet \(global\) is exceeded"):
        sess.run([OUTPUT_NAME], feed)

