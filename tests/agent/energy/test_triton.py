"""Triton's nv_energy_consumption: real /metrics samples (tests/fixtures/triton/, sources in its
README), restarts, an unreachable server, garbage; and the urllib fetch against a local
HTTP server."""

from __future__ import annotations

import http.server
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.energy.sensor import DOMAIN_GPU, SOURCE_TRITON, Reading
from agent.energy.triton import (
    ENERGY_METRIC,
    POWER_LIMIT_METRIC,
    fetch_url,
    parse_gpu_metric,
    probe_triton,
)
from tests.agent.energy.conftest import MonotonicClock

FIXTURES = Path(__file__).parents[2] / "fixtures" / "triton"
URL = "http://localhost:8002/metrics"
T4 = "GPU-8331ed5e-e44e-72c7-fba5-ed5d48487989"
KURA_GPUS = ["GPU-340cec52-80ba-c0df-8511-5f9680aae0ed", "GPU-340cec52-80ba-c0df-8511-5f9680aae0ff"]
# The T4's power limit (70 W) times Triton's default metrics interval (2 s): the counter lags
# the GPU by up to one interval, so a step can be off by what the GPU draws in one.
T4_LAG_ERROR_UJ = 140_000_000
SECOND_NS = 1_000_000_000


def sample(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


BEFORE, AFTER = sample("sonic_t4_result1.txt"), sample("sonic_t4_result2.txt")




class Server:
    """Answers fetches from a script: a body, or an exception to raise; the last one repeats."""

    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)
        self.fetches = 0

    def __call__(self, url: str) -> str:
        answer = self.answers[min(self.fetches, len(self.answers) - 1)]
        self.fetches += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


def triton_log(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    names = {"agent.energy.triton", "agent.energy.sensor"}
    return [r.getMessage() for r in caplog.records if r.name in names and r.levelno >= level]


# ---- parsing real samples --------------------------------------------------------------------


def test_parses_the_energy_counter_of_a_real_scrape():
    assert parse_gpu_metric(BEFORE, ENERGY_METRIC) == {T4: 10918.654}
    assert parse_gpu_metric(AFTER, ENERGY_METRIC) == {T4: 21386.444}
    assert parse_gpu_metric(AFTER, POWER_LIMIT_METRIC) == {T4: 70.0}


def test_parses_every_gpu_and_only_the_metric_asked_for():
    text = sample("kura_two_gpus.txt")
    assert parse_gpu_metric(text, ENERGY_METRIC) == dict.fromkeys(KURA_GPUS, 320.387)
    assert parse_gpu_metric(text, "nv_gpu_power_usage") == dict.fromkeys(KURA_GPUS, 20.085)


def test_parses_values_written_without_fixed_decimals():
    text = sample("model_analyzer_remote_monitor.txt")
    uuid = "GPU-e35ba3d2-6eef-2bb9-e35c-6ef6eada4f11"
    assert parse_gpu_metric(text, ENERGY_METRIC) == {uuid: 1474.042}
    assert parse_gpu_metric(text, "nv_gpu_power_usage") == {uuid: 20.0}
    assert parse_gpu_metric(text, "nv_gpu_utilization") == {uuid: 0.5}


def test_the_sample_line_format():
    text = "\n".join(
        [
            "#HELP nv_energy_consumption written without the space",
            'nv_energy_consumption{gpu_uuid="GPU-a"} 1.5e+03 1700000000000',  # with a timestamp
            '  nv_energy_consumption { gpu_uuid = "GPU-b" , host="x" }  12 ',  # blanks, more labels
            'nv_energy_consumption{host="a \\"quoted\\" one",gpu_uuid="GPU-c"} 3',  # escapes
            'nv_energy_consumption_total{gpu_uuid="GPU-d"} 4',  # another metric
            'nv_energy_consumption{gpu_uuid="GPU-e"} NaN',
            'nv_energy_consumption{gpu_uuid="GPU-f"} +Inf',
            'nv_energy_consumption{gpu_uuid="GPU-g"} 1_000',
            'nv_energy_consumption{gpu_uuid="GPU-h"}',  # no value
            'nv_energy_consumption{gpu_uuid="GPU-i} 5',  # unterminated label
            "nv_energy_consumption 6",  # no gpu_uuid
            'nv_energy_consumption{gpu_uuid=""} 7',
        ]
    )
    assert parse_gpu_metric(text, ENERGY_METRIC) == {"GPU-a": 1500.0, "GPU-b": 12.0, "GPU-c": 3.0}


# ---- sensors ---------------------------------------------------------------------------------


def test_one_sensor_per_gpu_in_the_servers_order():
    sensors = probe_triton(URL, fetch=Server(sample("kura_two_gpus.txt")), clock_ns=MonotonicClock())
    assert [(s.name, s.domain, s.source) for s in sensors] == [
        (f"triton:{uuid}", DOMAIN_GPU, SOURCE_TRITON) for uuid in KURA_GPUS
    ]
    assert [s.gpu_uuid for s in sensors] == KURA_GPUS


def test_joules_become_microjoules_counted_since_the_sensor_was_created():
    clock = MonotonicClock()
    (sensor,) = probe_triton(URL, fetch=Server(BEFORE, BEFORE, AFTER), clock_ns=clock)

    clock.now_ns = 1 * SECOND_NS
    assert sensor.read() == Reading(f"triton:{T4}", 0, SECOND_NS, 0)
    clock.now_ns = 2 * SECOND_NS
    # 21386.444 J - 10918.654 J, the run of 100 inferences between the two real scrapes.
    assert sensor.read() == Reading(f"triton:{T4}", 10_467_790_000, 2 * SECOND_NS, T4_LAG_ERROR_UJ)


def test_the_gpus_of_one_server_share_a_scrape():
    clock = MonotonicClock()
    server = Server(sample("kura_two_gpus.txt"))
    first, second = probe_triton(URL, fetch=server, clock_ns=clock)
    for t_s in (1, 2, 3):
        clock.now_ns = t_s * SECOND_NS
        first.read()
        second.read()
    assert server.fetches == 1 + 3  # the probe's, then one per pass


def test_a_restarted_server_counts_from_its_new_value(caplog):
    caplog.set_level(logging.INFO)
    clock = MonotonicClock()
    (sensor,) = probe_triton(URL, fetch=Server(AFTER, AFTER, BEFORE, AFTER), clock_ns=clock)
    energies = []
    for t_s in (1, 2, 3):
        clock.now_ns = t_s * SECOND_NS
        energies.append(sensor.read().energy_uj)
    # 21386.444 J, then the restarted server's 10918.654 J since it started, then 10467.790 J.
    assert energies == [0, 10_918_654_000, 21_386_444_000]
    assert any("Triton restarted" in line for line in triton_log(caplog, logging.INFO))


def test_an_unreachable_server_reads_none_warns_once_and_is_retried_later(caplog):
    caplog.set_level(logging.INFO)
    clock = MonotonicClock()
    server = Server(BEFORE, BEFORE, ConnectionRefusedError(111, "Connection refused"), AFTER)
    (sensor,) = probe_triton(URL, fetch=server, clock_ns=clock)
    clock.now_ns = SECOND_NS
    assert sensor.read().energy_uj == 0

    readings = []
    for t_s in (2, 3, 4):  # down at 2 s; not asked again before 7 s
        clock.now_ns = t_s * SECOND_NS
        readings.append(sensor.read())
    assert readings == [None, None, None]
    assert server.fetches == 3
    warnings = triton_log(caplog, logging.WARNING)
    assert len(warnings) == 1 and URL in warnings[0] and "ConnectionRefusedError" in warnings[0]

    clock.now_ns = 8 * SECOND_NS  # back, and counting on from where it was
    assert sensor.read().energy_uj == 10_467_790_000


def test_an_unreachable_server_at_probe_time_gives_no_sensors(caplog):
    caplog.set_level(logging.INFO)
    assert probe_triton(URL, fetch=Server(TimeoutError("timed out")), clock_ns=MonotonicClock()) == []
    assert triton_log(caplog, logging.INFO) == [
        f"no Triton energy sensors: {URL} cannot be read (TimeoutError: timed out)"
    ]


@pytest.mark.parametrize(
    "garbage",
    [
        "<html><body>404 Not Found</body></html>",
        "",
        BEFORE.replace("nv_energy_consumption{", "nv_energy_consumption_j{"),
    ],
)
def test_a_server_without_the_energy_metric_gives_no_sensors(garbage):
    assert probe_triton(URL, fetch=Server(garbage), clock_ns=MonotonicClock()) == []


@pytest.mark.parametrize(
    "garbage",
    [
        "<html><body>502 Bad Gateway</body></html>",
        BEFORE[: BEFORE.index('nv_energy_consumption{gpu_uuid="GPU-8331') + 35],  # cut short
        BEFORE.replace("10918.654000", "-3.000000"),
        BEFORE.replace("10918.654000", "NaN"),
    ],
)
def test_garbage_mid_run_reads_none_then_counts_on(garbage, caplog):
    caplog.set_level(logging.INFO)
    clock = MonotonicClock()
    (sensor,) = probe_triton(URL, fetch=Server(BEFORE, BEFORE, garbage, AFTER), clock_ns=clock)
    energies = []
    for t_s in (1, 2, 3):
        clock.now_ns = t_s * SECOND_NS
        reading = sensor.read()
        energies.append(reading.energy_uj if reading else None)
    assert energies == [0, None, 10_467_790_000]
    assert len(triton_log(caplog, logging.WARNING)) == 1


def test_without_a_power_limit_the_step_has_no_bound():
    clock = MonotonicClock()
    no_limit = [line for line in AFTER.splitlines() if POWER_LIMIT_METRIC not in line]
    (sensor,) = probe_triton(
        URL, fetch=Server(*(["\n".join(no_limit)] * 2)), clock_ns=clock
    )
    clock.now_ns = SECOND_NS
    sensor.read()
    clock.now_ns = 2 * SECOND_NS
    assert sensor.read().error_uj == 0


# ---- the urllib fetch ------------------------------------------------------------------------


@pytest.fixture
def metrics_server() -> Iterator[str]:
    """A local HTTP server answering GET /metrics with a real Triton scrape."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = AFTER.encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_fetches_over_http_and_bypasses_environment_proxies(metrics_server, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert fetch_url(f"{metrics_server}/metrics") == AFTER
    (sensor,) = probe_triton(f"{metrics_server}/metrics")
    assert sensor.name == f"triton:{T4}"
    assert sensor.read().energy_uj == 0


def test_the_default_fetch_of_a_closed_port_gives_no_sensors(metrics_server):
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        closed_port = probe_socket.getsockname()[1]
    assert probe_triton(f"http://127.0.0.1:{closed_port}/metrics") == []
    assert probe_triton(f"{metrics_server}/not-metrics") == []  # HTTP 404
