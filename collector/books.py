"""Price books in the database: adding and listing them, and the rates that price a device.

A book never changes once added, so parsed books and the rates derived from them are cached by
id for the life of the process; only the small index of books (id, date, currency) is read per
ingest, which lets a replica see a book another replica added.

One currency per collector, so reports never add dollars to euros: the currency is that of the
newest book. A book in another currency is accepted only while no record is stored, and only
effective from 2000-01-01, so that it prices every record; older books in the old currency are
then kept as history and no longer used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from agent.record import MAX_START_UNIX_NS, MIN_START_UNIX_NS
from collector.pricebook import PriceBook, PriceBookError, parse_price_book
from collector.pricing import DeviceRate, device_rate
from collector.rows import RateSchedule
from collector.schema import price_books, records

# Distinct (book, profile, site, cores) keys are few; the bound only stops a pathological fleet.
_MAX_CACHED_RATES = 4096


@dataclass(frozen=True, slots=True)
class PriceBookRow:
    id: int
    effective_from_unix_ns: int
    currency: str
    document: dict
    created_unix_ns: int


class PriceBooks:
    def __init__(self) -> None:
        self._parsed: dict[int, PriceBook] = {}
        self._rates: dict[tuple[int, str, str, int], DeviceRate] = {}

    def schedule(
        self, connection: sa.Connection, *, profile: str, site: str, reported_cpu_cores: int,
        index: list[tuple[int, int, str]] | None = None,
    ) -> RateSchedule:
        """The device's rate under each book; `index` (from index()) saves reading it again."""
        index = self.index(connection) if index is None else index
        self._load(connection, [book_id for book_id, _, _ in index])
        effective: dict[int, DeviceRate] = {}
        for book_id, effective_from, _ in index:  # oldest first: a newer book of the same date wins
            key = (book_id, profile, site, reported_cpu_cores)
            rate = self._rates.get(key)
            if rate is None:
                if len(self._rates) >= _MAX_CACHED_RATES:
                    self._rates.clear()
                rate = self._rates[key] = device_rate(
                    self._parsed[book_id], book_id, profile=profile, site=site, reported_cpu_cores=reported_cpu_cores
                )
            effective[effective_from] = rate
        return RateSchedule(sorted(effective.items()))

    @staticmethod
    def index(connection: sa.Connection) -> list[tuple[int, int, str]]:
        """(id, effective_from, currency) of the books in the collector's currency, oldest first."""
        return _index(connection)

    def in_force(
        self, connection: sa.Connection, index: list[tuple[int, int, str]] | None = None
    ) -> list[tuple[int, PriceBook]]:
        """(effective from, book) of the books that price records, oldest first; of two books
        effective from the same time, the newer."""
        index = self.index(connection) if index is None else index
        self._load(connection, [book_id for book_id, _, _ in index])
        effective = {effective_from: self._parsed[book_id] for book_id, effective_from, _ in index}
        return sorted(effective.items(), key=lambda item: item[0])

    def currency(self, connection: sa.Connection) -> str:
        return connection.execute(
            sa.select(price_books.c.currency).order_by(price_books.c.id.desc()).limit(1)
        ).scalar_one()

    def add(
        self, connection: sa.Connection, document: Mapping, *, effective_from_unix_ns: int, created_unix_ns: int
    ) -> int:
        book = parse_price_book(document)
        if type(effective_from_unix_ns) is not int or not MIN_START_UNIX_NS <= effective_from_unix_ns < MAX_START_UNIX_NS:
            raise PriceBookError(
                "effective_from_unix_ns",
                f"must be an integer from {MIN_START_UNIX_NS} (2000-01-01) to before {MAX_START_UNIX_NS} (2100-01-01)",
            )
        current = self.currency(connection)
        if book.currency != current:
            _check_currency_change(connection, current, book.currency, effective_from_unix_ns)
        return connection.execute(
            sa.insert(price_books).returning(price_books.c.id),
            {
                "effective_from_unix_ns": effective_from_unix_ns,
                "currency": book.currency,
                "document": dict(document),
                "created_unix_ns": created_unix_ns,
            },
        ).scalar_one()

    @staticmethod
    def list(connection: sa.Connection) -> list[PriceBookRow]:
        rows = connection.execute(sa.select(price_books).order_by(price_books.c.id))
        return [PriceBookRow(**row._mapping) for row in rows]

    def parsed(self, connection: sa.Connection, book_id: int) -> PriceBook:
        """Book `book_id`, parsed (KeyError if there is none)."""
        self._load(connection, [book_id])
        return self._parsed[book_id]

    def _load(self, connection: sa.Connection, book_ids: list[int]) -> None:
        missing = [book_id for book_id in book_ids if book_id not in self._parsed]
        if missing:
            rows = connection.execute(
                sa.select(price_books.c.id, price_books.c.document).where(price_books.c.id.in_(missing))
            )
            for book_id, document in rows:
                self._parsed[book_id] = parse_price_book(document)


def _index(connection: sa.Connection) -> list[tuple[int, int, str]]:
    """(id, effective_from, currency) of the books in the collector's currency, oldest first."""
    rows = connection.execute(
        sa.select(price_books.c.id, price_books.c.effective_from_unix_ns, price_books.c.currency)
        .order_by(price_books.c.effective_from_unix_ns, price_books.c.id)
    ).all()
    currency = max(rows)[2]  # the newest book's
    return [tuple(row) for row in rows if row[2] == currency]


def _check_currency_change(connection: sa.Connection, current: str, new: str, effective_from_unix_ns: int) -> None:
    if connection.execute(sa.select(records.c.seq).limit(1)).first() is not None:
        raise PriceBookError(
            "currency", f"records are already priced in {current}; a book in {new} would mix currencies in reports"
        )
    if effective_from_unix_ns != MIN_START_UNIX_NS:
        raise PriceBookError(
            "currency",
            f"a book that changes the currency from {current} to {new} must be effective from "
            f"{MIN_START_UNIX_NS} (2000-01-01), so that it prices every record",
        )
