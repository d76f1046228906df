"""The real agent daemon and collector processes over TLS and mutual TLS, and a device token
rotated while a producer meters a stream: every record arrives exactly once, the agent writes
the new token to its token file, and once it pushes with it the old one is refused."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
import time

import grpc
import pytest
from infermeter.v1 import ingest_pb2, ingest_pb2_grpc

from tests.collector.certs import make_pki, openssl_available
from tests.reliability.stream import check_exactly_once, wait_until_delivered

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not openssl_available(), reason="the openssl command makes the test certificates"),
]


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


def tls_deployment(deployments, pki, *, mutual: bool):
    server = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    client = f'tls_ca_file = "{pki.ca}"\n'
    if mutual:
        server += ["--tls-client-ca", str(pki.ca)]
        client += f'tls_cert_file = "{pki.client_cert}"\ntls_key_file = "{pki.client_key}"\n'
    return deployments(energy=False, collector_args=server, agent_collector_toml=client, https_ca=pki.ca)


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
def test_a_stream_over_tls_arrives_exactly_once(mutual, deployments, produce, pki):
    deployment = tls_deployment(deployments, pki, mutual=mutual)
    deployment.start_collector()
    deployment.start_agent()
    producer = produce(deployment, rate_per_s=1000)
    producer.wait_until_committed(1500)
    oracle = producer.stop()
    wait_until_delivered(deployment, len(oracle))

    check_exactly_once(deployment, oracle, cpu_cores=os.cpu_count())
    # The same port refuses a plaintext client.
    with grpc.insecure_channel(deployment.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            push_nothing(channel, deployment.device.token)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


def test_a_rotated_token_reaches_the_device_file_and_retires_the_old_one(deployments, produce, pki):
    deployment = tls_deployment(deployments, pki, mutual=False)
    deployment.start_collector()
    deployment.start_agent()
    producer = produce(deployment, rate_per_s=1000)
    producer.wait_until_committed(500)
    old_token = deployment.token_file.read_text().strip()

    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "admin", "device", "rotate", "edge-1", "--db", deployment.db_url],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    wait_for(lambda: deployment.token_file.read_text().strip() != old_token, "the new token in the token file")
    new_token = deployment.token_file.read_text().strip()
    assert new_token.startswith("imd_")
    assert stat.S_IMODE(deployment.token_file.stat().st_mode) == 0o600
    # The agent pushes with the new token from now on, which retires the old one.
    wait_for(lambda: not rotating(deployment), "the rotation to finish")
    producer.wait_until_committed(producer.committed() + 500)
    oracle = producer.stop()
    wait_until_delivered(deployment, len(oracle))

    check_exactly_once(deployment, oracle, cpu_cores=os.cpu_count())
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(deployment.grpc_address, credentials) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            push_nothing(channel, old_token)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        push_nothing(channel, new_token)
    assert "rotated this device's token" in (deployment.workdir / "agent.log").read_text()


def push_nothing(channel: grpc.Channel, token: str) -> None:
    """A Push of one record in a stream of its own (the test's, not the agent's)."""
    from tests.collector.helpers import make_record, push_request

    request = push_request([make_record(1)], stream_id=secrets.token_hex(16))
    reply = ingest_pb2_grpc.IngestStub(channel).Push(
        request, metadata=[("authorization", f"Bearer {token}")], timeout=10
    )
    assert isinstance(reply, ingest_pb2.PushResponse)


def rotating(deployment) -> bool:
    (device,) = [d for d in deployment.get_json("/api/v1/devices")["devices"] if d["name"] == "edge-1"]
    return device["rotating"]


def wait_for(condition, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.05)
