"""The server-side join against a real Triton server: records get their share of the server's
queue and compute times, never more than the server reported, from several processes."""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent.boot import boot_key
from agent.buffer import APPEND_COLUMNS, Buffer
from agent.config import AgentConfig, ConfigError, load_config
from agent.meter import Meter
from agent.record import Status
from agent.triton_join import METHOD, SOURCE, TritonJoin, triton_join_tasks
from agent.triton_stats import (
    ModelTotals,
    difference,
    fetch_statistics,
    parse_statistics,
)
from tests.agent.energy.test_ledger_attributor import (
    BOOT,
    Call,
    Machine,
    assert_conserved,
)
from tests.triton.server import STATISTICS_HEADER
from tests.triton.test_triton_client import CHILD, inputs_for

grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient (the `triton` extra) is not installed")

FIXTURES = Path(__file__).parents[1] / "fixtures" / "triton"


def server_totals(server, model: str = "double") -> ModelTotals:
    return parse_statistics(fetch_statistics(server.statistics_url, headers=dict([STATISTICS_HEADER])))[model]


def join_for(server, buffer: Buffer, **kwargs) -> TritonJoin:
    statistics = functools.partial(fetch_statistics, server.statistics_url, headers=dict([STATISTICS_HEADER]))
    return TritonJoin(buffer, statistics, boot=boot_key(), settle_ns=0, **kwargs)


def joined_records(buffer: Buffer):
    return [r for r in buffer.read(limit=100_000) if r.server is not None]


def test_records_get_the_servers_times_for_their_interval(server, buffer_path):
    meter = Meter(buffer_path)
    client = meter.wrap_triton(grpcclient.InferenceServerClient(server.grpc_url))
    with Buffer.open(buffer_path) as buffer:
        join = join_for(server, buffer)
        join.run_once()  # the first read: the interval starts here
        before = server_totals(server)
        for batch in (1, 2, 3, 2):
            client.infer("double", inputs_for(grpcclient, np.ones((batch, 4), dtype=np.float32)))
        with pytest.raises(Exception, match="unexpected shape"):
            client.infer("double", inputs_for(grpcclient, np.ones(4, dtype=np.float32)))
        meter.flush()
        done = difference(server_totals(server), before)
        report = join.run_once()
        records = buffer.read(limit=100)
    meter.close()

    ok = [r for r in records if r.status is Status.OK]
    assert report.records == len(ok) == 4 and done.requests == 4
    assert all(r.server is None for r in records if r.status is Status.ERROR)
    for record in ok:
        assert (record.server.source, record.server.method) == (SOURCE, METHOD)
        assert record.server.interval_ns > 0
        assert record.gpu_time_ns == 0  # the server has no GPU
    # Every inference was metered: the records share the server's totals exactly, by batch size.
    assert sum(r.server.compute_infer_ns for r in ok) <= done.compute_infer_ns
    assert sum(r.server.queue_ns for r in ok) <= done.queue_ns
    assert done.compute_infer_ns - sum(r.server.compute_infer_ns for r in ok) <= server_totals(server).compute_infer_ns
    big, small = max(ok, key=lambda r: r.batch_size), min(ok, key=lambda r: r.batch_size)
    assert big.server.compute_infer_ns == pytest.approx(3 * small.server.compute_infer_ns, abs=3)
    # The model sleeps COMPUTE_S per call: the server saw it, and it fits in the client's wall time.
    assert sum(r.server.compute_ns for r in ok) >= 4 * 0.002 * 1e9 * 0.9
    assert sum(r.server.queue_ns + r.server.compute_ns for r in ok) <= sum(r.duration_ns for r in ok)


def test_calls_from_several_processes_share_what_the_server_did_with_unmetered_callers(server, buffer_path):
    bare = grpcclient.InferenceServerClient(server.grpc_url)
    with Buffer.open(buffer_path, create=True) as buffer:
        join = join_for(server, buffer)
        join.run_once()
        before = server_totals(server)
        children = [
            subprocess.Popen([sys.executable, "-c", CHILD, str(buffer_path), server.http_url, "4"]) for _ in range(2)
        ]
        for _ in range(4):  # a caller that does not meter, at the same time
            bare.infer("double", inputs_for(grpcclient, np.ones((1, 3), dtype=np.float32)))
        assert [child.wait(timeout=60) for child in children] == [0, 0]
        done = difference(server_totals(server), before)
        join.run_once()
        records = joined_records(buffer)

    assert len(records) == 8 and len({r.pid for r in records}) == 2
    assert done.requests == done.inferences == 12
    # Eight of the twelve inferences were metered: the records get eight twelfths, exactly split.
    metered = sum(r.server.compute_infer_ns for r in records)
    assert metered == pytest.approx(done.compute_infer_ns * 8 / 12, abs=8)
    assert metered < done.compute_infer_ns


def test_a_server_with_gpus_gives_records_their_compute_as_gpu_time(server, buffer_path):
    metrics_text = (FIXTURES / "kura_two_gpus.txt").read_text()
    meter = Meter(buffer_path)
    client = meter.wrap_triton(grpcclient.InferenceServerClient(server.grpc_url))
    with Buffer.open(buffer_path) as buffer:
        join = join_for(server, buffer, metrics=lambda: metrics_text)
        join.run_once()
        client.infer("double", inputs_for(grpcclient))
        meter.flush()
        join.run_once()
        [record] = buffer.read(limit=10)
    meter.close()

    assert join.has_gpus
    assert record.gpu_time_ns == record.server.compute_infer_ns > 0


def test_an_unreachable_server_joins_nothing_and_the_next_read_covers_the_gap(server, buffer_path):
    reachable = [True]
    real = functools.partial(fetch_statistics, server.statistics_url, headers=dict([STATISTICS_HEADER]))

    def statistics() -> str:
        if not reachable[0]:
            raise ConnectionRefusedError("refused")
        return real()

    meter = Meter(buffer_path)
    client = meter.wrap_triton(grpcclient.InferenceServerClient(server.grpc_url))
    with Buffer.open(buffer_path) as buffer:
        join = TritonJoin(buffer, statistics, boot=boot_key(), settle_ns=0)
        join.run_once()
        client.infer("double", inputs_for(grpcclient))
        meter.flush()
        reachable[0] = False
        assert join.run_once().records == 0
        client.infer("double", inputs_for(grpcclient))
        meter.flush()
        reachable[0] = True
        assert join.run_once().records == 2
    meter.close()


def test_statistics_parsing_and_restarts():
    body = """{"model_stats": [
        {"name": "m", "version": "1", "inference_count": 10, "execution_count": 4,
         "inference_stats": {"success": {"count": 5, "ns": 900}, "queue": {"count": 5, "ns": 100},
                             "compute_input": {"count": 5, "ns": 10}, "compute_infer": {"count": 5, "ns": 700},
                             "compute_output": {"count": 5, "ns": 20}},
         "memory_usage": [{"type": "GPU", "id": 0, "byte_size": 4096}, {"type": "CPU", "id": 0, "byte_size": 1}]},
        {"name": "m", "version": "2", "inference_count": "2",
         "inference_stats": {"success": {"count": "1"}, "compute_infer": {"ns": "50"}}},
        {"name": 7}]}"""
    totals = parse_statistics(body)

    assert totals == {"m": ModelTotals(
        requests=6, inferences=12, executions=4, queue_ns=100, compute_input_ns=10, compute_infer_ns=750,
        compute_output_ns=20, gpu_memory_bytes=4096,
    )}
    later = ModelTotals(
        requests=8, inferences=15, executions=5, queue_ns=150, compute_input_ns=10, compute_infer_ns=1000,
        compute_output_ns=20, gpu_memory_bytes=8,
    )
    assert difference(later, totals["m"]) == ModelTotals(
        requests=2, inferences=3, executions=1, queue_ns=50, compute_infer_ns=250, gpu_memory_bytes=8,
    )
    reloaded = ModelTotals(requests=1, inferences=1, compute_infer_ns=40)
    assert difference(reloaded, totals["m"]) == reloaded
    for bad in ("[]", "{}", "not json"):
        with pytest.raises(ValueError):
            parse_statistics(bad)


def test_the_daemon_joins_when_the_config_names_the_server(server, buffer_path, tmp_path):
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        f'buffer = "{buffer_path}"\n[triton]\nstatistics_url = "{server.statistics_url}"\n'
        f'statistics_header = "{STATISTICS_HEADER[0]}={STATISTICS_HEADER[1]}"\n'
    )
    config = load_config(config_file, env={})
    meter = Meter(buffer_path)
    client = meter.wrap_triton(grpcclient.InferenceServerClient(server.grpc_url))
    client.infer("double", inputs_for(grpcclient))  # creates the buffer
    meter.flush()
    with Buffer.open(buffer_path) as buffer:
        assert triton_join_tasks(AgentConfig(), buffer) == []
        [join] = triton_join_tasks(config, buffer)
        # The join's cut trails its read by 200 ms (records still on their way): the first
        # record ends before the first cut, the second between the two.
        time.sleep(0.25)
        join.run_once()
        client.infer("double", inputs_for(grpcclient))
        meter.flush()
        time.sleep(0.25)
        join.run_once()
        records = buffer.read()
    meter.close()

    assert [r.server is not None for r in records] == [False, True]
    assert join.has_gpus is False


def test_a_restricted_server_refuses_reads_without_the_header(server, buffer_path, caplog):
    with Buffer.open(buffer_path, create=True) as buffer:
        join = TritonJoin(buffer, functools.partial(fetch_statistics, server.statistics_url), boot=boot_key())
        assert join.run_once().records == 0
        join.run_once()
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        triton_join_tasks(AgentConfig(triton_statistics_url=server.statistics_url, triton_statistics_header="x"), buffer)

    refusals = [r for r in caplog.records if "cannot read the Triton server's statistics" in r.message]
    assert len(refusals) == 1 and "403" in refusals[0].message  # once per streak


def test_gpu_energy_is_split_over_the_records_by_their_share_of_server_compute(server, tmp_path):

    read = functools.partial(fetch_statistics, server.statistics_url, headers=dict([STATISTICS_HEADER]))
    client = grpcclient.InferenceServerClient(server.grpc_url)  # the calls the records stand for
    bodies = [read()]
    for batch in (1, 3):
        client.infer("double", inputs_for(grpcclient, np.ones((batch, 3), dtype=np.float32)))
    bodies.append(read())
    metrics_text = (FIXTURES / "kura_two_gpus.txt").read_text()
    small, large = Call(200, 500, gpu=True), Call(300, 700, gpu=True)
    with Buffer.open(tmp_path / "buffer.db") as buffer:
        machine = Machine(tmp_path, buffer)
        join = TritonJoin(buffer, iter(bodies).__next__, boot=BOOT, metrics=lambda: metrics_text,
                          settle_ns=0, clock_ns=machine.clock_ns)
        join.run_once()
        rows = [_as_triton(call.row(), batch) for call, batch in ((small, 1), (large, 3))]
        last = buffer.append(rows)
        machine.play([small, large], until_ms=1000)
        assert join.run_once().records == 2
        machine.play([], until_ms=2600)
        machine.attributor().run_once()
        records = {r.seq: r for r in buffer.read()}
        assert_conserved(machine, buffer)
    done = difference(parse_statistics(bodies[1])["double"], parse_statistics(bodies[0])["double"])

    small_record, large_record = records[last - 1], records[last]
    assert small_record.gpu_time_ns + large_record.gpu_time_ns == done.compute_infer_ns
    assert large_record.gpu_time_ns == pytest.approx(3 * small_record.gpu_time_ns, abs=3)
    for record in (small_record, large_record):
        [gpu] = [share for share in record.energy if share.domain == "gpu"]
        # A record on the "grpc" provider gets GPU energy only through the GPU time joined to it.
        assert gpu.method == "gpu-time" and gpu.energy_uj > 0


def _as_triton(row: tuple, batch_size: int) -> tuple:
    """A buffer row of a Triton client call (no CPU time: the work is the server's)."""
    values = dict(zip(APPEND_COLUMNS, row))
    values.update(runtime="triton", execution_provider="grpc", model="double", model_version="",
                  batch_size=batch_size, cpu_time_ns=0)
    return tuple(values[column] for column in APPEND_COLUMNS)
