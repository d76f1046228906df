"""Parsing of what users type: time bounds, group keys, listen addresses.

Shared by the HTTP API, the CLI and the server. Standard library only: the CLI parses its
arguments before it knows whether the collector's extras are installed. Which group keys exist is the store's business; this module only splits
the list and leaves the verdict on each key to Store.costs.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

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
    """A query parameter that cannot be used; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


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
