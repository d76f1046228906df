"""Roll-ups and gap records (agent.rollup) as the collector prices and reports them: the same
totals as the records they replace, to the pico where a record's cost is a whole number of picos,
and within the per-record rounding (half a pico per record and component) where it is not."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from agent.record import (
    MIN_START_UNIX_NS,
    EnergyShare,
    Kind,
    Memory,
    Status,
    UsageRecord,
    validate_all,
)
from agent.rollup import (
    BUFFER_FULL,
    GAP_REASON_TAG,
    LOST_RECORDS_TAG,
    gap_records,
    roll_up,
)
from collector.pricebook import parse_price_book
from collector.pricing import device_rate
from collector.rows import RECORD_COLUMNS, RateSchedule, priced_rows
from collector.store import DeviceInfo, Store
from tests.collector.helpers import START_UNIX_NS, STREAM_ID

# One pico per CPU ns (over 4 cores: 4 * 0.9 an hour) and per µJ: every record costs whole picos.
WHOLE_PICO_BOOK = {
    "currency": "USD",
    "cloud": {"default": {"hourly": "14.4", "cpu_cores": 4}},
    "energy": {"default": {"kwh": "3.6"}},
}
# Real-looking rates: a record's cost is a fraction of a pico, rounded half-even per record.
FLEET_BOOK = {
    "currency": "USD",
    "hardware": {"default": {"purchase": "1199.99", "lifetime_years": 4, "upkeep_per_year": "120.00"}},
    "energy": {"default": {"kwh": "0.1537", "pue": "1.35"}},
}
REPORTED = DeviceInfo(hostname="edge-1", cpu_cores=4, platform="linux-x86_64", agent_version="0.1.0")
SHARES = [("cpu", "rapl", "cpu-time"), ("dram", "rapl", "cpu-time"), ("gpu", "nvml", "gpu-time"),
          ("soc", "estimate", "cpu-time")]


def usage_records(count: int, seed: int = 7) -> list[UsageRecord]:
    """Records of a few models, tag sets and outcomes over five minutes, seqs 1..count."""
    rng = random.Random(seed)
    records = []
    for seq in range(1, count + 1):
        failed = rng.random() < 0.1
        records.append(UsageRecord(
            seq=seq, kind=rng.choice([Kind.INFERENCE, Kind.INFERENCE, Kind.SPAN]),
            model=rng.choice(["resnet50", "bert", "llama"]), model_version=rng.choice(["1", "2"]),
            runtime="onnxruntime", execution_provider=rng.choice(["CPUExecutionProvider", "CUDAExecutionProvider"]),
            start_unix_ns=START_UNIX_NS + rng.randrange(5 * 60 * 10**9), duration_ns=rng.randrange(1, 10**8),
            batch_size=rng.randrange(1, 9), input_bytes=rng.randrange(10**6), output_bytes=rng.randrange(10**4),
            input_tokens=rng.randrange(500), output_tokens=rng.randrange(500), cpu_time_ns=rng.randrange(10**8),
            gpu_time_ns=rng.randrange(10**7), status=Status.ERROR if failed else Status.OK,
            error_type=rng.choice(["Timeout", "OOM"]) if failed else "", tags={"project": rng.choice(["a", "b"])},
            pid=rng.choice([100, 200]),
            energy=tuple(
                EnergyShare(domain, rng.randrange(10**6), sensor, method, 100_000_000, rng.randrange(10**3))
                for domain, sensor, method in rng.sample(SHARES, rng.randrange(len(SHARES) + 1))
            ),
            memory=Memory(rng.randrange(10**9), rng.randrange(10**9), 5_000) if rng.random() < 0.5 else None,
        ))
    return records


def store_with(path, book: dict, records: list[UsageRecord]) -> Store:
    store = Store.open(f"sqlite:///{path}")
    device = store.add_device("edge-1")
    store.add_price_book(book, effective_from_unix_ns=MIN_START_UNIX_NS)
    store.ingest(device.device_id, STREAM_ID, REPORTED, records)
    return store


def exact_cost(book: dict, records: list[UsageRecord]) -> Fraction:
    """What the records cost before any rounding."""
    rate = device_rate(parse_price_book(book), 1, profile="default", site="default", reported_cpu_cores=4)
    return sum(
        (Fraction(r.cpu_time_ns * rate.cpu_num + r.gpu_time_ns * rate.gpu_num, rate.compute_den)
         + Fraction(r.energy_uj * rate.energy_num, rate.energy_den) for r in records),
        Fraction(0),
    )


def report_totals(store: Store, group_by: tuple[str, ...] = ()) -> dict:
    report = store.costs(period_costs=False, group_by=group_by)
    return {
        group.key: (group.inferences, group.cost, group.compute_cost, group.energy_cost, group.energy_uj,
                    group.duration_ns, group.cpu_time_ns)
        for group in report.groups
    }


def test_roll_ups_are_valid_records_that_keep_every_sum():
    records = usage_records(2_000)
    rollups = roll_up(records)

    assert len(rollups) < len(records) / 4
    validate_all([s.record for s in rollups])
    assert sorted(seq for s in rollups for seq in s.seqs) == [r.seq for r in records]
    for name in ("count", "duration_ns", "cpu_time_ns", "gpu_time_ns", "batch_size", "input_bytes",
                 "output_bytes", "input_tokens", "output_tokens", "energy_uj"):
        assert sum(getattr(s.record, name) for s in rollups) == sum(getattr(r, name) for r in records), name
    errors = [s.record for s in rollups if s.record.status is Status.ERROR]
    assert sum(r.count for r in errors) == sum(1 for r in records if r.status is Status.ERROR)
    assert all(r.error_type in ("Timeout", "OOM") for r in errors)
    for summed in rollups:
        members = [records[seq - 1] for seq in summed.seqs]
        assert summed.record.seq == min(summed.seqs)
        assert summed.record.kind is Kind.ROLLUP
        assert len({r.start_unix_ns // 60_000_000_000 for r in members}) == 1
        assert len({(r.kind, r.model, r.model_version, r.execution_provider, r.status, r.error_type,
                     tuple(r.tags.items())) for r in members}) == 1
        assert summed.record.start_unix_ns == min(r.start_unix_ns for r in members)
        for key in SHARES:
            def total(shares, field, key=key):
                return sum(getattr(s, field) for s in shares if (s.domain, s.sensor, s.method) == key)
            for field in ("energy_uj", "error_uj"):
                assert total(summed.record.energy, field) == sum(total(r.energy, field) for r in members)


def test_the_collector_reports_roll_ups_to_the_pico_as_their_records(tmp_path):
    records = usage_records(1_500)
    rollups = [s.record for s in roll_up(records)]

    with store_with(tmp_path / "raw.db", WHOLE_PICO_BOOK, records) as raw, \
            store_with(tmp_path / "rolled.db", WHOLE_PICO_BOOK, rollups) as rolled:
        for group_by in ((), ("model",), ("model", "version", "tag:project"), ("runtime",)):
            assert report_totals(rolled, group_by) == report_totals(raw, group_by)
        assert raw.costs(period_costs=False, ).total_cost == rolled.costs(period_costs=False, ).total_cost > 0
        assert rolled.costs(period_costs=False, ).total_records == len(rollups)


def test_with_fractional_rates_roll_ups_cost_what_their_records_do_but_for_rounding(tmp_path):
    records = usage_records(1_500, seed=11)
    rollups = [s.record for s in roll_up(records)]
    assert exact_cost(FLEET_BOOK, rollups) == exact_cost(FLEET_BOOK, records)  # the sums are exact

    with store_with(tmp_path / "raw.db", FLEET_BOOK, records) as raw, \
            store_with(tmp_path / "rolled.db", FLEET_BOOK, rollups) as rolled:
        raw_report, rolled_report = raw.costs(period_costs=False, ), rolled.costs(period_costs=False, )
        exact = exact_cost(FLEET_BOOK, records) / 10**12
        # Each record's compute and energy cost is rounded to a pico on its own: the stored totals
        # are each within half a pico per record and component of the exact cost.
        for report, count in ((raw_report, len(records)), (rolled_report, len(rollups))):
            assert abs(Fraction(report.total_cost) - exact) <= Fraction(count, 10**12)
        assert report_totals(rolled, ("model",)).keys() == report_totals(raw, ("model",)).keys()
        assert rolled_report.total_inferences == raw_report.total_inferences == len(records)


def test_gap_records_keep_the_cost_totals_of_what_was_dropped(tmp_path):
    records = usage_records(800, seed=3)
    idle = UsageRecord(
        seq=801, kind=Kind.IDLE, model="", start_unix_ns=START_UNIX_NS, duration_ns=60 * 10**9, count=0,
        tags={"site": "lab"}, energy=(EnergyShare("cpu", 123_456, "rapl", "idle", 100_000_000, 10),),
    )
    summed = gap_records([*records, idle])
    gaps = [s.record for s in summed if s.record.kind is Kind.GAP]

    validate_all([s.record for s in summed])
    assert sum(g.count for g in gaps) == len(records)
    assert sum(int(g.tags[LOST_RECORDS_TAG]) for g in gaps) == len(records)
    assert {g.tags[GAP_REASON_TAG] for g in gaps} == {BUFFER_FULL}
    [kept_idle] = [s.record for s in summed if s.record.kind is Kind.IDLE]
    assert (kept_idle.count, kept_idle.energy_uj, kept_idle.tags) == (0, 123_456, {"site": "lab"})
    with store_with(tmp_path / "raw.db", WHOLE_PICO_BOOK, [*records, idle]) as raw, \
            store_with(tmp_path / "gaps.db", WHOLE_PICO_BOOK, [s.record for s in summed]) as dropped:
        assert dropped.costs(period_costs=False, ).total_cost == raw.costs(period_costs=False, ).total_cost
        assert dropped.costs(period_costs=False, ).total_inferences == raw.costs(period_costs=False, ).total_inferences


@pytest.mark.parametrize("book", [WHOLE_PICO_BOOK, FLEET_BOOK], ids=["whole-picos", "fractional"])
def test_priced_rows_of_roll_ups_sum_like_their_records(book):
    records = usage_records(600, seed=5)
    rollups = [s.record for s in roll_up(records)]
    rate = device_rate(parse_price_book(book), 1, profile="default", site="default", reported_cpu_cores=4)
    schedule = RateSchedule([(MIN_START_UNIX_NS, rate)])

    def totals(batch: list[UsageRecord]) -> tuple[int, int]:
        rows = priced_rows(batch, device_id="dev_1", stream_id=STREAM_ID, profile="default", site="default",
                           received_unix_ns=START_UNIX_NS, schedule=schedule)
        compute, energy = RECORD_COLUMNS.index("compute_cost_pico"), RECORD_COLUMNS.index("energy_cost_pico")
        return sum(row[compute] for row in rows), sum(row[energy] for row in rows)

    (raw_compute, raw_energy), (rolled_compute, rolled_energy) = totals(records), totals(rollups)
    if book is WHOLE_PICO_BOOK:
        assert (rolled_compute, rolled_energy) == (raw_compute, raw_energy)
    else:
        bound = (len(records) + len(rollups)) / 2
        assert abs(rolled_compute - raw_compute) <= bound and abs(rolled_energy - raw_energy) <= bound
