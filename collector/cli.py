"""The collector's commands of `infermeter`: collector serve, admin device/token/pricebook, report costs.

The root parser calls register(subparsers). Only the standard library is imported here: the
root CLI imports this module on every run, also where only the agent is installed; the
collector's packages load when one of its commands runs, and their absence is one clear line.

Exit codes: 0 success, 2 for what the user can fix by changing the command (a bad URL, group key,
time, name or document), 1 for failures at run time (an unreadable file, the database down).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from collector.params import (
    TIME_FORMS,
    QueryError,
    parse_address,
    parse_group_by,
    parse_time_ns,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

DEFAULT_DB = "sqlite:///infermeter.db"
NOT_INSTALLED = "the collector is not installed: pip install 'infermeter[collector]'"
# Top-level packages of the `collector` extra: missing one means the extra is not installed.
_EXTRA_PACKAGES = frozenset({"aiohttp", "sqlalchemy", "alembic", "psycopg", "grpc_health", "grpc_reflection"})
_DB_HELP = "database URL: sqlite:///PATH or postgresql://USER@HOST/DB (default: $INFERMETER_DB, else " + DEFAULT_DB + ")"


class CommandError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _fail(message: object, exit_code: int) -> int:
    print(f"infermeter: {message}", file=sys.stderr)
    return exit_code


def _storage_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(usage errors, run-time errors) of the storage packages, once they are importable."""
    from sqlalchemy import exc

    from collector.store import StoreUnavailable

    return (exc.ArgumentError,), (StoreUnavailable, exc.SQLAlchemyError)


def _missing_store_error() -> type[BaseException]:
    from collector.store import StoreNotFound

    return StoreNotFound


def _command(action: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the expected failures of a command into one line on stderr and an exit code."""

    @functools.wraps(action)
    def run(args: argparse.Namespace) -> int:
        try:
            return action(args)
        except CommandError as err:
            return _fail(err, err.exit_code)
        except ModuleNotFoundError as err:
            if (err.name or "").partition(".")[0] in _EXTRA_PACKAGES:
                return _fail(NOT_INSTALLED, 1)
            raise
        except ValueError as err:  # bad input: a group key, a time, a device name, a document
            return _fail(err, 2)
        except OSError as err:
            return _fail(err, 1)
        except Exception as err:
            if isinstance(err, _missing_store_error()):
                return _fail(err, 1)
            usage, runtime = _storage_errors()
            if isinstance(err, usage):
                return _fail(f"bad database URL {args.db!r}: {err}", 2)
            if isinstance(err, runtime):
                return _fail(f"the database failed: {_first_line(err)}", 1)
            raise

    return run


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _open_store(args: argparse.Namespace, *, create: bool = True):
    """The store at --db; create=False for commands that only read (a typo must not make an
    empty database that then reports nothing)."""
    from collector.store import Store

    return Store.open(args.db, create=create)


def _print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2)
    print()


# collector serve


@_command
def _serve(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic narrates every start (plugins, dialect); the store logs a line when the schema changes.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    from collector.server import serve
    from collector.tls import ServerTls

    if args.tls_client_ca and not args.tls_cert:
        raise CommandError("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS is on top of TLS", 2)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise CommandError("--tls-cert and --tls-key go together", 2)
    tls = ServerTls.load(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    return serve(args.db, args.grpc, args.http, args.ready_file, tls, retain_raw_days=args.retain_raw_days)


# admin device


@_command
def _device_add(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        device = store.add_device(args.name, profile=args.profile, site=args.site)
    if args.json:
        _print_json({"device_id": device.device_id, "name": device.name, "token": device.token})
        return 0
    print(f"device {device.name!r} added, id {device.device_id}")
    print("token (shown only this once; the collector keeps only its hash):")
    print(f"  {device.token}")
    print(
        "put it in the device's token file, readable only by the agent (token_file in agent.toml,"
        " e.g. /etc/infermeter/token/device.token, mode 0600, in a folder the agent may write to take rotations)"
    )
    return 0


@_command
def _device_list(args: argparse.Namespace) -> int:
    import dataclasses

    with _open_store(args, create=False) as store:
        rows = store.list_devices()
    if args.json:
        _print_json({"devices": [dataclasses.asdict(row) for row in rows]})
        return 0
    header = ("name", "id", "profile", "site", "records", "last seen (UTC)", "hostname", "state")
    lines = [
        (
            row.name, row.device_id, row.profile, row.site, str(row.records),
            _utc(row.last_seen_unix_ns) if row.last_seen_unix_ns else "never",
            row.hostname or "-", "revoked" if row.revoked else "rotating" if row.rotating else "active",
        )
        for row in rows
    ]
    print(_table(header, lines, right=(4,)) if lines else "no devices; add one with: infermeter admin device add NAME")
    return 0


def _find_device(store, name_or_id: str):
    device = store.device(name_or_id)
    if device is None:
        raise CommandError(f"no device named or with id {name_or_id!r} (see: infermeter admin device list)", 2)
    return device


@_command
def _device_revoke(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        device = _find_device(store, args.device)
        store.revoke_device(device.device_id)
    if args.json:
        _print_json({"device_id": device.device_id, "name": device.name, "revoked": True})
    else:
        state = "was revoked already" if device.revoked else "revoked"
        print(f"device {device.name!r} ({device.device_id}) {state}: its pushes are refused within "
              "5 s on every collector; its records stay")
    return 0


@_command
def _device_rotate(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        device = _find_device(store, args.device)
        store.rotate_device(device.device_id)
    if args.json:
        _print_json({"device_id": device.device_id, "name": device.name, "rotating": True})
    else:
        print(f"token rotation of device {device.name!r} ({device.device_id}) started: the reply to its next "
              "push carries a new token, which the agent writes to its token file; both tokens work until "
              "the device first pushes with the new one, then the old one is retired")
    return 0


# admin token


@_command
def _token_add(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        new = store.add_admin_token(args.role, name=args.name)
    if args.json:
        _print_json({"token_id": new.token_id, "name": new.name, "role": new.role, "token": new.token})
        return 0
    print(f"{new.role} token {new.token_id}" + (f" ({new.name!r})" if new.name else "") + " added")
    print("token (shown only this once; the collector keeps only its hash):")
    print(f"  {new.token}")
    print("send it as 'Authorization: Bearer <token>' to the HTTP API and the gRPC Admin service")
    return 0


@_command
def _token_list(args: argparse.Namespace) -> int:
    import dataclasses

    with _open_store(args, create=False) as store:
        rows = store.list_admin_tokens()
    if args.json:
        _print_json({"tokens": [dataclasses.asdict(row) for row in rows]})
        return 0
    lines = [
        (row.token_id, row.name or "-", row.role, _utc(row.created_unix_ns), "revoked" if row.revoked else "active")
        for row in rows
    ]
    header = ("id", "name", "role", "created (UTC)", "state")
    print(_table(header, lines) if lines else "no admin tokens; add one with: infermeter admin token add --role viewer")
    return 0


@_command
def _token_revoke(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        matches = [row for row in store.list_admin_tokens() if args.token in (row.token_id, row.name)]
        if len(matches) != 1:
            problem = "no admin token" if not matches else f"{len(matches)} admin tokens have the name"
            raise CommandError(f"{problem} {args.token!r} (see: infermeter admin token list; revoke by id)", 2)
        (token,) = matches
        store.revoke_admin_token(token.token_id)
    if args.json:
        _print_json({"token_id": token.token_id, "name": token.name, "revoked": True})
    else:
        state = "was revoked already" if token.revoked else "revoked"
        print(f"admin token {token.token_id} {state}: it is refused within 5 s on every collector")
    return 0


# admin budget


def _read_budget(name: str) -> dict:
    """A budget document from a .toml file, JSON from any other, or JSON or TOML from stdin ("-")."""
    if name != "-":
        return _read_document(Path(name))
    text = sys.stdin.read()
    try:
        document = json.loads(text)
    except ValueError:
        try:
            document = tomllib.loads(text)
        except ValueError as err:
            raise CommandError(f"stdin is neither JSON nor TOML: {err}", 2) from None
    if not isinstance(document, dict):
        raise CommandError("stdin: a budget is a JSON object / TOML table", 2)
    return document


def _print_budget(status) -> None:
    budget = status.budget
    document = status.to_json()
    print(f"budget {budget.name} ({budget.budget_id}): {budget.scope}, {budget.action}, "
          f"{document['spent']} of {document['budget']['amount']} {'Wh' if budget.unit == 'energy' else ''}".rstrip()
          + f" ({document['percent']} %) this {budget.period} ({budget.timezone}), {status.state}")
    print(f"  period {_utc(status.period_start_unix_ns)} to {_utc(status.period_end_unix_ns)} UTC, "
          f"thresholds {', '.join(f'{t} %' for t in budget.thresholds)}")


@_command
def _budget_add(args: argparse.Namespace) -> int:
    document = _read_budget(args.file)
    with _open_store(args) as store:
        budget = store.add_budget(document)
        status = store.budget(budget.budget_id)
    return _show_budget(args, status)


@_command
def _budget_update(args: argparse.Namespace) -> int:
    document = _read_budget(args.file)
    with _open_store(args, create=False) as store:
        try:
            budget = store.update_budget(args.name, document)
        except KeyError:
            raise CommandError(f"no budget {args.name!r} (see: infermeter admin budget list)", 2) from None
        status = store.budget(budget.budget_id)
    return _show_budget(args, status)


def _show_budget(args: argparse.Namespace, status) -> int:
    """A budget's status as JSON (--json) or text; the command's exit code."""
    if args.json:
        _print_json(status.to_json())
    else:
        _print_budget(status)
    return 0


@_command
def _budget_list(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        statuses = store.list_budgets()
    if args.json:
        _print_json({"budgets": [status.to_json() for status in statuses]})
        return 0
    lines = []
    for status in statuses:
        document = status.to_json()
        budget = status.budget
        lines.append((budget.name, budget.scope, budget.period, budget.action, document["budget"]["amount"],
                      document["spent"], document["percent"], status.state))
    header = ("name", "scope", "period", "action", "amount", "spent", "%", "state")
    print(_table(header, lines, right=(4, 5, 6)) if lines else "no budgets; add one with: infermeter admin budget add FILE")
    return 0


@_command
def _budget_show(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        status = store.budget(args.name)
    if status is None:
        raise CommandError(f"no budget {args.name!r} (see: infermeter admin budget list)", 2)
    return _show_budget(args, status)


@_command
def _budget_delete(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        try:
            store.delete_budget(args.name)
        except KeyError:
            raise CommandError(f"no budget {args.name!r} (see: infermeter admin budget list)", 2) from None
    if args.json:
        _print_json({"deleted": args.name})
    else:
        print(f"budget {args.name} deleted: devices stop enforcing it at their next push")
    return 0


# admin pricebook


def _read_document(path: Path) -> dict:
    """A price book from a .toml file, or JSON from any other."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise CommandError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text", 2) from None
    try:
        document = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except ValueError as err:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON (name it .toml for TOML)"
        raise CommandError(f"{path} is not valid {kind}: {err}", 2) from None
    if not isinstance(document, dict):
        raise CommandError(f"{path}: a price book is a JSON object / TOML table", 2)
    return document


@_command
def _pricebook_add(args: argparse.Namespace) -> int:
    document = _read_document(args.file)
    with _open_store(args) as store:
        book_id = store.add_price_book(document, effective_from_unix_ns=args.effective_from)
    if args.json:
        _print_json({"id": book_id, "effective_from_unix_ns": args.effective_from})
    else:
        print(f"price book {book_id} added, effective from {_utc(args.effective_from)}")
    return 0


@_command
def _pricebook_list(args: argparse.Namespace) -> int:
    import dataclasses

    with _open_store(args, create=False) as store:
        books = store.list_price_books()
    if args.json:
        _print_json({"price_books": [dataclasses.asdict(book) for book in books]})
        return 0
    lines = [(str(book.id), _utc(book.effective_from_unix_ns), book.currency) for book in books]
    header = ("id", "effective from (UTC)", "currency")
    print(_table(header, lines, right=(0,)) if lines else "no price books; add one with: infermeter admin pricebook add FILE --effective-from DATE")
    return 0


@_command
def _pricebook_show(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        books = [book for book in store.list_price_books() if book.id == args.id]
    if not books:
        raise CommandError(f"no price book {args.id} (see: infermeter admin pricebook list)", 2)
    (book,) = books
    if args.json:  # the HTTP API's GET /api/v1/pricebooks/{id}
        _print_json({
            "id": book.id, "effective_from_unix_ns": book.effective_from_unix_ns, "currency": book.currency,
            "created_unix_ns": book.created_unix_ns, "document": book.document,
        })
        return 0
    print(f"price book {book.id}, effective from {_utc(book.effective_from_unix_ns)} UTC, {book.currency}, "
          f"added {_utc(book.created_unix_ns)} UTC")
    print(json.dumps(book.document, indent=2))
    return 0


def _book_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a price book id (see: infermeter admin pricebook list)")
    return int(text)


# admin prune, admin reprice


@_command
def _prune(args: argparse.Namespace) -> int:
    from collector.rollups import HOUR_NS

    with _open_store(args, create=False) as store:
        result = store.prune_records(before_unix_ns=args.before)
    if args.json:
        _print_json({"records": result.records, "before_unix_ns": result.before_unix_ns})
        return 0
    requested = args.before - args.before % HOUR_NS
    note = "" if result.before_unix_ns == requested else f" (the cutoff was already past {_utc(requested)}: it never moves back)"
    print(f"pruned {result.records} raw records that started before {_utc(result.before_unix_ns)} UTC{note}; "
          "their hourly roll-ups keep the sums for reports over whole hours")
    return 0


@_command
def _reprice(args: argparse.Namespace) -> int:
    from collector.pricing import decimal_text, picos_to_decimal
    from collector.progress import Progress

    with _open_store(args, create=False) as store, Progress("re-pricing with the price books in force now") as progress:
        try:
            result = store.reprice(
                since_unix_ns=args.since, until_unix_ns=args.until, device=args.device,
                progress=lambda records, total: progress.update(records, total=total),
            )
        except LookupError as err:
            raise CommandError(f"{err.args[0]} (see: infermeter admin device list)", 2) from None
    old, new = picos_to_decimal(result.old_cost_pico), picos_to_decimal(result.new_cost_pico)
    if args.json:
        _print_json({
            "records": result.records, "changed": result.changed, "old_cost": decimal_text(old),
            "new_cost": decimal_text(new), "currency": result.currency,
        })
        return 0
    print(f"re-priced {result.records} records, {result.changed} of them changed: {_money(str(old))} -> "
          f"{_money(str(new))} {result.currency} (difference {_money(str(new - old))})")
    return 0


# report costs


@_command
def _report_costs(args: argparse.Namespace) -> int:
    with _open_store(args, create=False) as store:
        report = store.costs(
            group_by=args.group_by, since_unix_ns=args.since, until_unix_ns=args.until,
            granularity=args.granularity, top=args.top, period_costs=not args.usage_only,
        ).to_json()
    if args.json:
        _print_json(report)
    else:
        print(format_cost_report(report))
    return 0


def format_cost_report(report: dict) -> str:
    """A cost report (CostReport.to_json(), the HTTP API's body) as an aligned text table."""
    keys = report["group_by"]
    groups = report["groups"]
    granularity = report.get("granularity")
    period_columns = ("period",) if granularity else ()
    discounts = Decimal(report["discount"]) != 0
    rows = [
        (*_period_cells(group, granularity), *_key_cells(group, len(keys)), *_cost_cells(group, discounts))
        for group in (groups if keys or granularity else ())
    ]
    totals = {
        "inferences": report["total_inferences"], "cost": report["usage_cost"], "discount": report["discount"],
        "idle_cost": report["idle_cost"], "fixed_cost": report["fixed_cost"], "total_cost": report["total_cost"],
        "energy_uj": sum(group["energy_uj"] for group in groups),
    }
    label_columns = (*period_columns, *keys) or ("",)
    rows.append(("total", *[""] * (len(label_columns) - 1), *_cost_cells(totals, discounts)))
    header = (*label_columns, "inferences", "usage", *(("discount",) if discounts else ()), "idle", "fixed", "total",
              "energy Wh", "total per 1k")
    table = _table(header, rows, right=tuple(range(len(label_columns), len(header))))
    notes = f"{report['total_records']} records; amounts in {report['currency']} (--json for every digit)"
    if granularity:
        notes += f"; periods are UTC {granularity}s"
    if any("" in group["key"] for group in groups):
        notes += "; - is no value: a record may lack a tag"
    if any(group.get("other") for group in groups):
        notes += f"; (other) sums the groups beyond the top {report['top']}"
    return f"{table}\n{notes}"


# How a period's start reads in the table, by granularity (the JSON has RFC 3339).
_PERIOD_FORMATS = {"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d", "month": "%Y-%m"}


def _period_cells(group: dict, granularity: str | None) -> tuple[str, ...]:
    if not granularity:
        return ()
    start = datetime.strptime(group["period"], "%Y-%m-%dT%H:%M:%SZ")
    return (start.strftime(_PERIOD_FORMATS[granularity]),)


def _key_cells(group: dict, keys: int) -> tuple[str, ...]:
    if group.get("other"):
        return ("(other)", *[""] * (keys - 1)) if keys else ()
    return tuple(value or "-" for value in group["key"])


def _cost_cells(group: dict, discounts: bool) -> tuple[str, ...]:
    inferences = group["inferences"]
    per_1k = _money(str(Decimal(group["total_cost"]) * 1000 / inferences)) if inferences else "-"
    return (
        str(inferences), _money(group["cost"]), *((_money(group["discount"]),) if discounts else ()),
        _money(group["idle_cost"]), _money(group["fixed_cost"]), _money(group["total_cost"]),
        _wh(group["energy_uj"]), per_1k,
    )


def _wh(energy_uj: int) -> str:
    """Watt-hours to four significant digits (1 Wh = 3.6e9 µJ)."""
    return _money(str(Decimal(energy_uj) / Decimal(3_600_000_000))) if energy_uj else "0"


# report explain


def _record_ref(text: str) -> tuple[str, int]:
    """STREAM:SEQ, the stream id as the agent's buffer made it and the record's seq."""
    stream_id, sep, seq = text.rpartition(":")
    if not sep or not stream_id or not seq.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not STREAM:SEQ (e.g. 0123456789abcdef0123456789abcdef:42)")
    return stream_id, int(seq)


@_command
def _report_explain(args: argparse.Namespace) -> int:
    stream_id, seq = args.record
    with _open_store(args, create=False) as store:
        try:
            explanation = store.explain_record(stream_id, seq, device=args.device)
        except LookupError as err:
            raise CommandError(str(err.args[0]), 1) from None
    if args.json:
        _print_json(explanation)
    else:
        print(format_explanation(explanation))
    return 0


def format_explanation(explanation: dict) -> str:
    """The derivation of a record's cost as lines to read; every figure exact."""
    record, book = explanation["record"], explanation["price_book"]
    compute, energy, total = explanation["compute"], explanation["energy"], explanation["total"]
    tokens, requests = explanation["tokens"], explanation["requests"]
    currency = explanation["currency"]
    if compute["kind"] == "hardware":
        profile = (f"hardware: purchase {compute['purchase']}, residual {compute['residual']}, "
                   f"lifetime {compute['lifetime_years']} years, upkeep {compute['upkeep_per_year']} a year")
    else:
        profile = f"cloud: {compute['hourly']} an hour"
    lines = [
        (f"record {record['stream_id']}:{record['seq']} of device {record['device']}, "
         f"model {record['model']} {record['model_version']}, started {_utc(record['start_unix_ns'])} UTC"),
        f"price book {book['id']}, effective from {_utc(book['effective_from_unix_ns'])} UTC ({currency})",
        *_server_lines(record.get("server")),
        f"compute  profile {compute['profile']} ({profile})",
        f"         rate per device-second {compute['rate_per_device_s']}",
        (f"         CPU share {compute['cpu_time_ns']} ns / {compute['cpu_cores']} cores = "
         f"{compute['cpu_share_device_s']} device-s; GPU {compute['gpu_time_ns']} ns"),
        f"         exact {compute['exact_picos']} picos -> {compute['picos']} picos = {compute['cost']}",
        (f"energy   site {energy['site']} ({energy['timezone']}), tariff {energy['tariff']}: "
         f"{energy['kwh']} per kWh x PUE {energy['pue']} = {energy['billed_per_kwh']} per kWh"),
        (f"         {energy['energy_uj']} µJ: exact {energy['exact_picos']} picos -> "
         f"{energy['picos']} picos = {energy['cost']}"),
        (f"tokens   model {tokens['model']} ({'book entry ' + tokens['entry'] if tokens['entry'] else 'no prices'}): "
         f"{tokens['input_tokens']} in x {tokens['input_per_million']} + {tokens['output_tokens']} out x "
         f"{tokens['output_per_million']} per 1M"),
        f"         exact {tokens['exact_picos']} picos -> {tokens['picos']} picos = {tokens['cost']}",
        (f"requests {requests['count']} x {requests['request']}: exact {requests['exact_picos']} picos -> "
         f"{requests['picos']} picos = {requests['cost']}"),
        f"total    {total['picos']} picos = {total['cost']} {currency} (list cost)",
    ]
    discount = explanation.get("discount")
    if discount:
        tiers = ", ".join(f"{tier['percent_off']} % from {tier['from']}" for tier in discount["tiers"])
        lines += [
            (f"discount {discount['discount']} ({tiers}): {discount['month'][:7]} list spend "
             f"{discount['month_list_spend']} {currency} so far"),
            (f"         effective share {discount['effective_share']}: exact {discount['effective_exact_picos']} "
             "picos (reports share the month's discount over its usage in whole picos)"),
        ]
    if explanation["note"]:
        lines.append(f"note: {explanation['note']}")
    if not explanation["matches_stored"]:
        lines.append("note: the stored cost differs from this derivation")
    return "\n".join(lines)


def _server_lines(server: dict | None) -> list[str]:
    """What a Triton server did for the record, when the device joined it."""
    if not server:
        return []
    return [
        f"server   queue {server['queue_ns']} ns, compute input {server['compute_input_ns']} ns, infer "
        f"{server['compute_infer_ns']} ns, output {server['compute_output_ns']} ns, GPU memory "
        f"{server['gpu_memory_bytes']} bytes ({server['source']}, {server['method']} over "
        f"{server['interval_ns']} ns)"
    ]


def _money(amount: str) -> str:
    """Four significant digits for tiny amounts, cents for large ones; the JSON keeps every digit."""
    value = Decimal(amount)
    if not value:
        return "0"
    places = min(12, max(2, 3 - value.adjusted()))
    return f"{value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):f}"


def _table(header: tuple[str, ...], lines: list[tuple[str, ...]], *, right: tuple[int, ...] = ()) -> str:
    widths = [max(len(row[i]) for row in (header, *lines)) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        cells = (cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        return "  ".join(cells).rstrip()

    return "\n".join(fmt(row) for row in (header, *lines))


def _utc(unix_ns: int) -> str:
    return datetime.fromtimestamp(unix_ns // 10**9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# the parsers


def _address(text: str) -> str:
    try:
        parse_address(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _time_ns(text: str) -> int:
    try:
        return parse_time_ns(text, field="time")
    except QueryError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _top(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 1000000")
    return int(text)


def _days(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days, at least 1")
    return int(text)


def _group_by(text: str) -> tuple[str, ...]:
    try:
        return parse_group_by(text)
    except QueryError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _leaf(commands: argparse._SubParsersAction, name: str, func: Callable, *, help: str, epilog: str,
          description: str | None = None, db: bool = True, json_flag: bool = True) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name, help=help, description=description or help[0].upper() + help[1:] + ".", epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if db:
        parser.add_argument("--db", default=os.environ.get("INFERMETER_DB", DEFAULT_DB), help=_DB_HELP)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=func)
    return parser


def _group(subparsers: argparse._SubParsersAction, name: str, *, help: str, dest: str) -> argparse._SubParsersAction:
    parser = subparsers.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
    return parser.add_subparsers(dest=dest, required=True, metavar="COMMAND")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the collector's commands (collector, admin, report) to the root `infermeter` parser."""
    _register_collector(subparsers)
    _register_admin(subparsers)
    _register_report(subparsers)
    from collector import export_cli  # here, not at the top: it imports this module

    export_cli.register(subparsers)


def _register_collector(subparsers: argparse._SubParsersAction) -> None:
    commands = _group(subparsers, "collector", help="the central side: run the collector", dest="collector_command")
    serve = _leaf(
        commands, "serve", _serve, json_flag=False,
        help="run the collector: gRPC ingest and admin, HTTP API",
        description="Run the collector until SIGTERM/SIGINT: the gRPC server (devices push to "
        "infermeter.v1.Ingest; infermeter.v1.Admin, health checking, reflection) and the HTTP API "
        "(/api/v1/..., /healthz) over one database. Devices authenticate with device tokens, "
        "operators with admin tokens (infermeter admin token add). With --tls-cert and --tls-key "
        "both servers speak TLS; without them, plaintext (a warning is logged when that is "
        "beyond loopback).",
        epilog="examples:\n"
        "  infermeter collector serve --db sqlite:///var/lib/infermeter/collector.db\n"
        "  infermeter collector serve --db postgresql://infermeter@db/infermeter --grpc 0.0.0.0:50051 \\\n"
        "      --http 0.0.0.0:8443 --tls-cert collector.pem --tls-key collector.key --tls-client-ca devices-ca.pem\n"
        "  infermeter collector serve --grpc 127.0.0.1:0 --http 127.0.0.1:0 --ready-file ready.json",
    )
    serve.add_argument("--grpc", type=_address, default="127.0.0.1:50051",
                       help="gRPC listen address HOST:PORT; port 0 picks a free one (default 127.0.0.1:50051)")
    serve.add_argument("--http", type=_address, default="127.0.0.1:8080",
                       help="HTTP listen address HOST:PORT; port 0 picks a free one (default 127.0.0.1:8080)")
    serve.add_argument("--ready-file", type=Path,
                       help='once listening, write {"grpc": ADDR, "http": ADDR, "tls": BOOL, "pid": N} here (atomically)')
    serve.add_argument("--tls-cert", type=Path, metavar="FILE",
                       help="PEM certificate (chain) of the collector, for TLS on both gRPC and HTTP")
    serve.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM private key of --tls-cert")
    serve.add_argument("--tls-client-ca", type=Path, metavar="FILE",
                       help="PEM CA certificates: gRPC clients must present a certificate they signed (mutual TLS)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--retain-raw-days", type=_days, metavar="N",
                       help="delete raw records older than N days (at least 1), at start and hourly; their hourly "
                       "roll-ups stay (default: keep raw records forever)")


def _register_admin(subparsers: argparse._SubParsersAction) -> None:
    admin = _group(subparsers, "admin", help="manage devices, admin tokens and price books", dest="admin_command")

    device = _group(admin, "device", help="register, list, rotate and revoke devices", dest="device_command")
    add = _leaf(
        device, "add", _device_add,
        help="register a device and print its token",
        description="Register a device and print its id and token. The token is shown only this "
        "once (the collector keeps only its hash): put it in the device's token file.",
        epilog="examples:\n"
        "  infermeter admin device add edge-01 --profile jetson-orin --site lab\n"
        "  infermeter admin device add edge-02 --json | jq -r .token > device.token",
    )
    add.add_argument("name", help="unique device name, e.g. edge-01")
    add.add_argument("--profile", default="default", help="hardware profile in the price book (default: default)")
    add.add_argument("--site", default="default", help="site, for its energy tariff (default: default)")
    _leaf(device, "list", _device_list, help="list registered devices",
          epilog="examples:\n  infermeter admin device list\n  infermeter admin device list --json")
    revoke = _leaf(
        device, "revoke", _device_revoke,
        help="refuse a device's token from now on",
        description="Revoke a device: the collector refuses its pushes from now on (PERMISSION_DENIED; "
        "the device keeps its records) and keeps what it stored. For a leaked token or a retired device.",
        epilog="examples:\n  infermeter admin device revoke edge-01\n  infermeter admin device revoke dev_3f1c9a0e5b7d4e21",
    )
    revoke.add_argument("device", help="the device's name or id")
    rotate = _leaf(
        device, "rotate", _device_rotate,
        help="give a device a new token, delivered with its next push",
        description="Rotate a device's token. The reply to the device's next push carries a second "
        "token, which the agent writes to its token file (it needs collector.token_file and write "
        "access to that file's folder); both tokens work until the device first pushes with the new "
        "one, then the old one is retired. Whoever holds the old token gets the new one, so for a "
        "leaked token revoke the device instead.",
        epilog="examples:\n  infermeter admin device rotate edge-01\n  infermeter admin device rotate edge-01 --json",
    )
    rotate.add_argument("device", help="the device's name or id")

    token = _group(admin, "token", help="admin tokens for the HTTP API and gRPC Admin", dest="token_command")
    add = _leaf(
        token, "add", _token_add,
        help="make an admin token and print it",
        description="Make a token for the operators' APIs (HTTP /api/v1/..., gRPC infermeter.v1.Admin) "
        "and print it. The token is shown only this once (the collector keeps only its hash). A "
        "viewer token reads; an admin token also changes things (rotates and revokes devices).",
        epilog="examples:\n"
        "  infermeter admin token add --role viewer --name grafana\n"
        "  infermeter admin token add --role admin --json | jq -r .token > admin.token",
    )
    add.add_argument("--role", required=True, choices=["admin", "viewer"], help="what the token may do")
    add.add_argument("--name", default="", help="a label for the token, e.g. who holds it (1-64 of A-Z a-z 0-9 . _ -)")
    _leaf(token, "list", _token_list, help="list admin tokens (never the tokens themselves)",
          epilog="examples:\n  infermeter admin token list\n  infermeter admin token list --json")
    revoke = _leaf(
        token, "revoke", _token_revoke,
        help="refuse an admin token from now on",
        description="Revoke an admin token: it is refused (401) within 5 s on every collector.",
        epilog="examples:\n  infermeter admin token revoke adm_3f1c9a0e5b7d4e21\n  infermeter admin token revoke grafana",
    )
    revoke.add_argument("token", help="the token's id, or its name if no other token has it")

    pricebook = _group(admin, "pricebook", help="add, list and show price books", dest="pricebook_command")
    add = _leaf(
        pricebook, "add", _pricebook_add,
        help="add a price book version",
        description="Add a price book (a JSON document, or TOML if the file ends in .toml). "
        "Records are priced with the book that was in effect when they started.",
        epilog="examples:\n"
        "  infermeter admin pricebook add prices.toml --effective-from 2026-01-01\n"
        "  infermeter admin pricebook add prices.json --effective-from 2026-07-01T00:00:00Z",
    )
    add.add_argument("file", type=Path, help="the price book, .json or .toml")
    add.add_argument("--effective-from", type=_time_ns, required=True, metavar="DATE",
                     help=f"when the book takes effect: {TIME_FORMS}")
    _leaf(pricebook, "list", _pricebook_list, help="list price book versions",
          epilog="examples:\n  infermeter admin pricebook list\n  infermeter admin pricebook list --json")
    show = _leaf(pricebook, "show", _pricebook_show, help="show a price book version and its document",
                 epilog="examples:\n  infermeter admin pricebook show 1\n  infermeter admin pricebook show 2 --json")
    show.add_argument("id", type=_book_id, metavar="ID", help="the version's id (infermeter admin pricebook list)")

    budget = _group(admin, "budget", help="add, list, show, update and delete budgets", dest="budget_command")
    add = _leaf(
        budget, "add", _budget_add,
        help="add a budget",
        description="Add a budget (a JSON document, TOML if the file ends in .toml, or either on stdin with -). "
        "Its current period starts from what its scope spent so far. See README, Budgets.",
        epilog="examples:\n"
        "  infermeter admin budget add search-monthly.toml\n"
        "  echo '{\"name\": \"daily\", \"scope\": \"global\", \"period\": \"day\", \"amount\": \"20.00\"}' "
        "| infermeter admin budget add -",
    )
    add.add_argument("file", metavar="FILE|-", help="the budget, .json or .toml, or - for stdin")
    _leaf(budget, "list", _budget_list, help="list budgets and their current period's spend",
          epilog="examples:\n  infermeter admin budget list\n  infermeter admin budget list --json")
    show = _leaf(budget, "show", _budget_show, help="show a budget and its current period's spend",
                 epilog="examples:\n  infermeter admin budget show search-monthly\n  infermeter admin budget show search-monthly --json")
    show.add_argument("name", help="the budget's name or id")
    update = _leaf(
        budget, "update", _budget_update,
        help="replace a budget's document",
        description="Replace a budget's whole document; its current period's spend is summed again.",
        epilog="examples:\n  infermeter admin budget update search-monthly search-monthly.toml",
    )
    update.add_argument("name", help="the budget's name or id")
    update.add_argument("file", metavar="FILE|-", help="the new document, .json or .toml, or - for stdin")
    delete = _leaf(budget, "delete", _budget_delete, help="delete a budget (its events stay)",
                   epilog="examples:\n  infermeter admin budget delete search-monthly")
    delete.add_argument("name", help="the budget's name or id")

    prune = _leaf(
        admin, "prune", _prune,
        help="delete raw records older than a time, keeping their hourly roll-ups",
        description="Delete the raw records that started before TIME rounded down to a whole UTC hour. "
        "The hourly roll-ups stay, so reports over whole hours are unchanged; reports of partial hours, "
        "explanations, re-pricing and the FOCUS export before the cutoff are refused from then on. The "
        "cutoff is remembered and never moves back; the raw records of the last day are always kept.",
        epilog="examples:\n  infermeter admin prune --before 2026-01-01\n  infermeter admin prune --before 2026-10-01T00:00:00Z --json",
    )
    prune.add_argument("--before", type=_time_ns, required=True, metavar="TIME",
                       help=f"delete raw records that started before this hour: {TIME_FORMS}")
    reprice = _leaf(
        admin, "reprice", _reprice,
        help="price stored records again with the price books in force now",
        description="Re-price the stored records whose start is in [since, until) with the price books in "
        "force now (after adding a corrected book effective from an earlier date), updating their costs "
        "and the hourly roll-ups. Running it again changes nothing. Records before the retention "
        "cutoff were pruned and cannot be re-priced; an open --since starts at the cutoff.",
        epilog="examples:\n  infermeter admin reprice --since 2026-11-01 --until 2026-12-01\n"
        "  infermeter admin reprice --device edge-01 --json",
    )
    reprice.add_argument("--since", type=_time_ns, metavar="TIME", help=f"start of the range (inclusive): {TIME_FORMS}")
    reprice.add_argument("--until", type=_time_ns, metavar="TIME", help=f"end of the range (exclusive): {TIME_FORMS}")
    reprice.add_argument("--device", metavar="DEVICE", help="only this device's records (its name or id)")
    from collector import alerts_cli  # here, not at the top: it imports this module

    alerts_cli.register_admin(admin)
    from collector import insights_cli  # here, not at the top: it imports this module

    insights_cli.register_admin(admin)
    from collector import tags_cli  # here, not at the top: it imports this module

    tags_cli.register_admin(admin)
    from collector import shadow_cli  # here, not at the top: it imports this module

    shadow_cli.register_admin(admin)


def _register_report(subparsers: argparse._SubParsersAction) -> None:
    report = _group(subparsers, "report", help="cost reports", dest="report_command")
    from collector import alerts_cli  # here, not at the top: it imports this module

    alerts_cli.register_report(report)
    from collector import insights_cli  # here, not at the top: it imports this module

    insights_cli.register_report(report)
    from collector import tags_cli  # here, not at the top: it imports this module

    tags_cli.register_report(report)
    costs = _leaf(
        report, "costs", _report_costs,
        help="what inference cost, grouped as you ask",
        description="Cost of the metered work, grouped by any of: model, version, device, site, "
        "runtime, tag:KEY, class:DIMENSION (workload classes), and by UTC hour, day or month with "
        "--granularity. The time range is "
        "half-open [since, until) on the records' start. "
        "Besides what the records used (usage, after volume discounts), each group carries its share "
        "of idle capacity and of monthly fixed costs, as the price book's idle policy says; groups "
        "named (idle) or (fixed) hold what no usage took. "
        "The table rounds for reading; --json prints the HTTP API's /api/v1/costs object, "
        "with exact decimal strings.",
        epilog="examples:\n"
        "  infermeter report costs --group-by model,device\n"
        "  infermeter report costs --group-by tag:project --since 2026-11-01 --until 2026-12-01\n"
        "  infermeter report costs --group-by model --json\n"
        "  infermeter report costs --group-by model --granularity day --since 2026-11-01 --until 2026-12-01\n"
        "  infermeter report costs --group-by tag:project --top 5 --granularity month",
    )
    costs.add_argument("--group-by", type=_group_by, default=(), metavar="KEYS",
                       help="comma-separated keys: model, version, device, site, runtime, tag:KEY, class:DIMENSION")
    costs.add_argument("--since", type=_time_ns, metavar="TIME", help=f"start of the range (inclusive): {TIME_FORMS}")
    costs.add_argument("--until", type=_time_ns, metavar="TIME", help=f"end of the range (exclusive): {TIME_FORMS}")
    costs.add_argument("--granularity", choices=("hour", "day", "month"),
                       help="a row per UTC hour, day or month as well (default: one for the whole range)")
    explain = _leaf(
        report, "explain", _report_explain,
        help="how one record's cost was derived",
        description="Show how a stored record was priced: the price book and its effective date, "
        "the hardware or cloud profile and its rate per device-second, the cores and CPU share, "
        "the site's energy tariff (the time-of-use window in force at the record's start) and "
        "PUE, each component's exact value in picos, its half-even rounding, and the total. "
        "RECORD is STREAM:SEQ, the stream id the device pushed with and the record's seq.",
        epilog="examples:\n"
        "  infermeter report explain 0123456789abcdef0123456789abcdef:42\n"
        "  infermeter report explain 0123456789abcdef0123456789abcdef:42 --device edge-01 --json",
    )
    explain.add_argument("record", type=_record_ref, metavar="RECORD", help="STREAM:SEQ")
    explain.add_argument("--device", metavar="DEVICE",
                         help="the device's name or id, when streams of two devices share the id")
    costs.add_argument("--top", type=_top, metavar="N",
                       help="only the N groups that cost most over the range, and one (other) row per period "
                       "for the rest, so totals still add up")
    costs.add_argument("--usage-only", action="store_true",
                       help="the records' own costs at list prices alone: no idle capacity, monthly fixed "
                       "costs or volume discounts")
