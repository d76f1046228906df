"""Meter.wrap_onnx: a drop-in session whose runs land in the buffer with the right fields."""

from __future__ import annotations

import multiprocessing
import os
import traceback
from pathlib import Path

import numpy as np
import pytest

from agent import Meter
from agent.onnx_session import MeteredSession
from agent.record import InvalidRecord, Kind, Status
from collector.demo.model import INPUT_NAME, OUTPUT_NAME
from tests.agent.conftest import FakeClock, read_records, single_thread_session

ort = pytest.importorskip("onnxruntime")


def test_run_returns_what_the_bare_session_returns(meter, tiny_session, feed):
    metered = meter.wrap_onnx(tiny_session)

    for names in ([OUTPUT_NAME], None):
        expected = tiny_session.run(names, feed)
        got = metered.run(names, feed)
        assert len(got) == len(expected)
        for ours, theirs in zip(got, expected):
            assert ours.dtype == theirs.dtype
            np.testing.assert_array_equal(ours, theirs)


def test_run_with_ort_values_returns_what_the_bare_session_returns(meter, tiny_session, features):
    metered = meter.wrap_onnx(tiny_session)
    inputs = {INPUT_NAME: ort.OrtValue.ortvalue_from_numpy(features)}

    got = metered.run_with_ort_values([OUTPUT_NAME], inputs)
    expected = tiny_session.run_with_ort_values([OUTPUT_NAME], inputs)

    assert all(isinstance(value, ort.OrtValue) for value in got)
    np.testing.assert_array_equal(got[0].numpy(), expected[0].numpy())
    meter.flush()
    (record,) = read_records(meter.buffer_path)
    assert (record.batch_size, record.input_bytes, record.output_bytes) == (3, 3 * 16 * 4, 3 * 4 * 4)


def test_run_with_iobinding_is_metered(meter, tiny_session, features):
    metered = meter.wrap_onnx(tiny_session)
    binding = metered.io_binding()
    binding.bind_cpu_input(INPUT_NAME, features)
    binding.bind_output(OUTPUT_NAME)

    assert metered.run_with_iobinding(binding) is None
    np.testing.assert_array_equal(
        binding.copy_outputs_to_cpu()[0], tiny_session.run([OUTPUT_NAME], {INPUT_NAME: features})[0]
    )
    meter.flush()
    (record,) = read_records(meter.buffer_path)
    assert record.status is Status.OK
    assert (record.batch_size, record.input_bytes, record.output_bytes) == (0, 0, 0)


def test_everything_else_is_the_wrapped_session(meter, tiny_session):
    metered = meter.wrap_onnx(tiny_session)

    assert isinstance(metered, ort.InferenceSession)
    assert isinstance(metered, MeteredSession)
    assert metered.session is tiny_session
    assert [i.name for i in metered.get_inputs()] == [i.name for i in tiny_session.get_inputs()]
    assert [o.name for o in metered.get_outputs()] == [OUTPUT_NAME]
    assert metered.get_providers() == tiny_session.get_providers()
    assert metered.get_modelmeta().graph_name == "tiny_mlp"
    assert "get_inputs" in dir(metered) and "run" in dir(metered)
    with pytest.raises(AttributeError):
        metered.no_such_attribute


@pytest.mark.parametrize(
    "bad_feed",
    [
        {INPUT_NAME: np.ones((2, 3), np.float32)},  # wrong shape
        {INPUT_NAME: np.ones((2, 16), np.float64)},  # wrong dtype
        {"unknown": np.ones((2, 16), np.float32)},  # unknown input name
    ],
    ids=["shape", "dtype", "name"],
)
def test_model_errors_propagate_unchanged_and_are_recorded(meter, tiny_session, bad_feed):
    metered = meter.wrap_onnx(tiny_session)
    with pytest.raises(Exception) as bare:
        tiny_session.run([OUTPUT_NAME], bad_feed)

    with pytest.raises(Exception) as ours:
        metered.run([OUTPUT_NAME], bad_feed)

    assert type(ours.value) is type(bare.value)
    assert str(ours.value) == str(bare.value)
    meter.flush()
    (record,) = read_records(meter.buffer_path)
    assert record.status is Status.ERROR
    assert record.error_type == type(bare.value).__name__
    assert record.output_bytes == 0


class FailingSession:
    """The smallest session-like object: raises one given exception object."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def run(self, output_names, input_feed, run_options=None):
        raise self.error

    run_with_ort_values = run

    def run_with_iobinding(self, iobinding, run_options=None):
        raise self.error

    def get_providers(self):
        return ["CPUExecutionProvider"]


def test_the_exception_is_the_same_object_with_its_traceback(meter):
    error = RuntimeError("model broke")
    metered = meter.wrap_onnx(FailingSession(error), model="m")

    with pytest.raises(RuntimeError) as raised:
        metered.run(None, {})

    assert raised.value is error
    innermost = traceback.extract_tb(raised.value.__traceback__)[-1]
    assert innermost.name == "run" and innermost.line == "raise self.error"


def test_base_exceptions_are_recorded_and_propagate(meter):
    metered = meter.wrap_onnx(FailingSession(KeyboardInterrupt()), model="m")
    with pytest.raises(KeyboardInterrupt):
        metered.run(None, {})
    meter.flush()
    assert read_records(meter.buffer_path)[0].error_type == "KeyboardInterrupt"


def test_record_fields(meter, tiny_session, feed, clock: FakeClock):
    metered = meter.wrap_onnx(tiny_session, model="resnet50", version="3", tags={"user": "alice"})

    metered.run([OUTPUT_NAME], feed)
    assert meter.flush()

    (record,) = read_records(meter.buffer_path)
    assert record.seq == 1
    assert record.kind is Kind.INFERENCE
    assert (record.model, record.model_version) == ("resnet50", "3")
    assert (record.runtime, record.execution_provider) == ("onnxruntime", "CPUExecutionProvider")
    assert (record.batch_size, record.input_bytes, record.output_bytes) == (3, 3 * 16 * 4, 3 * 4 * 4)
    assert record.start_unix_ns == FakeClock.WALL_START_NS + clock.perf_step_ns
    assert record.duration_ns == clock.perf_step_ns
    assert record.cpu_time_ns == clock.cpu_step_ns
    assert (record.status, record.error_type) == (Status.OK, "")
    assert record.tags == {"project": "search", "user": "alice"}
    assert (record.pid, record.count) == (os.getpid(), 1)
    assert (record.input_tokens, record.output_tokens, record.gpu_time_ns) == (0, 0, 0)


def test_real_clocks_give_plausible_times(buffer_path, tiny_session, feed):
    with Meter(buffer_path, start_thread=False) as meter:
        meter.wrap_onnx(tiny_session).run(None, feed)
    (record,) = read_records(buffer_path)
    assert 0 < record.duration_ns < 10**10
    assert 0 <= record.cpu_time_ns
    assert abs(record.start_unix_ns - __import__("time").time_ns()) < 60 * 10**9


def test_two_inputs_sum_their_bytes_and_metadata_names_the_model(meter, two_input_model_bytes):
    metered = meter.wrap_onnx(single_thread_session(two_input_model_bytes))
    a = np.ones((5, 3), np.float32)

    metered.run(None, {"a": a, "b": a})
    meter.flush()

    (record,) = read_records(meter.buffer_path)
    assert record.model == "adder"  # custom metadata: no file path, generic graph name
    assert (record.batch_size, record.input_bytes, record.output_bytes) == (5, 120, 60)


def test_model_name_defaults(meter, tiny_model_path, tiny_session):
    assert meter.wrap_onnx(tiny_session).static_fields.model == "tiny_mlp"  # file stem
    from_bytes = single_thread_session(tiny_model_path.read_bytes())
    assert meter.wrap_onnx(from_bytes).static_fields.model == "tiny_mlp"  # graph name
    assert meter.wrap_onnx(FailingSession(RuntimeError())).static_fields.model == "unknown"


def test_tags_merge_meter_then_session_then_call(meter, tiny_session, feed):
    metered = meter.wrap_onnx(tiny_session, tags={"user": "alice", "tier": "free"})

    metered.run(None, feed)
    metered.run(None, feed, tags={"tier": "paid", "request": "r-1"})
    metered.run(None, feed, tags={"project": "ads"})
    meter.flush()

    assert [r.tags for r in read_records(meter.buffer_path)] == [
        {"project": "search", "user": "alice", "tier": "free"},
        {"project": "search", "user": "alice", "tier": "paid", "request": "r-1"},
        {"project": "ads", "user": "alice", "tier": "free"},
    ]


def test_per_call_tags_are_copied_at_the_call(meter, tiny_session, feed):
    metered = meter.wrap_onnx(tiny_session)
    tags = {"user": "alice"}
    metered.run(None, feed, tags=tags)
    tags["user"] = "bob"
    meter.flush()
    assert read_records(meter.buffer_path)[0].tags["user"] == "alice"


@pytest.mark.parametrize(
    "bad_tags", [{"user": 7}, {3: "x"}, {"user": "a\x00b"}, {"": "x"}]
)
def test_bad_per_call_tags_are_counted_and_the_record_keeps_its_session_tags(
    meter, tiny_session, feed, bad_tags
):
    metered = meter.wrap_onnx(tiny_session, tags={"user": "alice"})

    outputs = metered.run(None, feed, tags=bad_tags)
    meter.flush()

    assert outputs[0].shape == (3, 4)
    assert [r.tags for r in read_records(meter.buffer_path)] == [{"project": "search", "user": "alice"}]
    assert meter.stats().errors == 1


def test_per_call_tags_that_are_not_a_mapping_are_counted(meter, tiny_session, feed):
    metered = meter.wrap_onnx(tiny_session)
    assert metered.run(None, feed, tags=42)[0].shape == (3, 4)
    meter.flush()
    assert [r.tags for r in read_records(meter.buffer_path)] == [{"project": "search"}]
    assert meter.stats().errors == 1


@pytest.mark.parametrize(
    ("tags", "error"),
    [
        ({"user": 1}, TypeError),
        ({1: "alice"}, TypeError),
        ("user=alice", TypeError),
        ({"user": "x" * 300}, ValueError),
        ({"us\ner": "alice"}, ValueError),
        ({f"k{i}": "v" for i in range(64)}, InvalidRecord),  # 64 + the meter's 1 > MAX_TAGS
    ],
)
def test_bad_static_tags_fail_at_wrap_time(meter, tiny_session, tags, error):
    with pytest.raises(error):
        meter.wrap_onnx(tiny_session, tags=tags)


def test_bad_model_or_version_fail_at_wrap_time(meter, tiny_session):
    with pytest.raises(ValueError):
        meter.wrap_onnx(tiny_session, model="")
    with pytest.raises(ValueError):
        meter.wrap_onnx(tiny_session, version="1\n2")


def test_bad_meter_tags_fail_at_construction(buffer_path):
    with pytest.raises(TypeError):
        Meter(buffer_path, tags={"project": None})


def test_a_metered_session_is_not_wrapped_twice(meter, tiny_session):
    with pytest.raises(ValueError, match="metered already"):
        meter.wrap_onnx(meter.wrap_onnx(tiny_session))


def _load_and_run_twice(model_path: str, buffer_path: str) -> list[tuple[str, str, int, int]]:
    """In a fresh process: load the model through a Meter, run it twice, and return each
    record's (model, version, model_resident_bytes, peak_rss_bytes)."""
    meter = Meter(buffer_path, start_thread=False)
    try:
        metered = meter.load_onnx(model_path, providers=["CPUExecutionProvider"], version="1")
        for _ in range(2):
            metered.run(None, {"x": np.ones((1, 2048), np.float32)})
        meter.flush()
    finally:
        meter.close()
    return [(r.model, r.model_version, r.memory.model_resident_bytes, r.memory.peak_rss_bytes)
            for r in read_records(Path(buffer_path))]


def test_load_onnx_measures_what_loading_added_and_every_record_carries_it(tmp_path):
    # 32 MB of weights: loading them raises the process's RSS by at least that much. In a fresh
    # process, so that no memory freed by earlier tests is there for the weights to reuse.
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).random((2048, 4096), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2048])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4096])], initializer=[weights],
    )
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        records = pool.apply(_load_and_run_twice, (str(path), str(tmp_path / "buffer.db")))

    assert [(model, version) for model, version, _, _ in records] == [("big", "1")] * 2
    resident = {resident for _, _, resident, _ in records}
    assert len(resident) == 1 and resident.pop() >= 32 * 2**20
    assert all(peak_rss == 0 for _, _, _, peak_rss in records)  # the daemon samples those


def test_wrap_onnx_refuses_a_bad_resident_size(meter, tiny_session):
    for bad in (-1, 1.5, "10"):
        with pytest.raises(ValueError, match="model_resident_bytes"):
            meter.wrap_onnx(tiny_session, model_resident_bytes=bad)
