"""Priced rows of the records table, built from usage records: the per-record hot path of ingest.

Everything per batch (which books apply, the device's rates as integer ratios) is worked out
before the loop; per record there is a tuple, a JSON encoding of the tags, and a few integer
multiplies and divmods.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Sequence

from agent.record import INT64_MAX, InvalidRecord, UsageRecord
from collector.pricing import DeviceRate, div_round_half_even

# The order of the values in a row from priced_rows (every column of the records table).
RECORD_COLUMNS = (
    "device_id", "stream_id", "seq", "kind", "model", "model_version",
    "runtime", "execution_provider", "batch_size", "input_bytes",
    "output_bytes", "input_tokens", "output_tokens", "start_unix_ns",
    "duration_ns", "cpu_time_ns", "status", "error_type",
    "tags", "pid",
    "count", "gpu_time_ns", "energy_uj", "energy",
    "peak_rss_bytes", "peak_gpu_memory_bytes", "model_resident_bytes",
    "received_unix_ns", "profile", "site", "price_book_id", "price_cpu_cores",
    "compute_cost_pico", "energy_cost_pico", "token_cost_pico", "request_cost_pico", "cost_pico", "list_cost_pico", "pricing_note",
    "server",
)
# One encoder for all rows: json.dumps with options builds a new encoder per call.
_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class RateSchedule:
    """The device's rate under each price book, chosen by a record's start time: the book with
    the latest effective_from <= start wins (ties already resolved to the newest book)."""

    def __init__(self, effective: Sequence[tuple[int, DeviceRate]]) -> None:
        if not effective:
            raise ValueError("no price book is in effect")
        self._froms = [effective_from for effective_from, _ in effective]
        self._rates = [rate for _, rate in effective]

    def rate_at(self, start_unix_ns: int) -> DeviceRate:
        # The first book is effective from 2000-01-01, the earliest start validation lets
        # through, so the index is never negative for a valid record.
        return self._rates[bisect_right(self._froms, start_unix_ns) - 1]

    @property
    def effective(self) -> list[tuple[int, DeviceRate]]:
        """(effective from, rate) of each book, oldest first."""
        return list(zip(self._froms, self._rates))

    @property
    def latest(self) -> tuple[int, DeviceRate]:
        return self._froms[-1], self._rates[-1]


def priced_rows(
    records: Sequence[UsageRecord],
    *,
    device_id: str,
    stream_id: str,
    profile: str,
    site: str,
    received_unix_ns: int,
    schedule: RateSchedule,
) -> list[tuple]:
    """One row per record, values in RECORD_COLUMNS order and in database form; InvalidRecord
    if a record would cost more than a BIGINT of picos (over 9 million in the currency for a
    single record: a corrupt counter, not a cost)."""
    latest_from, latest = schedule.latest
    rows = []
    append = rows.append
    # The records of a batch mostly share a few tag sets: encode each set once.
    tags_json: dict[tuple, str] = {}
    for record in records:
        tags = record.tags
        tags_key = tuple(tags.items())
        encoded_tags = tags_json.get(tags_key)
        if encoded_tags is None:
            encoded_tags = tags_json[tags_key] = _json(tags if type(tags) is dict else dict(tags))
        rate = latest if record.start_unix_ns >= latest_from else schedule.rate_at(record.start_unix_ns)
        if record.energy:
            energy_uj = sum(share.energy_uj for share in record.energy)
            energy = _json([
                {"domain": s.domain, "energy_uj": s.energy_uj, "sensor": s.sensor, "method": s.method,
                 "interval_ns": s.interval_ns, "error_uj": s.error_uj}
                for s in record.energy
            ])
            if rate.time_of_use is None:
                energy_pico = div_round_half_even(energy_uj * rate.energy_num, rate.energy_den)
            else:
                energy_num, energy_den = rate.energy_ratio_at(record.start_unix_ns)
                energy_pico = div_round_half_even(energy_uj * energy_num, energy_den)
        else:
            energy_uj, energy, energy_pico = 0, None, 0
        compute_pico = div_round_half_even(
            record.cpu_time_ns * rate.cpu_num + record.gpu_time_ns * rate.gpu_num, rate.compute_den
        )
        model_rate = rate.models.get(record.model) or rate.default_model
        token_pico = div_round_half_even(
            record.input_tokens * model_rate.input_num + record.output_tokens * model_rate.output_num,
            model_rate.token_den,
        )
        request_pico = div_round_half_even(record.count * model_rate.request_num, model_rate.request_den)
        cost_pico = compute_pico + energy_pico + token_pico + request_pico
        if cost_pico > INT64_MAX or energy_uj > INT64_MAX:
            field = _costliest_field(record, rate, energy_uj, energy_pico, token_pico, request_pico)
            raise InvalidRecord(field, "prices beyond what one record can cost (2^63 picos)", seq=record.seq)
        memory = record.memory
        server = record.server
        append((
            device_id, stream_id, record.seq, int(record.kind), record.model, record.model_version,
            record.runtime, record.execution_provider, record.batch_size, record.input_bytes,
            record.output_bytes, record.input_tokens, record.output_tokens, record.start_unix_ns,
            record.duration_ns, record.cpu_time_ns, int(record.status), record.error_type,
            encoded_tags, record.pid,
            record.count, record.gpu_time_ns, energy_uj, energy,
            memory.peak_rss_bytes if memory else None,
            memory.peak_gpu_memory_bytes if memory else None,
            memory.model_resident_bytes if memory else None,
            received_unix_ns, profile, site, rate.price_book_id, rate.cpu_cores,
            compute_pico, energy_pico, token_pico, request_pico, cost_pico, cost_pico, rate.note,
            None if server is None else _json({
                "queue_ns": server.queue_ns, "compute_input_ns": server.compute_input_ns,
                "compute_infer_ns": server.compute_infer_ns, "compute_output_ns": server.compute_output_ns,
                "gpu_memory_bytes": server.gpu_memory_bytes, "source": server.source, "method": server.method,
                "interval_ns": server.interval_ns,
            }),
        ))
    return rows


def _costliest_field(
    record: UsageRecord, rate: DeviceRate, energy_uj: int, energy_pico: int, token_pico: int, request_pico: int
) -> str:
    """The field whose cost is the largest part of a record's (to name it in an error)."""
    if energy_uj > INT64_MAX:
        return "energy"
    # In units of 1 / compute_den picos, so the parts compare exactly (rounded ones aside).
    model_rate = rate.models.get(record.model) or rate.default_model
    tokens = {
        "input_tokens": record.input_tokens * model_rate.input_num,
        "output_tokens": record.output_tokens * model_rate.output_num,
    }
    parts = {
        "cpu_time_ns": record.cpu_time_ns * rate.cpu_num,
        "gpu_time_ns": record.gpu_time_ns * rate.gpu_num,
        "energy": energy_pico * rate.compute_den,
        max(tokens, key=tokens.__getitem__): token_pico * rate.compute_den,
        "count": request_pico * rate.compute_den,
    }
    return max(parts, key=parts.__getitem__)
