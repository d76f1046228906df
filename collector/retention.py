"""Raw-record retention: deleting the raw records that started before a cutoff, while the hourly
roll-ups (collector.rollups) keep their sums forever.

The cutoff is a whole UTC hour, so every report over whole hours still reads the same figures
from the roll-ups; it is stored in the `retention` table, written (and committed) before any
record it covers is deleted, and it only ever moves forward. What reads raw records checks it:
a report's partial hours and from_records (check_report_range), the FOCUS export
(check_raw_range), explaining a record (pruned_record_message) and re-pricing (reprice_since).
A check runs after the read it guards, in the same transaction: any deletion the read saw was
committed after its cutoff, so the check sees that cutoff too.

Exactly-once after pruning. A replayed batch is normally caught by ON CONFLICT on the raw
(device, stream, seq) key, which is gone once its row is pruned. So pruning keeps, per
(device, stream), the highest seq it deleted, and ingest treats a record with a seq at or below
it as a duplicate: acknowledged, not stored, not counted. This is exactly-once because a
stream's records reach the collector in seq order: the agent sends a batch only after the one
before it was acknowledged, and only the prefix of its buffer up to the first record still
waiting for its energy (agent.shipper, agent.buffer). So when seq N of a stream is stored, every
lower seq of it was stored before (or refused as invalid), and a seq at or below the pruned high
water mark arriving later can only be a replay. A client that sends a stream out of seq order
gets at-most-once for a record below the mark that it never delivered.

A late record (an edge device syncing after weeks offline) whose start is before the cutoff
but whose seq is above its stream's mark is stored and counted like any other, its raw row
kept until the next prune deletes it.

Concurrency: ingest reads the mark after taking a share lock on its device's row (FOR KEY
SHARE, which its foreign key checks take anyway), and a prune page locks the rows of the devices
whose records it deletes (FOR UPDATE) before deleting, so a replay and the prune of its records
take turns; SQLite's write transactions take turns already. Pruning goes in pages, one
transaction each, so it never holds one giant transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from agent.record import UsageRecord
from collector.database import StoreUnavailable, transaction
from collector.reports import check_range, rfc3339
from collector.rollups import HOUR_NS
from collector.schema import devices, pruned_streams, records, retention

if TYPE_CHECKING:
    from collector.store import Store

logger = logging.getLogger(__name__)

DAY_NS = 24 * HOUR_NS
# The newest a cutoff may be: raw records of the last day stay, for partial-hour reports,
# explanations and re-pricing of recent work, and a mistyped time cannot wipe today's history.
MIN_RETAIN_NS = DAY_NS
PAGE_RECORDS = 10_000
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@dataclass(frozen=True, slots=True)
class PruneResult:
    records: int  # raw records deleted
    before_unix_ns: int  # the cutoff in force afterwards: a whole UTC hour


def raw_cutoff(connection: sa.Connection) -> int:
    """Raw records that started before this were pruned (0: none were)."""
    return connection.execute(sa.select(retention.c.raw_before_unix_ns).where(retention.c.id == 1)).scalar_one()


def prune(
    engine: sa.Engine, *, before_unix_ns: int, now_unix_ns: int, page_records: int = PAGE_RECORDS
) -> PruneResult:
    """Move the cutoff to `before_unix_ns` rounded down to a whole UTC hour (or leave it where
    it is, if that is later), then delete the raw records that started before it, in pages of
    about `page_records`. ValueError, with nothing changed, for a cutoff that is not an integer
    or is less than MIN_RETAIN_NS before now."""
    if type(before_unix_ns) is not int:
        raise ValueError(f"before_unix_ns must be an integer (Unix ns), got {before_unix_ns!r}")
    if before_unix_ns > now_unix_ns - MIN_RETAIN_NS:
        raise ValueError(
            f"cannot prune raw records before {rfc3339(before_unix_ns)}: the raw records of the last day "
            f"are always kept (the newest cutoff now is {rfc3339(now_unix_ns - MIN_RETAIN_NS)})"
        )
    requested = before_unix_ns - before_unix_ns % HOUR_NS
    with transaction(engine, write=True) as connection:
        connection.execute(
            sa.update(retention).where(retention.c.id == 1, retention.c.raw_before_unix_ns < requested)
            .values(raw_before_unix_ns=requested, updated_unix_ns=now_unix_ns)
        )
        cutoff = raw_cutoff(connection)
    deleted = 0
    while True:
        with transaction(engine, write=True) as connection:
            page = _prune_page(connection, cutoff, page_records)
        if not page:
            return PruneResult(records=deleted, before_unix_ns=cutoff)
        deleted += page


def _prune_page(connection: sa.Connection, cutoff: int, page_records: int) -> int:
    """Delete up to about page_records of the oldest raw records before the cutoff (more only
    where records share a start time), raising their streams' pruned marks; the number deleted."""
    start = records.c.start_unix_ns
    last = connection.execute(
        sa.select(start).where(start < cutoff).order_by(start).offset(page_records - 1).limit(1)
    ).scalar()
    upper = cutoff if last is None else last + 1
    device_ids = connection.execute(
        sa.select(devices.c.device_id)
        .where(devices.c.device_id.in_(sa.select(records.c.device_id).where(start < upper)))
        .order_by(devices.c.device_id)  # in one order, so two pruning replicas never deadlock
        .with_for_update()
    ).scalars().all()
    if not device_ids:
        return 0
    # Only the locked devices' records: a late record of another device may have arrived since.
    deleted = connection.execute(
        sa.delete(records).where(start < upper, records.c.device_id.in_(device_ids))
        .returning(records.c.device_id, records.c.stream_id, records.c.seq)
    ).all()
    marks: dict[tuple[str, str], int] = {}
    for device_id, stream_id, seq in deleted:
        marks[device_id, stream_id] = max(seq, marks.get((device_id, stream_id), seq))
    _raise_marks(connection, marks)
    return len(deleted)


def _raise_marks(connection: sa.Connection, marks: dict[tuple[str, str], int]) -> None:
    if not marks:
        return
    insert = _INSERTS[connection.dialect.name](pruned_streams)
    stored = pruned_streams.c.max_seq
    connection.execute(
        insert.on_conflict_do_update(
            index_elements=[pruned_streams.c.device_id, pruned_streams.c.stream_id],
            set_={"max_seq": sa.case((insert.excluded.max_seq > stored, insert.excluded.max_seq), else_=stored)},
        ),
        [{"device_id": device_id, "stream_id": stream_id, "max_seq": seq}
         for (device_id, stream_id), seq in sorted(marks.items())],
    )


def unpruned(
    connection: sa.Connection, device_id: str, stream_id: str, batch: Sequence[UsageRecord]
) -> Sequence[UsageRecord]:
    """The records of the batch above their stream's pruned mark: the others were stored and
    pruned before (see the module's docstring). Call it with the device's row locked."""
    mark = connection.execute(
        sa.select(pruned_streams.c.max_seq)
        .where(pruned_streams.c.device_id == device_id, pruned_streams.c.stream_id == stream_id)
    ).scalar()
    if mark is None:
        return batch
    return [record for record in batch if record.seq > mark]


def pruned_record_message(connection: sa.Connection, stream_id: str, seq: int, device: str | None) -> str | None:
    """Why record stream_id:seq (of `device`, a name or id, if given) is not stored, if pruning
    deleted it; else None."""
    query = (
        sa.select(pruned_streams.c.device_id)
        .join(devices, devices.c.device_id == pruned_streams.c.device_id)
        .where(pruned_streams.c.stream_id == stream_id, pruned_streams.c.max_seq >= seq)
    )
    if device is not None:
        query = query.where(sa.or_(devices.c.name == device, devices.c.device_id == device))
    if connection.execute(query.limit(1)).first() is None:
        return None
    return (
        f"record {stream_id}:{seq} was pruned by the retention policy (raw records before "
        f"{rfc3339(raw_cutoff(connection))} are deleted; their hourly roll-ups keep the sums)"
    )


def check_report_range(
    cutoff: int, since_unix_ns: int | None, until_unix_ns: int | None, *, from_records: bool
) -> None:
    """ValueError if a cost report over [since, until) would read raw records from before the
    cutoff: a partial hour at either end (collector.reports reads those from the records), or
    any of the range with from_records. Whole hours come from the roll-ups, which stay."""
    if not cutoff:
        return
    if from_records:
        check_raw_range(cutoff, since_unix_ns, "a report from the records")
        return
    # The cutoff is on the hour, so a partial hour lies wholly before it or wholly after it.
    partial_before = any(
        bound is not None and bound % HOUR_NS and bound < cutoff for bound in (since_unix_ns, until_unix_ns)
    )
    if partial_before:
        raise ValueError(
            f"raw records before {rfc3339(cutoff)} were pruned by the retention policy; use whole hours "
            "(since and until on the hour) for times before it: the hourly roll-ups keep their sums"
        )


def check_raw_range(cutoff: int, since_unix_ns: int | None, what: str) -> None:
    """ValueError if `what`, which reads the raw records from since_unix_ns on (None: from the
    first), would read any from before the cutoff."""
    if cutoff and (since_unix_ns is None or since_unix_ns < cutoff):
        raise ValueError(
            f"raw records before {rfc3339(cutoff)} were pruned by the retention policy, and {what} "
            f"reads raw records: give a range from {rfc3339(cutoff)} on"
        )


def reprice_since(cutoff: int, since_unix_ns: int | None, until_unix_ns: int | None) -> int | None:
    """The start of a re-pricing range: since_unix_ns, or the cutoff for an open start.
    ValueError for a bad range, or one that reaches before the cutoff."""
    check_range(since_unix_ns, until_unix_ns)
    if not cutoff:
        return since_unix_ns
    if since_unix_ns is None and (until_unix_ns is None or until_unix_ns > cutoff):
        return cutoff
    if since_unix_ns is None or since_unix_ns < cutoff:
        raise ValueError(
            f"raw records before {rfc3339(cutoff)} were pruned by the retention policy, and pruned history "
            f"cannot be re-priced (the roll-ups keep sums, not the inputs): give a range from {rfc3339(cutoff)} on"
        )
    return since_unix_ns


class RawRetention:
    """The policy `collector serve --retain-raw-days N` runs: keep N days of raw records. The
    server calls run_once at start and then hourly."""

    def __init__(self, store: Store, *, retain_raw_days: int, clock: Callable[[], int] = time.time_ns) -> None:
        if type(retain_raw_days) is not int or retain_raw_days < MIN_RETAIN_NS // DAY_NS:
            raise ValueError(f"retain_raw_days must be an integer of at least {MIN_RETAIN_NS // DAY_NS}")
        self._store = store
        self._retain_ns = retain_raw_days * DAY_NS
        self._clock = clock

    def run_once(self) -> PruneResult | None:
        """Prune once; None (logged) when the database is unavailable: the next run retries."""
        try:
            result = self._store.prune_records(before_unix_ns=self._clock() - self._retain_ns)
        except StoreUnavailable as err:
            logger.warning("raw-record retention: the database is unavailable, retrying later: %s", err)
            return None
        logger.info(
            "raw-record retention: pruned %d raw records that started before %s",
            result.records, rfc3339(result.before_unix_ns),
        )
        return result
