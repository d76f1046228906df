"""`infermeter wrap -- COMMAND ...`: run an unmodified app with every ONNX Runtime session and
Triton client it creates metered (agent.auto).

The command replaces this process (exec), with agent/autoload first on PYTHONPATH and
INFERMETER_AUTO=1; --tags and --buffer set INFERMETER_TAGS and INFERMETER_BUFFER for it.
--print-env prints those variables instead, for a systemd unit or a container image.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from agent import autoload
from agent.auto import ENABLE_VARIABLE
from agent.config import ConfigError, parse_tags

AUTOLOAD_DIR = str(Path(autoload.__file__).resolve().parent)


def register(subparsers: argparse._SubParsersAction) -> None:
    wrap = subparsers.add_parser(
        "wrap",
        help="run an app with its ONNX Runtime sessions and Triton clients metered, unchanged",
        description="Run COMMAND (a Python app, or anything that starts one) with every "
        "onnxruntime.InferenceSession and tritonclient InferenceServerClient (grpc, http, aio) "
        "that it creates metered, without changing its code. Records go to the agent's buffer "
        "(INFERMETER_CONFIG / INFERMETER_BUFFER) with the tags of INFERMETER_TAGS. Python processes "
        "the app starts are metered too. The app must run on a Python that has infermeter installed.",
        epilog="examples: infermeter wrap -- python app.py\n"
        "          infermeter wrap --tags project=search,user=alice -- python serve.py --port 9000\n"
        "          infermeter wrap --print-env >> /etc/default/my-app",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    wrap.add_argument("--tags", help="tags for every record, k=v,k2=v2 (added to $INFERMETER_TAGS)")
    wrap.add_argument("--buffer", type=Path, help="device buffer file (default: the agent configuration's)")
    wrap.add_argument("--print-env", action="store_true", help="print the environment that turns metering on, and exit")
    wrap.add_argument("--json", action="store_true", help="with --print-env: print it as a JSON object")
    wrap.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    wrap.set_defaults(func=run)


def metering_env(base: Mapping[str, str], *, tags: str | None = None, buffer: Path | None = None) -> dict[str, str]:
    """The variables to add to base for metering; ConfigError for tags that do not parse."""
    added = {ENABLE_VARIABLE: "1"}
    path = base.get("PYTHONPATH", "")
    entries = [entry for entry in path.split(os.pathsep) if entry and entry != AUTOLOAD_DIR]
    added["PYTHONPATH"] = os.pathsep.join([AUTOLOAD_DIR, *entries])
    if tags:
        parse_tags(tags, source="--tags")
        existing = base.get("INFERMETER_TAGS", "")
        added["INFERMETER_TAGS"] = f"{existing},{tags}" if existing else tags
    if buffer is not None:
        added["INFERMETER_BUFFER"] = str(buffer.resolve())
    return added


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        added = metering_env(os.environ, tags=args.tags, buffer=args.buffer)
    except ConfigError as err:
        print(f"infermeter wrap: {err}", file=sys.stderr)
        return 2
    if args.print_env:
        if args.json:
            print(json.dumps(added, indent=2, sort_keys=True))
        else:
            for name, value in sorted(added.items()):
                print(f"{name}={shlex.quote(value)}")
        return 0
    if not command:
        print("infermeter wrap: no command given (infermeter wrap -- python app.py)", file=sys.stderr)
        return 2
    try:
        os.execvpe(command[0], command, {**os.environ, **added})
    except OSError as err:
        print(f"infermeter wrap: cannot run {command[0]}: {err.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced this process
