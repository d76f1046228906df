"""The server-side join: in the daemon, before energy attribution, gives the records of Triton
client calls their share of what the local Triton server reported doing for their model.

Each run reads the server's statistics (agent.triton_stats). What the server did between two
reads (per model: requests, inferences, queue and compute times) is shared out over the
records of that model whose calls ended between the two reads, less `settle_ns`: records
reach the buffer within a flush round of their call, so the cut trails the read a little.
Every metered process on the device writes to the same buffer, so calls from several processes
are joined together. The shares are in proportion to batch size (Triton's inference count),
exactly, on integers (the largest-remainder split of agent.energy.attribution):

    share of a record = its batch size / max(inferences the server counted, the records' batch sizes)

so the records' times never add up to more than the server reported, and what callers that do
not meter (other devices, other tools) made the server do is left out. Failed calls get no share
(the server counts failures apart). Provenance: source "triton-statistics", method
"batch-share", the interval between the reads.

When the server runs models on GPUs (its metrics endpoint reports GPUs), a record's share of
compute_infer is also its GPU time, so that GPU energy (the triton-metrics sensor, or NVML) is
split over the records by GPU time; the model's GPU memory on the server goes with the shares.

A read that fails is logged once per streak and skipped: the next read covers the whole time
since the last good one. Records that arrive after their interval was shared out, and records
of a model the server did not report, keep no server-side figures (counted in the report).
"""

from __future__ import annotations

import functools
import http.client
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from agent.boot import boot_key
from agent.buffer import Buffer, encode_server
from agent.config import AgentConfig, ConfigError
from agent.energy.attribution import apportion
from agent.energy.triton import fetch_url, parse_gpu_metric
from agent.record import ServerSide, Status
from agent.triton_client import RUNTIME
from agent.triton_stats import (
    ModelTotals,
    difference,
    fetch_statistics,
    parse_statistics,
)

logger = logging.getLogger(__name__)

SOURCE = "triton-statistics"
METHOD = "batch-share"
# Metrics that say the server has GPUs (one sample per GPU).
_GPU_METRICS = ("nv_gpu_utilization", "nv_energy_consumption", "nv_gpu_memory_total_bytes")
_READ_ERRORS = (OSError, http.client.HTTPException, ValueError)

Fetch = Callable[[], str]


@dataclass(slots=True)
class JoinReport:
    records: int = 0  # records given server-side figures in this run
    unmatched: int = 0  # records of a model the server reported nothing for in their interval


@dataclass(frozen=True, slots=True)
class _Read:
    cut_ns: int
    totals: dict[str, ModelTotals]


class TritonJoin:
    def __init__(
        self,
        buffer: Buffer,
        statistics: Fetch,
        *,
        boot: int,
        metrics: Fetch | None = None,
        settle_ns: int = 200_000_000,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """statistics: returns the body of the server's statistics (agent.triton_stats
        fetch_statistics, bound to its URL); metrics: its Prometheus metrics, read to tell
        whether it has GPUs (None: it has none)."""
        self._buffer = buffer
        self._statistics = statistics
        self._metrics = metrics
        self._boot = boot
        self._settle_ns = settle_ns
        self._clock_ns = clock_ns
        self._last: _Read | None = None
        self._failing = False
        self.has_gpus: bool | None = None if metrics is not None else False

    def run_once(self) -> JoinReport:
        report = JoinReport()
        read = self._read()
        if read is None:
            return report
        last, self._last = self._last, read
        if last is None:  # the first read: what came before it is not known per interval
            return report
        interval_ns = read.cut_ns - last.cut_ns
        rows = self._buffer.query(
            # attributed = 0: only records energy attribution has not finished (through its
            # partial index: a backlog waiting for the collector is not scanned every round).
            "SELECT seq, model, batch_size FROM records WHERE attributed = 0 AND runtime = ? AND boot = ?"
            " AND server IS NULL AND status = ? AND start_mono_ns + duration_ns > ?"
            " AND start_mono_ns + duration_ns <= ? ORDER BY seq",
            (RUNTIME, self._boot, int(Status.OK), last.cut_ns, read.cut_ns),
        )
        by_model: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for seq, model, batch_size in rows:
            by_model[model].append((seq, max(batch_size, 1)))
        updates = []
        for model, records in by_model.items():
            done = difference(read.totals[model], last.totals.get(model)) if model in read.totals else None
            if done is None or done.requests == 0:
                report.unmatched += len(records)
                continue
            updates += self._shares(done, records, interval_ns)
        if updates:
            with self._buffer.transaction() as conn:
                conn.executemany("UPDATE records SET server = ?, gpu_time_ns = gpu_time_ns + ? WHERE seq = ?", updates)
        report.records = len(updates)
        return report

    def _shares(self, done: ModelTotals, records: list[tuple[int, int]], interval_ns: int) -> list[tuple]:
        """(server JSON, GPU time, seq) per record: the records' shares of done."""
        weights = [weight for _, weight in records]
        others = max(done.inferences - sum(weights), 0)  # what callers that do not meter asked for
        split = {
            name: apportion(getattr(done, name), [*weights, others])
            for name in ("queue_ns", "compute_input_ns", "compute_infer_ns", "compute_output_ns")
        }
        updates = []
        for index, (seq, _) in enumerate(records):
            server = ServerSide(
                queue_ns=split["queue_ns"][index], compute_input_ns=split["compute_input_ns"][index],
                compute_infer_ns=split["compute_infer_ns"][index], compute_output_ns=split["compute_output_ns"][index],
                gpu_memory_bytes=done.gpu_memory_bytes, source=SOURCE, method=METHOD, interval_ns=interval_ns,
            )
            gpu_time_ns = server.compute_infer_ns if self.has_gpus else 0
            updates.append((encode_server(server), gpu_time_ns, seq))
        return updates

    def _read(self) -> _Read | None:
        now_ns = self._clock_ns()
        try:
            totals = parse_statistics(self._statistics())
            if self.has_gpus is None and self._metrics is not None:
                text = self._metrics()
                self.has_gpus = any(parse_gpu_metric(text, metric) for metric in _GPU_METRICS)
        except _READ_ERRORS as err:
            if not self._failing:
                logger.warning("cannot read the Triton server's statistics (%s); retrying every round", err)
            self._failing = True
            return None
        if self._failing:
            logger.info("the Triton server's statistics can be read again")
            self._failing = False
        return _Read(now_ns - self._settle_ns, totals)


def triton_join_tasks(config: AgentConfig, buffer: Buffer) -> list[TritonJoin]:
    """The daemon's join task, with triton.statistics_url set (and the server's metrics, where
    energy.triton_metrics_url names them, to tell whether it has GPUs); none without.
    ConfigError for a triton.statistics_header that is not KEY=VALUE."""
    if not config.triton_statistics_url:
        return []
    headers = {}
    if config.triton_statistics_header:
        name, equals, value = config.triton_statistics_header.partition("=")
        if not equals or not name.strip():
            raise ConfigError("triton.statistics_header must be KEY=VALUE")
        headers[name.strip()] = value
    metrics = functools.partial(fetch_url, config.triton_metrics_url) if config.triton_metrics_url else None
    statistics = functools.partial(fetch_statistics, config.triton_statistics_url, headers=headers)
    logger.info("joining Triton client records with %s's statistics", config.triton_statistics_url)
    return [TritonJoin(buffer, statistics, boot=boot_key(), metrics=metrics)]
