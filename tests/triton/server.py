"""A real Triton Inference Server for the tests: PyTriton's bundled tritonserver, serving
Python-function models on the CPU.

    double   FP32 [batch, n] -> y = 2x (batching up to 16), taking about COMPUTE_S a call
             (SLOW_S when the first element is at least SLOW_MARK)
    twice    a decoupled model: two responses per request (y = x, then y = 2x); for a
             negative first element, the first response and then an error

The statistics extension is restricted to requests that carry STATISTICS_HEADER (as PyTriton
does by default, with a token of its own), so that the daemon's reads show they send it.
"""

from __future__ import annotations

import os
import socket
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest

pytriton = pytest.importorskip("pytriton", reason="nvidia-pytriton (the test's Triton server) is not installed")

from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

COMPUTE_S = 0.002
# An input whose first element is SLOW_MARK or more takes SLOW_S instead (a long call).
SLOW_MARK = 1000.0
SLOW_S = 0.5
# What the server requires of a statistics request (tritonserver --http-restricted-api).
STATISTICS_HEADER = ("triton-access-token", "statistics-reader")


@dataclass(frozen=True)
class Server:
    http_url: str  # host:port, as tritonclient.http takes it
    grpc_url: str
    metrics_url: str  # the full URL of /metrics

    @property
    def statistics_url(self) -> str:
        return f"http://{self.http_url}"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@batch
def _double(x):
    time.sleep(SLOW_S if x.flat[0] >= SLOW_MARK else COMPUTE_S)
    return {"y": x * 2}


def _twice(requests):
    for request in requests:
        yield [{"y": request["x"]}]
        if request["x"][0] < 0:
            raise ValueError("negative input")
        yield [{"y": request["x"] * 2}]


@contextmanager
def running_server() -> Iterator[Server]:
    """Start the server with both models; stopped on exit."""
    http_port, grpc_port, metrics_port = free_ports(3)
    config = TritonConfig(
        http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, log_verbose=0,
        exit_timeout_secs=1,
    )
    # The Python backend's stub must load this interpreter's libpython, not another one the
    # system has (a pyenv Python beside the system's).
    libdir = sysconfig.get_config_var("LIBDIR") or os.path.join(sys.prefix, "lib")
    previous = os.environ.get("LD_LIBRARY_PATH")
    os.environ["LD_LIBRARY_PATH"] = libdir if not previous else f"{libdir}:{previous}"
    try:
        security = TritonSecurityConfig(access_token=STATISTICS_HEADER[1], restricted_endpoints=["statistics"])
        with Triton(config=config, security_config=security) as triton:
            vector = [Tensor(name="x", dtype=np.float32, shape=(-1,))]
            triton.bind(
                model_name="double", infer_func=_double, inputs=vector,
                outputs=[Tensor(name="y", dtype=np.float32, shape=(-1,))], config=ModelConfig(max_batch_size=16),
            )
            triton.bind(
                model_name="twice", infer_func=_twice, inputs=vector,
                outputs=[Tensor(name="y", dtype=np.float32, shape=(-1,))],
                config=ModelConfig(batching=False, decoupled=True),
            )
            triton.run()
            yield Server(f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        if previous is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = previous
