"""The operators' operations of the FinOps insights, once for every surface (HTTP: collector.
insights_http, gRPC: collector.insights_service, CLI: collector.insights_cli): workload
classes, business KPIs and their report, the model registry, and right-sizing.

Like collector.admin_ops: blocking (run them off the event loop), bad input raises QueryError,
a refusal Refused, and answers are JSON-ready dicts with money as exact decimal strings.
"""

from __future__ import annotations

import sqlalchemy as sa

from collector import kpis, model_registry, right_sizing, workload_classes
from collector.admin_ops import EXISTS, NOT_FOUND, Refused
from collector.books import PriceBooks
from collector.database import transaction
from collector.kpis import Kpi, KpiQuery
from collector.model_registry import RegistryQuery
from collector.reports import rfc3339
from collector.right_sizing import RightSizingQuery
from collector.store import Store
from collector.workload_classes import WorkloadClass


def _currency(connection: sa.Connection) -> str:
    return PriceBooks().currency(connection)


# Workload classes


def list_classes(store: Store) -> dict:
    with transaction(store.engine) as connection:
        rows = workload_classes.list_classes(connection)
    return {"dimensions": {name: list(values) for name, values in workload_classes.DIMENSIONS.items()},
            "classes": [row.to_json() for row in rows]}


def set_class(store: Store, chosen: WorkloadClass) -> dict:
    with transaction(store.engine, write=True) as connection:
        return workload_classes.set_class(connection, chosen, now_unix_ns=store.now_unix_ns()).to_json()


def delete_class(store: Store, model: str) -> None:
    with transaction(store.engine, write=True) as connection:
        if not workload_classes.delete_class(connection, model):
            raise Refused(NOT_FOUND, f"no workload classes are set for model {model!r}", "model")


# KPIs


def list_kpis(store: Store) -> dict:
    with transaction(store.engine) as connection:
        return {"kpis": [kpi.to_json() for kpi in kpis.list_kpis(connection)]}


def add_kpi(store: Store, kpi: Kpi) -> dict:
    with transaction(store.engine, write=True) as connection:
        added = kpis.add_kpi(connection, kpi, now_unix_ns=store.now_unix_ns())
    if added is None:
        raise Refused(EXISTS, f"a KPI named {kpi.name!r} exists", "name")
    return added.to_json()


def delete_kpi(store: Store, name: str) -> None:
    with transaction(store.engine, write=True) as connection:
        if not kpis.delete_kpi(connection, name):
            raise Refused(NOT_FOUND, f"no KPI named {name!r}", "name")


def kpi_report(store: Store, query: KpiQuery) -> dict:
    """Each KPI's units, cost, cost per unit, value and ROI per period and in total."""
    with transaction(store.engine) as connection:
        defined = kpis.list_kpis(connection)
        units = {kpi.name: kpis.units_by_period(connection, kpi, query) for kpi in defined}
    reports = {}
    currency = None
    for key in sorted({kpi.group_key for kpi in defined}):
        report = store.costs(group_by=(key,), since_unix_ns=query.since_unix_ns, until_unix_ns=query.until_unix_ns,
                             granularity=query.granularity)
        reports[key] = report.groups
        currency = report.currency
    if currency is None:
        with transaction(store.engine) as connection:
            currency = _currency(connection)
    return {
        "currency": currency, "since": rfc3339(query.since_unix_ns), "until": rfc3339(query.until_unix_ns),
        "granularity": query.granularity,
        "kpis": [
            kpis.kpi_json(kpi, units[kpi.name], kpis.costs_by_period(reports[kpi.group_key], kpi)) for kpi in defined
        ],
    }


# The model registry and right-sizing


def model_registry_report(store: Store, query: RegistryQuery) -> dict:
    with transaction(store.engine) as connection:
        return model_registry.registry(
            connection, query, currency=_currency(connection), now_unix_ns=store.now_unix_ns()
        )


def right_sizing_report(store: Store, query: RightSizingQuery) -> dict:
    with transaction(store.engine) as connection:
        return right_sizing.right_sizing(connection, query, currency=_currency(connection))
