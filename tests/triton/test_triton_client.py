"""Meter.wrap_triton against a real Triton server: the same results and exceptions as the bare
client, one record per call (or per streamed response), from threads and processes."""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from agent.buffer import Buffer
from agent.record import Status, UsageRecord
from tests.triton.server import SLOW_MARK, SLOW_S

grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient (the `triton` extra) is not installed")
httpclient = pytest.importorskip("tritonclient.http")
grpc_aio = pytest.importorskip("tritonclient.grpc.aio")
http_aio = pytest.importorskip("tritonclient.http.aio")
from tritonclient.utils import InferenceServerException

X = np.arange(6, dtype=np.float32).reshape(2, 3)
X_BYTES = X.nbytes


def records_of(meter) -> list[UsageRecord]:
    meter.flush()
    with Buffer.open(meter.buffer_path) as buffer:
        return buffer.read(limit=100_000)


def inputs_for(module, x: np.ndarray = X) -> list:
    value = module.InferInput("x", list(x.shape), "FP32")
    value.set_data_from_numpy(x)
    return [value]


def infer_error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


@pytest.mark.parametrize(("module", "url"), [(grpcclient, "grpc_url"), (httpclient, "http_url")])
def test_infer_returns_what_the_bare_client_returns_and_records_the_call(server, meter, module, url):
    bare = module.InferenceServerClient(getattr(server, url))
    metered = meter.wrap_triton(module.InferenceServerClient(getattr(server, url)), tags={"team": "a"})

    expected = bare.infer("double", inputs_for(module)).as_numpy("y")
    got = metered.infer("double", inputs_for(module), model_version="1", tags={"user": "alice"})

    np.testing.assert_array_equal(got.as_numpy("y"), expected)
    [record] = records_of(meter)
    assert (record.model, record.model_version, record.runtime) == ("double", "1", "triton")
    assert record.execution_provider == module.__name__.rsplit(".", 1)[1]
    assert (record.batch_size, record.input_bytes, record.output_bytes) == (2, X_BYTES, X_BYTES)
    assert record.status is Status.OK and record.error_type == ""
    assert dict(record.tags) == {"project": "search", "team": "a", "user": "alice"}
    assert record.duration_ns > 0 and record.cpu_time_ns == 0  # the work is the server's


@pytest.mark.parametrize(("module", "url"), [(grpcclient, "grpc_url"), (httpclient, "http_url")])
def test_unknown_models_and_bad_shapes_raise_what_the_bare_client_raises(server, meter, module, url):
    bare = module.InferenceServerClient(getattr(server, url))
    metered = meter.wrap_triton(module.InferenceServerClient(getattr(server, url)))
    flat = np.ones(3, dtype=np.float32)  # the model takes [batch, n]

    for model, x in (("no-such-model", X), ("double", flat)):
        expected = infer_error(lambda model=model, x=x: bare.infer(model, inputs_for(module, x)))
        got = infer_error(lambda model=model, x=x: metered.infer(model, inputs_for(module, x)))
        assert (type(got), got.message(), got.status()) == (type(expected), expected.message(), expected.status())

    unknown, bad_shape = records_of(meter)
    assert unknown.model == "no-such-model" and bad_shape.model == "double"
    for record in (unknown, bad_shape):
        assert record.status is Status.ERROR and record.error_type == "InferenceServerException"
        assert record.output_bytes == 0
    assert (bad_shape.batch_size, bad_shape.input_bytes) == (3, flat.nbytes)


def test_grpc_async_infer_records_when_the_callback_runs(server, meter):
    metered = meter.wrap_triton(grpcclient.InferenceServerClient(server.grpc_url))
    answers: queue.Queue = queue.Queue()

    metered.async_infer("double", inputs_for(grpcclient), lambda result, error: answers.put((result, error)),
                        tags={"user": "bob"})
    result, error = answers.get(timeout=10)

    assert error is None
    np.testing.assert_array_equal(result.as_numpy("y"), X * 2)
    [record] = records_of(meter)
    assert (record.model, record.status, record.output_bytes) == ("double", Status.OK, X_BYTES)
    assert record.tags["user"] == "bob"


def test_http_async_infer_records_at_get_result(server, meter):
    metered = meter.wrap_triton(httpclient.InferenceServerClient(server.http_url, concurrency=2))

    requests = [metered.async_infer("double", inputs_for(httpclient)) for _ in range(3)]
    failing = metered.async_infer("no-such-model", inputs_for(httpclient))
    results = [request.get_result() for request in requests]
    with pytest.raises(InferenceServerException):
        failing.get_result()

    for result in results:
        np.testing.assert_array_equal(result.as_numpy("y"), X * 2)
    records = records_of(meter)
    assert [r.status for r in records] == [Status.OK] * 3 + [Status.ERROR]
    assert [r.output_bytes for r in records] == [X_BYTES] * 3 + [0]


@pytest.mark.parametrize(("module", "url"), [(grpc_aio, "grpc_url"), (http_aio, "http_url")])
def test_asyncio_clients_are_metered(server, meter, module, url):
    async def main():
        async with meter.wrap_triton(module.InferenceServerClient(getattr(server, url))) as client:
            assert type(client).__name__ == "AsyncMeteredTritonClient"
            results = await asyncio.gather(*(client.infer("double", inputs_for(module)) for _ in range(4)))
            with pytest.raises(InferenceServerException):
                await client.infer("no-such-model", inputs_for(module))
            return results

    results = asyncio.run(main())

    for result in results:
        np.testing.assert_array_equal(result.as_numpy("y"), X * 2)
    records = records_of(meter)
    assert [r.status for r in records] == [Status.OK] * 4 + [Status.ERROR]
    assert all(r.cpu_time_ns == 0 and r.input_bytes == X_BYTES for r in records)


def test_grpc_stream_records_one_record_per_response(server, meter):
    metered = meter.wrap_triton(grpcclient.InferenceServerClient(server.grpc_url))
    answers: queue.Queue = queue.Queue()
    x = np.ones(4, dtype=np.float32)

    metered.start_stream(lambda result, error: answers.put((result, error)))
    for request_id in ("a", "b"):
        metered.async_stream_infer("twice", inputs_for(grpcclient, x), request_id=request_id, tags={"req": request_id})
    got = [answers.get(timeout=10) for _ in range(4)]
    metered.stop_stream()

    assert all(error is None for _, error in got)
    outputs = sorted((r.get_response().id, float(r.as_numpy("y")[0])) for r, _ in got)
    assert outputs == [("a", 1.0), ("a", 2.0), ("b", 1.0), ("b", 2.0)]
    records = records_of(meter)
    assert len(records) == 4
    for request_id in ("a", "b"):
        mine = [r for r in records if r.tags["req"] == request_id]
        # What was sent counts once, with the first response; every response brings its output.
        assert sorted(r.input_bytes for r in mine) == [0, x.nbytes]
        assert [r.output_bytes for r in mine] == [x.nbytes, x.nbytes]
        assert all(r.model == "twice" and r.status is Status.OK for r in mine)


def test_grpc_aio_stream_infer_records_one_record_per_response(server, meter):
    x = np.ones(4, dtype=np.float32)

    async def requests():
        for request_id in ("a", "b"):
            yield {"model_name": "twice", "inputs": inputs_for(grpc_aio, x), "request_id": request_id,
                   "tags": {"req": request_id}}

    async def main():
        async with meter.wrap_triton(grpc_aio.InferenceServerClient(server.grpc_url)) as client:
            answers = []
            async for result, error in client.stream_infer(requests()):
                answers.append((result, error))
                if len(answers) == 4:
                    break
            return answers

    answers = asyncio.run(main())

    assert all(error is None for _, error in answers)
    records = records_of(meter)
    assert sorted(r.tags["req"] for r in records) == ["a", "a", "b", "b"]
    assert sum(r.input_bytes for r in records) == 2 * x.nbytes


def test_everything_else_is_the_wrapped_client(server, meter):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    metered = meter.wrap_triton(client)

    assert isinstance(metered, grpcclient.InferenceServerClient)
    assert metered.is_model_ready("double") and metered.client is client
    with metered as entered:
        assert entered is metered
    with pytest.raises(ValueError, match="metered already"):
        meter.wrap_triton(metered)
    with pytest.raises(TypeError, match="InferenceServerClient"):
        meter.wrap_triton(object())
    with pytest.raises(TypeError):
        meter.wrap_triton(client, tags={"n": 1})


def test_calls_from_several_threads_are_each_recorded(server, meter):
    metered = meter.wrap_triton(grpcclient.InferenceServerClient(server.grpc_url))

    def calls(worker: int) -> None:
        for _ in range(10):
            metered.infer("double", inputs_for(grpcclient), tags={"worker": str(worker)})

    threads = [threading.Thread(target=calls, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    records = records_of(meter)
    assert sorted(r.tags["worker"] for r in records) == sorted(str(w) for w in range(4) for _ in range(10))
    assert all(r.status is Status.OK for r in records)


CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import tritonclient.http as httpclient
    from agent.meter import Meter

    buffer, url, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Meter(buffer) as meter:
        client = meter.wrap_triton(httpclient.InferenceServerClient(url))
        for _ in range(calls):
            value = httpclient.InferInput("x", [1, 3], "FP32")
            value.set_data_from_numpy(np.ones((1, 3), dtype=np.float32))
            client.infer("double", [value])
""")


def test_calls_from_several_processes_reach_one_buffer(server, buffer_path: Path):
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(buffer_path), server.http_url, "5"])
        for _ in range(3)
    ]
    assert [child.wait(timeout=60) for child in children] == [0, 0, 0]

    with Buffer.open(buffer_path) as buffer:
        records = buffer.read(limit=1000)
    assert len(records) == 15
    assert sorted({r.pid for r in records}) == sorted(child.pid for child in children)


def test_a_stream_error_after_a_response_is_recorded_as_a_failed_response(server, meter):
    metered = meter.wrap_triton(grpcclient.InferenceServerClient(server.grpc_url))
    answers: queue.Queue = queue.Queue()
    x = -np.ones(4, dtype=np.float32)

    metered.start_stream(lambda result, error: answers.put((result, error)))
    metered.async_stream_infer("twice", inputs_for(grpcclient, x), request_id="neg")
    (first, no_error), (no_result, error) = answers.get(timeout=10), answers.get(timeout=10)
    metered.stop_stream()

    assert no_error is None and no_result is None and isinstance(error, InferenceServerException)
    np.testing.assert_array_equal(first.as_numpy("y"), x)
    ok, failed = records_of(meter)
    assert (ok.status, ok.input_bytes, ok.output_bytes) == (Status.OK, x.nbytes, x.nbytes)
    assert (failed.status, failed.error_type, failed.input_bytes) == (Status.ERROR, "InferenceServerException", 0)


def test_a_long_call_is_seen_running_until_it_ends(server, meter):
    metered = meter.wrap_triton(grpcclient.InferenceServerClient(server.grpc_url))
    slow = np.full((1, 3), SLOW_MARK, dtype=np.float32)
    in_flight = meter.flusher.in_flight

    call = threading.Thread(target=metered.infer, args=("double", inputs_for(grpcclient, slow)))
    call.start()
    seen = None
    deadline = time.monotonic() + SLOW_S
    while seen is None and time.monotonic() < deadline:
        seen = in_flight.oldest_start_ns()
    call.join()

    # Energy attribution waits for calls that are running: this one was found on its thread.
    assert seen is not None
    assert in_flight.oldest_start_ns() is None
    [record] = records_of(meter)
    assert record.duration_ns >= SLOW_S * 1e9 * 0.9
