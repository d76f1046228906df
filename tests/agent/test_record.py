"""Record validation: validate_all (the collector's batch check) agrees with validate, record by
record, on the verdict and on the first error."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.record import (
    INT64_MAX,
    MAX_START_UNIX_NS,
    MIN_START_UNIX_NS,
    EnergyShare,
    InvalidRecord,
    Kind,
    Memory,
    Status,
    UsageRecord,
    validate,
    validate_all,
)

GOOD = UsageRecord(
    seq=1, kind=Kind.INFERENCE, model="resnet50", start_unix_ns=MIN_START_UNIX_NS + 10**18,
    duration_ns=2_000_000, model_version="3", runtime="onnxruntime",
    execution_provider="CPUExecutionProvider", batch_size=4, input_bytes=100, output_bytes=10,
    cpu_time_ns=1_500_000, tags={"project": "search"}, pid=42,
)

# Per field: values that break it, and odd but valid values that a batch check must not refuse.
BAD_VALUES = {
    "seq": [0, -1, INT64_MAX + 1, True, 1.0, "1"],
    "kind": [0, 9, None],
    "status": [0, 3],
    "model": ["", "a\x00b", "x" * 257, 5, None],
    "model_version": ["\n", "v" * 257, b"3"],
    "runtime": ["on\x7fnx"],
    "error_type": [3],
    "start_unix_ns": [0, MIN_START_UNIX_NS - 1, MAX_START_UNIX_NS, 1.5],
    "duration_ns": [-1, 31 * 86_400 * 10**9 + 1, False],
    "batch_size": [-1, INT64_MAX + 1, True, 2.0],
    "cpu_time_ns": [-5, "5"],
    "count": [0, -1],
    "gpu_time_ns": [INT64_MAX + 1],
    "tags": [
        {"": "x"}, {"k": "\x00"}, {"k" * 129: "v"}, {"k": "v" * 257}, {"k": 1}, {1: "v"},
        {f"k{i}": "v" for i in range(65)}, ["not", "a", "mapping"], {"k": ["unhashable"]},
    ],
    "energy": [(EnergyShare("cpu", -1, "rapl", "cpu-time"),), [EnergyShare("cpu", 1, "rapl", "cpu-time")]],
    "memory": [Memory(peak_rss_bytes=-1)],
}
ODD_BUT_VALID = {
    "kind": [Kind.IDLE],
    "model": [""],  # with kind IDLE
    "count": [0],  # with kind IDLE
    "tags": [{}, {"ключ": "значение"}, {f"k{i}": "v" for i in range(64)}],
    "energy": [(EnergyShare("cpu", 5_000, "rapl", "cpu-time", 100_000_000, 50),)],
    "memory": [Memory(1, 2, 3)],
    "seq": [INT64_MAX],
}


def _outcome(check, records):
    try:
        check(records)
    except InvalidRecord as err:
        return (err.seq, err.field, err.reason)
    return None


def _one_by_one(records):
    for record in records:
        validate(record)


@st.composite
def batches(draw):
    size = draw(st.integers(1, 6))
    records = []
    for i in range(size):
        record = dataclasses.replace(GOOD, seq=i + 1, tags=dict(GOOD.tags))
        for name in draw(st.lists(st.sampled_from(sorted(BAD_VALUES)), max_size=2)):
            pool = BAD_VALUES[name] + ODD_BUT_VALID.get(name, [])
            setattr(record, name, draw(st.sampled_from(pool)))
        if draw(st.booleans()):
            record.kind, record.model, record.count = Kind.IDLE, draw(st.sampled_from(["", "m"])), 0
        records.append(record)
    return records


@settings(max_examples=600, deadline=None)
@given(batches())
def test_validate_all_agrees_with_validate_one_by_one(records):
    assert _outcome(validate_all, records) == _outcome(_one_by_one, records)


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_each_bad_value_is_named_with_its_field_and_seq(name):
    for value in BAD_VALUES[name]:
        records = [dataclasses.replace(GOOD, seq=seq) for seq in (1, 2, 3)]
        setattr(records[1], name, value)
        seq, field, _ = _outcome(validate_all, records)
        if name == "seq":  # a bad seq that is an int names itself; one that is not, none
            assert seq == (value if type(value) is int else None), value
        else:
            assert seq == 2, value
        assert field.split(".")[0] == name, (value, field)


def test_a_valid_batch_passes_with_its_odd_values():
    records = [dataclasses.replace(GOOD, seq=1)]
    for name, values in sorted(ODD_BUT_VALID.items()):
        for value in values:
            record = dataclasses.replace(GOOD, seq=len(records) + 1, kind=Kind.IDLE if name in ("model", "count") else GOOD.kind)
            setattr(record, name, value)
            records.append(record)
    records[-1].seq = INT64_MAX
    assert _outcome(validate_all, records) is None
    assert _outcome(_one_by_one, records) is None


def test_an_empty_batch_is_valid():
    validate_all([])


def test_status_error_with_its_type_is_valid():
    record = dataclasses.replace(GOOD, status=Status.ERROR, error_type="RuntimeError")
    validate_all([record])
