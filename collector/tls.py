"""The collector's TLS: one certificate and key for both servers, and optionally a CA whose
certificates devices must present on gRPC (mutual TLS).

The files are read and checked once, at start, so that a wrong path or a key that does not
match its certificate stops the collector with one clear line instead of failing handshakes.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc


class TlsError(ValueError):
    """The TLS files cannot be used; the message names the file."""


@dataclass(frozen=True)
class ServerTls:
    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None  # None: clients are not asked for certificates
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None

    @classmethod
    def load(cls, cert_file: Path, key_file: Path, client_ca_file: Path | None = None) -> ServerTls:
        """Read and check the PEM files. OSError for a file that cannot be read; TlsError for
        one that is not what it should be."""
        tls = cls(
            _read(cert_file), _read(key_file), _read(client_ca_file) if client_ca_file else None,
            cert_file, key_file, client_ca_file,
        )
        tls.ssl_context()  # the checks: parse everything now, not at the first handshake
        return tls

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """For HTTPS. Clients are not asked for certificates here: operators and browsers
        authenticate with admin tokens; mutual TLS is the devices' (gRPC's) option."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except ssl.SSLError as err:
            raise TlsError(
                f"{self.cert_file} and {self.key_file} are not a PEM certificate and its private key: {err.reason or err}"
            ) from None
        if self.client_ca_file is not None:
            try:
                ssl.create_default_context(cadata=self.client_ca.decode("ascii", "replace"))
            except (ssl.SSLError, ValueError) as err:
                raise TlsError(f"{self.client_ca_file} holds no PEM CA certificate: {err}") from None
        return context


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise OSError(f"cannot read {path}: {err.strerror}") from None


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
