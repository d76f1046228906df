"""collector.anomaly: injected spikes are found and clean weeks are left alone, drops only on
request, the driver that spiked is named, and the output is plain JSON."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pytest

from collector.anomaly import (
    DROP,
    SPIKE,
    Anomaly,
    cost_per_inference,
    detect,
    name_driver,
    robust_z,
)
from collector.forecast import DailySpend

PICOS = 10**12
MONDAY = date(2026, 1, 5)


def series(values, start: date = MONDAY) -> DailySpend:
    return DailySpend(start, tuple(round(v * PICOS) for v in values))


def seasonal(days: int, seed: int = 1, base: float = 100) -> np.ndarray:
    """Weekdays at about twice the weekend, growing, with 3 % noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    weekend = np.where(t % 7 >= 5, 0.45, 1.0)
    return base * (1 + 0.01 * t) * weekend * (1 + rng.normal(0, 0.03, days))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clean_seasonal_spend_has_no_anomalies(seed):
    assert detect(series(seasonal(70, seed)), drops=True) == ()


def test_injected_spikes_are_found():
    values = seasonal(70)
    spiked = {20: 3.0, 33: 5.0, 34: 4.0, 61: 6.0}  # two in a row, and one on a Sunday (day 34)
    for day, factor in spiked.items():
        values[day] *= factor
    found = detect(series(values))
    assert [a.day for a in found] == [MONDAY + timedelta(days=d) for d in spiked]
    assert all(a.kind == SPIKE and a.z_score >= 3.5 for a in found)
    first = found[0]
    assert first.observed_pico == round(values[20] * PICOS)
    assert first.expected_pico == pytest.approx(values[20] / 3 * PICOS, rel=0.1)


def test_drops_are_reported_only_on_request():
    values = seasonal(70)
    values[40] *= 0.1
    assert detect(series(values)) == ()
    (drop,) = detect(series(values), drops=True)
    assert drop.day == MONDAY + timedelta(days=40)
    assert drop.kind == DROP and drop.z_score <= -3.5


def test_the_threshold_is_a_knob():
    values = seasonal(70)
    values[50] *= 1.4
    (spike,) = detect(series(values))
    assert spike.day == MONDAY + timedelta(days=50)
    assert detect(series(values), threshold=spike.z_score + 0.1) == ()


@pytest.mark.parametrize("values", [(), (0,) * 30, (5, 6), (0, 0, 0, 4, 4)])
def test_short_or_empty_histories_have_no_anomalies(values):
    assert detect(DailySpend(MONDAY, values)) == ()


def test_days_before_the_first_spend_are_skipped():
    values = np.concatenate((np.zeros(10), seasonal(42)))
    values[30] *= 5
    assert [a.day for a in detect(series(values))] == [MONDAY + timedelta(days=30)]


def test_the_driver_that_spiked_is_named():
    drivers = {name: seasonal(70, seed, base) for name, seed, base in (("model:a", 4, 50), ("model:b", 5, 30),
                                                                         ("model:c", 6, 20))}
    drivers["model:b"][45] += 300
    (spike,) = detect(series(sum(drivers.values())))
    named = name_driver(spike, {name: series(v) for name, v in drivers.items()})
    assert named.driver == "model:b"
    assert named.driver_excess_pico == pytest.approx(300 * PICOS, rel=0.1)
    assert (named.day, named.observed_pico, named.z_score) == (spike.day, spike.observed_pico, spike.z_score)


def test_a_drop_names_the_driver_that_fell():
    drop = Anomaly(MONDAY + timedelta(days=14), DROP, 0, 100, -5.0)
    drivers = {"a": DailySpend(MONDAY, (10,) * 15), "b": DailySpend(MONDAY, (50,) * 14 + (5,))}
    assert name_driver(drop, drivers).driver == "b"
    assert name_driver(drop, drivers).driver_excess_pico == -45


def test_driver_ties_and_gaps_are_deterministic():
    spike = Anomaly(MONDAY + timedelta(days=3), SPIKE, 100, 10, 9.0)
    same = {"b": DailySpend(MONDAY, (1, 1, 1, 9)), "a": DailySpend(MONDAY, (2, 2, 2, 10))}
    assert name_driver(spike, same).driver == "a"  # both 8 over their usual day
    assert name_driver(spike, {"late": DailySpend(MONDAY + timedelta(days=4), (5,))}) == spike
    assert name_driver(spike, {}) == spike


def test_cost_per_inference_rounds_half_even_and_carries_idle_days():
    spend = DailySpend(MONDAY, (5, 7, 0, 9, 12))
    per_inference = cost_per_inference(spend, (2, 2, 0, 3, 0))
    assert per_inference == DailySpend(MONDAY, (2, 4, 4, 3, 3))
    with pytest.raises(ValueError):
        cost_per_inference(spend, (1, 2))


def test_a_per_inference_cost_spike_is_found():
    rng = np.random.default_rng(8)
    counts = rng.integers(900, 1100, 56)
    spend = [round(c * 1_000_000 * (1 + rng.normal(0, 0.02))) for c in counts]
    spend[40] *= 4  # the same traffic, four times the cost: a price or hardware change
    found = detect(cost_per_inference(DailySpend(MONDAY, tuple(spend)), counts.tolist()))
    assert [a.day for a in found] == [MONDAY + timedelta(days=40)]


def test_robust_z_uses_the_median_and_mad():
    z = robust_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    # median 3, MAD 1: z = 0.6745 * (x - 3) / 1
    assert z == pytest.approx(0.6745 * np.array([-2, -1, 0, 1, 97]))
    assert robust_z(np.array([5.0, 5.0, 5.0])).tolist() == [0, 0, 0]
    assert robust_z(np.array([np.nan, 1.0, 1.0, 1.0, 3.0]))[0] == 0
    mostly_equal = robust_z(np.array([1.0, 1.0, 1.0, 1.0, 6.0]))  # MAD 0: the mean deviation stands in
    assert mostly_equal[-1] == pytest.approx(5 / (1 / 0.7979))


def test_to_json_is_plain():
    anomaly = Anomaly(MONDAY, SPIKE, 5 * PICOS, 1_500_000_000_000, 7.123456, "device:edge-01", 3 * PICOS)
    document = json.loads(json.dumps(anomaly.to_json()))
    assert document == {"date": "2026-01-05", "kind": "spike", "observed": "5.000000000000",
                        "expected": "1.500000000000", "z_score": 7.123, "driver": "device:edge-01",
                        "driver_excess": "3.000000000000"}
    assert Anomaly(MONDAY, SPIKE, 1, 0, 4.0).to_json()["driver_excess"] is None
