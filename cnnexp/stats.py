"""The statistics behind a verdict: Welch's t-test, its confidence interval, Holm's correction
and the smallest difference the seeds could have detected. SciPy does the distributions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CORRECTIONS = ("holm", "bonferroni", "none")


@dataclass(frozen=True)
class Comparison:
    """A variant against its baseline: difference of means (variant - baseline) and its test."""

    diff: float
    se: float  # standard error of the difference
    t: float
    df: float  # Welch-Satterthwaite degrees of freedom
    p: float  # two-sided
    ci_low: float  # confidence interval of the difference at the chosen level
    ci_high: float


def welch(variant: Sequence[float], baseline: Sequence[float], alpha: float = 0.05) -> Comparison:
    """Welch's t-test (unequal variances) of two groups of at least 2 values each, with the
    (1 - alpha) confidence interval of the difference from the t distribution."""
    a, b = np.asarray(variant, float), np.asarray(baseline, float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's t-test needs at least 2 values in each group")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff, se = float(a.mean() - b.mean()), math.sqrt(va + vb)
    if se == 0.0:  # no spread in either group: the noise cannot be estimated
        return Comparison(diff, 0.0, math.nan, math.nan, math.nan, math.nan, math.nan)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    result = stats.ttest_ind(a, b, equal_var=False)
    half = stats.t.ppf(1 - alpha / 2, df) * se
    return Comparison(diff, se, float(result.statistic), df, float(result.pvalue),
                      diff - half, diff + half)  # fmt: skip


def adjust(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """p-values corrected for testing them all together (Holm's step-down, Bonferroni, or none);
    NaN stays NaN and does not count as a test."""
    if method not in CORRECTIONS:
        raise ValueError(f"correction {method!r} is not one of {', '.join(CORRECTIONS)}")
    p = np.asarray(pvalues, float)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    out = p.copy()
    if method == "none" or m == 0:
        return out.tolist()
    if method == "bonferroni":
        out[tested] = np.minimum(1.0, p[tested] * m)
        return out.tolist()
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):  # the k-th smallest is multiplied by m - k + 1
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out.tolist()


def detectable(se: float, df: float, alpha: float, power: float = 0.8) -> float:
    """The smallest true difference that a two-sided test at level `alpha` with this standard
    error and these degrees of freedom would find with probability `power` (t approximation)."""
    if not (se > 0 and df > 0):
        return math.nan
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se)


def per_test_level(alpha: float, tests: int, method: str) -> float:
    """The level one comparison must pass when `tests` are made: the strictest step of Holm and
    Bonferroni (alpha / tests), or alpha uncorrected. Used for the detectable difference."""
    return alpha / max(tests, 1) if method in ("holm", "bonferroni") else alpha
