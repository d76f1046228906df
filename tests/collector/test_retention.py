"""Raw-record retention (Store.prune_records, collector.retention) on SQLite and PostgreSQL:
reports over whole hours keep every pico after a prune, whatever would read pruned raw records
refuses clearly, a replayed batch whose records were pruned counts once, a late record counts
once, the cutoff never moves back, and the CLI and the server's policy."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from agent.record import MIN_START_UNIX_NS
from collector.focus_files import export_focus
from collector.retention import MIN_RETAIN_NS, RawRetention
from collector.rollups import HOUR_NS
from collector.schema import records
from collector.store import PruneResult, Store
from tests.collector.databases import run_together, store_url  # noqa: F401
from tests.collector.helpers import (
    STREAM_ID,
    make_record,
    recomputed_rollups,
    stored_rollups,
)
from tests.collector.helpers import run_cli as run
from tests.collector.test_repricing import (
    BOOK,
    CORRECTED,
    END,
    FIRST_HOUR,
    HOURS,
    NOW,
    REPORTED,
    fleet_records,
    ingest,
    record_costs,
)

CUTOFF = FIRST_HOUR + 20 * HOUR_NS  # 60 records before it, 48 after
BEFORE = CUTOFF + 25 * 60 * 10**9  # rounded down to CUTOFF
PRUNED_MESSAGE = "were pruned by the retention policy"


def raw_count(store: Store) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(records)).scalar_one()


@pytest.fixture
def store(store_url):  # noqa: F811
    with Store.open(store_url, clock=lambda: NOW) as store:
        store.add_price_book(BOOK, effective_from_unix_ns=MIN_START_UNIX_NS)
        yield store


@pytest.fixture
def edge(store):
    device = store.add_device("edge-1")
    ingest(store, device.device_id, fleet_records())
    return device


def test_a_prune_keeps_every_report_over_whole_hours_to_the_pico(store, edge):
    windows = [
        {"since_unix_ns": since, "until_unix_ns": until, "group_by": group_by, "granularity": granularity}
        for since, until in ((None, None), (FIRST_HOUR, END), (FIRST_HOUR + 3 * HOUR_NS, CUTOFF + 5 * HOUR_NS))
        for group_by, granularity in (((), None), (("model", "tag:project"), "hour"), (("device",), "day"))
    ]
    reports = [record_costs(store, **window) for window in windows]

    result = store.prune_records(before_unix_ns=BEFORE)

    assert result == PruneResult(records=20 * 3, before_unix_ns=CUTOFF)
    assert raw_count(store) == (HOURS - 20) * 3
    assert [record_costs(store, **window) for window in windows] == reports
    assert store.device("edge-1").records == HOURS * 3  # records ever stored: the roll-ups hold them
    # After the cutoff, partial hours still come from the raw records.
    late_window = {"since_unix_ns": CUTOFF + 90 * 10**9, "until_unix_ns": END - 1}
    assert record_costs(store, **late_window) == record_costs(store, from_records=True, **late_window)


@pytest.mark.parametrize("window", [
    {"since_unix_ns": FIRST_HOUR + 90 * 10**9},
    {"since_unix_ns": FIRST_HOUR, "until_unix_ns": CUTOFF - 1},
    {"since_unix_ns": CUTOFF - 10, "until_unix_ns": CUTOFF - 5},
    {"from_records": True},
    {"since_unix_ns": FIRST_HOUR, "from_records": True},
])
def test_a_report_that_would_read_pruned_raw_records_is_refused(store, edge, window):
    store.prune_records(before_unix_ns=BEFORE)

    with pytest.raises(ValueError, match=f"{PRUNED_MESSAGE}; use whole hours|{PRUNED_MESSAGE}, and a report"):
        record_costs(store, **window)


def test_explaining_a_pruned_record_says_it_was_pruned(store, edge):
    store.prune_records(before_unix_ns=BEFORE)

    with pytest.raises(LookupError, match=rf"record {STREAM_ID}:1 was pruned by the retention policy \(raw "
                                          r"records before 2026-11-10T20:00:00Z"):
        store.explain_record(STREAM_ID, 1, device="edge-1")
    with pytest.raises(LookupError, match=f"no record {STREAM_ID}:1 of device 'twin'"):
        store.add_device("twin")
        store.explain_record(STREAM_ID, 1, device="twin")
    assert store.explain_record(STREAM_ID, HOURS * 3)["matches_stored"]


def test_a_replayed_batch_whose_records_were_pruned_counts_once(store, edge):
    batch = fleet_records()[:30]  # all before the cutoff
    store.prune_records(before_unix_ns=BEFORE)
    rollups, report = stored_rollups(store), record_costs(store)

    result = store.ingest(edge.device_id, STREAM_ID, REPORTED, batch)

    assert (result.inserted, result.duplicates, result.acked_through_seq) == (0, 30, 30)
    assert stored_rollups(store) == rollups
    assert record_costs(store) == report
    assert store.device("edge-1").records == HOURS * 3


def test_a_late_record_before_the_cutoff_counts_once_and_a_later_prune_removes_it(store, edge):
    store.prune_records(before_unix_ns=BEFORE)
    report = record_costs(store, since_unix_ns=FIRST_HOUR, until_unix_ns=CUTOFF)
    other = store.add_device("offline-for-weeks")
    late = fleet_records()[:12]  # seqs 1-12, four hours before the cutoff

    first = store.ingest(other.device_id, STREAM_ID, REPORTED, late)
    replay = store.ingest(other.device_id, STREAM_ID, REPORTED, late)
    pruned = store.prune_records(before_unix_ns=BEFORE)
    after_prune = store.ingest(other.device_id, STREAM_ID, REPORTED, late)

    assert (first.inserted, replay.duplicates, pruned.records, after_prune.duplicates) == (12, 12, 12, 12)
    twice = record_costs(store, since_unix_ns=FIRST_HOUR, until_unix_ns=CUTOFF)
    assert twice.total_records == report.total_records + 12
    assert store.device("offline-for-weeks").records == 12
    # Its stream's later seqs are new records, whatever their start.
    assert store.ingest(other.device_id, STREAM_ID, REPORTED, [make_record(13, start_unix_ns=FIRST_HOUR)]).inserted == 1


def test_the_cutoff_never_moves_back(store, edge):
    store.prune_records(before_unix_ns=BEFORE)
    late = store.add_device("late")
    ingest(store, late.device_id, fleet_records()[:6])  # the first two hours, before the cutoff

    earlier = store.prune_records(before_unix_ns=FIRST_HOUR + HOUR_NS)

    assert earlier == PruneResult(records=6, before_unix_ns=CUTOFF)  # pruned up to the stored cutoff
    with pytest.raises(ValueError, match=PRUNED_MESSAGE):
        record_costs(store, since_unix_ns=FIRST_HOUR + 5 * HOUR_NS + 1)


@pytest.mark.parametrize(("before", "words"), [
    (NOW - MIN_RETAIN_NS + 1, "the raw records of the last day are always kept"),
    (NOW + HOUR_NS, "the raw records of the last day are always kept"),
    (float(CUTOFF), "must be an integer"),
    (True, "must be an integer"),
])
def test_a_bad_cutoff_is_refused_and_changes_nothing(store, edge, before, words):
    with pytest.raises(ValueError, match=words):
        store.prune_records(before_unix_ns=before)

    assert raw_count(store) == HOURS * 3
    assert record_costs(store, from_records=True).total_records == HOURS * 3


def test_pruned_history_cannot_be_re_priced(store, edge):
    store.prune_records(before_unix_ns=BEFORE)
    store.add_price_book(CORRECTED, effective_from_unix_ns=MIN_START_UNIX_NS + HOUR_NS)

    for query in ({"since_unix_ns": FIRST_HOUR}, {"since_unix_ns": CUTOFF - 1}, {"until_unix_ns": CUTOFF}):
        with pytest.raises(ValueError, match="pruned history cannot be re-priced"):
            store.reprice(**query)
    result = store.reprice()  # an open start is the cutoff

    assert (result.records, result.changed) == ((HOURS - 20) * 3, (HOURS - 20) * 3)
    assert [row for row in stored_rollups(store) if row[0] >= CUTOFF] == recomputed_rollups(store)


def test_the_focus_export_of_pruned_raw_records_is_refused(store, edge, tmp_path):
    store.prune_records(before_unix_ns=BEFORE)

    for since in (None, FIRST_HOUR, CUTOFF - 1):
        with pytest.raises(ValueError, match=f"{PRUNED_MESSAGE}, and the FOCUS export reads raw records"):
            export_focus(store.engine, tmp_path / "focus.csv", file_format="csv", since_unix_ns=since)
        assert not (tmp_path / "focus.csv").exists()
    summary = export_focus(store.engine, tmp_path / "focus.csv", file_format="csv", since_unix_ns=CUTOFF)
    assert summary.records == (HOURS - 20) * 3


def test_a_replay_racing_the_prune_of_its_records_counts_once(store, store_url):  # noqa: F811
    edge = store.add_device("edge-1")
    batches = [fleet_records(first_seq=1 + 100 * n)[:30] for n in range(6)]
    with Store.open(store_url, clock=lambda: NOW) as replica:
        for n, batch in enumerate(batches):
            stream = f"stream-{n}"
            ingest(store, edge.device_id, batch, stream=stream, size=30)
            results = run_together([
                lambda: store.prune_records(before_unix_ns=BEFORE),
                lambda stream=stream, batch=batch: replica.ingest(edge.device_id, stream, REPORTED, batch),
            ])
            assert results[1].inserted == 0

    assert raw_count(store) == 0
    assert record_costs(store).total_records == 6 * 30 == store.device("edge-1").records
    assert record_costs(store, since_unix_ns=FIRST_HOUR, until_unix_ns=CUTOFF).total_records == 6 * 30


def test_the_servers_policy_keeps_n_days(store, edge):
    days = (NOW - FIRST_HOUR) // (24 * HOUR_NS) - 1  # the cutoff lands 24 hours after the first
    policy = RawRetention(store, retain_raw_days=days, clock=lambda: NOW)

    result = policy.run_once()

    assert result == PruneResult(records=24 * 3, before_unix_ns=FIRST_HOUR + 24 * HOUR_NS)
    assert policy.run_once() == PruneResult(records=0, before_unix_ns=FIRST_HOUR + 24 * HOUR_NS)
    with pytest.raises(ValueError, match="at least 1"):
        RawRetention(store, retain_raw_days=0)


# The CLI


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    with Store.open(url) as store:
        edge = store.add_device("edge-1")
        ingest(store, edge.device_id, fleet_records())
    return url


def test_admin_prune_prints_what_it_deleted(db, capsys):
    code, out, err = run(capsys, "admin", "prune", "--db", db, "--before", "2026-11-10T20:25:00Z")
    json_code, again, _ = run(capsys, "admin", "prune", "--db", db, "--before", "2026-11-10T05:00:00Z", "--json")

    assert code == json_code == 0, err
    assert out.startswith("pruned 60 raw records that started before 2026-11-10 20:00:00 UTC;")
    assert json.loads(again) == {"records": 0, "before_unix_ns": CUTOFF}


@pytest.mark.parametrize(("argv", "words"), [
    (("--before", iso(datetime.now(timezone.utc) - timedelta(hours=2))), "the raw records of the last day"),
    (("--before", "last week"), "argument --before"),
    ((), "the following arguments are required: --before"),
])
def test_admin_prune_bad_input_exits_2_and_changes_nothing(db, capsys, argv, words):
    code, _, err = run(capsys, "admin", "prune", "--db", db, *argv)

    assert code == 2
    assert words in err
    with Store.open(db) as store:
        assert raw_count(store) == HOURS * 3


def test_admin_reprice_before_the_cutoff_exits_2(db, capsys):
    run(capsys, "admin", "prune", "--db", db, "--before", "2026-11-10T20:00:00Z")

    code, _, err = run(capsys, "admin", "reprice", "--db", db, "--since", "2026-11-10")

    assert code == 2
    assert "pruned history cannot be re-priced" in err


def test_collector_serve_refuses_a_retention_under_a_day(capsys):
    code, _, err = run(capsys, "collector", "serve", "--retain-raw-days", "0")

    assert code == 2
    assert "is not a whole number of days, at least 1" in err
