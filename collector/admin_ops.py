"""The operators' operations, once for every surface: the HTTP API (collector.http_api) and the
gRPC Admin service (collector.admin_service) parse their requests with collector.params, call
these, and turn the answers into JSON or protobuf.

Each function is blocking (it asks the store): run it off the event loop. Bad input raises
QueryError (400 / INVALID_ARGUMENT), a refusal that is no fault of the input's form raises
Refused, whose `kind` the transports map to their statuses; StoreUnavailable passes through.
Answers are JSON-ready dicts, money as exact decimal strings.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from collector import projections
from collector.books import PriceBookRow
from collector.budgets import BudgetError
from collector.focus_files import FORMATS, export_focus
from collector.params import (
    DeviceSpec,
    EventsQuery,
    ForecastQuery,
    QueryError,
    RecordRef,
    TimeRange,
)
from collector.pricebook import PriceBookError
from collector.pricing import decimal_text, picos_to_decimal
from collector.spend_series import day_of
from collector.store import DeviceRow, Store

NOT_FOUND = "not_found"
EXISTS = "exists"
PARQUET_NOT_INSTALLED = "Parquet output needs pyarrow on the collector: pip install 'infermeter[parquet]' (or ask for csv)"


class Refused(Exception):
    """The request is well formed but cannot be done: `kind` NOT_FOUND or EXISTS."""

    def __init__(self, kind: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field


def device_json(row: DeviceRow) -> dict:
    """A device as the APIs show it. Devices report no buffer backlog, so none is shown: what
    the collector knows is the records it stored and when the device last pushed."""
    return dataclasses.asdict(row)


def add_device(store: Store, spec: DeviceSpec) -> dict:
    """Register a device: {"device", "token"}, the token shown only this once."""
    try:
        new = store.add_device(spec.name, profile=spec.profile, site=spec.site)
    except ValueError as err:  # the fields were checked: the name is taken
        raise Refused(EXISTS, str(err), "name") from None
    return {"device": device_json(find_device(store, new.device_id)), "token": new.token}


def find_device(store: Store, name_or_id: str) -> DeviceRow:
    device = store.device(name_or_id)
    if device is None:
        raise Refused(NOT_FOUND, f"no device named or with id {name_or_id!r}", "name")
    return device


def price_book_json(row: PriceBookRow, *, document: bool = False) -> dict:
    value = {
        "id": row.id, "effective_from_unix_ns": row.effective_from_unix_ns, "currency": row.currency,
        "created_unix_ns": row.created_unix_ns,
    }
    if document:
        value["document"] = row.document
    return value


def list_price_books(store: Store) -> list[dict]:
    return [price_book_json(row) for row in store.list_price_books()]


def price_book(store: Store, book_id: int, *, document: bool = True) -> dict:
    for row in store.list_price_books():
        if row.id == book_id:
            return price_book_json(row, document=document)
    raise Refused(NOT_FOUND, f"no price book {book_id}", "id")


def create_price_book(
    store: Store, document: dict, effective_from_unix_ns: int, *, document_field: str, effective_field: str
) -> dict:
    """Add a price book version. A fault in the document is a QueryError whose field is its
    dotted path under `document_field`; an effective time out of range names `effective_field`."""
    try:
        book_id = store.add_price_book(document, effective_from_unix_ns=effective_from_unix_ns)
    except PriceBookError as err:
        if err.field == "effective_from_unix_ns":
            raise QueryError(effective_field, f"{effective_field} {err.reason}") from None
        field = f"{document_field}.{err.field}" if err.field else document_field
        raise QueryError(field, str(err)) from None
    return price_book(store, book_id, document=False)


def explain_record(store: Store, ref: RecordRef) -> dict:
    try:
        return store.explain_record(ref.stream_id, ref.seq, device=ref.device)
    except LookupError as err:
        raise Refused(NOT_FOUND, _text(err), "seq") from None


def reprice(store: Store, scope: TimeRange, *, since_field: str = "since") -> dict:
    """Price the stored records of the range again with the books now in force (Store.reprice).
    A range that reaches before the retention cutoff names `since_field`."""
    try:
        result = store.reprice(
            since_unix_ns=scope.since_unix_ns, until_unix_ns=scope.until_unix_ns, device=scope.device
        )
    except LookupError as err:  # an unknown device
        raise Refused(NOT_FOUND, _text(err), "device") from None
    except ValueError as err:  # since after until, or a range reaching before the retention cutoff
        raise QueryError(since_field, str(err)) from None
    return {
        "records": result.records,
        "changed": result.changed,
        "old_cost": decimal_text(picos_to_decimal(result.old_cost_pico)),
        "new_cost": decimal_text(picos_to_decimal(result.new_cost_pico)),
        "currency": result.currency,
    }


def prune_records(store: Store, before_unix_ns: int, *, before_field: str = "before") -> dict:
    """Delete the raw records that started before `before_unix_ns`, rounded down to a whole UTC
    hour; the hourly roll-ups keep their sums (Store.prune_records). A cutoff less than a day
    ago names `before_field`."""
    try:
        result = store.prune_records(before_unix_ns=before_unix_ns)
    except ValueError as err:
        raise QueryError(before_field, str(err)) from None
    return {"records": result.records, "before_unix_ns": result.before_unix_ns}


def _text(err: BaseException) -> str:
    """A LookupError's message (KeyError's str() would quote it)."""
    return str(err.args[0]) if err.args else type(err).__name__


def check_export_format(file_format: str, *, field: str = "format") -> str:
    if file_format not in FORMATS:
        raise QueryError(field, f"{file_format!r} is not an export format (expected one of: {', '.join(FORMATS)})")
    if file_format == "parquet" and not parquet_installed():
        raise QueryError(field, PARQUET_NOT_INSTALLED)
    return file_format


def parquet_installed() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def export_focus_file(store: Store, path: Path, *, file_format: str, scope: TimeRange) -> dict:
    """Write the FOCUS export of the range to `path`; its summary (rows, records, billed cost).
    A range that reaches before the retention cutoff names `since`."""
    check_export_format(file_format)
    try:
        summary = export_focus(
            store.engine, path, file_format=file_format,
            since_unix_ns=scope.since_unix_ns, until_unix_ns=scope.until_unix_ns,
        )
    except ValueError as err:  # the format and range were checked: raw records were pruned
        raise QueryError("since", str(err)) from None
    return summary.to_json()


def today() -> date:
    """The current UTC day: the forecasts' history ends before it."""
    return day_of(time.time_ns())


def forecast(store: Store, query: ForecastQuery) -> dict:
    """The forecast of a scope's spend and of its budgets' periods (collector.projections)."""
    return projections.scope_forecast(
        store, query.scope, today=today(), horizon_days=query.horizon_days, since=query.since,
    )


# Budgets and webhooks


def list_budgets(store: Store) -> list[dict]:
    return [status.to_json() for status in store.list_budgets()]


def get_budget(store: Store, name: str) -> dict:
    status = store.budget(name)
    if status is None:
        raise Refused(NOT_FOUND, f"no budget named or with id {name!r}", "name")
    return status.to_json()


def add_budget(store: Store, document: Mapping, *, document_field: str | None = None) -> dict:
    """Add a budget; its status. A fault in the document names its dotted path (under
    `document_field` when the document is one field of the request)."""
    try:
        budget = store.add_budget(document)
    except BudgetError as err:
        raise QueryError(_in(document_field, err.field), str(err)) from None
    except ValueError as err:  # the document was checked: the name is taken
        raise Refused(EXISTS, str(err), _in(document_field, "name")) from None
    return get_budget(store, budget.budget_id)


def update_budget(store: Store, name: str, document: Mapping, *, document_field: str | None = None) -> dict:
    """Replace a budget's document; its status."""
    try:
        budget = store.update_budget(name, document)
    except KeyError as err:
        raise Refused(NOT_FOUND, _text(err), "name") from None
    except BudgetError as err:
        raise QueryError(_in(document_field, err.field), str(err)) from None
    except ValueError as err:  # renamed to a name another budget has
        raise Refused(EXISTS, str(err), _in(document_field, "name")) from None
    return get_budget(store, budget.budget_id)


def delete_budget(store: Store, name: str) -> None:
    try:
        store.delete_budget(name)
    except KeyError as err:
        raise Refused(NOT_FOUND, _text(err), "name") from None


def budget_events(store: Store, query: EventsQuery) -> list[dict]:
    """Budget events, oldest first; a deleted budget's by its id."""
    try:
        events = store.budget_events(budget=query.budget, since_unix_ns=query.since_unix_ns, limit=query.limit)
    except KeyError as err:
        raise Refused(NOT_FOUND, _text(err), "budget") from None
    return [event.to_json() for event in events]


def add_webhook(store: Store, url: str) -> dict:
    """Add a webhook: {"webhook_id", "url", "secret"}, the secret shown only this once."""
    try:
        new = store.add_webhook(url)
    except ValueError as err:
        raise QueryError("url", str(err)) from None
    return {"webhook_id": new.webhook_id, "url": new.url, "secret": new.secret}


def list_webhooks(store: Store) -> list[dict]:
    return [row.to_json() for row in store.list_webhooks()]


def revoke_webhook(store: Store, webhook_id: str) -> dict:
    """Stop delivering to a webhook; the webhook as it is now."""
    try:
        store.revoke_webhook(webhook_id)
    except KeyError as err:
        raise Refused(NOT_FOUND, _text(err), "id") from None
    return next(row.to_json() for row in store.list_webhooks() if row.webhook_id == webhook_id)


def _in(document_field: str | None, field: str) -> str | None:
    if document_field is None:
        return field or None
    return f"{document_field}.{field}" if field else document_field
