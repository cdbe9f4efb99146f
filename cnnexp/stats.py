"""The statistics behind a verdict, with no prose: many-to-one comparisons against a study's
baseline with intervals that match them, pairs where the network is the same, and the power of
it all. SciPy and statsmodels do the distributions and the corrections.

Each arm is compared with the baseline by Welch's test (its own variance and the baseline's),
whatever the arms' variances look like. A preliminary test of equal variances (Bartlett's) that
chooses between a pooled test and Welch's distorts the error rate: with the 2-5 seeds a study
has, it misses a baseline five times noisier than the rest more often than not, and the pooled
tests then call arms that do not differ (in 7-20% of simulated null studies of the earlier
engine that did so, where 5% is promised). The unconditional Welch test holds its level with
equal and unequal variances alike (Zimmerman 2004; tests/test_family_error.py simulates it).
Bartlett's test is kept to describe the noise (check_variances), never to choose a test.

Every comparison of a study belongs to one family, and the family-wise level holds on every
path (`method`):

- `bonferroni` (the default): each test at alpha / m, its interval at 1 - alpha / m and its
  adjusted p-value p x m. The intervals are simultaneous by construction.
- `holm`: Holm's step-down, each interval at the level of the step that decided
  it, so it excludes zero exactly when Holm rejects (these are not simultaneous intervals).
- `none`: each test alone at alpha, no correction: the family-wise level does not hold.

So an interval excludes zero exactly when its verdict says so, and the detectable difference is
at the level its own test ran at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import optimize, stats
from statsmodels.stats.power import ttest_power

ALPHA = 0.05  # the family-wise level of a study's verdicts
POWER = 0.8  # the power at which a detectable difference is stated
METHODS = ("bonferroni", "holm", "none")  # how a family is corrected; none: each test alone
METHOD = "bonferroni"


@dataclass(frozen=True)
class Comparison:
    """One arm against the control: difference of means (arm - control) and its verdict's test.

    `level` is the per-comparison level the interval was made at (its confidence is 1 - level)
    and `detectable` the true difference found with probability POWER at that level."""

    diff: float
    se: float
    df: float
    t: float
    p: float  # two-sided, of this test alone
    p_adjusted: float  # for the whole family: the arm differs when p_adjusted < alpha
    ci_low: float
    ci_high: float
    level: float
    detectable: float
    test: str  # "welch" or "paired t"
    correction: str = "none"  # one of METHODS: how the family was accounted for

    @property
    def differs(self) -> bool:
        """The simultaneous interval excludes zero."""
        return self.ci_low > 0 or self.ci_high < 0


@dataclass(frozen=True)
class Variances:
    """A description of the arms' noise, which chooses no test: whether one standard deviation
    (with its degrees of freedom) describes every arm but `left_out` (`pooled`), for the planner
    and for the intervals of a figure of groups without a baseline."""

    pooled: bool
    sigma: float  # the pooled residual standard deviation (NaN when not pooled)
    df: float  # the model's residual degrees of freedom
    bartlett_stat: float
    bartlett_p: float  # over the arms kept in the pool (NaN when fewer than two have spread)
    bartlett_all_p: float  # over every arm with spread, before any was left out
    left_out: tuple[str, ...]  # arms with out-of-line variances, compared by Welch's test


def check_variances(groups: Mapping[str, Sequence[float]], control: str, alpha: float = ALPHA):
    """Which arms one standard deviation describes. While Bartlett's test rejects equal
    variances over the pool, the arm whose variance is most out of line with the others' pooled
    variance (a two-sided F test, Bonferroni over the arms) leaves the pool; where no single arm
    is out of line (or the control is, or only two arms are left, which no test can tell
    apart), nothing is pooled."""
    arrays = {k: np.asarray(v, float) for k, v in groups.items() if len(v)}
    spread = [k for k, v in arrays.items() if len(v) > 1 and v.var(ddof=1) > 0]
    first = _bartlett(arrays, spread)
    left_out: list[str] = []
    stat, p = first
    while p < alpha:
        if len(spread) < 3:  # of two unequal variances, neither is the one out of line
            return Variances(False, math.nan, math.nan, stat, p, first[1], tuple(left_out))
        worst, worst_p = _most_out_of_line(arrays, spread)
        if worst == control or worst_p >= alpha / len(spread):
            return Variances(False, math.nan, math.nan, stat, p, first[1], tuple(left_out))
        left_out.append(worst)
        spread.remove(worst)
        stat, p = _bartlett(arrays, spread)
    pool = {k: v for k, v in arrays.items() if k not in left_out}
    sigma, df = pooled_fit(pool)
    if not df > 0 or not sigma > 0:
        return Variances(False, math.nan, math.nan, stat, p, first[1], tuple(left_out))
    return Variances(True, sigma, df, stat, p, first[1], tuple(left_out))


def _bartlett(arrays: Mapping[str, np.ndarray], names: list[str]) -> tuple[float, float]:
    if len(names) < 2:
        return math.nan, math.nan
    result = stats.bartlett(*(arrays[k] for k in names))
    return float(result.statistic), float(result.pvalue)


def _most_out_of_line(arrays: Mapping[str, np.ndarray], names: list[str]) -> tuple[str, float]:
    """The arm whose variance differs most from the pooled variance of the others (F test)."""
    best, best_p = names[0], math.inf
    for name in names:
        others = [arrays[k] for k in names if k != name]
        df_others = sum(len(v) - 1 for v in others)
        var_others = sum((len(v) - 1) * v.var(ddof=1) for v in others) / df_others
        df_arm = len(arrays[name]) - 1
        ratio = arrays[name].var(ddof=1) / var_others
        p = 2 * min(stats.f.sf(ratio, df_arm, df_others), stats.f.cdf(ratio, df_arm, df_others))
        if p < best_p:
            best, best_p = name, float(p)
    return best, best_p


def pooled_fit(groups: Mapping[str, Sequence[float]]) -> tuple[float, float]:
    """The residual standard deviation and degrees of freedom of accuracy ~ arm (OLS)."""
    frame = pd.DataFrame(
        [{"arm": k, "y": float(y)} for k, values in groups.items() for y in values]
    )
    if frame.empty or len(frame) <= frame["arm"].nunique():
        return math.nan, 0.0
    formula = "y ~ C(arm)" if frame["arm"].nunique() > 1 else "y ~ 1"
    fit = smf.ols(formula, frame).fit()
    return math.sqrt(fit.mse_resid), float(fit.df_resid)


def against_control(
    groups: Mapping[str, Sequence[float]],
    control: str,
    alpha: float = ALPHA,
    method: str = METHOD,
) -> dict[str, Comparison]:
    """Every arm of `groups` (name -> values) but `control`, against it by Welch's test, as one
    family corrected by `method`. An arm of one seed has no variance of its own, so no test."""
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    if len(groups.get(control, [])) < 2:
        raise ValueError(f"the control {control!r} has fewer than two values to compare with")
    arms = [k for k, v in groups.items() if k != control and len(v) > 1]
    tests = {k: _welch(groups[k], groups[control]) for k in arms}
    return _stepwise(tests, arms, alpha, method)


@dataclass(frozen=True)
class _Test:
    diff: float
    se: float
    df: float
    test: str

    @property
    def t(self) -> float:
        return self.diff / self.se

    @property
    def p(self) -> float:
        return float(2 * stats.t.sf(abs(self.t), self.df))


def _welch(arm: Sequence[float], base: Sequence[float]) -> _Test:
    a, b = np.asarray(arm, float), np.asarray(base, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return _Test(a.mean() - b.mean(), 0.0, math.nan, "welch")
    se, df = _satterthwaite(va, len(a) - 1, vb, len(b) - 1)
    return _Test(a.mean() - b.mean(), se, df, "welch")


def _satterthwaite(v1: float, df1: float, v2: float, df2: float) -> tuple[float, float]:
    """The standard error of a difference of two independent estimates of variances v1 and v2
    (squared standard errors), and its Welch-Satterthwaite degrees of freedom."""
    return math.sqrt(v1 + v2), (v1 + v2) ** 2 / (v1**2 / df1 + v2**2 / df2)


def difference(
    one: tuple[float, float, float], other: tuple[float, float, float], level: float
) -> Comparison:
    """Whether two independent estimates, each (estimate, standard error, degrees of freedom),
    differ: Welch's test of their difference, with its 1 - level interval."""
    (d1, se1, df1), (d2, se2, df2) = one, other
    se, df = _satterthwaite(se1**2, df1, se2**2, df2)
    test = _Test(d1 - d2, se, df, "welch")
    return _stepwise({"d": test}, ["d"], level, "none")["d"]


def _stepwise(tests, names, alpha, method) -> dict[str, Comparison]:
    """`names` tested as one family at `alpha`: Bonferroni (each at alpha / m), Holm's
    step-down or no correction. Holm: the k-th smallest p-value is tested at alpha / (m - k + 1)
    while the steps before it rejected; the first step that does not reject, and every step
    after it, is shown at that step's level. A test whose noise is unknown (no spread) has no
    verdict, but counts in m."""
    usable = [k for k in names if tests[k].se > 0]
    out = {k: _no_noise(tests[k], method) for k in names if k not in usable}
    m = len(names)
    if not usable:
        return out
    p = np.array([tests[k].p for k in usable])
    levels, adjusted = _levels(p, alpha, method, m)
    for index, name in enumerate(usable):
        test, level = tests[name], levels[index]
        half = stats.t.ppf(1 - level / 2, test.df) * test.se
        out[name] = Comparison(
            test.diff,
            test.se,
            test.df,
            test.t,
            test.p,
            float(adjusted[index]),
            test.diff - half,
            test.diff + half,
            level,
            detectable(test.se, test.df, level),
            test.test,
            method,
        )
    return out


def _levels(p: np.ndarray, alpha: float, method: str, m: int):
    """Per test, the level its interval is made at and its family-wise adjusted p-value."""
    if method == "none":
        return np.full(len(p), alpha), p
    if method == "bonferroni":
        return np.full(len(p), alpha / m), np.minimum(1.0, p * m)
    adjusted = _holm(p, m)
    levels = np.empty(len(p))
    stop = None  # the level of the first step that did not reject
    for rank, index in enumerate(np.argsort(p, kind="stable")):
        step = alpha / (m - rank)
        if stop is None and adjusted[index] >= alpha:
            stop = step
        levels[index] = step if stop is None else stop
    return levels, adjusted


def _holm(p: np.ndarray, m: int) -> np.ndarray:
    """Holm's adjusted p-values of these p-values among m tests (the tests without a p-value,
    no noise, can never reject: they sort last): the k-th smallest times (m - k + 1), made
    non-decreasing. The same numbers as statsmodels' multipletests(method="holm"), which the
    tests check; computed here because that function runs a full garbage collection per call,
    which costs more than the test itself in a simulation of thousands of studies."""
    order = np.argsort(p, kind="stable")
    steps = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(len(p)))))
    adjusted = np.empty(len(p))
    adjusted[order] = steps
    return adjusted


def _no_noise(test: _Test, correction: str = "none") -> Comparison:
    nan = math.nan
    return Comparison(test.diff, 0.0, nan, nan, nan, nan, nan, nan, nan, nan, test.test, correction)


def paired(after: Sequence[float], before: Sequence[float], alpha: float = ALPHA) -> Comparison:
    """`after - before` over pairs measured on the same networks (SciPy's ttest_rel), with its
    1 - alpha interval. Pairs that all differ by the same amount have no noise to test."""
    a, b = np.asarray(after, float), np.asarray(before, float)
    d = a - b
    if len(d) < 2 or d.std(ddof=1) == 0:
        mean = float(d.mean()) if len(d) else math.nan
        return _no_noise(_Test(mean, 0.0, math.nan, "paired t"))
    result = stats.ttest_rel(a, b)
    interval = result.confidence_interval(1 - alpha)
    se = d.std(ddof=1) / math.sqrt(len(d))
    df = float(len(d) - 1)
    return Comparison(
        float(d.mean()),
        se,
        df,
        float(result.statistic),
        float(result.pvalue),
        float(result.pvalue),
        float(interval.low),
        float(interval.high),
        alpha,
        detectable(se, df, alpha),
        "paired t",
    )


def welch(arm: Sequence[float], base: Sequence[float], alpha: float = ALPHA) -> Comparison:
    """Welch's test of two independent groups alone, with its 1 - alpha interval."""
    test = _welch(arm, base)
    return _stepwise({"arm": test}, ["arm"], alpha, "none")["arm"]


def detectable(se: float, df: float, level: float, power: float = POWER) -> float:
    """The true difference that a two-sided t test at `level` with this standard error and
    these degrees of freedom finds with probability `power` (the noncentral t of statsmodels'
    ttest_power, with the effect measured in standard errors)."""
    if not (se > 0 and df > 0 and 0 < level < 1):
        return math.nan
    highest = stats.t.isf(level / 2, df) + 2.0
    while two_sided_power(highest, df, level) < power:  # heavy tails (few df) need more
        highest *= 2
    found = optimize.brentq(lambda e: two_sided_power(e, df, level) - power, 1e-6, highest)
    return float(found * se)


def two_sided_power(effect: float, df: float, level: float) -> float:
    """The power of a two-sided t test at `level` for a true difference of `effect` standard
    errors. statsmodels' two-sided form returns NaN where the far tail underflows (a large
    effect), so the two tails are added here, the far one counting 0 when it underflows."""
    near = ttest_power(effect, nobs=1, alpha=level / 2, df=df, alternative="larger")
    far = ttest_power(effect, nobs=1, alpha=level / 2, df=df, alternative="smaller")
    return float(near + (0.0 if np.isnan(far) else far))


def seeds_needed(
    sigma: float, target: float, level: float, power: float = POWER, most: int = 1000
) -> int | None:
    """Seeds per arm for Welch's test of an arm against the control, both with standard
    deviation `sigma` (its degrees of freedom are then 2(n - 1)), to detect `target` at `level`
    with `power`; None past `most`."""
    if not (sigma > 0 and target > 0):
        return None
    for n in range(2, most + 1):
        if detectable(sigma * math.sqrt(2 / n), 2 * (n - 1), level, power) <= target:
            return n
    return None
