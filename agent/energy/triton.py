"""A local Triton Inference Server's GPU energy, read from its Prometheus metrics endpoint.

Triton exports nv_energy_consumption{gpu_uuid="GPU-..."}: joules per GPU since the server
started, a counter it advances from DCGM's total energy field (millijoules) once every
--metrics-interval-ms, 2000 ms by default (triton-inference-server/core, src/metrics.cc). One
sensor per GPU, "triton:<gpu uuid>"; the sensors of one server share each scrape.

A server restart starts the counter from zero again, so a value below the last one counts from
the new value. What the old server counted after its last scrape is lost, and so is a restart
that the new counter outgrew before the next scrape. The counter lags the GPU by up to one
metrics interval, so the error bound of a step is the most the GPU can draw in one interval:
its power limit (nv_gpu_power_limit, from the same scrape) times the interval.

The text is parsed by a small parser for exactly these sample lines rather than by
prometheus_client's: that is not an agent dependency, the agent's install stays light, and the
parsing behaves the same everywhere.
"""

from __future__ import annotations

import functools
import http.client
import logging
import re
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from agent.energy.sensor import DOMAIN_GPU, SOURCE_TRITON, Reading, Sensor, WarnOnce

logger = logging.getLogger(__name__)

DEFAULT_METRICS_URL = "http://localhost:8002/metrics"
ENERGY_METRIC = "nv_energy_consumption"  # joules since the server started, per gpu_uuid
POWER_LIMIT_METRIC = "nv_gpu_power_limit"  # watts, per gpu_uuid
DEFAULT_METRICS_INTERVAL_MS = 2_000  # tritonserver --metrics-interval-ms
_MAX_BODY_BYTES = 16 * 1024 * 1024
_FETCH_ERRORS = (OSError, http.client.HTTPException, ValueError)

Fetch = Callable[[str], str]  # url -> body; raises OSError (or HTTPException) when it cannot


def fetch_url(url: str, *, timeout_s: float = 0.5) -> str:
    """The body of a GET of url. Proxies from the environment are bypassed: the server is
    local, and a proxy would answer for it or hang."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout_s) as response:
        return response.read(_MAX_BODY_BYTES).decode("utf-8", "replace")


# ---- the text format, for exactly the samples read here -------------------------------------

_SAMPLE = re.compile(
    r"(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)[ \t]*(?:\{(?P<labels>.*)\})?"
    r"[ \t]+(?P<value>\S+)(?:[ \t]+-?\d+)?[ \t]*"  # value, then an optional timestamp (ms)
)
_LABEL = re.compile(r'[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(?:,|$)')
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")  # no NaN, Inf or 1_000


def parse_gpu_metric(text: str, metric: str) -> dict[str, float]:
    """One per-GPU metric's samples in Prometheus text format: {gpu_uuid: value}. Comments,
    other metrics, lines that do not parse, samples without a gpu_uuid label and values that
    are not finite numbers are skipped."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(metric):
            continue
        sample = _SAMPLE.fullmatch(line)
        if sample is None or sample["name"] != metric or not _NUMBER.fullmatch(sample["value"]):
            continue
        uuid = _labels(sample["labels"] or "").get("gpu_uuid")
        if uuid:
            values[uuid] = float(sample["value"])
    return values


def _labels(text: str) -> dict[str, str]:
    labels, position = {}, 0
    while position < len(text):
        label = _LABEL.match(text, position)
        if label is None:
            return {}
        labels[label[1]] = re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], label[2])
        position = label.end()
    return labels


# ---- the endpoint and its sensors ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scrape:
    t_ns: int
    energy_j: dict[str, float]
    power_limit_w: dict[str, float]


class _Endpoint:
    """One server's metrics, fetched at most once per max_age_ns however many GPU sensors read
    them, and not retried for retry_after_ns after a failure (a hung server must not stall
    every sampler pass for a whole timeout)."""

    def __init__(
        self,
        url: str,
        fetch: Fetch,
        clock_ns: Callable[[], int],
        *,
        max_age_ns: int = 50_000_000,
        retry_after_ns: int = 5_000_000_000,
    ) -> None:
        self.url = url
        self._fetch = fetch
        self._clock_ns = clock_ns
        self._max_age_ns = max_age_ns
        self._retry_after_ns = retry_after_ns
        self._last: _Scrape | None = None
        self._retry_at_ns: int | None = None
        self.error = ""

    def scrape(self) -> _Scrape | None:
        now_ns = self._clock_ns()
        if self._last is not None and now_ns - self._last.t_ns < self._max_age_ns:
            return self._last
        if self._retry_at_ns is not None and now_ns < self._retry_at_ns:
            return None
        try:
            text = self._fetch(self.url)
        except _FETCH_ERRORS as error:
            self.error = f"{type(error).__name__}: {error}"
            self._last, self._retry_at_ns = None, now_ns + self._retry_after_ns
            return None
        self._retry_at_ns = None
        energy_j = parse_gpu_metric(text, ENERGY_METRIC)
        power_limit_w = parse_gpu_metric(text, POWER_LIMIT_METRIC)
        self._last = _Scrape(self._clock_ns(), energy_j, power_limit_w)
        return self._last


class TritonEnergySensor:
    """One GPU's nv_energy_consumption, read as the microjoules counted since this sensor was
    created."""

    domain = DOMAIN_GPU
    source = SOURCE_TRITON

    def __init__(
        self,
        endpoint: _Endpoint,
        gpu_uuid: str,
        *,
        metrics_interval_ms: int = DEFAULT_METRICS_INTERVAL_MS,
    ) -> None:
        self.name = f"triton:{gpu_uuid}"
        self.gpu_uuid = gpu_uuid
        self._endpoint = endpoint
        self._metrics_interval_ms = metrics_interval_ms
        self._warn = WarnOnce(self.name)
        self._last_uj: int | None = None
        self._total_uj = 0
        self._power_limit_w: float | None = None

    def read(self) -> Reading | None:
        scrape = self._endpoint.scrape()
        if scrape is None:
            endpoint = self._endpoint
            self._warn("unreachable", "%s cannot be read: %s", endpoint.url, endpoint.error)
            return None
        energy_j = scrape.energy_j.get(self.gpu_uuid)
        if energy_j is None or energy_j < 0:
            url = self._endpoint.url
            self._warn("missing", "%s has no usable %s for this GPU", url, ENERGY_METRIC)
            return None
        self._power_limit_w = scrape.power_limit_w.get(self.gpu_uuid, self._power_limit_w)
        value_uj = round(energy_j * 1_000_000)
        error_uj = 0
        if self._last_uj is not None:
            delta_uj = value_uj - self._last_uj
            if delta_uj < 0:  # the server restarted, its counter from zero
                logger.info("%s: the counter went down (Triton restarted); counting on", self.name)
                delta_uj = value_uj
            self._total_uj += delta_uj
            error_uj = self._lag_error_uj()
        self._last_uj = value_uj
        return Reading(self.name, self._total_uj, scrape.t_ns, error_uj)

    def _lag_error_uj(self) -> int:
        if self._power_limit_w is None:  # never reported: no bound to give
            return 0
        return round(self._power_limit_w * self._metrics_interval_ms * 1_000)  # W * ms = mJ


def probe_triton(
    url: str = DEFAULT_METRICS_URL,
    *,
    fetch: Fetch | None = None,
    clock_ns: Callable[[], int] = time.monotonic_ns,
    timeout_s: float = 0.5,
    metrics_interval_ms: int = DEFAULT_METRICS_INTERVAL_MS,
) -> list[Sensor]:
    """One sensor per GPU that the Triton server at url reports energy for, in the server's
    order, or [] (logged at info) when it cannot be read or reports none. Never raises."""
    if fetch is None:
        fetch = functools.partial(fetch_url, timeout_s=timeout_s)
    endpoint = _Endpoint(url, fetch, clock_ns)
    scrape = endpoint.scrape()
    if scrape is None:
        logger.info("no Triton energy sensors: %s cannot be read (%s)", url, endpoint.error)
        return []
    if not scrape.energy_j:
        logger.info("no Triton energy sensors: %s has no %s samples", url, ENERGY_METRIC)
        return []
    sensors: list[Sensor] = [
        TritonEnergySensor(endpoint, uuid, metrics_interval_ms=metrics_interval_ms)
        for uuid in scrape.energy_j
    ]
    for sensor in sensors:
        logger.info("energy sensor %s: from %s", sensor.name, url)
    return sensors
