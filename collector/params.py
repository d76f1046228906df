"""Parsing of what users type: time bounds, group keys, listen addresses, and the fields of
the operators' requests (devices, price books, records, re-pricing, pruning).

Shared by the HTTP API, the gRPC Admin service, the CLI and the server, so that every surface
refuses the same input with the same words. Standard library only: the CLI parses its
arguments before it knows whether the collector's extras are installed. Which group keys
exist is the store's business; this module only splits the list and leaves the verdict on
each key to Store.costs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlsplit

from collector.pricebook import NAME_PATTERN

INT64_MAX = 2**63 - 1
# At most 19 digits: anything longer cannot be an int64, and int() on a huge string is slow.
_UNIX_NS = re.compile(r"[0-9]{1,19}")
# RFC 3339 (with nanosecond fractions, which datetime.fromisoformat would truncate), or a bare
# date meaning midnight UTC. The fields' ranges are spelled out rather than left to
# fromisoformat, which reads an offset of +00:60 as +01:00 and whose leniency varies by Python
# version; openapi.json states the same forms.
_RFC3339 = re.compile(
    r"(?P<date>[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01]))"
    r"(?:[Tt ](?P<time>(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])(?:\.(?P<fraction>[0-9]{1,9}))?"
    r"(?P<offset>[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]))?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TIME_FORMS = "an RFC 3339 timestamp (2026-11-22T00:00:00Z), a date (2026-11-22, midnight UTC) or Unix ns"


class QueryError(ValueError):
    """A query parameter or request field that cannot be used; `field` names it (None when the
    request as a whole is at fault), `code` says how (the HTTP API's error code)."""

    def __init__(self, field: str | None, message: str, *, code: str = "invalid_parameter") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


def parse_time_ns(text: str, *, field: str) -> int:
    """Unix ns from an RFC 3339 timestamp, a date or an integer of Unix ns (exact, no floats)."""
    if _UNIX_NS.fullmatch(text):
        value = int(text)
    else:
        value = _rfc3339_ns(text, field)
    if not 0 <= value <= INT64_MAX:
        raise QueryError(field, f"{text!r} is outside the range of int64 Unix ns")
    return value


def _rfc3339_ns(text: str, field: str) -> int:
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise QueryError(field, f"{text!r} is not {TIME_FORMS}")
    offset = match["offset"] or "Z"
    whole = f"{match['date']}T{match['time'] or '00:00:00'}{'+00:00' if offset in 'Zz' else offset}"
    try:
        moment = datetime.fromisoformat(whole)
    except ValueError as err:
        raise QueryError(field, f"{text!r} is not a valid time: {err}") from None
    # timedelta is exact to the microsecond; whole seconds keep the nanoseconds exact too.
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return seconds * 10**9 + int((match["fraction"] or "").ljust(9, "0"))


def parse_group_by(text: str) -> tuple[str, ...]:
    """Split 'model,device,tag:project' into keys; empty text means no grouping.

    Only spaces around keys are dropped, as openapi.json documents: str.strip() would also drop
    tabs, newlines, Unicode spaces and U+001C-U+001F, which the document does not allow there."""
    if not text.strip(" "):
        return ()
    keys = tuple(key.strip(" ") for key in text.split(","))
    if "" in keys:
        raise QueryError("group_by", f"{text!r} has an empty key")
    return keys


def check_range(since_unix_ns: int | None, until_unix_ns: int | None) -> None:
    if since_unix_ns is not None and until_unix_ns is not None and since_unix_ns > until_unix_ns:
        raise QueryError("since", "since is after until")


def parse_address(text: str) -> tuple[str, int]:
    """(host, port) from 'HOST:PORT' or '[IPv6]:PORT'; port 0 asks for a free one."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:8080 or [::1]:8080)")
    return host, int(port)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# Requests of the operators' APIs. HTTP bodies are JSON objects; gRPC requests carry the same
# values in typed fields. Both come through these checks.

NAME_RULE = "1-64 characters of A-Z a-z 0-9 . _ -"
DEFAULT_NAME = "default"
MAX_STREAM_ID_CHARS = 128
# Nesting deeper than this is no request of ours; json would recurse until it hit the limit.
MAX_JSON_DEPTH = 32
_SEQ = re.compile(r"[0-9]{1,19}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    name: str
    profile: str = DEFAULT_NAME
    site: str = DEFAULT_NAME


@dataclass(frozen=True, slots=True)
class RecordRef:
    stream_id: str
    seq: int
    device: str | None = None


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Records whose start is in [since, until) (None: open), of one device (None: all)."""

    since_unix_ns: int | None = None
    until_unix_ns: int | None = None
    device: str | None = None


def parse_json(data: bytes, *, field: str | None = None) -> object:
    """A JSON value from UTF-8 bytes, strictly: no NaN or Infinity, no integers of more digits
    than int() takes, no nesting deeper than MAX_JSON_DEPTH."""
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise QueryError(field, "not UTF-8 text", code="invalid_body") from None
    except RecursionError:
        raise QueryError(field, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", code="invalid_body") from None
    except ValueError as err:
        raise QueryError(field, f"not valid JSON: {err}", code="invalid_body") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise QueryError(field, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", code="invalid_body")
    return value


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _depth(value: object) -> int:
    """The nesting depth of a parsed JSON value, without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def body_fields(body: object, *, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> dict:
    """The fields of a request body, which must be a JSON object with the required fields and
    no others than those named. An optional field is left out, never null: the values' checks
    take None for "not given"."""
    if not isinstance(body, dict):
        raise QueryError(None, f"the body must be a JSON object, not {_json_type(body)}", code="invalid_body")
    for name, value in body.items():
        if name not in required and name not in optional:
            expected = ", ".join(required + optional) or "none"
            raise QueryError(name, f"unknown field {name!r} (expected: {expected})", code="unknown_field")
        if value is None:
            raise QueryError(name, f"the field {name!r} is null: leave it out instead, or give a value")
    for name in required:
        if name not in body:
            raise QueryError(name, f"the field {name!r} is required", code="missing_field")
    return body


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def check_name(value: object, *, field: str) -> str:
    """A device, profile or site name: safe in URLs, file names and report columns."""
    if type(value) is not str:
        raise QueryError(field, f"{field} must be a string of {NAME_RULE}, not {_json_type(value)}")
    if not NAME_PATTERN.fullmatch(value):
        raise QueryError(field, f"{value!r} is not a valid {field}: use {NAME_RULE}")
    return value


def time_value(value: object, *, field: str) -> int:
    """Unix ns from a JSON value: a string as parse_time_ns reads it, or an integer (never a
    boolean or a float) in the range of int64 Unix ns."""
    if type(value) is str:
        return parse_time_ns(value, field=field)
    if type(value) is not int:
        raise QueryError(field, f"{field} must be {TIME_FORMS}, not {_json_type(value)}")
    if not 0 <= value <= INT64_MAX:
        raise QueryError(field, f"{value} is outside the range of int64 Unix ns")
    return value


def device_spec(name: object, profile: object = None, site: object = None) -> DeviceSpec:
    """A device to register; a profile or site left out (None) is "default"."""
    return DeviceSpec(
        check_name(name, field="name"),
        DEFAULT_NAME if profile is None else check_name(profile, field="profile"),
        DEFAULT_NAME if site is None else check_name(site, field="site"),
    )


def price_book_id(value: object, *, field: str = "id") -> int:
    """A price book's id: a positive integer, given as one or as its digits."""
    if type(value) is str and _SEQ.fullmatch(value):
        value = int(value)
    if type(value) is not int or not 1 <= value <= INT64_MAX:
        raise QueryError(field, f"{value!r} is not a price book id (a whole number from 1)")
    return value


def record_ref(stream_id: object, seq: object, device: object = None) -> RecordRef:
    """A stored record: its stream id, its seq (an integer or its digits) and, when streams of
    two devices share the id, the device's name or id."""
    if type(stream_id) is not str or not 1 <= len(stream_id) <= MAX_STREAM_ID_CHARS or _CONTROL.search(stream_id):
        raise QueryError("stream_id", f"a stream id is 1-{MAX_STREAM_ID_CHARS} characters without control characters")
    if type(seq) is str and _SEQ.fullmatch(seq):
        seq = int(seq)
    if type(seq) is not int or not 0 <= seq <= INT64_MAX:
        raise QueryError("seq", f"{seq!r} is not a record's seq (a whole number below 2^63)")
    return RecordRef(stream_id, seq, None if device is None else check_name(device, field="device"))


def time_range(since: object = None, until: object = None, device: object = None) -> TimeRange:
    """A range of records to re-price; each bound and the device may be left out (None)."""
    since_unix_ns = None if since is None else time_value(since, field="since")
    until_unix_ns = None if until is None else time_value(until, field="until")
    check_range(since_unix_ns, until_unix_ns)
    return TimeRange(since_unix_ns, until_unix_ns, None if device is None else check_name(device, field="device"))


def json_object(value: object, *, field: str) -> Mapping:
    """A document that must be a JSON object (a price book)."""
    if not isinstance(value, dict):
        raise QueryError(field, f"{field} must be a JSON object, not {_json_type(value)}")
    return value


# Budget scopes, as budget documents write them (collector.budgets, README.md "Budgets").

SCOPE_FORMS = '"global", "device:NAME", "model:NAME", "site:NAME" or "tag:KEY=VALUE"'


@dataclass(frozen=True, slots=True)
class Scope:
    """What a budget or a forecast covers: `kind` global, device, model, site or tag, and
    `value` the device, model or site name, or the tag as KEY=VALUE ("" for global)."""

    kind: str
    value: str = ""

    @property
    def text(self) -> str:
        return self.kind if self.kind == "global" else f"{self.kind}:{self.value}"


def parse_scope(value: object, *, field: str = "scope") -> Scope:
    """A scope from its text form (SCOPE_FORMS), by the budgets' own rules."""
    from collector.budgets import BudgetError
    from collector.budgets import parse_scope as parse_budget_scope

    if type(value) is not str:
        raise QueryError(field, f"{field} must be a string: {SCOPE_FORMS}, not {_json_type(value)}")
    if value.startswith("class:"):
        return _class_scope(value, field)
    try:
        return Scope(*parse_budget_scope(value))
    except BudgetError as err:
        raise QueryError(field, f"{field} {err.reason}") from None


def _class_scope(value: str, field: str) -> Scope:
    """A forecast's workload class scope, class:DIMENSION=VALUE (collector.workload_classes)."""
    from collector.workload_classes import DIMENSIONS, UNCLASSIFIED

    dimension, equals, chosen = value[len("class:"):].partition("=")
    if not equals or dimension not in DIMENSIONS or chosen not in (*DIMENSIONS[dimension], UNCLASSIFIED):
        forms = "; ".join(f"class:{name}={'|'.join((*values, UNCLASSIFIED))}" for name, values in DIMENSIONS.items())
        raise QueryError(field, f"{value!r} is no workload class scope: use {forms}")
    return Scope("class", f"{dimension}={chosen}")


DEFAULT_HORIZON_DAYS = 30
MAX_HORIZON_DAYS = 366
MAX_HISTORY_DAYS = 3 * 366
_DAYS = re.compile(r"[0-9]{1,4}")


@dataclass(frozen=True, slots=True)
class ForecastQuery:
    """A scope's forecast over the `horizon_days` from today, from its history since `since`
    (a UTC day; None: the default history)."""

    scope: Scope
    horizon_days: int = DEFAULT_HORIZON_DAYS
    since: date | None = None


def forecast_query(scope: object = None, horizon_days: object = None, since: object = None, *, today: date) -> ForecastQuery:
    """A forecast request; each value may be left out (None). horizon_days is an integer or its
    digits; since is a time (its UTC day), before today and at most MAX_HISTORY_DAYS earlier."""
    if type(horizon_days) is str and _DAYS.fullmatch(horizon_days):
        horizon_days = int(horizon_days)
    if horizon_days is None:
        horizon_days = DEFAULT_HORIZON_DAYS
    if type(horizon_days) is not int or not 1 <= horizon_days <= MAX_HORIZON_DAYS:
        raise QueryError("horizon_days", f"{horizon_days!r} is not a whole number of days from 1 to {MAX_HORIZON_DAYS}")
    since_day = None
    if since is not None:
        since_day = (_EPOCH + timedelta(microseconds=time_value(since, field="since") // 1000)).date()
        if not today - timedelta(days=MAX_HISTORY_DAYS) <= since_day < today:
            raise QueryError(
                "since", f"since must be a day before today and at most {MAX_HISTORY_DAYS} days ago, not {since_day}"
            )
    return ForecastQuery(Scope("global") if scope is None else parse_scope(scope), horizon_days, since_day)


# Budgets and webhooks

MAX_URL_CHARS = 2048
MAX_EVENTS = 1000
DEFAULT_EVENTS = 100
_LIMIT = re.compile(r"[0-9]{1,4}")
_WEBHOOK_ID = re.compile(r"whk_[0-9a-f]{24}")
_URL_SPACE = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True, slots=True)
class EventsQuery:
    """Budget events, newest first: of one budget (its name or id; None: all), created at or
    after since (None: any time), at most `limit`."""

    budget: str | None = None
    since_unix_ns: int | None = None
    limit: int = DEFAULT_EVENTS


def budget_name(value: object, *, field: str = "name") -> str:
    """A budget's name or id, as a path or query names it."""
    return check_name(value, field=field)


def events_query(budget: object = None, since: object = None, limit: object = None) -> EventsQuery:
    if type(limit) is str and _LIMIT.fullmatch(limit):
        limit = int(limit)
    if limit is None:
        limit = DEFAULT_EVENTS
    if type(limit) is not int or not 1 <= limit <= MAX_EVENTS:
        raise QueryError("limit", f"{limit!r} is not a whole number from 1 to {MAX_EVENTS}")
    return EventsQuery(
        None if budget is None else budget_name(budget, field="budget"),
        None if since is None else time_value(since, field="since"),
        limit,
    )


def webhook_url(value: object, *, field: str = "url") -> str:
    """An http(s) URL with a host, checked by its form alone: nothing is fetched or resolved."""
    if type(value) is not str:
        raise QueryError(field, f"{field} must be a string (an http or https URL), not {_json_type(value)}")
    if not 1 <= len(value) <= MAX_URL_CHARS or _URL_SPACE.search(value):
        raise QueryError(field, f"a webhook URL is 1-{MAX_URL_CHARS} characters without spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError as err:
        raise QueryError(field, f"{value[:80]!r} is not a URL: {err}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise QueryError(field, f"{value[:80]!r} is not an http or https URL with a host")
    return value


def webhook_id(value: object, *, field: str = "id") -> str:
    if type(value) is not str or not _WEBHOOK_ID.fullmatch(value):
        raise QueryError(field, f"{str(value)[:80]!r} is not a webhook id (whk_ and 24 hex digits)")
    return value
