"""Fixtures for the metering library: real onnxruntime sessions, a fixed clock, a Meter whose
flusher the test drives by hand (no background thread, no sleeps)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.buffer import Buffer
from agent.meter import Meter
from agent.record import UsageRecord
from collector.demo.model import INPUT_NAME, INPUT_WIDTH, MODEL_PATH
from tests.agent.daemon_process import DaemonProcess, holding_collector

ort = pytest.importorskip("onnxruntime")


class FakeClock:
    """Every read of the monotonic and CPU clocks advances them by a fixed step, so durations
    are exact and predictable: a call measures one step of each (start and end are consecutive
    reads). The wall clock runs with the monotonic one, WALL_START_NS ahead of it."""

    WALL_START_NS = 1_700_000_000 * 10**9

    def __init__(self, *, perf_step_ns: int = 1_000, cpu_step_ns: int = 400) -> None:
        self.perf_ns = 0
        self.cpu_ns = 0
        self.perf_step_ns = perf_step_ns
        self.cpu_step_ns = cpu_step_ns

    def time_ns(self) -> int:
        return self.WALL_START_NS + self.perf_ns

    def perf_counter_ns(self) -> int:
        self.perf_ns += self.perf_step_ns
        return self.perf_ns

    def thread_time_ns(self) -> int:
        self.cpu_ns += self.cpu_step_ns
        return self.cpu_ns


def read_records(path: Path) -> list[UsageRecord]:
    with Buffer.open(path) as buffer:
        return buffer.read(limit=1_000_000)


def single_thread_session(path: Path | str | bytes) -> ort.InferenceSession:
    # One intra-op thread: a tiny model gains nothing from more, and a forked child cannot
    # use a thread pool that was started in its parent.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """collector/demo/tiny_mlp.onnx: input "features" float32 [batch, 16] -> "scores" [batch, 4]."""
    return MODEL_PATH


@pytest.fixture
def tiny_session(tiny_model_path: Path) -> ort.InferenceSession:
    return single_thread_session(tiny_model_path)


@pytest.fixture
def features() -> np.ndarray:
    return np.random.default_rng(7).random((3, INPUT_WIDTH), dtype=np.float32)


@pytest.fixture
def feed(features: np.ndarray) -> dict[str, np.ndarray]:
    return {INPUT_NAME: features}


@pytest.fixture(scope="session")
def two_input_model_bytes() -> bytes:
    """A model adding "a" float32 [n, 3] and "b" float32 [n, 3] into "sum", named by metadata."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])],
        "main_graph",  # what exporters write by default: not a usable model name
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 3]),
        ],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["n", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {"name": "adder"})
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture
def buffer_path(tmp_path: Path) -> Path:
    return tmp_path / "buffer.db"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def meter(buffer_path: Path, clock: FakeClock) -> Iterator[Meter]:
    """A Meter with no flusher thread: tests write with meter.flush() / flusher.run_once()."""
    meter = Meter(buffer_path, tags={"project": "search"}, start_thread=False, clock=clock)
    yield meter
    meter.close()


@pytest.fixture
def collector():
    with holding_collector() as served:
        yield served


@pytest.fixture
def start_daemon(tmp_path):
    started: list[DaemonProcess] = []

    def start(config: Path, **kwargs: object) -> DaemonProcess:
        daemon = DaemonProcess(tmp_path, config, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()
