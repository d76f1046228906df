"""The commands of the FinOps insights: `admin class list|set|delete`, `admin kpi
list|add|delete`, `report kpis`, `report models` and `report right-size`. Standard library only
at import, like collector.cli."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from collector.cli import (
    TIME_FORMS,
    CommandError,
    _command,
    _leaf,
    _open_store,
    _print_json,
    _table,
    _time_ns,
)

_DIMENSIONS = {"criticality": "customer-facing or internal", "latency": "real-time or batch",
               "scaling": "steady or elastic"}


def register_admin(admin: argparse._SubParsersAction) -> None:
    classes = admin.add_parser("class", help="workload classes of models (criticality, latency, scaling)").add_subparsers(
        dest="class_command", required=True, metavar="COMMAND")
    _leaf(classes, "list", _class_list, help="list the classes set per model",
          epilog="examples:\n  infermeter admin class list --json")
    chosen = _leaf(classes, "set", _class_set, help="set a model's classes (over its records' tags)",
                   epilog="examples:\n  infermeter admin class set fraud-xgb --criticality customer-facing --latency real-time")
    chosen.add_argument("model", help="the model's name, as metered")
    for name, values in _DIMENSIONS.items():
        chosen.add_argument(f"--{name}", help=f"{values}; left out: the records' {name} tag decides")
    delete = _leaf(classes, "delete", _class_delete, help="forget a model's classes (its tags decide again)",
                   epilog="examples:\n  infermeter admin class delete fraud-xgb")
    delete.add_argument("model")
    kpi = admin.add_parser("kpi", help="business KPIs: a model's or tag's work in business units").add_subparsers(
        dest="kpi_command", required=True, metavar="COMMAND")
    _leaf(kpi, "list", _kpi_list, help="list the KPIs", epilog="examples:\n  infermeter admin kpi list")
    add = _leaf(kpi, "add", _kpi_add, help="define a KPI",
                epilog="examples:\n  infermeter admin kpi add fraud-checks --unit 'fraud check' --model fraud-xgb "
                "--value-per-unit 0.02\n  infermeter admin kpi add recos --unit recommendation --tag feature=reco "
                "--measure batch_items")
    add.add_argument("name", help="1-64 characters of A-Z a-z 0-9 . _ -")
    add.add_argument("--unit", required=True, help="what one unit is called in the business (\"fraud check\")")
    which = add.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="the model whose work the KPI counts")
    which.add_argument("--tag", metavar="KEY=VALUE", help="the tag whose records' work the KPI counts")
    add.add_argument("--measure", default="inferences",
                     help="what a unit is: inferences (default), batch_items, input_tokens, output_tokens, tokens")
    add.add_argument("--value-per-unit", metavar="AMOUNT", help="what a unit is worth (decimal, price book currency)")
    delete = _leaf(kpi, "delete", _kpi_delete, help="delete a KPI", epilog="examples:\n  infermeter admin kpi delete recos")
    delete.add_argument("name")


def register_report(report: argparse._SubParsersAction) -> None:
    kpis = _leaf(report, "kpis", _kpi_report, help="cost per KPI unit and ROI per period",
                 epilog="examples:\n  infermeter report kpis --since 2026-11-01 --until 2026-12-01 --granularity day")
    kpis.add_argument("--since", type=_time_ns, metavar="TIME", help=f"a whole UTC hour: {TIME_FORMS} (default: this month's start)")
    kpis.add_argument("--until", type=_time_ns, metavar="TIME", help="a whole UTC hour (default: the end of this hour)")
    kpis.add_argument("--granularity", choices=("hour", "day", "month"), default="month")
    models = _leaf(report, "models", _models, help="the model registry: what devices run, cost to date, sprawl",
                   epilog="examples:\n  infermeter report models\n  infermeter report models --active-days 14 --json")
    models.add_argument("--active-days", type=int, metavar="N", help="in production: recorded in the last N days (7)")
    models.add_argument("--sprawl-versions", type=int, metavar="N", help="sprawl: N or more versions in production (3)")
    models.add_argument("--model", help="one model only")
    sizing = _leaf(report, "right-size", _right_size, help="a model's versions side by side, and the saving of the cheapest",
                   epilog="examples:\n  infermeter report right-size resnet50 --since 2026-11-01 --until 2026-12-01")
    sizing.add_argument("model")
    sizing.add_argument("--since", type=_time_ns, metavar="TIME", help=f"a whole UTC hour: {TIME_FORMS} (default: 30 days before --until)")
    sizing.add_argument("--until", type=_time_ns, metavar="TIME", help="a whole UTC hour (default: the end of this hour)")


def _run(args: argparse.Namespace, operation: Callable, *arguments, create: bool = False):
    from collector.admin_ops import Refused

    with _open_store(args, create=create) as store:
        try:
            return operation(store, *(argument(store) if callable(argument) else argument for argument in arguments))
        except Refused as err:
            raise CommandError(str(err)) from None


@_command
def _class_list(args: argparse.Namespace) -> int:
    from collector import insights_ops

    answer = _run(args, insights_ops.list_classes)
    if args.json:
        _print_json(answer)
        return 0
    rows = [(row["model"], *(row[name] or "(tag)" for name in _DIMENSIONS)) for row in answer["classes"]]
    print(_table(("model", *_DIMENSIONS), rows))
    return 0


@_command
def _class_set(args: argparse.Namespace) -> int:
    from collector import insights_ops, workload_classes

    chosen = workload_classes.parse_class(args.model, {name: getattr(args, name) for name in _DIMENSIONS})
    answer = _run(args, insights_ops.set_class, chosen)
    _print_json(answer) if args.json else print(
        f"{answer['model']}: " + ", ".join(f"{name} {answer[name] or '(tag)'}" for name in _DIMENSIONS))
    return 0


@_command
def _class_delete(args: argparse.Namespace) -> int:
    from collector import insights_ops

    _run(args, insights_ops.delete_class, args.model)
    _print_json({"deleted": args.model}) if args.json else print(f"deleted the classes of {args.model}")
    return 0


@_command
def _kpi_list(args: argparse.Namespace) -> int:
    from collector import insights_ops

    answer = _run(args, insights_ops.list_kpis)
    if args.json:
        _print_json(answer)
        return 0
    rows = [(kpi["name"], kpi["unit"], kpi["measure"], f"model:{kpi['model']}" if kpi["model"] else f"tag:{kpi['tag']}",
             kpi["value_per_unit"] or "-") for kpi in answer["kpis"]]
    print(_table(("name", "unit", "measure", "of", "value/unit"), rows))
    return 0


@_command
def _kpi_add(args: argparse.Namespace) -> int:
    from collector import insights_ops, kpis

    document = {"name": args.name, "unit": args.unit, "measure": args.measure}
    document |= {"model": args.model} if args.model is not None else {"tag": args.tag}
    if args.value_per_unit is not None:
        document["value_per_unit"] = args.value_per_unit
    answer = _run(args, insights_ops.add_kpi, kpis.parse_kpi(document))
    _print_json(answer) if args.json else print(f"added KPI {answer['name']} ({answer['unit']}, {answer['measure']})")
    return 0


@_command
def _kpi_delete(args: argparse.Namespace) -> int:
    from collector import insights_ops

    _run(args, insights_ops.delete_kpi, args.name)
    _print_json({"deleted": args.name}) if args.json else print(f"deleted KPI {args.name}")
    return 0


@_command
def _kpi_report(args: argparse.Namespace) -> int:
    from collector import insights_ops, kpis

    def query(store):
        return kpis.kpi_query(args.since, args.until, args.granularity, now_unix_ns=store.now_unix_ns())

    answer = _run(args, insights_ops.kpi_report, query)
    if args.json:
        _print_json(answer)
        return 0
    rows = []
    for kpi in answer["kpis"]:
        for period in [*kpi["periods"], {"period": "total", **kpi["total"]}]:
            rows.append((kpi["name"], kpi["unit"], period["period"].removesuffix("T00:00:00Z"), str(period["units"]),
                         period["cost"], period["cost_per_unit"] or "-", period["value"] or "-", period["roi"] or "-"))
    print(_table(("kpi", "unit", "period", "units", "cost", "per unit", "value", "roi"), rows, right=(3, 4, 5, 6, 7)))
    print(f"{answer['since']} .. {answer['until']}; amounts in {answer['currency']}; cost includes idle and fixed shares")
    return 0


@_command
def _models(args: argparse.Namespace) -> int:
    from collector import insights_ops, model_registry

    query = model_registry.registry_query(args.active_days, args.sprawl_versions, args.model)
    answer = _run(args, insights_ops.model_registry_report, query)
    if args.json:
        _print_json(answer)
        return 0
    rows = []
    for model in answer["models"]:
        for variant in model["variants"]:
            flags = [flag for flag, on in (("outdated", variant["outdated"]), ("sprawl", model["sprawl"])) if on]
            rows.append((model["model"], variant["version"], variant["runtime"], variant["execution_provider"] or "-",
                         ",".join(variant["devices"]), variant["first_seen"][:10], variant["last_seen"][:10],
                         str(variant["inferences"]), variant["cost"], " ".join(flags) or "-"))
    print(_table(("model", "version", "runtime", "provider", "devices", "first seen", "last seen", "inferences",
                  "cost to date", "flags"), rows, right=(7, 8)))
    print(f"amounts in {answer['currency']}; outdated: a newer release ran anywhere and this one ran in the last "
          f"{answer['active_days']} days; sprawl: {answer['sprawl_versions']}+ versions in production")
    return 0


@_command
def _right_size(args: argparse.Namespace) -> int:
    from collector import insights_ops, right_sizing

    def query(store):
        return right_sizing.right_sizing_query(args.model, args.since, args.until, now_unix_ns=store.now_unix_ns())

    answer = _run(args, insights_ops.right_sizing_report, query)
    if args.json:
        _print_json(answer)
        return 0
    rows = [
        (variant["version"], variant["runtime"], variant["execution_provider"] or "-", str(variant["inferences"]),
         variant["cost_per_inference"], variant["energy_uj_per_inference"], _ms(variant["mean_latency_ns"]),
         _ms(variant["p50_latency_ns"]), _ms(variant["p95_latency_ns"]), variant["monthly_saving"]
         + (" (cheapest)" if variant["cheapest"] else ""))
        for variant in answer["variants"]
    ]
    print(_table(("version", "runtime", "provider", "inferences", "cost/inf", "µJ/inf", "mean ms", "p50 ms", "p95 ms",
                  "saving/month"), rows, right=(3, 4, 5, 6, 7, 8)))
    print(f"{answer['model']}, {answer['since']} .. {answer['until']}: moving every variant to the cheapest saves "
          f"{answer['monthly_saving']} {answer['currency']} a month (30 days) at this volume")
    return 0


def _ms(latency_ns: int | None) -> str:
    return "-" if latency_ns is None else f"{latency_ns / 1e6:.3f}"
