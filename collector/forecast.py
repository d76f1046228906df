"""Forecasts of daily spend for a budget scope, with the model chosen by backtest.

A scope's history is its spend per UTC day in picos. Three candidate models, from simple to
seasonal, are tried on it:

- `naive_mean`: every future day costs the mean of the last week (of every day, when the
  history is shorter than a week);
- `linear_trend`: a least-squares line through the history, from a week of it;
- `holt_winters`: exponential smoothing with an additive trend and an additive weekly (7-day)
  season (statsmodels), from two full weeks.

Model choice: a rolling-origin backtest. The last k = min(14, n // 4) days are held out, each
model is fitted on the days before and forecasts k days, and the errors are compared; a second
origin k days earlier is used as well when its training still holds two full weeks, and the
error is the mean over origins. The error is the MAPE when every held-out day spent something,
else the sMAPE (|a - f| / ((|a| + |f|) / 2), 0 when both are 0): MAPE is undefined at zero
actuals, and sMAPE stays bounded (at most 2) for scopes with idle days. A model needs its
minimum history at every origin to compete. Models are taken from the simplest, and a richer one
replaces the choice so far only when its error is under 90 % of that choice's: a seasonal model
can mimic a line, and on a plain line it wins the backtest by noise alone.

Prediction interval: a normal approximation around the forecast. The spread is the root mean
square of the chosen model's backtest errors (which span horizons 1..k); beyond k days it grows
with the square root of the horizon, as a random walk's would. Its bounds, like every
amount, are clipped at zero: spend is never negative.

Days before the first day with spend are not history (the scope did not exist yet). A history
that is all zeros forecasts zeros (model `zero`); one with fewer than three days after its
first spend gives a forecast with status `not_enough_history` and no points, never an error.

Floats are fine inside the statistics; every amount that leaves the module is an integer number
of picos, rounded half-even from the model's output.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import NormalDist

import numpy as np

from collector.pricing import decimal_text, picos_to_decimal

DAYS_PER_WEEK = 7
MIN_HISTORY_DAYS = 3
MAX_HOLDOUT_DAYS = 14
SEASONAL_MIN_DAYS = 2 * DAYS_PER_WEEK
TREND_MIN_DAYS = DAYS_PER_WEEK
PARSIMONY = 0.9  # a richer model wins only with a backtest error under 90 % of the simpler one's
OK = "ok"
NOT_ENOUGH_HISTORY = "not_enough_history"


@dataclass(frozen=True, slots=True)
class DailySpend:
    """Spend per UTC day, oldest first: `amounts_pico[i]` is what day `start + i` cost."""

    start: date
    amounts_pico: tuple[int, ...]

    def day(self, index: int) -> date:
        return self.start + timedelta(days=index)

    @property
    def end(self) -> date:
        """The first day after the series."""
        return self.day(len(self.amounts_pico))


@dataclass(frozen=True, slots=True)
class Fitted:
    """A model fitted on a history: its in-sample expectation of each day (NaN where it has
    none) and a function that forecasts the next `steps` days."""

    in_sample: np.ndarray
    predict: Callable[[int], np.ndarray]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A forecasting model and the history it needs (at every backtest origin) to compete."""

    name: str
    min_days: int
    fit: Callable[[np.ndarray], Fitted]


@dataclass(frozen=True, slots=True)
class ForecastPoint:
    day: date
    expected_pico: int
    low_pico: int
    high_pico: int

    def to_json(self) -> dict:
        return {
            "date": self.day.isoformat(),
            "expected": _money(self.expected_pico),
            "low": _money(self.low_pico),
            "high": _money(self.high_pico),
        }


@dataclass(frozen=True, slots=True)
class Forecast:
    """Expected spend per day after the history, with a prediction interval per day.

    `backtest_error` is in the unit of `error_metric` ("mape" or "smape", as a fraction: 0.05 is
    5 %); `backtests` holds every competing model's error, for explanations."""

    status: str
    model: str
    error_metric: str
    backtest_error: float | None
    confidence: float
    points: tuple[ForecastPoint, ...]
    backtests: tuple[tuple[str, float], ...] = ()

    def projected_total(self, period_start: date, period_end: date, actual_so_far_pico: int) -> int | None:
        """The period's projected spend: what it cost so far plus the expected spend of the
        forecast days inside [period_start, period_end). None when the forecast does not reach
        the period's end (too short a horizon, or not enough history)."""
        if not self.points:
            return None
        last_needed = period_end - timedelta(days=1)
        if last_needed >= self.points[0].day and last_needed > self.points[-1].day:
            return None
        return actual_so_far_pico + sum(p.expected_pico for p in self.points if period_start <= p.day < period_end)

    def exceeds_on(self, amount_pico: int, spent_so_far_pico: int = 0) -> date | None:
        """The first forecast day by the end of which cumulative expected spend (from
        `spent_so_far_pico`) is more than `amount_pico`; None when it stays within it over the
        horizon, or is already over it (the budget is exceeded, not projected to be)."""
        if spent_so_far_pico > amount_pico:
            return None
        total = spent_so_far_pico
        for point in self.points:
            total += point.expected_pico
            if total > amount_pico:
                return point.day
        return None

    def to_json(self) -> dict:
        return {
            "status": self.status,
            "model": self.model,
            "error_metric": self.error_metric,
            "backtest_error": self.backtest_error,
            "confidence": self.confidence,
            "backtests": [{"model": name, "error": error} for name, error in self.backtests],
            "points": [point.to_json() for point in self.points],
        }


def forecast(history: DailySpend, horizon_days: int, *, confidence: float = 0.9) -> Forecast:
    """Forecast the `horizon_days` days after `history`, with a `confidence` interval."""
    if horizon_days < 0 or not 0 < confidence < 1:
        raise ValueError("horizon_days must be >= 0 and confidence in (0, 1)")
    y = np.asarray(history.amounts_pico, dtype=float)
    spent = np.flatnonzero(y)
    if len(y) >= MIN_HISTORY_DAYS and not len(spent):
        zero = tuple(ForecastPoint(history.end + timedelta(days=i), 0, 0, 0) for i in range(horizon_days))
        return Forecast(OK, "zero", "", 0.0, confidence, zero)
    if len(y) - (spent[0] if len(spent) else 0) < MIN_HISTORY_DAYS:
        return Forecast(NOT_ENOUGH_HISTORY, "", "", None, confidence, ())
    scale = float(y[spent].mean())
    y = y[spent[0]:] / scale
    choice = choose_model(y)
    expected = _clipped(choice.candidate.fit(y).predict(horizon_days)) * scale
    sigma = float(np.sqrt(np.mean(np.square(choice.errors)))) * scale
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    points = []
    for i, value in enumerate(expected):
        half_width = z * sigma * np.sqrt(max(1.0, (i + 1) / choice.holdout_days))
        day = history.end + timedelta(days=i)
        points.append(ForecastPoint(day, _picos(value), _picos(value - half_width), _picos(value + half_width)))
    error = dict(choice.backtests)[choice.candidate.name]
    return Forecast(OK, choice.candidate.name, choice.metric, error, confidence, tuple(points), choice.backtests)


@dataclass(frozen=True, slots=True)
class Choice:
    """The backtest's winner, the error metric used, every competitor's error, the winner's
    backtest errors (forecast minus actual, in the history's unit) and the days held out."""

    candidate: Candidate
    metric: str
    backtests: tuple[tuple[str, float], ...]
    errors: np.ndarray
    holdout_days: int


def choose_model(y: np.ndarray) -> Choice:
    """The candidate the backtest chooses for `y` (at least MIN_HISTORY_DAYS long): the lowest
    error, with PARSIMONY favouring the simpler model."""
    origins, holdout = backtest_origins(len(y))
    metric = "mape" if all((y[o:o + holdout] > 0).all() for o in origins) else "smape"
    score = _mape if metric == "mape" else _smape
    results = []
    for candidate in CANDIDATES:
        if min(origins) < candidate.min_days:
            continue
        errors, scores = [], []
        for origin in origins:
            predicted = _clipped(candidate.fit(y[:origin]).predict(holdout))
            actual = y[origin:origin + holdout]
            errors.append(predicted - actual)
            scores.append(score(actual, predicted))
        results.append((float(np.mean(scores)), candidate, np.concatenate(errors)))
    best = results[0]
    for result in results[1:]:  # simplest first: a richer model must earn its parameters
        if result[0] < best[0] * PARSIMONY:
            best = result
    _, chosen, errors = best
    return Choice(chosen, metric, tuple((c.name, e) for e, c, _ in results), errors, holdout)


def backtest_origins(n: int) -> tuple[list[int], int]:
    """Where the backtest cuts a history of n days, latest first, and how many days it holds
    out after each cut."""
    holdout = max(1, min(MAX_HOLDOUT_DAYS, n // 4))
    origins = [n - holdout]
    if n - 2 * holdout >= SEASONAL_MIN_DAYS:
        origins.append(n - 2 * holdout)
    return origins, holdout


def naive_mean(y: np.ndarray) -> Fitted:
    """Every day expected at the mean of the week before it."""
    sums = np.concatenate(([0.0], np.cumsum(y)))
    days = np.arange(len(y))
    lows = np.maximum(days - DAYS_PER_WEEK, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        in_sample = (sums[days] - sums[lows]) / (days - lows)
    level = float(y[-DAYS_PER_WEEK:].mean())
    return Fitted(in_sample, lambda steps: np.full(steps, level))


def linear_trend(y: np.ndarray) -> Fitted:
    """A least-squares line through the history (its in-sample values are the line's)."""
    days = np.arange(len(y), dtype=float)
    slope, intercept = np.polyfit(days, y, 1)
    return Fitted(intercept + slope * days, lambda steps: intercept + slope * (len(y) + np.arange(steps)))


def holt_winters(y: np.ndarray) -> Fitted:
    """Additive trend and additive weekly season; the in-sample values are one step ahead."""
    # statsmodels takes about a second to import: only forecasts that fit it pay for it.
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and start-value warnings on short histories
        model = ExponentialSmoothing(
            y, trend="add", seasonal="add", seasonal_periods=DAYS_PER_WEEK, initialization_method="estimated"
        ).fit()

    def predict(steps: int) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(model.forecast(steps), dtype=float)

    return Fitted(np.asarray(model.fittedvalues, dtype=float), predict)


CANDIDATES = (
    Candidate("naive_mean", 1, naive_mean),
    Candidate("linear_trend", TREND_MIN_DAYS, linear_trend),
    Candidate("holt_winters", SEASONAL_MIN_DAYS, holt_winters),
)


def _mape(actual: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - actual) / actual))


def _smape(actual: np.ndarray, predicted: np.ndarray) -> float:
    total = np.abs(actual) + np.abs(predicted)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(total > 0, 2 * np.abs(predicted - actual) / total, 0.0)
    return float(np.mean(ratios))


def _clipped(values: np.ndarray) -> np.ndarray:
    return np.maximum(np.nan_to_num(values, nan=0.0), 0.0)


def _picos(value: float) -> int:
    """Integer picos, rounded half-even (Python's round), never negative."""
    return max(0, round(float(value)))


def _money(picos: int) -> str:
    return decimal_text(picos_to_decimal(picos))
