"""TLS on the real servers: a device pushes over the channel agent.exporter.open_channel builds
from its configuration, a client that does not speak TLS or does not trust the collector's CA
gets nowhere, with a client CA (mutual TLS) gRPC refuses clients without a certificate that CA
signed, and HTTPS serves the API. The certificates are made for each test session."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest

from agent.cli import main
from agent.config import AgentConfig
from agent.exporter import DeviceInfo, ExportResult, GrpcExporter, open_channel
from collector.tls import ServerTls, TlsError
from tests.collector.certs import Pki, make_pki, openssl_available
from tests.collector.helpers import STREAM_ID, ServersThread, bearer, make_record

pytestmark = pytest.mark.skipif(not openssl_available(), reason="the openssl command makes the test certificates")


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_servers(store, pki):
    with ServersThread(store, tls=ServerTls.load(pki.server_cert, pki.server_key)) as running:
        yield running


@pytest.fixture
def mtls_servers(store, pki):
    with ServersThread(store, tls=ServerTls.load(pki.server_cert, pki.server_key, pki.ca)) as running:
        yield running


def export_one(address: str, token: str, seq: int = 1, *, on_new_token=None, **tls) -> ExportResult:
    """Push record `seq` as the agent does: a channel from the agent's configuration (tls: its
    tls_* settings), the GrpcExporter over it; the outcome's result."""
    config = AgentConfig(collector_address=address, token=token, timeout_s=5.0, **tls)
    channel = open_channel(config)
    try:
        exporter = GrpcExporter(
            channel, config.device_token, device=DeviceInfo("edge-1", 4, "linux", "0.1.0"), timeout_s=5.0,
            on_new_token=on_new_token,
        )
        return exporter.export(STREAM_ID, [make_record(seq)]).result
    finally:
        channel.close()


# gRPC


def test_a_device_pushes_over_tls(tls_servers, store, device, pki):
    result = export_one(tls_servers.grpc_address, device.token, tls_ca_file=pki.ca)

    assert result is ExportResult.SUCCESS
    assert store.device("edge-1").records == 1


@pytest.mark.parametrize("server_name, result", [
    ("collector.test", ExportResult.SUCCESS),  # a name in the certificate
    ("elsewhere.test", ExportResult.RETRY),  # not in it: the handshake fails
])
def test_the_server_name_to_expect_can_be_set(tls_servers, store, device, pki, server_name, result):
    assert export_one(tls_servers.grpc_address, device.token, tls_ca_file=pki.ca, tls_server_name=server_name) is result


def test_a_plaintext_client_gets_nowhere(tls_servers, store, device):
    assert export_one(tls_servers.grpc_address, device.token) is ExportResult.RETRY
    assert store.device("edge-1").records == 0


def test_a_client_that_does_not_trust_the_collectors_ca_gets_nowhere(tls_servers, store, device, pki):
    assert export_one(tls_servers.grpc_address, device.token, tls_ca_file=pki.stranger_ca) is ExportResult.RETRY
    assert store.device("edge-1").records == 0


def test_mtls_refuses_a_client_without_a_certificate(mtls_servers, store, device, pki):
    assert export_one(mtls_servers.grpc_address, device.token, tls_ca_file=pki.ca) is ExportResult.RETRY
    assert store.device("edge-1").records == 0


def test_mtls_refuses_a_certificate_another_ca_signed(mtls_servers, store, device, pki):
    result = export_one(
        mtls_servers.grpc_address, device.token,
        tls_ca_file=pki.ca, tls_cert_file=pki.stranger_cert, tls_key_file=pki.stranger_key,
    )

    assert result is ExportResult.RETRY
    assert store.device("edge-1").records == 0


def test_mtls_accepts_a_certificate_the_client_ca_signed(mtls_servers, store, device, pki):
    result = export_one(
        mtls_servers.grpc_address, device.token,
        tls_ca_file=pki.ca, tls_cert_file=pki.client_cert, tls_key_file=pki.client_key,
    )

    assert result is ExportResult.SUCCESS
    assert store.device("edge-1").records == 1


def test_mtls_still_needs_the_device_token(mtls_servers, store, device, pki):
    """A certificate says the client may connect; which device it is comes from the token."""
    result = export_one(
        mtls_servers.grpc_address, "imd_" + "A" * 43,
        tls_ca_file=pki.ca, tls_cert_file=pki.client_cert, tls_key_file=pki.client_key,
    )

    assert result is ExportResult.AUTH_FAILED


def test_a_rotated_token_reaches_the_exporter_over_tls(tls_servers, store, device, pki):
    store.rotate_device(device.device_id)
    handed: list[str] = []

    assert export_one(tls_servers.grpc_address, device.token, tls_ca_file=pki.ca, on_new_token=handed.append) \
        is ExportResult.SUCCESS
    assert export_one(tls_servers.grpc_address, handed[0], 2, tls_ca_file=pki.ca) is ExportResult.SUCCESS

    assert export_one(tls_servers.grpc_address, device.token, 3, tls_ca_file=pki.ca) is ExportResult.AUTH_FAILED
    assert not store.device("edge-1").rotating


# HTTPS


def https_get(url: str, token: str, *, cafile) -> tuple[int, dict]:
    context = ssl.create_default_context(cafile=str(cafile))
    request = urllib.request.Request(url, headers=bearer(token))
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return response.status, json.load(response)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_https_serves_the_api(tls_servers, store, device, viewer_token, pki, host):
    assert export_one(tls_servers.grpc_address, device.token, tls_ca_file=pki.ca) is ExportResult.SUCCESS
    port = tls_servers.servers.http_address.rsplit(":", 1)[1]

    status, body = https_get(f"https://{host}:{port}/api/v1/costs", viewer_token, cafile=pki.ca)

    assert tls_servers.http_url.startswith("https://")
    assert (status, body["total_records"]) == (200, 1)


def test_https_needs_no_client_certificate_under_mtls(mtls_servers, viewer_token, pki):
    """Client certificates are the devices' option (gRPC); operators authenticate with tokens."""
    status, body = https_get(f"{mtls_servers.http_url}/api/v1/devices", viewer_token, cafile=pki.ca)

    assert status == 200 and body == {"devices": []}


def test_https_is_refused_to_a_client_that_does_not_trust_the_ca(tls_servers, viewer_token, pki):
    with pytest.raises(urllib.error.URLError) as caught:
        https_get(f"{tls_servers.http_url}/api/v1/costs", viewer_token, cafile=pki.stranger_ca)

    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)


def test_plain_http_to_the_https_port_gets_no_api(tls_servers, viewer_token):
    url = tls_servers.http_url.replace("https://", "http://") + "/api/v1/costs"

    # aiohttp answers a plaintext request on a TLS socket with a 400 or just closes it.
    with pytest.raises((urllib.error.HTTPError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(urllib.request.Request(url, headers=bearer(viewer_token)), timeout=10)


# Loading the files


def test_load_names_a_missing_file(pki, tmp_path):
    with pytest.raises(OSError, match="missing.key"):
        ServerTls.load(pki.server_cert, tmp_path / "missing.key")


def test_load_refuses_a_key_of_another_certificate(pki):
    with pytest.raises(TlsError, match="not a PEM certificate and its private key"):
        ServerTls.load(pki.server_cert, pki.client_key)


def test_load_refuses_a_client_ca_that_is_no_certificate(pki, tmp_path):
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")

    with pytest.raises(TlsError, match="holds no PEM CA certificate"):
        ServerTls.load(pki.server_cert, pki.server_key, not_pem)


@pytest.mark.parametrize("flags, says", [
    (["--tls-client-ca", "ca.pem"], "--tls-client-ca needs --tls-cert and --tls-key"),
    (["--tls-cert", "server.pem"], "--tls-cert and --tls-key go together"),
    (["--tls-key", "server.key"], "--tls-cert and --tls-key go together"),
])
def test_serve_refuses_incomplete_tls_flags(tmp_path, capsys, flags, says):
    code = main(["collector", "serve", "--db", f"sqlite:///{tmp_path / 'c.db'}", *flags])

    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert says in err and err.count("\n") == 1
    assert not (tmp_path / "c.db").exists()
