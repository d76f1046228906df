"""`infermeter agent shadow`: the processes on this device that run an inference runtime but
meter nothing (agent.discovery), as the daemon last found them, or as a scan finds them now."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from agent.buffer import Buffer, BufferError
from agent.config import AgentConfig, load_config
from agent.discovery import (
    NS_PER_S,
    ProcScanner,
    Scan,
    WriterLog,
    last_scan,
    shadow_processes,
)


def register(commands: argparse._SubParsersAction) -> None:
    shadow = commands.add_parser(
        "shadow",
        help="processes with an inference runtime loaded that meter nothing (shadow AI)",
        description="List the processes on this device that have ONNX Runtime, TensorRT, Triton or "
        "PyTorch loaded but whose pid wrote no record to the device buffer lately: as the daemon's "
        "last discovery scan found them (kept in the buffer), or, with --scan, as a scan finds them "
        "now (another user's processes show only when run as root). Exit status 1 when there is no "
        "buffer, or no scan yet and no --scan.",
        epilog="examples: infermeter agent shadow --buffer /var/lib/infermeter/buffer.db\n"
        "          sudo infermeter agent shadow --scan --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = shadow.add_mutually_exclusive_group()
    where.add_argument("--buffer", type=Path, help="device buffer file")
    where.add_argument("--config", help="agent TOML file naming the buffer (default: $INFERMETER_CONFIG)")
    shadow.add_argument("--scan", action="store_true", help="scan /proc now instead of showing the daemon's last scan")
    shadow.add_argument("--json", action="store_true", help="print JSON")
    shadow.set_defaults(func=_shadow)


def _shadow(args: argparse.Namespace) -> int:
    config = load_config(args.config, overrides={"buffer_path": args.buffer})
    if not config.buffer_path.is_file():
        raise BufferError(f"no buffer at {config.buffer_path} (--buffer PATH, or --config FILE to use its `buffer`)")
    with Buffer.open(config.buffer_path) as buffer:
        kept = last_scan(buffer)
        scan = scan_now(buffer, config, kept[1] if kept else {}) if args.scan else kept[0] if kept else None
    if scan is None:
        print(
            f"infermeter: no discovery scan in {config.buffer_path} yet (the daemon scans every "
            f"discovery.interval_s, {config.discovery_interval_s:g} s); --scan looks now", file=sys.stderr,
        )
        return 1
    if args.json:
        json.dump({"buffer": str(config.buffer_path), **scan.to_json()}, sys.stdout, indent=2)
        print()
    else:
        print(render(scan))
    return 0


def scan_now(buffer: Buffer, config: AgentConfig, writers: dict[int, int]) -> Scan:
    """A scan made now, from the writers the daemon knew of and the records in the buffer."""
    log = WriterLog(keep_s=config.discovery_recent_s)
    for pid, at in writers.items():
        log.note(pid, at)
    log.read_buffer(buffer)
    scanner = ProcScanner()
    sightings = scanner.scan()
    now = time.time_ns()
    shadow = shadow_processes(
        sightings, log, now_unix_ns=now, recent_s=config.discovery_recent_s, previous={}, gpu_memory={},
    )
    return Scan(now, 0.0, len(sightings), tuple(shadow), scanner.unreadable)


def render(scan: Scan) -> str:
    when = datetime.fromtimestamp(scan.scanned_unix_ns / NS_PER_S, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    head = (
        f"scanned {when}: {scan.runtime_processes} processes with an inference runtime, "
        f"{len(scan.shadow)} metering nothing"
    )
    if scan.unreadable_processes:
        head += (
            f"; the memory maps of {scan.unreadable_processes} processes of other users could not be"
            " read (that needs root or CAP_SYS_PTRACE)"
        )
    if not scan.shadow:
        return head
    lines = [head, f"{'pid':>7}  {'user':<12} {'runtimes':<22} {'RSS MiB':>8} {'CPU %':>6} {'GPU MiB':>8}  command"]
    for p in scan.shadow:
        lines.append(
            f"{p.pid:>7}  {p.user[:12]:<12} {','.join(p.runtimes):<22} {p.rss_bytes / 2**20:>8.1f}"
            f" {p.cpu_ns_per_s / 1e7:>6.1f} {p.gpu_memory_bytes / 2**20:>8.1f}  {p.cmdline or p.command}"
        )
    return "\n".join(lines)
