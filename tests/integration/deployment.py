"""A deployment on loopback for the end-to-end tests: one collector database with one device
registered in it, the agent's config, and the real collector and agent daemon processes
(collector.demo.processes), which tests start, stop and kill -9."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import ssl
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from agent.failpoints import ENV as FAILPOINTS_ENV
from agent.record import Kind
from collector.demo import processes
from collector.store import Store

INFERENCE, IDLE = int(Kind.INFERENCE), int(Kind.IDLE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with values set, for the child processes started inside the block."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Deployment:
    """One collector database, one device registered in it, and the processes that run them.

    collector_address: where the agent ships (a proxy's address), if not straight to the
    collector. energy: the daemon samples and attributes energy before shipping (records
    wait about a second); idle energy becomes a record every round."""

    def __init__(
        self,
        workdir: Path,
        *,
        collector_address: str | None = None,
        energy: bool = True,
        batch_size: int = 200,
        timeout_s: float = 5,
        buffer_max_mb: float | None = None,
        collector_dir: Path | None = None,
        buffer_dir: Path | None = None,
        collector_args: Sequence[str] = (),
        agent_collector_toml: str = "",
        https_ca: Path | None = None,
    ) -> None:
        """collector_dir, buffer_dir: where the collector's database and the device buffer
        go (a small file system, say), instead of workdir. collector_args: more options of
        `collector serve` (TLS); agent_collector_toml: more lines of the agent's [collector];
        https_ca: the HTTP API is HTTPS, its certificate signed by this CA."""
        self.collector_args = tuple(collector_args)
        self.https = None if https_ca is None else ssl.create_default_context(cafile=str(https_ca))
        self.workdir = workdir
        self.db_path = (collector_dir or workdir) / "collector.db"
        self.db_url = f"sqlite:///{self.db_path}"
        self.buffer_path = (buffer_dir or workdir) / "buffer.db"
        self.grpc_address = f"127.0.0.1:{free_port()}"
        self.http_address = f"127.0.0.1:{free_port()}"
        store = Store.open(self.db_url)
        self.device = store.add_device("edge-1")
        self.viewer_token = store.add_admin_token("viewer", name="tests").token
        store.close()
        token_file = self.token_file = workdir / "device.token"
        token_file.write_text(self.device.token)
        self.config = workdir / "agent.toml"
        self.config.write_text(
            f'buffer = "{self.buffer_path}"\n'
            + (f"buffer_max_mb = {buffer_max_mb}\n" if buffer_max_mb is not None else "")
            + f'[collector]\naddress = "{collector_address or self.grpc_address}"\n'
            f'token_file = "{token_file}"\ntimeout_s = {timeout_s}\n{agent_collector_toml}'
            f"[shipper]\nbatch_size = {batch_size}\ninterval_s = 0.1\nbackoff_initial_s = 0.05\nbackoff_max_s = 0.5\n"
            + ("[energy]\nidle_record_s = 0\n" if energy else "[energy]\nenabled = false\n")
        )
        self.collector: processes.Collector | None = None
        self.agent = None

    def start_collector(self, *, failpoints: str = "") -> None:
        """Start the collector (on the same ports every time); failpoints: agent.failpoints."""
        with environment({FAILPOINTS_ENV: failpoints}):
            self.collector = processes.start_collector(
                self.db_url, self.workdir, grpc_address=self.grpc_address, http_address=self.http_address,
                extra_args=self.collector_args,
            )

    def start_agent(self, *, failpoints: str = "") -> None:
        with environment({FAILPOINTS_ENV: failpoints}):
            self.agent = processes.start_agent(self.config, self.workdir)

    def costs(self, group_by: str = "") -> dict:
        return self.get_json("/api/v1/costs" + (f"?group_by={group_by}" if group_by else ""))

    def get_json(self, path: str) -> dict:
        """GET the collector's HTTP API at path, with a viewer token."""
        url = f"{'http' if self.https is None else 'https'}://{self.http_address}{path}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.viewer_token}"})
        with urllib.request.urlopen(request, timeout=10, context=self.https) as response:
            return json.load(response)

    def wait_for(self, expected: int, timeout_s: float = 60) -> int:
        """Wait until the collector holds `expected` inferences; the number it holds."""
        deadline = time.monotonic() + timeout_s
        while True:
            have = self.costs()["total_inferences"]
            if have >= expected or time.monotonic() > deadline:
                return have
            time.sleep(0.1)

    def stored_rows(self, columns: str = "stream_id, seq, model, duration_ns, cpu_time_ns, batch_size, compute_cost_pico",
                    *, kind: int | None = INFERENCE) -> list[tuple]:
        """The collector's rows of one kind (inference by default; None: all), in seq order.
        Read from its database file, so this works while the collector is down too."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        where = "" if kind is None else f" WHERE kind = {kind}"
        try:
            return conn.execute(f"SELECT {columns} FROM records{where} ORDER BY stream_id, seq").fetchall()
        finally:
            conn.close()

    def stored_count(self, *, kind: int = INFERENCE) -> int:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute("SELECT count(*) FROM records WHERE kind = ?", (kind,)).fetchone()[0]
        finally:
            conn.close()

    def buffered_count(self, *, kind: int = INFERENCE) -> int:
        """Records of one kind waiting in the device buffer."""
        conn = sqlite3.connect(self.buffer_path, timeout=30)
        try:
            return conn.execute("SELECT count(*) FROM records WHERE kind = ?", (kind,)).fetchone()[0]
        finally:
            conn.close()

    def buffer_integrity(self) -> str:
        """PRAGMA integrity_check of the device buffer: "ok", or what is wrong."""
        conn = sqlite3.connect(self.buffer_path, timeout=30)
        try:
            return "\n".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
        finally:
            conn.close()

    def buffer_file_bytes(self) -> int:
        """The buffer's size on disk: the database file and its WAL."""
        return sum(
            path.stat().st_size
            for path in (self.buffer_path, self.buffer_path.with_name(self.buffer_path.name + "-wal"))
            if path.exists()
        )

    def stop(self) -> None:
        if self.agent is not None:
            processes.stop(self.agent)
        if self.collector is not None:
            processes.stop(self.collector.process)

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{(self.workdir / name).read_text(errors='replace')[-3000:]}"
            for name in ("collector.log", "agent.log") if (self.workdir / name).exists()
        )
