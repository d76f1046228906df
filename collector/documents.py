"""What the operators' documents (price books, budgets) share: the error that names the
offending field, and the checks of exact decimals and time zones."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_TIMEZONE_CHARS = 64


class DocumentError(ValueError):
    """A document breaks the rules; `field` is the dotted path of the offending value."""

    document = "document"  # what the message calls it

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{self.document} {field}: {reason}" if field else f"{self.document}: {reason}")


def exact_decimal(text: str, field: str, error: type[DocumentError]) -> Decimal:
    """The finite Decimal a string holds; `error` names `field` otherwise."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise error(field, f"{text!r} is not a decimal number") from None
    if not value.is_finite():
        raise error(field, f"{text!r} is not a finite number")
    return value


def iana_timezone(value: object, field: str, error: type[DocumentError]) -> ZoneInfo:
    """The zone an IANA name names; `error` names `field` otherwise."""
    if type(value) is not str or not 0 < len(value) <= MAX_TIMEZONE_CHARS:
        raise error(field, f"must be an IANA time zone name such as \"Europe/Berlin\", got {value!r}")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise error(field, f"{value!r} is not a known IANA time zone") from None
