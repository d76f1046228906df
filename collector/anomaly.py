"""Anomalous days in a daily spend (or cost per inference) series, and what drove them.

Each day is compared with what the scope's forecasting model expected of it: the model is the
one the forecast's backtest chooses (collector.forecast.choose_model), fitted on the whole
history, and a day's expectation is the model's in-sample value (one step ahead for Holt-Winters
and the weekly mean, the fitted line for the linear trend). A day's residual is relative,
(observed - expected) / expected, with the expectation floored at 5 % of the mean day: spend's
noise grows with its level, and a growing scope would otherwise raise false alarms on its
latest days. Its robust z-score is

    z = 0.6745 * (residual - median(residuals)) / MAD(residuals)

(MAD, the median absolute deviation, is 0.6745 of a normal standard deviation, so z reads as
standard deviations while one spike cannot inflate the yardstick that measures it). When more
than half the residuals are equal, MAD is 0 and the mean absolute deviation stands in for it
(scaled by 0.7979, its ratio to a normal standard deviation).

A day is a spike when z >= threshold (3.5 by default, Iglewicz and Hoaglin's rule), a drop when
z <= -threshold (reported only on request). Spikes would pull the fitted model towards
themselves (a spiky Saturday bends the weekly season), so the model is chosen and fitted on a
patched history: days that stand out (same z rule) from the median of the same weekday in the
four weeks either side are replaced by that median, leaving out the other such days.

Days before the first day with spend, the first week after it (the model's start, fitted
almost exactly by its initial values) and days the model has no expectation for are never
anomalous, nor count towards the median and MAD. Everything here is deterministic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from collector.forecast import DAYS_PER_WEEK, MIN_HISTORY_DAYS, DailySpend, choose_model
from collector.pricing import decimal_text, div_round_half_even, picos_to_decimal

DEFAULT_THRESHOLD = 3.5
MAD_TO_SIGMA = 0.6745
MEAN_AD_TO_SIGMA = 0.7979
SPIKE = "spike"
DROP = "drop"
BASELINE_WEEKS = 4
RELATIVE_FLOOR = 0.05  # of the mean day: the least expectation a residual is divided by


@dataclass(frozen=True, slots=True)
class Anomaly:
    """An anomalous day. `driver` names what contributed most to its excess (a model, device
    or tag, in the caller's words) once `name_driver` has filled it in."""

    day: date
    kind: str
    observed_pico: int
    expected_pico: int
    z_score: float
    driver: str | None = None
    driver_excess_pico: int | None = None

    def to_json(self) -> dict:
        return {
            "date": self.day.isoformat(),
            "kind": self.kind,
            "observed": _money(self.observed_pico),
            "expected": _money(self.expected_pico),
            "z_score": round(self.z_score, 3),
            "driver": self.driver,
            "driver_excess": None if self.driver_excess_pico is None else _money(self.driver_excess_pico),
        }


def detect(history: DailySpend, *, threshold: float = DEFAULT_THRESHOLD, drops: bool = False) -> tuple[Anomaly, ...]:
    """The anomalous days of `history`, oldest first: spikes, and drops when `drops` is set."""
    y = np.asarray(history.amounts_pico, dtype=float)
    spent = np.flatnonzero(y)
    if not len(spent) or len(y) - spent[0] < MIN_HISTORY_DAYS:
        return ()
    first = int(spent[0])
    expected = expectations(y[first:], threshold=threshold)
    z = robust_z((y[first:] - expected) / np.maximum(expected, RELATIVE_FLOOR * y[first:].mean()))
    found = []
    for i in np.flatnonzero(np.abs(z) >= threshold):
        kind = SPIKE if z[i] > 0 else DROP
        if kind == SPIKE or drops:
            day = history.day(first + int(i))
            observed = history.amounts_pico[first + int(i)]
            found.append(Anomaly(day, kind, observed, max(0, round(float(expected[i]))), float(z[i])))
    return tuple(found)


def expectations(y: np.ndarray, *, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Each day's expectation (NaN in the first week, and where the model has none): the
    backtest's model, chosen and fitted on `y` with its outliers patched."""
    scale = float(y[y > 0].mean())
    scaled = y / scale
    keep_all = np.zeros(len(y), dtype=bool)
    outliers = np.abs(robust_z(scaled - _weekday_medians(scaled, keep_all))) >= threshold
    cleaned = np.where(outliers, _weekday_medians(scaled, outliers), scaled)
    expected = choose_model(cleaned).candidate.fit(cleaned).in_sample
    expected[:DAYS_PER_WEEK] = np.nan
    return expected * scale


def robust_z(residuals: np.ndarray) -> np.ndarray:
    """Robust z-scores of `residuals` (0 where a residual is NaN, and everywhere when they do
    not vary)."""
    known = residuals[~np.isnan(residuals)]
    if not len(known):
        return np.zeros_like(residuals)
    centre = float(np.median(known))
    deviations = np.abs(known - centre)
    spread = float(np.median(deviations)) / MAD_TO_SIGMA
    if spread == 0:
        spread = float(np.mean(deviations)) / MEAN_AD_TO_SIGMA
    if spread == 0:
        return np.zeros_like(residuals)
    return np.nan_to_num((residuals - centre) / spread, nan=0.0)


def name_driver(anomaly: Anomaly, drivers: Mapping[str, DailySpend]) -> Anomaly:
    """`anomaly` with the driver whose own series moved most in its direction on its day.

    A driver's excess is its spend that day minus its usual spend: the median of the same
    weekday over the previous four weeks, or of the previous week's days when it has no such
    weekday yet (0 with no history). The largest excess names a spike's driver, the most
    negative a drop's; ties go to the first name in sorted order. Drivers without that day
    leave the anomaly as it is."""
    sign = 1 if anomaly.kind == SPIKE else -1
    best: tuple[int, str] | None = None
    for name in sorted(drivers):
        excess = _excess(drivers[name], anomaly.day)
        if excess is not None and (best is None or sign * excess > sign * best[0]):
            best = (excess, name)
    if best is None:
        return anomaly
    return dataclasses.replace(anomaly, driver=best[1], driver_excess_pico=best[0])


def cost_per_inference(spend: DailySpend, inferences: Sequence[int]) -> DailySpend:
    """Spend per inference of each day, in picos (rounded half-even), for `detect`. A day
    without inferences carries the previous day's figure, so an idle day reads as neither a
    drop nor a spike."""
    if len(inferences) != len(spend.amounts_pico):
        raise ValueError("one count of inferences per day of spend")
    costs, last = [], 0
    for amount, count in zip(spend.amounts_pico, inferences):
        if count > 0:
            last = div_round_half_even(amount, count)
        costs.append(last)
    return DailySpend(spend.start, tuple(costs))


def _weekday_medians(y: np.ndarray, outliers: np.ndarray) -> np.ndarray:
    """Each day's median of the same weekday in the weeks around it (up to BASELINE_WEEKS each
    side), leaving out the outliers; the day's own value where it has no such neighbour."""
    medians = y.copy()
    for day in range(len(y)):
        around = (day + DAYS_PER_WEEK * w for w in range(-BASELINE_WEEKS, BASELINE_WEEKS + 1) if w)
        usual = [y[d] for d in around if 0 <= d < len(y) and not outliers[d]]
        if usual:
            medians[day] = float(np.median(usual))
    return medians


def _excess(series: DailySpend, day: date) -> int | None:
    index = (day - series.start).days
    if not 0 <= index < len(series.amounts_pico):
        return None
    amounts = series.amounts_pico
    same_weekday = [amounts[index - DAYS_PER_WEEK * w] for w in range(1, BASELINE_WEEKS + 1)
                    if index - DAYS_PER_WEEK * w >= 0]
    previous = same_weekday or list(amounts[max(0, index - DAYS_PER_WEEK):index])
    usual = round(float(np.median(previous))) if previous else 0
    return amounts[index] - usual


def _money(picos: int) -> str:
    return decimal_text(picos_to_decimal(picos))
