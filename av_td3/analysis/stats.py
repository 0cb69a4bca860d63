"""Interval estimates for groups of runs (Agarwal et al., 2021, via rliable).

A group's runs are seeds of one configuration. For each group: mean, std, the interquartile mean
(IQM: the mean of the middle 50% of runs, robust to one diverged seed) and 95% stratified-bootstrap
confidence intervals of the mean and the IQM (percentile method, ``reps`` resamples; with one task the
strata are the runs themselves). Between a group and a baseline: the probability of improvement
P(X > Y) (the Mann-Whitney U statistic normalised to [0, 1], ties counting one half) with its bootstrap
CI; a difference is called significant when that CI excludes 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

def ci_method(reps: int) -> str:
    return f"95% stratified-bootstrap CI (rliable, percentile, {reps} resamples)"


@dataclass(frozen=True)
class GroupSummary:
    n: int
    mean: float
    std: float
    iqm: float
    mean_ci: tuple[float, float]
    iqm_ci: tuple[float, float]


@dataclass(frozen=True)
class Improvement:
    probability: float  # P(group > baseline)
    ci: tuple[float, float]

    @property
    def significant(self) -> bool:
        return not (self.ci[0] <= 0.5 <= self.ci[1])


def summarize(scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> dict[str, GroupSummary]:
    """``scores``: group -> 1-D array of per-run scores (NaNs dropped; groups with < 1 run skipped)."""
    from rliable import library as rly
    from rliable import metrics

    clean = {k: np.asarray(v, dtype=float)[~np.isnan(np.asarray(v, dtype=float))] for k, v in scores.items()}
    clean = {k: v for k, v in clean.items() if len(v)}
    if not clean:
        return {}
    np.random.seed(seed)  # rliable's bootstrap draws from NumPy's global generator
    point, cis = rly.get_interval_estimates(
        {k: v[:, None] for k, v in clean.items()},
        lambda x: np.array([metrics.aggregate_mean(x), metrics.aggregate_iqm(x)]), reps=reps)
    return {k: GroupSummary(n=len(v), mean=float(point[k][0]), std=float(np.std(v, ddof=1)) if len(v) > 1
                            else 0.0, iqm=float(point[k][1]),
                            mean_ci=(float(cis[k][0, 0]), float(cis[k][1, 0])),
                            iqm_ci=(float(cis[k][0, 1]), float(cis[k][1, 1])))
            for k, v in clean.items()}


def probability_of_improvement(x: np.ndarray, y: np.ndarray, reps: int = 2000, seed: int = 0) -> Improvement:
    """P(X > Y) of group ``x`` over baseline ``y`` with its bootstrap CI."""
    from rliable import library as rly
    from rliable import metrics

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    np.random.seed(seed)
    point, ci = rly.get_interval_estimates({"p": (x[:, None], y[:, None])},
                                           metrics.probability_of_improvement, reps=reps)
    return Improvement(float(point["p"]), (float(ci["p"][0, 0]), float(ci["p"][1, 0])))


def iqm(values: np.ndarray) -> float:
    """Interquartile mean, as rliable computes it (scipy's trimmed mean, 25% cut on each side)."""
    from scipy.stats import trim_mean

    return float(trim_mean(np.asarray(values, dtype=float), proportiontocut=0.25))


def percent(x: float | None) -> str:
    """``x`` (a fraction) as a percentage with as few decimals as show that it is not 0% or 100% when it
    is neither: 199/200 prints 99.5%, 1/2000 prints 0.05%, 1/2 prints 50%."""
    if x is None or math.isnan(x):
        return "-"
    pct = 100.0 * x
    if 0 < pct < 1:
        return f"{pct:.2g}%"
    for decimals in range(6):
        text = f"{pct:.{decimals}f}"
        if not (0 < x < 1) or float(text) not in (0.0, 100.0):
            return text + "%"
    return f"{pct:.6g}%"


def limit_value(x: float, limit: float) -> str:
    """``x`` printed beside ``limit``: 4 significant digits, more where those would hide which side of
    the limit it lies on (x = 1 + 2e-7 against a limit of 1 prints as 1.0000002, not as 1)."""
    text = f"{x:.4g}"
    shown = float(text)
    if x != limit and (shown == limit or (shown - limit) * (x - limit) < 0):
        text = f"{x:.9g}"
    return text
