"""The `infermeter export` commands: `export focus`, the priced records as FOCUS cost and usage
data (CSV or Parquet) for FinOps tools.

Standard library only at import, like collector.cli: the export's modules load when it runs.
Exit codes as collector.cli's: 2 for what the user can fix in the command (a time, a range,
the output path), 1 for failures at run time; either way no file is written.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from collector.cli import (
    TIME_FORMS,
    CommandError,
    _command,
    _group,
    _leaf,
    _open_store,
    _print_json,
    _time_ns,
)
from collector.params import check_range

PARQUET_NOT_INSTALLED = "Parquet output needs pyarrow: pip install 'infermeter[parquet]' (or --format csv)"
DEFAULT_PROGRESS_EVERY = 10_000
DEFAULT_ORG = "infermeter"  # collector.focus.DEFAULT_ORG, which imports SQLAlchemy


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `export focus` to the root `infermeter` parser."""
    export = _group(subparsers, "export", help="export cost data for other tools", dest="export_command")
    focus = _leaf(
        export, "focus", _export_focus,
        help="write the costs as FOCUS 1.2 cost and usage rows (CSV or Parquet)",
        description="Write the priced records as FOCUS 1.2 (FinOps Open Cost and Usage "
        "Specification) rows: one row per UTC hour, device, model, version, record kind, tag set "
        "and price, with BilledCost, EffectiveCost and ListCost as exact decimals in the "
        "collector's currency, and x_ columns for model, version, device, energy (joules) and "
        "its method, and inference counts. The range is half-open [since, until) on the "
        "records' start, as in `report costs`, whose total BilledCost equals to the pico; the "
        "first and last hour's charge period is cut to the range. The file is written to a "
        "temporary file and renamed into place: on any error there is no new file.",
        epilog="examples:\n"
        "  infermeter export focus --out costs.csv\n"
        "  infermeter export focus --out 2026-11.parquet --since 2026-11-01 --until 2026-12-01\n"
        "  infermeter export focus --out costs.csv --org 'ACME ML platform' --json\n"
        "  infermeter export focus --out costs.csv --db postgresql://infermeter@db/infermeter",
    )
    focus.add_argument("--out", type=Path, required=True, metavar="FILE",
                       help="the file to write (replaced if it exists)")
    focus.add_argument("--format", choices=("csv", "parquet"),
                       help="csv or parquet (default: parquet if FILE ends in .parquet, else csv)")
    focus.add_argument("--since", type=_time_ns, metavar="TIME", help=f"start of the range (inclusive): {TIME_FORMS}")
    focus.add_argument("--until", type=_time_ns, metavar="TIME", help=f"end of the range (exclusive): {TIME_FORMS}")
    focus.add_argument("--org", default=DEFAULT_ORG, metavar="NAME",
                       help="ProviderName, PublisherName, InvoiceIssuerName and billing account (default: infermeter)")
    focus.add_argument("--progress-every", type=_rows, default=DEFAULT_PROGRESS_EVERY, metavar="ROWS",
                       help="progress on stderr every ROWS rows (a bar on a terminal, else a line, and one at the end); "
                       f"0 for none (default {DEFAULT_PROGRESS_EVERY})")


def _rows(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of rows")
    return int(text)


@_command
def _export_focus(args: argparse.Namespace) -> int:
    file_format = args.format or ("parquet" if args.out.suffix.lower() == ".parquet" else "csv")
    _check_out(args.out)
    if file_format == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise CommandError(PARQUET_NOT_INSTALLED, 1)
    from collector.focus import FOCUS_VERSION
    from collector.focus_files import check_org, export_focus

    # Bad input is refused before the database is opened.
    check_range(args.since, args.until)
    check_org(args.org)

    from collector.progress import Progress

    with _open_store(args, create=False) as store, Progress("export focus", unit="rows", line_every=args.progress_every) as progress:
        summary = export_focus(
            store.engine, args.out, file_format=file_format, since_unix_ns=args.since, until_unix_ns=args.until,
            org=args.org, progress=lambda rows, _records: progress.update(rows - progress.done),
            progress_every=args.progress_every,
        )
        progress.update(summary.rows - progress.done)
    if args.json:
        _print_json({"focus_version": FOCUS_VERSION, **summary.to_json()})
    else:
        print(f"wrote {summary.rows} FOCUS {FOCUS_VERSION} rows ({summary.records} records, "
              f"{summary.billed_cost:f} {summary.currency} billed) to {summary.path}")
    return 0


def _check_out(path: Path) -> None:
    if path.is_dir():
        raise CommandError(f"--out {path} is a folder: give a file name", 2)
    if not path.parent.is_dir():
        raise CommandError(f"--out {path}: no folder {path.parent.resolve()}", 2)
