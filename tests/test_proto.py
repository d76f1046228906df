"""The generated protobuf code committed under proto/ matches the .proto sources."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools (dev extra) not installed")
def test_generated_code_is_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--check"], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, f"regenerate with `python proto/generate.py`:\n{result.stderr}"


def test_domain_enums_match_the_protocol():
    from infermeter.v1 import usage_pb2

    from agent.record import Kind, Status

    assert {k.name: k.value for k in Kind} == {
        name.removeprefix("RECORD_KIND_"): value
        for name, value in usage_pb2.RecordKind.items() if value
    }
    assert {s.name: s.value for s in Status} == {
        name.removeprefix("STATUS_"): value for name, value in usage_pb2.Status.items() if value
    }
