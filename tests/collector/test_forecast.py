"""collector.forecast: the backtest chooses the model a series calls for, intervals hold most of
what happens next, amounts leave as non-negative integer picos, and the budget helpers count
days exactly."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pytest

from collector.forecast import (
    NOT_ENOUGH_HISTORY,
    OK,
    PARSIMONY,
    DailySpend,
    Forecast,
    ForecastPoint,
    backtest_origins,
    forecast,
)

PICOS = 10**12
MONDAY = date(2026, 1, 5)


def series(values, start: date = MONDAY) -> DailySpend:
    return DailySpend(start, tuple(round(v * PICOS) for v in values))


def seasonal(days: int, seed: int = 1) -> np.ndarray:
    """Weekdays at about twice the weekend, growing, with 3 % noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    weekend = np.where(t % 7 >= 5, 0.45, 1.0)
    return 100 * (1 + 0.01 * t) * weekend * (1 + rng.normal(0, 0.03, days))


def linear(days: int, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 10 + 2 * np.arange(days) + rng.normal(0, 0.5, days)


def flat_forecast(per_day_pico: int, days: int, first: date = MONDAY) -> Forecast:
    points = tuple(
        ForecastPoint(first + timedelta(days=i), per_day_pico, per_day_pico, per_day_pico) for i in range(days)
    )
    return Forecast(OK, "naive_mean", "mape", 0.0, 0.9, points)


def test_a_weekly_pattern_is_forecast_by_holt_winters():
    values = seasonal(70 + 28)
    result = forecast(series(values[:70]), 28)
    assert result.status == OK
    assert result.model == "holt_winters"
    assert result.error_metric == "mape"
    expected = np.array([p.expected_pico for p in result.points]) / PICOS
    assert np.mean(np.abs(expected - values[70:]) / values[70:]) < 0.1


def test_a_straight_line_is_forecast_by_the_linear_trend():
    values = linear(42 + 14)
    result = forecast(series(values[:42]), 14)
    assert result.model == "linear_trend"
    assert [name for name, _ in result.backtests] == ["naive_mean", "linear_trend", "holt_winters"]
    errors = dict(result.backtests)
    assert result.backtest_error == errors["linear_trend"]
    assert errors["holt_winters"] > PARSIMONY * errors["linear_trend"]  # close is not enough
    expected = np.array([p.expected_pico for p in result.points]) / PICOS
    assert np.max(np.abs(expected - values[42:])) < 3


def test_the_interval_holds_most_actual_days():
    values = seasonal(84 + 28, seed=3)
    result = forecast(series(values[:84]), 28, confidence=0.9)
    actual = values[84:] * PICOS
    inside = sum(p.low_pico <= a <= p.high_pico for p, a in zip(result.points, actual))
    assert inside >= 0.75 * len(actual)
    assert all(p.low_pico <= p.expected_pico <= p.high_pico for p in result.points)
    wider = forecast(series(values[:84]), 28, confidence=0.99)
    assert wider.points[-1].high_pico - wider.points[-1].low_pico > result.points[-1].high_pico - result.points[-1].low_pico


def test_points_follow_the_history_day_by_day():
    result = forecast(series(seasonal(30)), 5)
    assert [p.day for p in result.points] == [MONDAY + timedelta(days=30 + i) for i in range(5)]


def test_a_falling_series_never_forecasts_negative_spend():
    values = np.maximum(60 - 3 * np.arange(21) + np.random.default_rng(4).normal(0, 1, 21), 1)
    result = forecast(series(values), 30)
    assert all(isinstance(p.expected_pico, int) for p in result.points)
    assert all(0 <= p.low_pico <= p.expected_pico <= p.high_pico for p in result.points)
    assert result.points[-1].expected_pico == 0


@pytest.mark.parametrize("values", [(), (5,), (5, 7), (0, 0, 0, 0, 3, 4)])
def test_short_histories_say_so(values):
    result = forecast(DailySpend(MONDAY, values), 7)
    assert result.status == NOT_ENOUGH_HISTORY
    assert result.points == ()
    assert result.exceeds_on(100) is None
    assert result.projected_total(MONDAY, MONDAY + timedelta(days=30), 0) is None
    json.dumps(result.to_json())


def test_a_history_of_zeros_forecasts_zeros():
    result = forecast(DailySpend(MONDAY, (0,) * 10), 3)
    assert result.status == OK and result.model == "zero"
    assert [(p.expected_pico, p.low_pico, p.high_pico) for p in result.points] == [(0, 0, 0)] * 3
    assert result.exceeds_on(0) is None


def test_days_before_the_first_spend_are_not_history():
    constant = forecast(DailySpend(MONDAY, (0,) * 20 + (10 * PICOS,) * 7), 3)
    assert constant.model == "naive_mean"
    assert [p.expected_pico for p in constant.points] == [10 * PICOS] * 3


def test_idle_days_switch_the_backtest_to_smape():
    values = seasonal(42)
    values[np.arange(42) % 7 == 6] = 0  # nothing on Sundays
    result = forecast(series(values), 7)
    assert result.error_metric == "smape"
    assert 0 <= result.backtest_error <= 2


def test_expected_spend_is_rounded_half_even_to_picos():
    result = forecast(DailySpend(MONDAY, (3, 4, 3, 4)), 1)  # the mean of the days so far: 3.5
    assert result.model == "naive_mean"
    assert result.points[0].expected_pico == 4
    result = forecast(DailySpend(MONDAY, (2, 3, 2, 3)), 1)  # 2.5
    assert result.points[0].expected_pico == 2


def test_exceeds_on_counts_whole_days():
    result = flat_forecast(10, 10)
    assert result.exceeds_on(30) == MONDAY + timedelta(days=3)  # 40 at the end of the 4th day
    assert result.exceeds_on(29) == MONDAY + timedelta(days=2)  # 30 at the end of the 3rd
    assert result.exceeds_on(30, spent_so_far_pico=21) == MONDAY + timedelta(days=0)
    assert result.exceeds_on(30, spent_so_far_pico=20) == MONDAY + timedelta(days=1)
    assert result.exceeds_on(100) is None  # exactly the budget is within it
    assert result.exceeds_on(99) == MONDAY + timedelta(days=9)
    assert result.exceeds_on(30, spent_so_far_pico=31) is None  # exceeded already, not projected


def test_projected_total_adds_the_rest_of_the_period():
    result = flat_forecast(10, 10, first=date(2026, 1, 22))
    january = (date(2026, 1, 1), date(2026, 2, 1))
    assert result.projected_total(*january, actual_so_far_pico=500) == 500 + 10 * 10
    assert result.projected_total(date(2026, 1, 1), date(2026, 1, 25), 500) == 500 + 3 * 10
    assert result.projected_total(date(2026, 1, 1), date(2026, 1, 22), 500) == 500  # period over
    assert result.projected_total(date(2026, 1, 1), date(2026, 2, 2), 500) is None  # past the horizon


def test_to_json_is_plain_and_exact():
    result = forecast(series(seasonal(28)), 2)
    document = json.loads(json.dumps(result.to_json()))
    assert document["status"] == "ok"
    assert document["model"] == result.model
    point = document["points"][0]
    assert point["date"] == (MONDAY + timedelta(days=28)).isoformat()
    assert point["expected"] == f"{result.points[0].expected_pico / PICOS:.12f}"
    assert {b["model"] for b in document["backtests"]} == {name for name, _ in result.backtests}


def test_backtest_origins_keep_two_weeks_of_training():
    assert backtest_origins(3) == ([2], 1)
    assert backtest_origins(20) == ([15], 5)
    assert backtest_origins(28) == ([21, 14], 7)
    assert backtest_origins(84) == ([70, 56], 14)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        forecast(series(seasonal(28)), 7, confidence=1.0)
    with pytest.raises(ValueError):
        forecast(series(seasonal(28)), -1)
