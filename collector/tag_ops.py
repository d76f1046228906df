"""The operations of the tag policy, devices' default tags, untagged costs and chargeback, once
for every surface (HTTP, gRPC Admin, the command line), as collector.admin_ops's are: blocking
calls on the store that raise QueryError for bad input and Refused for an unknown device, and
answer JSON-ready dicts with money as exact decimal strings."""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from collector import tag_store
from collector.admin_ops import find_device
from collector.chargeback import DEFAULT_BY, MAX_BY, chargeback, report_keys, untagged
from collector.charges import next_month
from collector.database import transaction
from collector.params import QueryError, check_range, time_value
from collector.pricing import NS_PER_S
from collector.store import Store
from collector.tag_policy import (
    TagPolicy,
    TagPolicyError,
    check_tag_key,
    check_tags,
    parse_policy,
)

# Years whose months fit int64 Unix ns, as times do (collector.params).
_MONTH = re.compile(r"(19[7-9][0-9]|2[01][0-9]{2}|22[0-5][0-9]|226[01])-(0[1-9]|1[0-2])")
MONTH_FORM = "YYYY-MM (a calendar month, UTC, from 1970-01 to 2261-12)"


@dataclass(frozen=True, slots=True)
class Period:
    """[since, until) in Unix ns; None: open."""

    since_unix_ns: int | None
    until_unix_ns: int | None


def period(month: object = None, since: object = None, until: object = None) -> Period:
    """A report's period: a calendar month (UTC), or since and until as `report costs` takes
    them (either may be left out: from the fleet's start, to the start of the current hour)."""
    if month is not None:
        if since is not None or until is not None:
            raise QueryError("month", "give a month, or since and until, not both")
        if type(month) is not str or not _MONTH.fullmatch(month):
            raise QueryError("month", f"{month!r} is not {MONTH_FORM}")
        start = _month_unix_ns(month)
        return Period(start, next_month(start))
    since_unix_ns = None if since is None else time_value(since, field="since")
    until_unix_ns = None if until is None else time_value(until, field="until")
    check_range(since_unix_ns, until_unix_ns)
    return Period(since_unix_ns, until_unix_ns)


def _month_unix_ns(text: str) -> int:
    year, month = (int(part) for part in text.split("-"))
    return calendar.timegm((year, month, 1, 0, 0, 0)) * NS_PER_S


def chargeback_by(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """The tags a chargeback has a line per value of: "department,project" or a list (None or
    empty: department and project)."""
    if value is None or value == "" or value == []:
        return DEFAULT_BY
    keys = [part.strip() for part in value.split(",")] if isinstance(value, str) else list(value)
    if len(keys) > MAX_BY:
        raise QueryError("by", f"a chargeback has lines by at most {MAX_BY} tags, not {len(keys)}")
    for key in keys:
        try:
            check_tag_key(key, field="by")
        except TagPolicyError as err:
            raise QueryError("by", str(err)) from None
    if len(set(keys)) != len(keys):
        raise QueryError("by", "a tag is named more than once")
    return tuple(keys)


def get_policy(store: Store) -> dict:
    with transaction(store.engine) as connection:
        return tag_store.current_policy(connection).to_json()


def set_policy(store: Store, document: object, *, prefix: str = "") -> dict:
    """Store a new version of the policy; the old versions stay, and reports made from now on
    apply this one. prefix: where the document is in the request, for the fields of errors."""
    try:
        policy = parse_policy(document)
    except TagPolicyError as err:
        raise QueryError(".".join(part for part in (prefix, err.field) if part) or None, str(err)) from None
    with transaction(store.engine, write=True) as connection:
        return tag_store.insert_policy(connection, policy, now_unix_ns=time.time_ns()).to_json()


def get_device_tags(store: Store, name: str) -> dict:
    device = find_device(store, name)
    with transaction(store.engine) as connection:
        return {"device": device.name, "tags": tag_store.device_tags(connection, device.device_id)}


def set_device_tags(store: Store, name: str, tags: object) -> dict:
    """Replace the device's default tags ({}: none); values the policy lists must be allowed.
    The device hears of them in its next Push reply."""
    device = find_device(store, name)
    with transaction(store.engine, write=True) as connection:
        policy = tag_store.current_policy(connection)
        try:
            checked = check_tags(tags, policy)
        except TagPolicyError as err:
            raise QueryError(err.field, str(err)) from None
        tag_store.replace_device_tags(connection, device.device_id, checked, now_unix_ns=time.time_ns())
    return {"device": device.name, "tags": dict(sorted(checked.items()))}


def untagged_costs(store: Store, scope: Period) -> dict:
    """The records that fail the policy over the period, per device and model (collector.chargeback)."""
    policy = _policy(store)
    report = store.costs(
        group_by=report_keys(policy), since_unix_ns=scope.since_unix_ns, until_unix_ns=scope.until_unix_ns,
    )
    return untagged(report, policy, since_unix_ns=scope.since_unix_ns, until_unix_ns=scope.until_unix_ns)


def chargeback_report(store: Store, scope: Period, by: Sequence[str] = DEFAULT_BY) -> dict:
    """The period's chargeback by the `by` tags; its lines add up to `report costs`' total for
    the same period (collector.chargeback)."""
    policy = _policy(store)
    report = store.costs(
        group_by=report_keys(policy, by), since_unix_ns=scope.since_unix_ns, until_unix_ns=scope.until_unix_ns,
    )
    return chargeback(report, policy, by, since_unix_ns=scope.since_unix_ns, until_unix_ns=scope.until_unix_ns)


def _policy(store: Store) -> TagPolicy:
    with transaction(store.engine) as connection:
        return tag_store.current_policy(connection)

