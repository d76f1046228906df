"""The commands of tag policy and chargeback: `admin tag-policy show|set`, `admin device-tags
show|set|clear`, `report untagged` and `report chargeback`. Standard library only at import,
like collector.cli."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from collector.cli import (
    TIME_FORMS,
    CommandError,
    _command,
    _leaf,
    _money,
    _open_store,
    _print_json,
    _table,
    _time_ns,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

_PERIOD_HELP = "a calendar month (UTC), YYYY-MM"


def register_admin(admin: argparse._SubParsersAction) -> None:
    policy = admin.add_parser("tag-policy", help="the tags every record must carry").add_subparsers(
        dest="tag_policy_command", required=True, metavar="COMMAND")
    _leaf(policy, "show", _policy_show, help="show the tag policy in force",
          epilog="examples:\n  infermeter admin tag-policy show --json")
    policy_set = _leaf(
        policy, "set", _policy_set, help="set a new version of the tag policy",
        description="Set a new version of the tag policy from FILE (TOML if named .toml, else JSON): "
        "a [required] table of tag = [allowed values], [] for any value. Reports made from now on "
        "judge every record of their range by it; the earlier versions are kept.",
        epilog="examples:\n  infermeter admin tag-policy set tag-policy.toml\n\n"
        "tag-policy.toml:\n  [required]\n  department = [\"ml\", \"search\", \"ads\"]\n"
        "  environment = [\"prod\", \"staging\", \"dev\"]\n  project = []\n  user = []",
    )
    policy_set.add_argument("file", type=Path, help="the policy document (.toml or JSON)")
    tags = admin.add_parser("device-tags", help="default tags of a device's records").add_subparsers(
        dest="device_tags_command", required=True, metavar="COMMAND")
    show = _leaf(tags, "show", _tags_show, help="show a device's default tags",
                 epilog="examples:\n  infermeter admin device-tags show edge-01 --json")
    show.add_argument("device", help="the device's name or id")
    tags_set = _leaf(
        tags, "set", _tags_set, help="replace a device's default tags",
        description="Replace a device's default tags. Its agent hears of them in its next Push reply "
        "and adds each to the records it ships that do not carry that tag themselves.",
        epilog="examples:\n  infermeter admin device-tags set edge-01 department=ml project=search",
    )
    tags_set.add_argument("device", help="the device's name or id")
    tags_set.add_argument("tags", nargs="+", metavar="KEY=VALUE", help="a tag (the whole set: others are removed)")
    clear = _leaf(tags, "clear", _tags_clear, help="remove a device's default tags",
                  epilog="examples:\n  infermeter admin device-tags clear edge-01")
    clear.add_argument("device", help="the device's name or id")


def register_report(report: argparse._SubParsersAction) -> None:
    untagged = _leaf(
        report, "untagged", _untagged, help="the costs of records that fail the tag policy",
        description="The records of [since, until) (or a month) that miss a tag the policy requires, or "
        "carry a value it does not allow, per device and model: their costs (with their share of idle "
        "and fixed costs), and per tag how many records miss it or carry which disallowed values.",
        epilog="examples:\n  infermeter report untagged --month 2026-11\n  infermeter report untagged --json",
    )
    _period_arguments(untagged)
    chargeback = _leaf(
        report, "chargeback", _chargeback, help="a billing period's costs per department and project",
        description="A billing period's costs with a line per value of the chargeback tags (department "
        "and project by default), and lines for (untagged) records (those that fail the tag policy or "
        "lack a chargeback tag), (idle) capacity and (fixed) costs that no usage took. Idle, fixed costs "
        "and discounts are allocated as `report costs` allocates them, so the lines add up to its "
        "total for the same period, to the pico. --json prints the HTTP API's /api/v1/chargeback "
        "object; --csv the CSV file.",
        epilog="examples:\n  infermeter report chargeback --month 2026-11\n"
        "  infermeter report chargeback --month 2026-11 --csv > chargeback-2026-11.csv\n"
        "  infermeter report chargeback --since 2026-11-01 --until 2026-11-16 --by department --json",
    )
    _period_arguments(chargeback)
    chargeback.add_argument("--by", default="department,project", metavar="TAGS",
                            help="comma-separated tags with a line per value (default: department,project)")
    chargeback.add_argument("--csv", action="store_true", help="print CSV")


def _period_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--month", metavar="YYYY-MM", help=_PERIOD_HELP)
    parser.add_argument("--since", type=_time_ns, metavar="TIME", help=f"start of the range (inclusive): {TIME_FORMS}")
    parser.add_argument("--until", type=_time_ns, metavar="TIME", help=f"end of the range (exclusive): {TIME_FORMS}")


def _operation(action, *args):
    """Run a collector.tag_ops operation; an unknown device is a usage error."""
    from collector.admin_ops import Refused

    try:
        return action(*args)
    except Refused as err:
        raise CommandError(f"{err} (see: infermeter admin device list)", 2) from None


@_command
def _policy_show(args: argparse.Namespace) -> int:
    from collector import tag_ops

    with _open_store(args, create=False) as store:
        policy = tag_ops.get_policy(store)
    if args.json:
        _print_json(policy)
    else:
        print(_policy_text(policy))
    return 0


@_command
def _policy_set(args: argparse.Namespace) -> int:
    from collector import tag_ops

    document = _read_policy(args.file)
    with _open_store(args) as store:
        policy = tag_ops.set_policy(store, document)
    if args.json:
        _print_json(policy)
    else:
        print(_policy_text(policy))
    return 0


def _policy_text(policy: dict) -> str:
    if not policy["version"]:
        return "no tag policy: every record counts as tagged; set one with: infermeter admin tag-policy set FILE"
    lines = [f"tag policy version {policy['version']}: required tags"]
    for key, allowed in policy["required"].items():
        lines.append(f"  {key}: {', '.join(allowed) if allowed else 'any value'}")
    return "\n".join(lines)


def _read_policy(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise CommandError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text", 2) from None
    toml = path.suffix.lower() == ".toml"
    try:
        return tomllib.loads(text) if toml else json.loads(text)
    except ValueError as err:
        raise CommandError(f"{path} is not valid {'TOML' if toml else 'JSON (name it .toml for TOML)'}: {err}", 2) from None


@_command
def _tags_show(args: argparse.Namespace) -> int:
    from collector import tag_ops

    with _open_store(args, create=False) as store:
        answer = _operation(tag_ops.get_device_tags, store, args.device)
    _print_tags(args, answer)
    return 0


@_command
def _tags_set(args: argparse.Namespace) -> int:
    from collector import tag_ops

    tags = {}
    for item in args.tags:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"{item!r} is not KEY=VALUE", 2)
        tags[key] = value
    with _open_store(args, create=False) as store:
        answer = _operation(tag_ops.set_device_tags, store, args.device, tags)
    _print_tags(args, answer)
    return 0


@_command
def _tags_clear(args: argparse.Namespace) -> int:
    from collector import tag_ops

    with _open_store(args, create=False) as store:
        answer = _operation(tag_ops.set_device_tags, store, args.device, {})
    _print_tags(args, answer)
    return 0


def _print_tags(args: argparse.Namespace, answer: dict) -> None:
    if args.json:
        _print_json(answer)
    elif answer["tags"]:
        print(f"{answer['device']}: " + ", ".join(f"{key}={value}" for key, value in answer["tags"].items()))
    else:
        print(f"{answer['device']}: no default tags")


@_command
def _untagged(args: argparse.Namespace) -> int:
    from collector import tag_ops

    scope = tag_ops.period(args.month, args.since, args.until)
    with _open_store(args, create=False) as store:
        answer = tag_ops.untagged_costs(store, scope)
    if args.json:
        _print_json(answer)
        return 0
    rows = []
    for group in answer["groups"]:
        problems = "; ".join(
            _problem(key, found) for key, found in group["tags"].items()
        )
        rows.append((group["device"], group["model"], str(group["records"]), _money(group["total_cost"]), problems))
    if rows:
        print(_table(("device", "model", "records", "total", "tags at fault"), rows, right=(2, 3)))
    print(f"untagged: {answer['untagged_records']} of {answer['records']} records, {_money(answer['untagged_cost'])} "
          f"of {_money(answer['total_cost'])} {answer['currency']} (tag policy version {answer['policy']['version']})")
    return 0


def _problem(key: str, found: dict) -> str:
    parts = []
    if found["missing"]:
        parts.append(f"{found['missing']} missing")
    if found["disallowed"]:
        parts.append(f"{found['disallowed']} disallowed ({', '.join(found['values'])})")
    return f"{key}: {', '.join(parts)}"


@_command
def _chargeback(args: argparse.Namespace) -> int:
    from collector import tag_ops
    from collector.chargeback import chargeback_csv

    scope = tag_ops.period(args.month, args.since, args.until)
    by = tag_ops.chargeback_by(args.by)
    with _open_store(args, create=False) as store:
        answer = tag_ops.chargeback_report(store, scope, by)
    if args.json:
        _print_json(answer)
    elif args.csv:
        sys.stdout.write(chargeback_csv(answer))
    else:
        print(_chargeback_table(answer))
    return 0


def _chargeback_table(answer: dict) -> str:
    rows = [
        (*(line["tags"][key] for key in answer["by"]), str(line["inferences"]), _money(line["usage_cost"]),
         _money(line["idle_cost"]), _money(line["fixed_cost"]), _money(line["total_cost"]))
        for line in answer["lines"]
    ]
    rows.append(("total", *[""] * (len(answer["by"]) - 1), str(answer["inferences"]), _money(answer["usage_cost"]),
                 _money(answer["idle_cost"]), _money(answer["fixed_cost"]), _money(answer["total_cost"])))
    header = (*answer["by"], "inferences", "usage", "idle", "fixed", "total")
    table = _table(header, rows, right=tuple(range(len(answer["by"]), len(header))))
    return (f"chargeback {answer['since']} .. {answer['until']} (tag policy version {answer['policy_version']})\n"
            f"{table}\namounts in {answer['currency']} (--json or --csv for every digit)")
