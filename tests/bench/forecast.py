"""Forecast accuracy and anomaly detection on synthetic daily spend, printed (a benchmark
script, not a test).

    python tests/bench/forecast.py [--series 30] [--seed 7] [--quick]

Forecasts: for each kind of series (flat, linear trend, trend + weekly season, compound growth;
all with noise), --series series of 8 to 12 weeks are forecast 4 weeks ahead with
collector.forecast, and the MAPE of the daily expected spend against what the series really did
is printed per kind, with the models the backtest chose and how often the 90 % interval held
the actual day. Target: MAPE <= 10 % for the seasonal series.

Anomalies: --series series of each kind, each the sum of three drivers (models, say), get 3 to
6 spikes each: on a random day after the first two weeks one driver spends 3 to 6 times the
scope's usual day on top. collector.anomaly finds spikes in the scope's series; precision and
recall are counted against the injected days (target >= 0.9 both), and for each spike found,
whether name_driver names the driver that spiked.

Series are drawn from a seeded generator: the figures repeat run to run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from collector.anomaly import detect, name_driver
from collector.forecast import DailySpend, forecast

PICOS = 10**12
HORIZON_DAYS = 28
START = date(2026, 1, 5)  # a Monday
KINDS = ("flat", "linear", "seasonal", "growth")
TARGET_MAPE_SEASONAL = 0.10
TARGET_PRECISION = TARGET_RECALL = 0.9


def synthetic(kind: str, days: int, rng: np.random.Generator) -> np.ndarray:
    """Daily spend in currency units, noise 5 % of the level."""
    t = np.arange(days)
    base = rng.uniform(20, 200)
    if kind == "flat":
        level = np.full(days, base)
    elif kind == "linear":
        level = base * (1 + rng.uniform(0.005, 0.02) * t)
    elif kind == "seasonal":
        weekend = np.where((START.weekday() + t) % 7 >= 5, rng.uniform(0.3, 0.6), 1.0)
        level = base * (1 + rng.uniform(0.0, 0.015) * t) * weekend
    else:
        level = base * (1 + rng.uniform(0.01, 0.025)) ** t
    return np.maximum(level * (1 + rng.normal(0, 0.05, days)), 0)


def to_series(values: np.ndarray) -> DailySpend:
    return DailySpend(START, tuple(round(v * PICOS) for v in values))


def bench_forecasts(count: int, rng: np.random.Generator) -> dict[str, dict]:
    results = {}
    for kind in KINDS:
        mapes, chosen, inside, total = [], Counter(), 0, 0
        for _ in range(count):
            weeks = int(rng.integers(8, 13))
            values = synthetic(kind, weeks * 7 + HORIZON_DAYS, rng)
            history, future = values[:-HORIZON_DAYS], values[-HORIZON_DAYS:] * PICOS
            result = forecast(to_series(history), HORIZON_DAYS)
            expected = np.array([p.expected_pico for p in result.points], dtype=float)
            mapes.append(float(np.mean(np.abs(expected - future) / future)))
            chosen[result.model] += 1
            inside += sum(p.low_pico <= actual <= p.high_pico for p, actual in zip(result.points, future))
            total += HORIZON_DAYS
        results[kind] = {"mape": float(np.mean(mapes)), "worst": float(np.max(mapes)),
                         "chosen": dict(chosen), "coverage": inside / total}
    return results


def bench_anomalies(count: int, rng: np.random.Generator) -> dict[str, float]:
    found = missed = false = named = 0
    for kind in KINDS:
        for _ in range(count):
            days = int(rng.integers(8, 13)) * 7
            drivers = [synthetic(kind, days, rng) * share for share in rng.dirichlet((4, 4, 4))]
            usual = sum(drivers)
            spikes = {}
            for day in rng.choice(np.arange(14, days), size=int(rng.integers(3, 7)), replace=False):
                culprit = int(rng.integers(0, 3))
                drivers[culprit][day] += (rng.uniform(3, 6) - 1) * usual[day]
                spikes[START.toordinal() + int(day)] = culprit
            series = {f"driver-{i}": to_series(d) for i, d in enumerate(drivers)}
            for anomaly in detect(to_series(sum(drivers))):
                culprit = spikes.pop(anomaly.day.toordinal(), None)
                if culprit is None:
                    false += 1
                    continue
                found += 1
                named += name_driver(anomaly, series).driver == f"driver-{culprit}"
            missed += len(spikes)
    return {"precision": found / max(1, found + false), "recall": found / max(1, found + missed),
            "attribution": named / max(1, found), "spikes": found + missed, "false": false}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=30, help="series per kind (default 30)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="10 series per kind")
    args = parser.parse_args()
    count = 10 if args.quick else args.series
    rng = np.random.default_rng(args.seed)

    began = time.perf_counter()
    forecasts = bench_forecasts(count, rng)
    forecast_s = time.perf_counter() - began
    print(f"Forecasts: {count} series per kind, 8-12 weeks of history, {HORIZON_DAYS} days ahead ({forecast_s:.1f} s)")
    print(f"{'kind':<10} {'MAPE':>7} {'worst':>7} {'in 90% band':>12}  models chosen")
    for kind, row in forecasts.items():
        models = ", ".join(f"{name} {n}" for name, n in sorted(row["chosen"].items()))
        print(f"{kind:<10} {row['mape']:>7.1%} {row['worst']:>7.1%} {row['coverage']:>12.1%}  {models}")

    began = time.perf_counter()
    anomalies = bench_anomalies(count, rng)
    anomaly_s = time.perf_counter() - began
    print(f"\nAnomalies: {4 * count} series, {anomalies['spikes']} injected spikes of 3-6x "
          f"({anomaly_s:.1f} s): {anomalies['false']} false alarms, "
          f"driver named right for {anomalies['attribution']:.1%} of the spikes found")

    rows = (
        ("MAPE, seasonal series, 4 weeks ahead", forecasts["seasonal"]["mape"], "<= 10 %",
         forecasts["seasonal"]["mape"] <= TARGET_MAPE_SEASONAL),
        ("anomaly precision", anomalies["precision"], ">= 0.9", anomalies["precision"] >= TARGET_PRECISION),
        ("anomaly recall", anomalies["recall"], ">= 0.9", anomalies["recall"] >= TARGET_RECALL),
    )
    print(f"\n{'figure':<40} {'measured':>9} {'target':>9}  met")
    for name, value, target, met in rows:
        print(f"{name:<40} {value:>9.3f} {target:>9}  {'yes' if met else 'NO'}")


if __name__ == "__main__":
    main()
