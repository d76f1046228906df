"""A throwaway PKI for the TLS tests, made with the openssl command line: a CA, a server
certificate for localhost / 127.0.0.1 / collector.test, a client certificate, and a second,
untrusted CA with a client certificate of its own. EC P-256 keys, valid for a day."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVER_NAMES = "DNS:localhost,DNS:collector.test,IP:127.0.0.1"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_ca: Path  # trusted by no one here
    stranger_cert: Path  # a client certificate the stranger CA signed
    stranger_key: Path


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _make_ca(directory, "ca")
    stranger_ca, stranger_ca_key = _make_ca(directory, "stranger-ca")
    server_cert, server_key = _make_leaf(directory, "server", ca, ca_key, f"serverAuth\nsubjectAltName={SERVER_NAMES}")
    client_cert, client_key = _make_leaf(directory, "client", ca, ca_key, "clientAuth")
    stranger_cert, stranger_key = _make_leaf(directory, "stranger", stranger_ca, stranger_ca_key, "clientAuth")
    return Pki(ca, server_cert, server_key, client_cert, client_key, stranger_ca, stranger_cert, stranger_key)


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "1", "-subj", f"/CN=infermeter test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )
    return cert, key


def _make_leaf(directory: Path, name: str, ca: Path, ca_key: Path, usage: str) -> tuple[Path, Path]:
    """A certificate `ca` signed; `usage` is its extendedKeyUsage, then any further extension lines."""
    cert, key, request = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        f"extendedKeyUsage={usage}\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", request, "-subj", f"/CN=infermeter test {name}",
    )
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "1", "-extfile", extensions,
    )
    return cert, key
