"""The commands of budget alerts: `admin webhook add|list|revoke`, `report budget-events` and
`report forecast`. Standard library only at import, like collector.cli."""

from __future__ import annotations

import argparse

from collector.cli import (
    TIME_FORMS,
    _command,
    _leaf,
    _open_store,
    _print_json,
    _time_ns,
)


def register_admin(admin: argparse._SubParsersAction) -> None:
    webhook = admin.add_parser("webhook", help="webhooks that budget events are POSTed to").add_subparsers(
        dest="webhook_command", required=True, metavar="COMMAND")
    add = _leaf(webhook, "add", _webhook_add, help="add a webhook and print its secret (shown only once)",
                epilog="examples:\n  infermeter admin webhook add https://hooks.example.com/infermeter")
    add.add_argument("url", help="an http or https URL")
    _leaf(webhook, "list", _webhook_list, help="list webhooks", epilog="examples:\n  infermeter admin webhook list --json")
    revoke = _leaf(webhook, "revoke", _webhook_revoke, help="stop delivering to a webhook",
                   epilog="examples:\n  infermeter admin webhook revoke whk_5d2c0e8f9a1b3c4d5e6f7a8b")
    revoke.add_argument("id", help="the webhook's id")


def register_report(report: argparse._SubParsersAction) -> None:
    events = _leaf(report, "budget-events", _events, help="threshold, forecast and anomaly events of budgets",
                   epilog="examples:\n  infermeter report budget-events --budget search-monthly --since 2026-11-01")
    events.add_argument("--budget", help="one budget's events (its name or id)")
    events.add_argument("--since", type=_time_ns, metavar="TIME", help=f"events created at or after: {TIME_FORMS}")
    forecast = _leaf(report, "forecast", _forecast, help="forecast a scope's daily spend and project its budgets",
                     epilog="examples:\n  infermeter report forecast --scope tag:project=search --horizon-days 14")
    forecast.add_argument("--scope", default="global", help="global, device:NAME, model:NAME, site:NAME, tag:KEY=VALUE or class:DIMENSION=CLASS")
    forecast.add_argument("--horizon-days", type=int, default=30, metavar="N", help="days to forecast (1-366)")


@_command
def _webhook_add(args: argparse.Namespace) -> int:
    from collector import admin_ops, params

    with _open_store(args) as store:
        added = admin_ops.add_webhook(store, params.webhook_url(args.url))
    _print_json(added) if args.json else print(f"{added['webhook_id']} {added['url']}\nsecret: {added['secret']}")
    return 0


@_command
def _webhook_list(args: argparse.Namespace) -> int:
    from collector import admin_ops

    with _open_store(args, create=False) as store:
        rows = admin_ops.list_webhooks(store)
    if args.json:
        _print_json({"webhooks": rows})
    for row in [] if args.json else rows:
        print(f"{row['webhook_id']}  {'revoked' if row['revoked'] else 'live':8} {row['url']}")
    return 0


@_command
def _webhook_revoke(args: argparse.Namespace) -> int:
    from collector import admin_ops, params

    with _open_store(args, create=False) as store:
        row = admin_ops.revoke_webhook(store, params.webhook_id(args.id))
    _print_json(row) if args.json else print(f"revoked {row['webhook_id']}")
    return 0


@_command
def _events(args: argparse.Namespace) -> int:
    from collector import admin_ops, params

    with _open_store(args, create=False) as store:
        events = admin_ops.budget_events(store, params.events_query(args.budget, args.since, params.MAX_EVENTS))
    if args.json:
        _print_json({"events": events})
    for event in [] if args.json else events:
        message = event["details"].get("message", "") if isinstance(event["details"], dict) else ""
        print(f"{event['event_id']:>6}  {event['budget']:20} {event['kind']:9} {event['key']:10} {message}")
    return 0


@_command
def _forecast(args: argparse.Namespace) -> int:
    from collector import admin_ops, params

    query = params.forecast_query(args.scope, args.horizon_days, today=admin_ops.today())
    with _open_store(args, create=False) as store:
        answer = admin_ops.forecast(store, query)
    if args.json:
        _print_json(answer)
        return 0
    predicted = answer["forecast"]
    print(f"scope {answer['scope']}: model {predicted['model'] or '-'} ({predicted['status']}), "
          f"backtest {predicted['error_metric'] or 'error'} {predicted['backtest_error']}")
    for point in predicted["points"]:
        print(f"  {point['date']}  {point['expected']:>14} {answer['currency']}  [{point['low']} .. {point['high']}]")
    for budget in answer["budgets"]:
        print(f"{budget['message']} (projected {budget['projected_total']} of {budget['amount']})")
    return 0
