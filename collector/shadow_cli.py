"""`infermeter admin shadow list`: the processes devices report that run an inference runtime but
meter nothing (collector.shadow). Standard library only at import, like collector.cli."""

from __future__ import annotations

import argparse

from collector.cli import _command, _leaf, _open_store, _print_json, _table, _utc


def register_admin(admin: argparse._SubParsersAction) -> None:
    shadow = admin.add_parser(
        "shadow", help="shadow AI: processes that run an inference runtime but meter nothing",
        description="Shadow AI: processes that run an inference runtime but meter nothing.",
    ).add_subparsers(dest="shadow_command", required=True, metavar="COMMAND")
    listing = _leaf(
        shadow, "list", _shadow_list,
        help="list the shadow processes the devices last reported, with an estimate of their cost",
        description="List the processes each device's agent last reported (its latest discovery scan) that have "
        "ONNX Runtime, TensorRT, Triton or PyTorch loaded but wrote no record lately: user, runtimes, memory, "
        "CPU use, and their estimated cost (their CPU share of the device priced with the price book in force "
        "now; energy and GPU time are not in it). --json prints the HTTP API's /api/v1/shadow-processes object.",
        epilog="examples:\n  infermeter admin shadow list\n  infermeter admin shadow list --device edge-01 --json",
    )
    listing.add_argument("--device", metavar="DEVICE", help="only this device's processes (its name or id)")


@_command
def _shadow_list(args: argparse.Namespace) -> int:
    from collector import params, shadow

    device = params.check_name(args.device, field="device") if args.device is not None else None
    with _open_store(args, create=False) as store:
        answer = shadow.list_shadow(store, device)
    if args.json:
        _print_json(answer)
        return 0
    if not answer["devices"]:
        print("no discovery scans reported yet (agents scan every discovery.interval_s and report to this collector)")
        return 0
    for scan in answer["devices"]:
        unreadable = scan["unreadable_processes"]
        print(f"{scan['device']}: scanned {_utc(scan['scanned_unix_ns'])} UTC, {scan['runtime_processes']} processes "
              f"with an inference runtime, {scan['shadow_processes']} metering nothing"
              + (f"; {unreadable} processes of other users not readable (the agent needs CAP_SYS_PTRACE)" if unreadable else ""))
    if answer["processes"]:
        header = ("device", "pid", "user", "runtimes", "RSS MiB", "cores", f"{answer['currency']}/hour", "command")
        lines = [
            (p["device"], str(p["pid"]), p["user"], ",".join(p["runtimes"]), f"{p['rss_bytes'] / 2**20:.1f}",
             f"{float(p['cpu_cores_busy']):.2f}", p["estimated_cost_per_hour"], p["cmdline"] or p["command"])
            for p in answer["processes"]
        ]
        print(_table(header, lines, right=(1, 4, 5, 6)))
        print(f"total {answer['estimated_cost_per_hour']} {answer['currency']} per hour (CPU share only; see --json's estimate)")
    return 0
