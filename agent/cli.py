"""The `infermeter` command: one entry point for the agent, the collector and the demo.

Only the standard library and the agent are imported up front; the collector's commands load
their dependencies when they run, so the light agent install still has a working CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from agent import completion, discovery_cli, wrap_cli
from agent.buffer import Buffer, BufferError
from agent.config import ConfigError, load_config
from agent.version import VERSION

EPILOG = """\
Start here:
  infermeter demo                      collector + agent + a metered model, then a cost report
  infermeter agent run --config agent.toml
  infermeter wrap -- python app.py     meter an app's ONNX Runtime sessions and Triton clients, unchanged
  infermeter collector serve --db sqlite:///infermeter.db
  infermeter admin device add edge-01  register a device, print its token
  infermeter report costs --group-by model,device

Every command has --help; commands that print data take --json.
"""


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _agent_run(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    from agent import daemon

    config = load_config(
        args.config,
        overrides={
            "buffer_path": args.buffer,
            "collector_address": args.collector,
            "token_file": args.token_file,
        },
    )
    return daemon.run(config, ready_file=args.ready_file)


def _iso(unix_ns: int) -> str:
    return datetime.fromtimestamp(unix_ns / 1e9, timezone.utc).isoformat(timespec="milliseconds")


def _agent_records(args: argparse.Namespace) -> int:
    with Buffer.open(args.buffer, create=False) as buffer:
        stats = buffer.stats()
        if args.rejected:
            rows = buffer.rejected(limit=args.limit)
            records = [record for record, _ in rows]
            reasons = [reason for _, reason in rows]
        else:
            records = buffer.read(limit=args.limit)
            reasons = []
    if args.json:
        items = [dataclasses.asdict(record) for record in records]
        for item, reason in zip(items, reasons):
            item["reason"] = reason
        json.dump({"buffer": dataclasses.asdict(stats), "records": items}, sys.stdout, indent=2)
        print()
        return 0
    seqs = f" (seq {stats.first_seq}..{stats.last_seq})" if stats.records else ""
    print(
        f"buffer {stats.path}: stream {stats.stream_id}, {stats.records} records waiting{seqs},"
        f" {stats.rejected} set aside, {stats.file_bytes / 1e6:.1f} MB"
    )
    if not records:
        return 0
    header = f"{'seq':>8}  {'start (UTC)':<29} {'model':<20} {'ver':<5} {'dur µs':>9} {'cpu µs':>9} {'batch':>5}  status  tags"
    print(header)
    for i, r in enumerate(records):
        tags = ",".join(f"{k}={v}" for k, v in sorted(r.tags.items()))
        status = r.status.name.lower() if hasattr(r.status, "name") else str(r.status)
        line = (
            f"{r.seq:>8}  {_iso(r.start_unix_ns):<29} {r.model[:20]:<20} {r.model_version[:5]:<5}"
            f" {r.duration_ns / 1e3:>9.1f} {r.cpu_time_ns / 1e3:>9.1f} {r.batch_size:>5}  {status:<6}  {tags}"
        )
        print(line + (f"  [{reasons[i]}]" if reasons else ""))
    if len(records) < (stats.rejected if args.rejected else stats.records):
        print(f"... first {len(records)} shown; --limit N for more")
    return 0


# Where `agent status` finds the buffer when told nothing (and $INFERMETER_CONFIG is not set).
DEFAULT_CONFIG = Path("/etc/infermeter/agent.toml")
# `agent status` exits with this when the daemon does not run (as `systemctl status` does).
NOT_RUNNING = 3


def _agent_status(args: argparse.Namespace) -> int:
    from agent import status_report

    if args.buffer is not None:
        buffer_path = args.buffer
    else:
        config = args.config or os.environ.get("INFERMETER_CONFIG") or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
        buffer_path = load_config(config).buffer_path
    if not buffer_path.is_file():
        raise BufferError(
            f"no buffer at {buffer_path}: nothing was metered on this device yet, or it is elsewhere"
            " (--buffer PATH, or --config FILE to use its `buffer`)"
        )
    report = status_report.gather(buffer_path)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(status_report.render(report))
    return 0 if report["daemon"]["running"] else NOT_RUNNING


# What `infermeter demo` runs beyond the agent: the collector's packages and ONNX Runtime.
_DEMO_PACKAGES = ("aiohttp", "sqlalchemy", "alembic", "grpc_health", "grpc_reflection", "onnxruntime", "numpy")


def _demo(args: argparse.Namespace) -> int:
    missing = [name for name in _DEMO_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"infermeter: the demo needs the collector and ONNX Runtime ({', '.join(missing)} missing):"
            " pip install 'infermeter[all]'",
            file=sys.stderr,
        )
        return 1
    from collector.demo.run import main as demo_main

    return demo_main(args)


def _add_agent_commands(subparsers: argparse._SubParsersAction) -> None:
    agent = subparsers.add_parser(
        "agent", help="the device side: ship records, inspect the buffer",
        description="The device side of infermeter.",
    )
    commands = agent.add_subparsers(dest="agent_command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the agent daemon (ships the device buffer to the collector)",
        description="Run the agent daemon: ship the device buffer to the collector until SIGTERM. "
        "Settings come from the TOML file, then the environment (INFERMETER_*), then these flags.",
        epilog="example: infermeter agent run --config /etc/infermeter/agent.toml",
    )
    run.add_argument("--config", help="agent TOML file (default: $INFERMETER_CONFIG)")
    run.add_argument("--buffer", type=Path, help="device buffer file (overrides the config)")
    run.add_argument("--collector", help="collector gRPC address HOST:PORT (overrides the config)")
    run.add_argument("--token-file", type=Path, help="file holding the device token")
    run.add_argument("--ready-file", type=Path,
                     help='once sampling and shipping, write {"pid", "buffer", "energy_sensors"} here (atomically)')
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=_agent_run)

    records = commands.add_parser(
        "records",
        help="show what the device buffer holds",
        description="Show the records waiting in a device buffer (or those set aside as invalid).",
        epilog="example: infermeter agent records --buffer /var/lib/infermeter/buffer.db --json",
    )
    records.add_argument("--buffer", type=Path, required=True, help="device buffer file")
    records.add_argument("--limit", type=_positive, default=50, help="records to show (default 50)")
    records.add_argument("--rejected", action="store_true", help="show records set aside as invalid")
    records.add_argument("--json", action="store_true", help="print JSON")
    records.set_defaults(func=_agent_records)

    status = commands.add_parser(
        "status",
        help="is the daemon running; what waits, last sync, last error, compaction, energy sensors",
        description="The agent's state, read from the device buffer and the status file the daemon "
        "keeps next to it (it does not talk to the daemon): whether the daemon runs, the records "
        "waiting and the age of the oldest, the last sync and the last error, what compaction did, "
        f"the energy sensors, the watchdog. Exit status 0 while the daemon runs, {NOT_RUNNING} when "
        "it does not (stopped, gone, or stalled), 1 when there is no buffer, 2 for a bad config.",
        epilog="examples: infermeter agent status\n"
        "          infermeter agent status --buffer /var/lib/infermeter/buffer.db --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = status.add_mutually_exclusive_group()
    where.add_argument("--buffer", type=Path, help="device buffer file")
    where.add_argument(
        "--config",
        help=f"agent TOML file naming the buffer (default: $INFERMETER_CONFIG, else {DEFAULT_CONFIG} if it exists)",
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=_agent_status)
    discovery_cli.register(commands)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    from collector.cli import register as register_collector

    parser = argparse.ArgumentParser(
        prog="infermeter",
        description="infermeter: what each AI inference really costs, wherever it runs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"infermeter {VERSION}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = subparsers.add_parser(
        "demo",
        help="run a collector, an agent and a metered model here, then print the cost report",
        description="On this machine, in a temporary folder: start a collector on SQLite and an "
        "agent daemon, run a small bundled ONNX model through Meter.wrap_onnx, wait until the "
        "collector has every record, and print the cost report. Cleans up after itself; exits "
        "1 if any record was lost or counted twice.",
    )
    demo.add_argument("--records", type=_positive, default=3000, help="model runs (default 3000)")
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the sync")
    demo.add_argument("--keep", action="store_true", help="keep the temporary folder, print its path")
    demo.add_argument("--json", action="store_true", help="print JSON")
    demo.set_defaults(func=_demo)
    _add_agent_commands(subparsers)
    wrap_cli.register(subparsers)
    register_collector(subparsers)
    completion.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    completion.complete(parser)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"infermeter: {err}", file=sys.stderr)
        return 2
    except BufferError as err:
        print(f"infermeter: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
