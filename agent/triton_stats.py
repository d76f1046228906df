"""A Triton Inference Server's per-model totals, read from its statistics extension.

    GET http://localhost:8000/v2/models/stats

For every model version the server counts, since it loaded the model, the requests that
succeeded, the inferences they held (a batch of 8 is 8), the executions, and the cumulative
time requests spent queued and computing inputs, the model, and outputs (nanoseconds, summed
over requests); Triton 24.x and later add the model's memory by device (memory_usage). Here the
versions of a model are summed: client records name a version only when the caller gave one.
A model unloaded and loaded again counts from zero, which difference() takes as a restart.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, fields

STATISTICS_PATH = "/v2/models/stats"
_MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ModelTotals:
    requests: int = 0
    inferences: int = 0
    executions: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    gpu_memory_bytes: int = 0  # a level, not a counter: difference() keeps the newer one

    def plus(self, other: ModelTotals) -> ModelTotals:
        return ModelTotals(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


_COUNTERS = tuple(f.name for f in fields(ModelTotals) if f.name != "gpu_memory_bytes")


def difference(new: ModelTotals, old: ModelTotals | None) -> ModelTotals:
    """What the server did between two reads. A counter below its old value means the model
    was loaded again (or the server restarted): the new value is what was done since."""
    if old is None:
        return new
    if any(getattr(new, name) < getattr(old, name) for name in _COUNTERS):
        return new
    return ModelTotals(
        *(getattr(new, name) - getattr(old, name) for name in _COUNTERS), gpu_memory_bytes=new.gpu_memory_bytes
    )


def _count(value: object) -> int:
    """A non-negative integer from the JSON (Triton writes uint64 as numbers); 0 otherwise."""
    if type(value) is int and value >= 0:
        return value
    if type(value) is str and value.isdigit():  # the gRPC JSON mapping writes uint64 as text
        return int(value)
    return 0


def _duration(stats: Mapping, name: str) -> int:
    entry = stats.get(name)
    return _count(entry.get("ns")) if isinstance(entry, Mapping) else 0


def _model_totals(model: Mapping) -> ModelTotals:
    stats = model.get("inference_stats")
    stats = stats if isinstance(stats, Mapping) else {}
    success = stats.get("success")
    memory = model.get("memory_usage")
    gpu_bytes = sum(
        _count(usage.get("byte_size")) for usage in (memory if isinstance(memory, list) else ())
        if isinstance(usage, Mapping) and usage.get("type") == "GPU"
    )
    return ModelTotals(
        requests=_count(success.get("count")) if isinstance(success, Mapping) else 0,
        inferences=_count(model.get("inference_count")),
        executions=_count(model.get("execution_count")),
        queue_ns=_duration(stats, "queue"),
        compute_input_ns=_duration(stats, "compute_input"),
        compute_infer_ns=_duration(stats, "compute_infer"),
        compute_output_ns=_duration(stats, "compute_output"),
        gpu_memory_bytes=gpu_bytes,
    )


def parse_statistics(body: str) -> dict[str, ModelTotals]:
    """{model name: totals over its versions} of a statistics response; ValueError when the
    body is not one."""
    document = json.loads(body)
    models = document.get("model_stats") if isinstance(document, dict) else None
    if not isinstance(models, list):
        raise ValueError("not a Triton statistics response: no model_stats list")
    totals: dict[str, ModelTotals] = {}
    for model in models:
        if not isinstance(model, Mapping) or not isinstance(model.get("name"), str):
            continue
        name = model["name"]
        totals[name] = totals.get(name, ModelTotals()).plus(_model_totals(model))
    return totals


def fetch_statistics(base_url: str, *, timeout_s: float = 0.5, headers: Mapping[str, str] | None = None) -> str:
    """The body of GET base_url/v2/models/stats; proxies from the environment are bypassed
    (the server is local). Raises OSError (or http.client.HTTPException) when it cannot."""
    request = urllib.request.Request(base_url.rstrip("/") + STATISTICS_PATH, headers=dict(headers or {}))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout_s) as response:
        return response.read(_MAX_BODY_BYTES).decode("utf-8", "replace")
