"""Meter.span: any unit of work, with tokens, as a SPAN record."""

from __future__ import annotations

import numpy as np
import pytest

from agent.record import Kind, Status
from tests.agent.conftest import FakeClock, read_records


def test_span_records_tokens_and_times(meter, clock: FakeClock):
    with meter.span("my-llm", tags={"user": "alice"}, version="2024-06") as span:
        span.set_tokens(input=120, output=512)
        span.set_batch_size(4)
        span.set_bytes(input=1_000, output=2_000)
    assert meter.flush()

    (record,) = read_records(meter.buffer_path)
    assert (record.kind, record.runtime, record.execution_provider) == (Kind.SPAN, "span", "")
    assert (record.model, record.model_version) == ("my-llm", "2024-06")
    assert (record.input_tokens, record.output_tokens) == (120, 512)
    assert (record.batch_size, record.input_bytes, record.output_bytes) == (4, 1_000, 2_000)
    assert record.duration_ns == clock.perf_step_ns
    assert record.cpu_time_ns == clock.cpu_step_ns
    assert record.start_unix_ns == FakeClock.WALL_START_NS + clock.perf_step_ns
    assert (record.status, record.error_type) == (Status.OK, "")
    assert record.tags == {"project": "search", "user": "alice"}


def test_set_tokens_keeps_the_side_left_out(meter):
    with meter.span("llm") as span:
        span.set_tokens(input=10)
        span.set_tokens(output=np.int64(20))
    meter.flush()
    (record,) = read_records(meter.buffer_path)
    assert (record.input_tokens, record.output_tokens) == (10, 20)


def test_an_exception_in_the_block_is_recorded_and_propagates(meter):
    error = TimeoutError("upstream timed out")
    with pytest.raises(TimeoutError) as raised:
        with meter.span("llm") as span:
            span.set_tokens(input=5)
            raise error

    assert raised.value is error
    meter.flush()
    (record,) = read_records(meter.buffer_path)
    assert (record.status, record.error_type, record.input_tokens) == (Status.ERROR, "TimeoutError", 5)


@pytest.mark.parametrize("value", [-1, 1.5, "12", True, [3], 2**63])
def test_bad_counter_values_are_counted_not_raised(meter, value):
    with meter.span("llm") as span:
        span.set_tokens(input=3)
        span.set_tokens(input=value)
    meter.flush()
    assert read_records(meter.buffer_path)[0].input_tokens == 3
    assert meter.stats().errors == 1


@pytest.mark.parametrize(
    ("name", "tags", "error"),
    [("", None, ValueError), ("llm", {"user": 3}, TypeError), ("llm", ["user"], TypeError)],
)
def test_bad_span_setup_fails_at_creation(meter, name, tags, error):
    with pytest.raises(error):
        meter.span(name, tags=tags)


def test_span_tags_override_meter_tags(meter):
    with meter.span("llm", tags={"project": "ads"}):
        pass
    with meter.span("llm"):
        pass
    meter.flush()
    assert [r.tags for r in read_records(meter.buffer_path)] == [{"project": "ads"}, {"project": "search"}]


def test_a_span_never_entered_records_nothing(meter):
    meter.span("llm")
    meter.flush()
    assert read_records(meter.buffer_path) == []
    assert meter.stats().recorded == 0
