"""Fixtures of the reliability tests: deployments on loopback (tests.integration.deployment),
producers metering the bundled ONNX model into their buffers, and proxies; whatever a test
leaves running is stopped after it."""

from __future__ import annotations

import onnxruntime
import pytest

from collector.demo.model import MODEL_PATH
from tests.integration.deployment import Deployment
from tests.reliability.proxy import Proxy
from tests.reliability.stream import Producer


@pytest.fixture(scope="session")
def session():
    return onnxruntime.InferenceSession(str(MODEL_PATH), providers=["CPUExecutionProvider"])


@pytest.fixture
def deployments(tmp_path):
    """make(**config) -> a Deployment in the test's folder; every one is stopped afterwards."""
    made: list[Deployment] = []

    def make(**config) -> Deployment:
        workdir = tmp_path / f"deployment-{len(made)}"
        workdir.mkdir()
        made.append(Deployment(workdir, **config))
        return made[-1]

    yield make
    for deployment in made:
        deployment.stop()


@pytest.fixture
def deployment(deployments):
    return deployments()


@pytest.fixture
def proxies():
    """make(seed=...) -> a started Proxy (set its upstream); every one is closed afterwards."""
    made: list[Proxy] = []

    def make(*, seed: int = 0) -> Proxy:
        made.append(Proxy(seed=seed).start())
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


@pytest.fixture
def produce(session):
    """produce(deployment, rate_per_s=..., chunk=...) -> a started Producer metering into the
    deployment's buffer; one the test did not stop is stopped afterwards."""
    made: list[Producer] = []

    def make(deployment: Deployment, **knobs) -> Producer:
        made.append(Producer(deployment.buffer_path, session, **knobs).start())
        return made[-1]

    yield make
    for producer in made:
        producer.abandon()
