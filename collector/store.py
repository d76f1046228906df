"""The collector's store: devices and their tokens (with rotations), admin tokens, priced usage
records, price books, and the cost report, on SQLite (one collector) or PostgreSQL (several
replicas).

Exactly-once accounting: a batch is inserted with ON CONFLICT DO NOTHING on (device, stream,
seq), priced, and the hourly roll-ups and the device's counters updated, in one transaction;
only the rows that were new count, and `ingest` returns only after COMMIT, so an ack always
means "durably stored".
Database trouble a retry could fix raises StoreUnavailable, never a quiet success.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc

from agent.record import InvalidRecord, UsageRecord, check_text
from collector import (
    budget_ledger,
    budget_store,
    credentials,
    model_usage,
    repricing,
    retention,
    tokens,
    webhook_store,
)
from collector.books import PriceBookRow, PriceBooks
from collector.budget_ledger import BudgetBook
from collector.budget_push import PushState, PushStates
from collector.budgets import Budget, BudgetError, BudgetEvent, BudgetStatus
from collector.bulk import insert_new_rows
from collector.costing import record_discount, run_report
from collector.credentials import (
    AdminAuth,
    AdminTokenRow,
    NewAdminToken,
    Rotation,
    RotationRefused,
    TtlCache,
)
from collector.database import (
    StoreNotFound,
    StoreUnavailable,
    create_engine,
    migrate,
    transaction,
)
from collector.pricebook import NAME_PATTERN
from collector.pricing import device_rate, explain_cost
from collector.reports import (
    CostGroup,
    CostQuery,
    CostReport,
)
from collector.repricing import RepriceResult
from collector.retention import PruneResult
from collector.rollups import add_to_rollups
from collector.rows import RECORD_COLUMNS, priced_rows
from collector.schema import device_rotations, device_tokens, devices, price_books
from collector.schema import records as records_table
from collector.webhook_store import NewWebhook, WebhookRow

__all__ = [
    "DEVICE_NAME_RULE",
    "AdminAuth",
    "AdminTokenRow",
    "Budget",
    "BudgetError",
    "BudgetEvent",
    "BudgetStatus",
    "CostGroup",
    "CostReport",
    "DeviceAuth",
    "DeviceInfo",
    "DeviceRow",
    "IngestResult",
    "NewAdminToken",
    "NewDevice",
    "NewWebhook",
    "PriceBookRow",
    "PruneResult",
    "PushState",
    "RepriceResult",
    "RotationRefused",
    "Store",
    "StoreNotFound",
    "StoreUnavailable",
    "WebhookRow",
]

MAX_STREAM_ID_CHARS = 128
MAX_CPU_CORES = 65_535
DEVICE_NAME_RULE = "a device's name or id is 1-64 characters of A-Z a-z 0-9 . _ -"
_RECORD_KEY = ("device_id", "stream_id", "seq")
_SEQ = RECORD_COLUMNS.index("seq")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a device reports about itself with each push; empty / 0 means "not reported"."""

    hostname: str = ""
    cpu_cores: int = 0
    platform: str = ""
    agent_version: str = ""


@dataclass(frozen=True, slots=True)
class NewDevice:
    device_id: str
    name: str
    token: str  # shown once: only its SHA-256 is stored


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device_id: str
    name: str
    profile: str
    site: str
    created_unix_ns: int
    last_seen_unix_ns: int  # 0 if the device never pushed
    revoked: bool
    hostname: str
    cpu_cores: int
    records: int  # records stored for the device
    platform: str
    agent_version: str
    rotating: bool  # a token rotation is under way


@dataclass(frozen=True, slots=True)
class DeviceAuth:
    device_id: str
    name: str
    revoked: bool
    rotation: Rotation | None = None  # the device's rotation under way, if any


@dataclass(frozen=True, slots=True)
class IngestResult:
    inserted: int
    duplicates: int
    acked_through_seq: int  # the batch's highest seq (0 for an empty batch)
    # The rows inserted (RECORD_COLUMNS), for the process's own metrics (collector.metrics).
    new_rows: Sequence[tuple] = dataclasses.field(default=(), compare=False, repr=False)


class Store:
    def __init__(
        self, engine: sa.Engine, *, clock: Callable[[], int] = time.time_ns, auth_cache_ttl_s: float = 5.0
    ) -> None:
        self.engine = engine
        self._clock = clock
        self._auth_cache: TtlCache[DeviceAuth] = TtlCache(auth_cache_ttl_s)
        self._admin_cache: TtlCache[AdminAuth] = TtlCache(auth_cache_ttl_s)
        self._books = PriceBooks()
        self._budgets = BudgetBook()
        self._push_states = PushStates(self._budgets, self._books)

    @classmethod
    def open(
        cls, url: str, *, create: bool = True, clock: Callable[[], int] = time.time_ns, auth_cache_ttl_s: float = 5.0
    ) -> Store:
        """Open `sqlite:///PATH` or `postgresql://USER@HOST:PORT/DB`, and bring its schema to the
        newest revision. ValueError for an unsupported URL; StoreNotFound for a missing SQLite
        file when create is False (otherwise the file is created)."""
        engine = create_engine(url, create=create)
        try:
            migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, clock=clock, auth_cache_ttl_s=auth_cache_ttl_s)

    def close(self) -> None:
        self.engine.dispose()

    def now_unix_ns(self) -> int:
        """The store's clock: what reports made "now" measure from."""
        return self._clock()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Devices and credentials

    def add_device(self, name: str, *, profile: str = "default", site: str = "default") -> NewDevice:
        """Register a device; the returned token is its only copy. ValueError for an invalid or
        taken name, or an invalid profile or site name."""
        for field, value in (("name", name), ("profile", profile), ("site", site)):
            if type(value) is not str or not NAME_PATTERN.fullmatch(value):
                raise ValueError(f"device {field} {value!r} is invalid: use 1-64 characters of A-Z a-z 0-9 . _ -")
        device = NewDevice(tokens.new_device_id(), name, tokens.new_device_token())
        now = self._clock()
        try:
            with transaction(self.engine, write=True) as connection:
                connection.execute(sa.insert(devices), {
                    "device_id": device.device_id, "name": name, "profile": profile, "site": site,
                    "created_unix_ns": now, "revoked_unix_ns": None, "last_seen_unix_ns": 0, "hostname": "",
                    "cpu_cores": 0, "platform": "", "agent_version": "", "record_count": 0,
                })
                connection.execute(sa.insert(device_tokens), {
                    "token_sha256": tokens.token_sha256(device.token), "device_id": device.device_id,
                    "created_unix_ns": now,
                })
        except exc.IntegrityError:
            raise ValueError(f"a device named {name!r} already exists") from None
        return device

    def list_devices(self) -> list[DeviceRow]:
        with transaction(self.engine) as connection:
            return [_device_row(row) for row in connection.execute(_DEVICE_ROWS.order_by(devices.c.name))]

    def device(self, name_or_id: str) -> DeviceRow | None:
        """The device with this name, else with this id, or None."""
        if type(name_or_id) is not str or not NAME_PATTERN.fullmatch(name_or_id):
            return None
        with transaction(self.engine) as connection:
            for column in (devices.c.name, devices.c.device_id):
                row = connection.execute(_DEVICE_ROWS.where(column == name_or_id)).first()
                if row is not None:
                    return _device_row(row)
        return None

    def revoke_device(self, device_id: str) -> None:
        """Refuse the device's tokens from now on (its records stay); a rotation under way
        ends. KeyError if unknown."""
        with transaction(self.engine, write=True) as connection:
            updated = connection.execute(
                sa.update(devices)
                .where(devices.c.device_id == device_id, devices.c.revoked_unix_ns.is_(None))
                .values(revoked_unix_ns=self._clock())
            ).rowcount
            if not updated and not _device_exists(connection, device_id):
                raise KeyError(f"no device {device_id!r}")
            credentials.drop_rotation(connection, device_id)
        self._auth_cache.clear()

    def rotate_device(self, device_id: str) -> None:
        """Start rotating the device's token (collector.credentials): its next push gets a new
        token, and the old one is retired at the first push made with the new one. KeyError if
        unknown; RotationRefused (a ValueError) if revoked or a rotation is under way."""
        with transaction(self.engine, write=True) as connection:
            # FOR UPDATE: concurrent rotations (and a revocation) of one device on PostgreSQL
            # take turns here, so the second sees the first's rotation and is refused, instead
            # of both inserting one and the second failing on the key. (SQLite's write
            # transactions already take turns.)
            row = connection.execute(
                sa.select(devices.c.name, devices.c.revoked_unix_ns)
                .where(devices.c.device_id == device_id)
                .with_for_update()
            ).first()
            if row is None:
                raise KeyError(f"no device {device_id!r}")
            if row.revoked_unix_ns is not None:
                raise RotationRefused(f"device {row.name!r} is revoked: its token cannot be rotated")
            credentials.start_rotation(connection, device_id, row.name, now_unix_ns=self._clock())
        self._auth_cache.clear()

    def advance_rotation(self, auth: DeviceAuth, token: str) -> str:
        """After a push authenticated by `token`: the new token to hand to the device if it
        pushed with the token being rotated, else "" (and if it pushed with the new token,
        the old one is retired)."""
        rotation = auth.rotation
        if rotation is None:
            return ""
        digest = tokens.token_sha256(token)
        if tokens.digest_matches(rotation.old_token_sha256, digest):
            new_token = tokens.rotated_token(token, rotation.nonce)
            with transaction(self.engine, write=True) as connection:
                delivered = credentials.deliver_rotation(
                    connection, auth.device_id, rotation, new_token, now_unix_ns=self._clock()
                )
            return new_token if delivered else ""
        if rotation.new_token_sha256 is not None and tokens.digest_matches(rotation.new_token_sha256, digest):
            with transaction(self.engine, write=True) as connection:
                credentials.finish_rotation(connection, auth.device_id, rotation)
            self._auth_cache.clear()
        return ""

    def authenticate(self, token: str) -> DeviceAuth | None:
        """The device a bearer token belongs to (revoked ones included, flagged), or None.
        Answers from a cache for up to `auth_cache_ttl_s`, so a revocation made by another
        replica takes effect within that time."""
        if not tokens.could_be_token(token):
            return None
        digest = tokens.token_sha256(token)
        found, auth = self._auth_cache.get(digest)
        if found:
            return auth
        with transaction(self.engine) as connection:
            row = connection.execute(
                sa.select(device_tokens.c.token_sha256, devices.c.device_id, devices.c.name, devices.c.revoked_unix_ns)
                .join(devices, device_tokens.c.device_id == devices.c.device_id)
                .where(device_tokens.c.token_sha256 == digest)
            ).first()
            if row is not None and tokens.digest_matches(row.token_sha256, digest):
                rotation = credentials.pending_rotation(connection, row.device_id)
                auth = DeviceAuth(row.device_id, row.name, row.revoked_unix_ns is not None, rotation)
        self._auth_cache.put(digest, auth)
        return auth

    # Admin tokens

    def add_admin_token(self, role: str, *, name: str = "") -> NewAdminToken:
        """A new admin token; the returned token is its only copy. ValueError for an unknown
        role (collector.tokens.ROLES) or an invalid name."""
        credentials.check_admin_token_fields(name, role)
        with transaction(self.engine, write=True) as connection:
            return credentials.insert_admin_token(connection, name, role, now_unix_ns=self._clock())

    def list_admin_tokens(self) -> list[AdminTokenRow]:
        with transaction(self.engine) as connection:
            return credentials.admin_token_rows(connection)

    def revoke_admin_token(self, token_id: str) -> None:
        """Refuse the token from now on (within auth_cache_ttl_s on other replicas). KeyError if
        unknown."""
        with transaction(self.engine, write=True) as connection:
            credentials.revoke_admin_token_row(connection, token_id, now_unix_ns=self._clock())
        self._admin_cache.clear()

    def authenticate_admin(self, token: str) -> AdminAuth | None:
        """The admin token a bearer token is (revoked ones included, flagged), or None; cached
        like device tokens."""
        if not tokens.could_be_token(token, tokens.ADMIN_TOKEN_PREFIX):
            return None
        digest = tokens.token_sha256(token)
        found, auth = self._admin_cache.get(digest)
        if found:
            return auth
        with transaction(self.engine) as connection:
            auth = credentials.find_admin_token(connection, digest)
        self._admin_cache.put(digest, auth)
        return auth

    # Records

    def ingest(
        self, device_id: str, stream_id: str, device: DeviceInfo, records: Sequence[UsageRecord]
    ) -> IngestResult:
        """Store and price a batch of validated records, once: rows already stored are counted
        as duplicates. Returns after COMMIT. InvalidRecord (a ValueError) for a bad stream id
        or device info, or a record whose cost cannot be stored; nothing is stored then."""
        _check_push(stream_id, device)
        received_unix_ns = self._clock()
        with transaction(self.engine, write=True) as connection:
            known = connection.execute(
                sa.select(devices.c.name, devices.c.profile, devices.c.site, devices.c.cpu_cores, devices.c.hostname,
                          devices.c.platform, devices.c.agent_version)
                .where(devices.c.device_id == device_id)
                # Pruning locks the device's row before deleting its records (collector.retention).
                .with_for_update(read=True, key_share=True)
            ).first()
            if known is None:
                raise ValueError(f"no device {device_id!r}")
            cpu_cores = device.cpu_cores or known.cpu_cores
            inserted = 0
            new_rows: Sequence[tuple] = ()
            fresh = retention.unpruned(connection, device_id, stream_id, records)
            if fresh:
                schedule = self._books.schedule(
                    connection, profile=known.profile, site=known.site, reported_cpu_cores=cpu_cores
                )
                rows = priced_rows(
                    fresh, device_id=device_id, stream_id=stream_id, profile=known.profile, site=known.site,
                    received_unix_ns=received_unix_ns, schedule=schedule,
                )
                inserted_seqs = insert_new_rows(connection, records_table, RECORD_COLUMNS, _RECORD_KEY, "seq", rows)
                inserted = len(inserted_seqs)
                new_rows = rows if inserted == len(rows) else _rows_of(rows, inserted_seqs)
                add_to_rollups(connection, new_rows)
                model_usage.add_usage(connection, new_rows)
                live = self._budgets.live(connection, for_ingest=True) if new_rows else []
                if live:
                    budget_ledger.add_spend(
                        connection, self._budgets, live, new_rows, device_name=known.name, site=known.site,
                        now_unix_ns=received_unix_ns,
                    )
            connection.execute(
                sa.update(devices).where(devices.c.device_id == device_id).values(
                    last_seen_unix_ns=received_unix_ns,
                    hostname=device.hostname or known.hostname,
                    cpu_cores=cpu_cores,
                    platform=device.platform or known.platform,
                    agent_version=device.agent_version or known.agent_version,
                    record_count=devices.c.record_count + inserted,
                    first_start_unix_ns=_earliest(devices.c.first_start_unix_ns, fresh),
                )
            )
        return IngestResult(
            inserted=inserted,
            duplicates=len(records) - inserted,
            acked_through_seq=max((record.seq for record in records), default=0),
            new_rows=new_rows,
        )

    # Price books and costs

    def add_price_book(self, document: Mapping, *, effective_from_unix_ns: int) -> int:
        """Add a price book (see collector.pricebook); it prices records ingested from now on
        whose start is at or after `effective_from_unix_ns`. PriceBookError (a ValueError) names
        the offending field."""
        with transaction(self.engine, write=True) as connection:
            return self._books.add(
                connection, document, effective_from_unix_ns=effective_from_unix_ns, created_unix_ns=self._clock()
            )

    def list_price_books(self) -> list[PriceBookRow]:
        with transaction(self.engine) as connection:
            return self._books.list(connection)

    def explain_record(self, stream_id: str, seq: int, *, device: str | None = None) -> dict:
        """How the stored record `seq` of stream `stream_id` was priced (collector.pricing.
        explain_cost, with the record and its price book). `device` (a name or id) picks one
        when streams of two devices share the id. LookupError when no record, or more than one,
        matches."""
        query = (
            sa.select(records_table, devices.c.name.label("device_name"))
            .join(devices, devices.c.device_id == records_table.c.device_id)
            .where(records_table.c.stream_id == stream_id, records_table.c.seq == seq)
        )
        if device is not None:
            query = query.where(sa.or_(devices.c.name == device, devices.c.device_id == device))
        with transaction(self.engine) as connection:
            rows = connection.execute(query.limit(2)).all()
            if len(rows) != 1:
                where = f" of device {device!r}" if device is not None else ""
                if not rows:
                    pruned = retention.pruned_record_message(connection, stream_id, seq, device)
                    raise LookupError(pruned or f"no record {stream_id}:{seq}{where}")
                raise LookupError(f"records {stream_id}:{seq} of more than one device: name one with --device")
            row = rows[0]
            book = self._books.parsed(connection, row.price_book_id)
            book_row = connection.execute(
                sa.select(price_books.c.effective_from_unix_ns).where(price_books.c.id == row.price_book_id)
            ).one()
            discount = record_discount(
                connection, self._books, device_name=row.device_name, model=row.model,
                start_unix_ns=row.start_unix_ns, list_pico=row.cost_pico,
            )
        rate = device_rate(
            book, row.price_book_id, profile=row.profile, site=row.site, reported_cpu_cores=row.price_cpu_cores
        )
        explanation = explain_cost(
            book, rate, cpu_time_ns=row.cpu_time_ns, gpu_time_ns=row.gpu_time_ns, energy_uj=row.energy_uj,
            start_unix_ns=row.start_unix_ns, model=row.model, input_tokens=row.input_tokens,
            output_tokens=row.output_tokens, count=row.count,
        )
        stored = {
            "compute": row.compute_cost_pico, "energy": row.energy_cost_pico, "tokens": row.token_cost_pico,
            "requests": row.request_cost_pico, "total": row.cost_pico,
        }
        return {
            "record": {
                "device": row.device_name, "device_id": row.device_id, "stream_id": row.stream_id, "seq": row.seq,
                "model": row.model, "model_version": row.model_version, "start_unix_ns": row.start_unix_ns,
                "profile": row.profile, "site": row.site,
                # What a Triton server did for the call, joined on the device (null without).
                "server": row.server,
            },
            "currency": book.currency,
            "price_book": {"id": row.price_book_id, "effective_from_unix_ns": book_row.effective_from_unix_ns},
            **explanation,
            "note": row.pricing_note,
            # The month's volume discount (null when none covers the record): reports share it
            # over the month's usage in whole picos (collector.charges).
            "discount": discount,
            # The stored costs were made at ingest; the derivation above repeats it exactly.
            "matches_stored": all(explanation[name]["picos"] == picos for name, picos in stored.items()),
        }

    def costs(
        self,
        *,
        group_by: Sequence[str] = (),
        since_unix_ns: int | None = None,
        until_unix_ns: int | None = None,
        granularity: str | None = None,
        top: int | None = None,
        from_records: bool = False,
        period_costs: bool = True,
    ) -> CostReport:
        """Stored costs by group, over records whose start is in [since, until) (None: open).
        Group keys: model, version, device, site, runtime, tag:KEY, class:DIMENSION
        (collector.workload_classes). granularity ("hour", "day",
        "month"): a group per UTC period too. top N: the N groups that cost most over the range,
        and the rest summed per period into a group with other=True. ValueError for an unknown
        key or granularity, a top N that is not a positive integer, or since after until.

        Besides the records' own costs, a report carries its period costs (collector.charges):
        volume discounts, idle capacity and monthly fixed costs; period_costs=False leaves them
        out (the records' costs at list prices alone).

        The whole hours of the range are summed from the hourly roll-ups; from_records sums
        every record instead (the same figures, slower: a check on the roll-ups)."""
        group_by = tuple(group_by) if not isinstance(group_by, str) else group_by
        query = CostQuery(group_by, since_unix_ns, until_unix_ns, granularity, top)
        with transaction(self.engine) as connection:
            report = run_report(
                connection, self._books, query, now_unix_ns=self._clock(), from_records=from_records,
                period_costs=period_costs,
            )
            # After the read: a deletion it saw was committed after its cutoff (collector.retention).
            retention.check_report_range(
                retention.raw_cutoff(connection), since_unix_ns, until_unix_ns, from_records=from_records
            )
        return report

    # Budgets and webhooks

    def add_budget(self, document: Mapping) -> Budget:
        """Add a budget (collector.budgets); its current period starts from what the records
        matching its scope spent so far. BudgetError (a ValueError) names the offending field;
        ValueError for a taken name."""
        with transaction(self.engine, write=True) as connection:
            return budget_store.insert_budget(connection, document, now_unix_ns=self._clock())

    def update_budget(self, name_or_id: str, document: Mapping) -> Budget:
        """Replace a budget's whole document; its current period's spend is summed again for
        the new scope and period. KeyError if unknown; BudgetError, or ValueError for a taken name."""
        with transaction(self.engine, write=True) as connection:
            return budget_store.replace_budget(connection, name_or_id, document, now_unix_ns=self._clock())

    def delete_budget(self, name_or_id: str) -> None:
        """Stop the budget (its events stay, listed by its id). KeyError if unknown."""
        with transaction(self.engine, write=True) as connection:
            budget_store.soft_delete(connection, name_or_id, now_unix_ns=self._clock())

    def list_budgets(self) -> list[BudgetStatus]:
        with transaction(self.engine) as connection:
            return budget_store.statuses(connection, self._budgets.live(connection), now_unix_ns=self._clock())

    def budget(self, name_or_id: str) -> BudgetStatus | None:
        """The live budget with this name, else with this id, and where it stands; or None."""
        with transaction(self.engine) as connection:
            return budget_store.status_of(connection, name_or_id, now_unix_ns=self._clock())

    def budget_events(
        self, *, budget: str | None = None, since_unix_ns: int | None = None, limit: int = 100
    ) -> list[BudgetEvent]:
        """Budget events oldest first, of one budget (name, or id for a deleted one) or all,
        created at or after since. KeyError for an unknown budget; ValueError for a bad limit."""
        with transaction(self.engine) as connection:
            return budget_store.events(connection, budget=budget, since_unix_ns=since_unix_ns, limit=limit)

    def record_budget_event(
        self, budget_id: str, *, period_start_unix_ns: int, kind: str, key: str, details: Mapping
    ) -> bool:
        """Store an event once (True when new), with a delivery per live webhook."""
        with transaction(self.engine, write=True) as connection:
            return budget_ledger.record_event(
                connection, budget_id, period_start_unix_ns=period_start_unix_ns, kind=kind, key=key,
                details=dict(details), now_unix_ns=self._clock(),
            )

    def push_state(self, device_id: str) -> PushState:
        """The budgets that can apply to the device, its leases, and its price hints, for a Push
        reply (collector.budget_push)."""
        with transaction(self.engine) as connection:
            return self._push_states.state(connection, device_id, now_unix_ns=self._clock())

    def add_webhook(self, url: str) -> NewWebhook:
        """A webhook for budget events; the returned secret is its only copy. ValueError for a
        URL that is not http(s)."""
        with transaction(self.engine, write=True) as connection:
            return webhook_store.insert_webhook(connection, url, now_unix_ns=self._clock())

    def list_webhooks(self) -> list[WebhookRow]:
        with transaction(self.engine) as connection:
            return webhook_store.webhook_rows(connection)

    def revoke_webhook(self, webhook_id: str) -> None:
        """Events stored from now on are not sent to it. KeyError if unknown."""
        with transaction(self.engine, write=True) as connection:
            webhook_store.revoke_webhook_row(connection, webhook_id, now_unix_ns=self._clock())

    # Re-pricing and retention

    def reprice(
        self, *, since_unix_ns: int | None = None, until_unix_ns: int | None = None, device: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> RepriceResult:
        """Re-price the stored records whose start is in [since, until) (None: open; an open
        start is the retention cutoff) with the price books in force now, and their hourly
        roll-ups with them (collector.repricing); idempotent. `device` (a name or id) limits it
        to one device. progress(records, total) is called after each page of records with the
        page's count and the records in the range when it began. ValueError for a bad range or
        one that reaches before the retention cutoff, LookupError for an unknown device;
        nothing is changed then."""
        device_id = None
        if device is not None:
            found = self.device(device)
            if found is None:
                raise LookupError(f"no device named or with id {device!r}")
            device_id = found.device_id
        with transaction(self.engine) as connection:
            since_unix_ns = retention.reprice_since(retention.raw_cutoff(connection), since_unix_ns, until_unix_ns)
        return repricing.reprice(
            self.engine, self._books, since_unix_ns=since_unix_ns, until_unix_ns=until_unix_ns, device_id=device_id,
            progress=progress,
        )

    def prune_records(self, *, before_unix_ns: int) -> PruneResult:
        """Delete the raw records that started before `before_unix_ns` rounded down to a whole
        UTC hour, keeping their hourly roll-ups (collector.retention). The cutoff is stored and
        only moves forward: an earlier one prunes up to the stored cutoff. ValueError for a
        cutoff that is not an integer or is less than a day before now; nothing changes then."""
        return retention.prune(self.engine, before_unix_ns=before_unix_ns, now_unix_ns=self._clock())


_DEVICE_ROWS = sa.select(devices, device_rotations.c.device_id.is_not(None).label("rotating")).outerjoin(
    device_rotations, device_rotations.c.device_id == devices.c.device_id
)


def _device_row(row: sa.Row) -> DeviceRow:
    return DeviceRow(
        device_id=row.device_id, name=row.name, profile=row.profile, site=row.site,
        created_unix_ns=row.created_unix_ns, last_seen_unix_ns=row.last_seen_unix_ns,
        revoked=row.revoked_unix_ns is not None, hostname=row.hostname, cpu_cores=row.cpu_cores,
        records=row.record_count, platform=row.platform, agent_version=row.agent_version, rotating=bool(row.rotating),
    )


def _rows_of(rows: Sequence[tuple], seqs: Sequence[int]) -> list[tuple]:
    """The rows (of one device and stream) with these seqs; the first of a seq given twice, as
    the insert keeps it."""
    wanted = set(seqs)
    found = []
    for row in rows:
        seq = row[_SEQ]
        if seq in wanted:
            wanted.discard(seq)
            found.append(row)
    return found


def _earliest(column: sa.ColumnElement[int], records: Sequence[UsageRecord]) -> sa.ColumnElement[int]:
    """The column's value, or the records' earliest start where that is earlier (or the column NULL)."""
    if not records:
        return column
    first = min(record.start_unix_ns for record in records)
    return sa.case((sa.or_(column.is_(None), column > first), first), else_=column)


def _device_exists(connection: sa.Connection, device_id: str) -> bool:
    return connection.execute(sa.select(devices.c.device_id).where(devices.c.device_id == device_id)).first() is not None


def _check_push(stream_id: str, device: DeviceInfo) -> None:
    check_text("stream_id", stream_id, MAX_STREAM_ID_CHARS, required=True)
    for name in ("hostname", "platform", "agent_version"):
        check_text(f"device.{name}", getattr(device, name))
    if type(device.cpu_cores) is not int or not 0 <= device.cpu_cores <= MAX_CPU_CORES:
        raise InvalidRecord("device.cpu_cores", f"must be an integer from 0 to {MAX_CPU_CORES}")
