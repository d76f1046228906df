"""The daemon's /metrics: `infermeter agent run` with [metrics] listen, scraped over HTTP while
records wait for a collector that holds its answers, and after it lets them through."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families

from agent.buffer import Buffer
from agent.config import ConfigError, load_config
from agent.metrics import METRIC_NAMES
from tests.agent.buffer_helpers import append, make_record
from tests.agent.daemon_process import DaemonProcess, holding_collector, write_config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(address: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


def wait_until(address: str, check, timeout_s: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            samples = scrape(address)
        except OSError:
            samples = None
        if samples is not None and check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached; last scrape: {samples}")
        time.sleep(0.1)


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_backlog_equals_the_records_waiting_and_shipping_is_counted(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    with holding_collector() as (collector, collector_address):
        collector.release.clear()  # the first push waits: everything behind it waits in the buffer
        config = write_config(tmp_path, collector_address)
        config.write_text(config.read_text() + f'[metrics]\nlisten = "{address}"\n')
        with Buffer.open(tmp_path / "buffer.db") as buffer:
            append(buffer, [make_record(seq) for seq in range(1, 26)])
        daemon = DaemonProcess(tmp_path, config)
        try:
            assert collector.arrived.wait(15)
            samples = wait_until(address, lambda s: ("infermeter_agent_buffer_records", ()) in s)
            with Buffer.open(tmp_path / "buffer.db") as buffer:
                waiting = buffer.stats().records
            assert value(samples, "infermeter_agent_buffer_records") == waiting == 25
            assert value(samples, "infermeter_agent_buffer_bytes") >= (tmp_path / "buffer.db").stat().st_size > 0
            assert value(samples, "infermeter_agent_shipped_records_total") == 0
            collector.release.set()
            samples = wait_until(address, lambda s: value(s, "infermeter_agent_buffer_records") == 0)
            samples = wait_until(address, lambda s: value(s, "infermeter_agent_shipped_records_total") == 25)
            assert value(samples, "infermeter_agent_ship_seconds_count") >= 1
            assert value(samples, "infermeter_agent_ship_failures_total", reason="retry") == 0
            exported = {name for name, _ in samples}
            assert not {name for name in exported if not name.endswith("_created")} - set(METRIC_NAMES)
            assert {
                "infermeter_agent_buffer_records", "infermeter_agent_buffer_bytes", "infermeter_agent_compactions_total",
                "infermeter_agent_gap_records_total", "infermeter_agent_dropped_records_total",
                "infermeter_agent_shipped_records_total", "infermeter_agent_ship_seconds_bucket",
                "infermeter_agent_heartbeats_total", "infermeter_agent_ship_failures_total",
            } <= exported
        finally:
            assert daemon.stop() == 0


def test_metric_names_are_those_exported(tmp_path):
    """METRIC_NAMES (which the Grafana dashboard's test relies on) is what a scrape shows, for
    a buffer with a sensor sample and a budget."""
    from agent.budgets import BudgetState
    from agent.metrics import AgentMetrics

    with Buffer.open(tmp_path / "buffer.db") as buffer:
        append(buffer, [make_record(seq) for seq in range(1, 4)])
        with buffer.transaction() as conn:
            conn.execute(
                "INSERT INTO energy_samples VALUES (7, ?, 'rapl:package-0', 'cpu', 'rapl', 1, 0, 0)",
                (time.monotonic_ns() - 10**9,),
            )
    budget = BudgetState("b1", "fleet", "global", "block", "exceeded", "USD", "money", 0, 0.0, 0)
    metrics = AgentMetrics(tmp_path / "buffer.db", sensors=["rapl:package-0", "nvml:0"], boot=7)
    metrics.follow_budgets(lambda: (budget,))
    port = free_port()
    metrics.serve(f"127.0.0.1:{port}")
    samples = scrape(f"127.0.0.1:{port}")
    assert value(samples, "infermeter_agent_buffer_records") == 3
    assert value(samples, "infermeter_agent_sensor_readable", sensor="rapl:package-0") == 1
    assert value(samples, "infermeter_agent_sensor_readable", sensor="nvml:0") == 0
    assert 0.9 < value(samples, "infermeter_agent_sensor_sample_age_seconds", sensor="rapl:package-0") < 60
    assert value(samples, "infermeter_agent_budget_state", budget="fleet", state="exceeded", action="block") == 1
    names = {name for name, _ in samples if not name.endswith("_created")}
    assert names == set(METRIC_NAMES)


@pytest.mark.parametrize("listen", ["9464", "localhost:", "127.0.0.1:99999"])
def test_a_bad_listen_address_is_refused(tmp_path, listen):
    config = tmp_path / "agent.toml"
    config.write_text(f'[metrics]\nlisten = "{listen}"\n')
    with pytest.raises(ConfigError, match="metrics.listen"):
        load_config(config, env={})
