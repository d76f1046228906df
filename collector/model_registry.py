"""The model registry: every model variant (model, version, runtime, execution provider) that
devices actually ran, from what ingest kept (collector.model_usage), with its devices, first
and last record start, records, inferences, energy and cost to date; and the sprawl it shows.

Flags, both over the `active_days` before now:
- outdated (an old version still in production): the variant ran in the window, and a newer
  release of the same model has been seen on any device. A version's release is its leading
  dotted number ("v" allowed): "2-int8" and "2+trt" are variants of release 2, not newer than
  "2"; "1.10" is newer than "1.9". A version with no leading number ("latest") has no release
  and is never outdated, nor outdates another;
- sprawl (per model): the model ran in at least `sprawl_versions` distinct versions in the
  window.
Cost to date is the records' cost at effective prices (re-pricing included); period costs
(idle capacity, fixed costs) belong to devices and months, not to variants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from collector.model_usage import VARIANT_COLUMNS, sum_columns, summed
from collector.params import QueryError
from collector.pricing import decimal_text, picos_to_decimal
from collector.reports import DAY_NS, rfc3339
from collector.schema import devices, model_deployments, model_usage

DEFAULT_ACTIVE_DAYS = 7
DEFAULT_SPRAWL_VERSIONS = 3
MAX_ACTIVE_DAYS = 3_660
_PARTS = re.compile(r"(\d+)")
_RELEASE = re.compile(r"[vV]?(\d+(?:\.\d+)*)")


@dataclass(frozen=True, slots=True)
class RegistryQuery:
    active_days: int = DEFAULT_ACTIVE_DAYS
    sprawl_versions: int = DEFAULT_SPRAWL_VERSIONS
    model: str | None = None  # one model's variants only


def registry_query(active_days: object = None, sprawl_versions: object = None, model: object = None) -> RegistryQuery:
    """The query from request values (integers, or their decimal text); QueryError if bad."""
    days = _count(active_days, "active_days", DEFAULT_ACTIVE_DAYS, MAX_ACTIVE_DAYS)
    versions = _count(sprawl_versions, "sprawl_versions", DEFAULT_SPRAWL_VERSIONS, 1_000)
    if model is not None and (type(model) is not str or not model):
        raise QueryError("model", "model must be a model's name")
    return RegistryQuery(days, versions, model)


def _count(value: object, field: str, default: int, most: int) -> int:
    if value is None:
        return default
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= 6:
        value = int(value)
    if type(value) is not int or not 1 <= value <= most:
        raise QueryError(field, f"{field} must be a whole number from 1 to {most}, not {value!r}")
    return value


def version_key(version: str) -> tuple:
    """Natural order, for listing: digit runs compare as numbers, text as text, a number first."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in _PARTS.split(version) if part)


def release(version: str) -> tuple[int, ...] | None:
    """The leading dotted number of a version ("v3.1-int8": (3, 1)); None when it has none."""
    match = _RELEASE.match(version)
    return None if match is None else tuple(int(part) for part in match[1].split("."))


def registry(connection: sa.Connection, query: RegistryQuery, *, currency: str, now_unix_ns: int) -> dict:
    """The registry as the APIs answer it (JSON-ready): models by cost to date, most first."""
    variant = [model_usage.c[name] for name in VARIANT_COLUMNS]
    totals = sa.select(*variant, sa.func.sum(model_usage.c.records).label("records"),
                       *sum_columns(("count", "cost_pico", "energy_uj"))).group_by(*variant)
    placed = sa.select(
        *(model_deployments.c[name] for name in VARIANT_COLUMNS), devices.c.name,
        model_deployments.c.first_start_unix_ns, model_deployments.c.last_start_unix_ns,
    ).join(devices, devices.c.device_id == model_deployments.c.device_id)
    if query.model is not None:
        totals = totals.where(model_usage.c.model == query.model)
        placed = placed.where(model_deployments.c.model == query.model)
    variants: dict[tuple, dict] = {}
    for row in connection.execute(placed):
        key = tuple(row[:4])
        entry = variants.setdefault(key, {"devices": set(), "first": row.first_start_unix_ns, "last": 0})
        entry["devices"].add(row.name)
        entry["first"] = min(entry["first"], row.first_start_unix_ns)
        entry["last"] = max(entry["last"], row.last_start_unix_ns)
    sums = {tuple(row[:4]): row._mapping for row in connection.execute(totals)}
    active_since = now_unix_ns - query.active_days * DAY_NS
    models: dict[str, list[dict]] = {}
    for key, place in variants.items():
        row = sums.get(key)
        models.setdefault(key[0], []).append({
            **dict(zip(("version", "runtime", "execution_provider"), key[1:])),
            "devices": sorted(place["devices"]),
            "first_seen": rfc3339(place["first"]), "last_seen": rfc3339(place["last"]),
            "first_seen_unix_ns": place["first"], "last_seen_unix_ns": place["last"],
            "active": place["last"] >= active_since,
            "records": int(row["records"]) if row else 0,
            "inferences": summed(row, "count") if row else 0,
            "energy_uj": summed(row, "energy_uj") if row else 0,
            "cost_pico": summed(row, "cost_pico") if row else 0,
        })
    answer = [_model_json(name, found, query) for name, found in models.items()]
    answer.sort(key=lambda model: (-model.pop("_cost_pico"), model["model"]))
    return {"currency": currency, "active_days": query.active_days, "sprawl_versions": query.sprawl_versions,
            "models": answer}


def _model_json(name: str, variants: list[dict], query: RegistryQuery) -> dict:
    latest = max((variant["version"] for variant in variants), key=version_key)
    newest = max((found for found in (release(variant["version"]) for variant in variants) if found), default=None)
    active_versions = sorted({variant["version"] for variant in variants if variant["active"]}, key=version_key)
    variants.sort(key=lambda variant: (version_key(variant["version"]), variant["runtime"],
                                       variant["execution_provider"]), reverse=True)
    cost = sum(variant["cost_pico"] for variant in variants)
    for variant in variants:
        found = release(variant["version"])
        variant["outdated"] = variant["active"] and found is not None and found < newest
        variant["cost"] = decimal_text(picos_to_decimal(variant.pop("cost_pico")))
    return {
        "model": name,
        "latest_version": latest,
        "versions": len({variant["version"] for variant in variants}),
        "active_versions": active_versions,
        "sprawl": len(active_versions) >= query.sprawl_versions,
        "outdated_in_production": sorted({v["version"] for v in variants if v["outdated"]}, key=version_key),
        "devices": sorted({device for variant in variants for device in variant["devices"]}),
        "inferences": sum(variant["inferences"] for variant in variants),
        "energy_uj": sum(variant["energy_uj"] for variant in variants),
        "cost": decimal_text(picos_to_decimal(cost)),
        "variants": variants,
        "_cost_pico": cost,
    }
