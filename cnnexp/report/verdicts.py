"""A study's numbers: per arm the run counts and the mean over seeds, then each arm against the
baseline as one family (cnnexp.stats), pairs where the network is the same, the budget check and
the planner. No prose: the labels below are the only words, and answers.py says the rest.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm

from cnnexp import sequential, stats
from cnnexp.files import read_json
from cnnexp.report.runs import (
    COUNT_COLUMNS,
    REPLICATE,
    STATUSES,
    USABLE,
    Study,
    groups,
    label,
    levels_of,
    matching,
)
from cnnexp.schema import DECIDE_FILE, FINAL, TEST_ACC, TRAIN_LOSS, WITHOUT, without_key
from cnnexp.studies import key_value


class Verdict(StrEnum):
    """An arm's verdict against its baseline, defined once; each is its own words in a table
    (an equivalent arm's cell adds its margin: "equivalent within ±0.2 points")."""

    BETTER = "better"
    WORSE = "worse"
    UNCLEAR = "no clear difference"
    EQUIVALENT = "equivalent"  # its interval lies within the margin
    SAME_NETWORKS = "same networks: every seed gave exactly the control's accuracy"
    DID_NOT_TRAIN = "did not train"
    TOO_FEW = "too few seeds for a verdict"
    NO_NOISE = "no verdict: every seed gave the same accuracy, so the noise is unknown"


BETTER, WORSE, UNCLEAR, EQUIVALENT = (
    Verdict.BETTER,
    Verdict.WORSE,
    Verdict.UNCLEAR,
    Verdict.EQUIVALENT,
)
SAME_NETWORKS, DID_NOT_TRAIN = Verdict.SAME_NETWORKS, Verdict.DID_NOT_TRAIN
TOO_FEW, NO_NOISE = Verdict.TOO_FEW, Verdict.NO_NOISE
DECIDED = (BETTER, WORSE)


def equivalent_within(margin: float) -> str:
    """An equivalent arm's verdict, its margin in points in its words."""
    return f"{EQUIVALENT} within ±{margin:g} points"


def margin_of(verdict: Any) -> float | None:
    """The margin in points an equivalent arm's verdict names (equivalent_within), else None."""
    found = re.fullmatch(rf"{EQUIVALENT} within ±([0-9.]+) points", str(verdict))
    return float(found.group(1)) if found else None


# decide.json's verdicts (cnnexp.sequential) in the report's words; an arm still open is unclear
ROUNDS_VERDICTS = {
    sequential.BETTER: BETTER,
    sequential.WORSE: WORSE,
    sequential.SAME: SAME_NETWORKS,
    sequential.DID_NOT_TRAIN: DID_NOT_TRAIN,
}
METRIC = TEST_ACC
COMPARISON = [
    "diff",
    "se",
    "ci_low",
    "ci_high",
    "t",
    "df",
    "p",
    "p_adjusted",
    "level",
    "detectable",
    "correction",
]


@dataclass(frozen=True)
class Family:
    """How one context's arms were compared with its baseline: the variance model and the
    method, for the report to state once."""

    context: dict[str, Any]
    variances: stats.Variances
    method: str
    arms: int  # arms tested against the baseline (not those that did not train)
    paired: tuple[str, ...]  # arms that trained the baseline's very networks, tested in pairs
    contexts: int  # the study's level is split evenly between this many families


@dataclass(frozen=True)
class Arm:
    """One combination of the swept levels, typed: its runs (how many, how many are in its
    values and why the others are not), the values over seeds at its budget and, for an arm
    compared with its baseline, the comparison and the verdict (None for the baseline)."""

    levels: dict[str, Any]
    label: str  # 'pool=avg', the levels as the report names them
    runs: int  # of every status
    n: int  # usable runs: the seeds in `values`
    left_out: dict[str, int]  # runs not in the values, by why: {"diverged": 1}
    values: tuple[float, ...]
    mean: float
    epochs: str  # the budget its runs trained at: "4", or "4, 8" where they differ
    verdict: Verdict | None = None
    margin: float | None = None  # points: an equivalent arm's margin
    comparison: stats.Comparison | None = None
    decided_at: str | None = None  # '7 seeds, look 3': where a deciding sweep's rounds decided
    seconds: float = float("nan")  # a run's mean wall time (training time where none is kept)

    @property
    def words(self) -> str:
        """Its verdict as the tables and sentences say it ('equivalent within ±0.2 points')."""
        if self.verdict == EQUIVALENT and self.margin is not None:
            return equivalent_within(self.margin)
        return str(self.verdict or "")


@dataclass
class Verdicts:
    """A study's arms against its baseline (summarise): `table`, one row per combination of
    the swept levels (run counts, the values over seeds, the comparison and the verdict), and
    how they were decided: the level, the correction, each context's family and, where a
    deciding sweep's rounds decided them, its record (decide.json). `arms` are the same rows
    typed, for the report's sentences; the table is for tables and CSV files."""

    table: pd.DataFrame
    alpha: float = stats.ALPHA
    method: str = stats.METHOD
    families: list[Family] = field(default_factory=list)
    decided: dict | None = None
    baseline: dict[str, Any] = field(default_factory=dict)  # the study's baseline levels
    factors: list[str] = field(default_factory=list)  # the study's swept keys

    @cached_property
    def arms(self) -> list[Arm]:
        """Every row of the table as an Arm, in its order."""
        return [self._arm(row) for _, row in self.table.iterrows()]

    @property
    def compared(self) -> list[Arm]:
        """The arms compared with a baseline (those with a verdict)."""
        return [arm for arm in self.arms if arm.verdict is not None]

    def control_of(self, arm: Arm) -> Arm | None:
        """The baseline arm `arm` was compared with: the baseline's levels in its context."""
        wanted = {**arm.levels, **self.baseline}  # in the arm's context
        found = (a for a in self.arms if all(str(a.levels[f]) == str(v) for f, v in wanted.items()))
        return next(found, None)

    def baseline_arm(self, baseline: dict[str, Any] | None = None) -> Arm | None:
        """The first arm with usable runs at the baseline's levels (`baseline`'s where given:
        a factorial's reference configuration); the first usable arm where there is none."""
        wanted = self.baseline if baseline is None else baseline
        found = (
            a
            for a in self.arms
            if a.n > 0 and all(str(a.levels.get(f)) == str(v) for f, v in wanted.items())
        )
        return next(found, None)

    def _arm(self, row: pd.Series) -> Arm:
        verdict, margin = _typed_verdict(row.get("verdict"))
        compared = verdict is not None and pd.notna(row.get("diff"))
        comparison = None
        if compared:
            fields_ = {k: row.get(k) for k in stats.Comparison.__dataclass_fields__}
            comparison = stats.Comparison(**fields_)
        decided_at = row.get("decided_at")
        return Arm(
            levels={f: row[f] for f in self.factors},
            label=", ".join(f"{f}={row[f]}" for f in self.factors),
            runs=int(row["runs"]),
            n=int(row["n"]),
            left_out={c: int(row[c]) for c in list(COUNT_COLUMNS.values())[1:] if row[c]},
            values=tuple(row["values"]),
            mean=float(row["mean"]),
            epochs=str(row.get("budget_epochs", "")),
            verdict=verdict,
            margin=margin,
            comparison=comparison,
            decided_at=decided_at if isinstance(decided_at, str) else None,
            seconds=_seconds(row),
        )


def _typed_verdict(cell: Any) -> tuple[Verdict | None, float | None]:
    """A table's verdict cell as the enum and, for an equivalent arm, its margin."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return None, None
    margin = margin_of(cell)
    return (EQUIVALENT, margin) if margin is not None else (Verdict(cell), None)


def summarise(
    study: Study, metric: str = METRIC, alpha: float = stats.ALPHA, method: str = stats.METHOD
) -> Verdicts:
    """Per combination of the swept factors: how many runs of each status, and over the usable
    runs the mean, median, std and every seed's value; then each arm against the baseline
    (compare), each context one family."""
    rows = []
    for levels, runs in groups(study):
        usable = runs[runs["status"] == USABLE]
        values = usable[metric].astype(float).tolist()
        seeds = usable[REPLICATE].tolist() if REPLICATE in usable else list(range(len(values)))
        counts = {COUNT_COLUMNS[s]: int((runs["status"] == s).sum()) for s in STATUSES}
        means = {
            f"{k}_mean": pd.to_numeric(usable[k], errors="coerce").mean() if k in usable else None
            for k in ("train_seconds", "wall_seconds", "images_per_second", "parameters", "macs")
        }
        rows.append(
            {
                **levels,
                **counts,
                "runs": len(runs),
                "n": len(values),
                "mean": np.mean(values) if values else math.nan,
                "median": np.median(values) if values else math.nan,
                "std": np.std(values, ddof=1) if len(values) > 1 else math.nan,
                "values": values,
                "value_seeds": seeds,
                "budget_epochs": _joined(usable["epochs"]) if "epochs" in usable else "",
                **means,
            }
        )
    table, families = compare(study, pd.DataFrame(rows), alpha, method)
    verdicts = Verdicts(table, alpha, method, families, None, study.baseline, study.factors)
    fix = "run the deciding sweep again (it rewrites the file from its runs)"
    decided = read_json(study.root / DECIDE_FILE, fix)
    if decided:
        return as_decided(verdicts, decided)
    return with_equivalence(verdicts, study.kind.decide.margin)


def with_equivalence(verdicts: Verdicts, margin: float) -> Verdicts:
    """'Equivalent within +-margin points' for an arm with no clear difference whose interval
    lies inside the margin (its family-wise interval at 1 - alpha/m inside +-margin is the two
    one-sided tests of equivalence passing at alpha/(2m)): the runs show the arms differ by
    less than the margin, which is an answer, not a failure to find one."""
    summary = verdicts.table
    inside = (
        (summary["verdict"] == UNCLEAR)
        & (summary["ci_low"] > -margin / 100)
        & (summary["ci_high"] < margin / 100)
    )
    if not inside.any():
        return verdicts
    summary = summary.copy()
    summary.loc[inside, "verdict"] = equivalent_within(margin)
    return replace(verdicts, table=summary)


def as_decided(verdicts: Verdicts, decided: dict) -> Verdicts:
    """A deciding sweep's verdicts (hydra/sweeper=decide): each arm's as its rounds decided it,
    at the level its look spent (cnnexp.sequential), not a fixed-sample test of the same runs,
    which would not hold its level after stopping when decided."""
    summary = verdicts.table.copy()
    margin = decided.get("margin_points")
    for arm in decided["arms"].values():
        levels = dict(key_value(o) for o in arm["overrides"])
        row = matching(summary, {k: v for k, v in levels.items() if k in summary})
        verdict = ROUNDS_VERDICTS.get(arm["verdict"], UNCLEAR)
        if arm["verdict"] == sequential.EQUIVALENT:
            verdict = equivalent_within(margin)
        for column, value in (
            ("diff", arm["diff"]), ("ci_low", arm["ci_low"]), ("ci_high", arm["ci_high"]),
            ("verdict", verdict), ("correction", "sequential"), ("test", "welch"),
            ("p_adjusted", math.nan), ("detectable", math.nan), ("level", arm["level"]),
            ("df", arm.get("df", math.nan)),
            ("decided_at", f"{arm['seeds']} seeds, look {arm['look']}"),
        ):  # fmt: skip
            summary.loc[row, column] = value
    return replace(verdicts, table=summary, decided=decided)


def is_baseline(study: Study, summary: pd.DataFrame) -> pd.Series:
    """Which summary rows are the baseline's levels (in their context)."""
    if not study.baseline:
        return pd.Series(False, index=summary.index)
    return matching(summary, study.baseline)


def contexts(study: Study, summary: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """The rows of each combination of the factors that are not the baseline's."""
    others = [f for f in study.factors if f not in study.baseline]
    if not others:
        return [({}, summary)]
    keys = summary[others].astype(str)
    by = others if len(others) > 1 else others[0]
    return [
        (
            dict(zip(others, levels if isinstance(levels, tuple) else (levels,), strict=True)),
            summary.loc[index],
        )
        for levels, index in keys.groupby(by, sort=False).groups.items()
    ]


def compare(
    study: Study, summary: pd.DataFrame, alpha: float, method: str
) -> tuple[pd.DataFrame, list[Family]]:
    """Each arm against the baseline of its context, every context's arms one family (the
    study's level split evenly between contexts): the table with the COMPARISON columns, the
    test, the verdict and compared_with added, and the families."""
    if method not in stats.METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(stats.METHODS)}")
    summary = summary.assign(
        **{c: math.nan for c in COMPARISON if c != "correction"},
        correction=None,
        test=None,
        verdict=None,
        compared_with=None,
    )
    if not study.baseline or summary.empty:
        return summary, []
    base_mask = is_baseline(study, summary)
    parts = [(c, rows) for c, rows in contexts(study, summary) if base_mask[rows.index].sum() == 1]
    families = []
    for _, rows in parts:
        control = rows[base_mask[rows.index]].iloc[0]
        families.append(_compare_context(study, summary, rows, control, alpha, method, len(parts)))
    return summary, families


def _compare_context(study, summary, rows, control, alpha, method, share) -> Family:
    arms = rows[rows.index != control.name]
    compared_with = ", ".join(f"{k}={v}" for k, v in study.baseline.items())
    for i in arms.index:
        summary.at[i, "compared_with"] = compared_with
        summary.at[i, "verdict"] = _precheck(summary.loc[i], control)
    open_arms = [i for i in arms.index if summary.at[i, "verdict"] is None]
    paired = [i for i in open_arms if same_networks(study, summary.loc[i], control)]
    values = {i: summary.at[i, "values"] for i in open_arms if i not in paired}
    # The context's level is split between the paired arms and the rest by their numbers, so
    # the whole context stays one family (Bonferroni between the two parts).
    level, tests = alpha / share, len(paired) + len(values)
    results = _paired_family(summary, paired, control, level, tests, method)
    found, variances = {}, stats.Variances(False, *[math.nan] * 5, ())
    if control["n"] > 1 and values:
        part = 1.0 if method == "none" else len(values) / tests
        groups = {**values, "control": control["values"]}
        found = stats.against_control(groups, "control", level * part, method)
        variances = stats.check_variances(groups, "control", alpha)
        found = {i: _adjusted(c, c.p_adjusted / part) for i, c in found.items()}
    results |= found
    for i, comparison in results.items():
        for key in COMPARISON:
            value = getattr(comparison, key)
            summary.at[i, key] = min(1.0, value * share) if key == "p_adjusted" else value
        summary.at[i, "test"] = comparison.test
        summary.at[i, "verdict"] = _verdict(comparison)
    for i in open_arms:
        if i not in results:
            summary.at[i, "verdict"] = TOO_FEW
    context = {k: control[k] for k in study.factors if k not in study.baseline}
    left_out = tuple(label(study, summary.loc[i]) for i in variances.left_out)
    variances = stats.Variances(**{**variances.__dict__, "left_out": left_out})
    return Family(
        context,
        variances,
        method,
        len(results),
        tuple(label(study, summary.loc[i]) for i in paired),
        share,
    )


def _paired_family(summary, paired, control, alpha, tests, method) -> dict[Any, stats.Comparison]:
    """Arms that trained the baseline's networks, each as pairs by seed, each at its share of
    the context's level (Bonferroni over its `tests` comparisons; none under method none), so
    each interval still excludes zero exactly when its adjusted p-value decides."""
    out = {}
    m = 1 if method == "none" else tests
    correction = "none" if method == "none" else "bonferroni"
    for i in paired:
        arm, base = _by_seed(summary.loc[i]), _by_seed(control)
        seeds = sorted(set(arm) & set(base))
        test = stats.paired([arm[s] for s in seeds], [base[s] for s in seeds], alpha / m)
        p = test.p if math.isnan(test.p) else min(1.0, test.p * m)
        out[i] = stats.Comparison(**{**test.__dict__, "p_adjusted": p, "correction": correction})
    return out


def _adjusted(comparison: stats.Comparison, p: float) -> stats.Comparison:
    p = float(p) if math.isnan(p) else min(1.0, float(p))
    return stats.Comparison(**{**comparison.__dict__, "p_adjusted": p})


def _by_seed(row: pd.Series) -> dict[Any, float]:
    return dict(zip(row["value_seeds"], row["values"], strict=True))


def same_networks(study: Study, arm: pd.Series, control: pd.Series) -> bool:
    """An arm whose runs trained the very networks of the baseline's, seed by seed: the same
    seeds (at least two), and for each the same parameter count and the same final training
    loss to the last digit (training is deterministic for a seed, so only an option that acts
    after training, at evaluation, can differ). Such an arm is measured in pairs."""
    losses = {}
    for row in (arm, control):
        runs = _usable_runs(study, row)
        if REPLICATE not in runs or runs[REPLICATE].duplicated().any():
            return False
        losses[row.name] = runs.set_index(REPLICATE)[[TRAIN_LOSS, "parameters"]]
    mine, theirs = losses[arm.name], losses[control.name]
    if len(mine) < 2 or set(mine.index) != set(theirs.index):
        return False
    return bool((mine.sort_index().values == theirs.sort_index().values).all())


def _usable_runs(study: Study, row: pd.Series) -> pd.DataFrame:
    runs = study.runs[study.runs["status"] == USABLE]
    return runs[matching(runs, levels_of(study, row))]


def _precheck(row: pd.Series, control: pd.Series) -> str | None:
    """A verdict that needs no test: a level that did not train, or nothing to compare."""
    if row["n"] == 0 and row["did not train"] > 0:
        return DID_NOT_TRAIN
    if row["n"] == 0 or control["n"] == 0:
        return TOO_FEW
    return None


def _verdict(comparison: stats.Comparison) -> str:
    """The interval decides: better or worse exactly when it excludes zero."""
    if not comparison.se > 0:
        return NO_NOISE
    if comparison.differs:
        return BETTER if comparison.diff > 0 else WORSE
    return UNCLEAR


# --- runs out of line with their own seeds ----------------------------------------------------


@dataclass(frozen=True)
class Unstable:
    """A run whose accuracy is an outlier among the seeds of its own arm: its externally
    studentized residual in a model of that arm alone (statsmodels' outlier_test), the p-value
    Bonferroni-corrected over every run tested in the study."""

    arm: str  # the arm's label
    index: Any  # its row in the study's runs
    seed: Any
    final: float
    first: float | None  # the first epoch's test accuracy
    others_final: tuple[float, ...]  # the arm's other seeds
    others_first: tuple[float, ...]
    p: float


def unstable_runs(study: Study, verdicts: Verdicts) -> list[Unstable]:
    """The runs out of line with the other seeds of their arm (three seeds or more)."""
    found, tested = [], 0
    usable = study.runs[study.runs["status"] == USABLE]
    for arm in verdicts.arms:
        runs = usable[matching(usable, arm.levels)]
        if len(runs) < 3:
            continue
        values = runs[METRIC].astype(float).to_numpy()
        test = sm.OLS(values, np.ones(len(values))).fit().outlier_test(method="bonf")
        tested += len(values)
        for position, p in enumerate(test[:, 1]):
            found.append((arm.label or study.name, runs, position, float(p)))
    alpha = verdicts.alpha
    return [
        _unstable(arm, runs, position, min(1.0, p * tested))
        for arm, runs, position, p in found
        if p * tested < alpha
    ]


def _unstable(arm: str, runs: pd.DataFrame, position: int, p: float) -> Unstable:
    firsts = [_first_epoch(h) for h in runs.get("history", [None] * len(runs))]
    values = runs[METRIC].astype(float).tolist()
    others = [i for i in range(len(runs)) if i != position]
    seed = runs[REPLICATE].iloc[position] if REPLICATE in runs else position
    return Unstable(
        arm,
        runs.index[position],
        seed,
        values[position],
        firsts[position],
        tuple(values[i] for i in others),
        tuple(firsts[i] for i in others if firsts[i] is not None),
        p,
    )


def _first_epoch(history: Any) -> float | None:
    if not isinstance(history, list) or not history:
        return None
    value = history[0].get(METRIC.removeprefix(FINAL))
    return float(value) if value is not None else None


def without_run(study: Study, index: Any, alpha: float, method: str) -> Verdicts:
    """The study's summary again with one run left out."""
    return summarise(replace(study, runs=study.runs.drop(index=index)), alpha=alpha, method=method)


# --- pairs inside each run -------------------------------------------------------------------


@dataclass(frozen=True)
class WithinRun:
    """An evaluation-only option measured inside the runs of `where`: accuracy with it minus
    accuracy without it, on the same networks."""

    option: str
    where: str
    comparison: stats.Comparison
    n: int


def within_run_pairs(study: Study, alpha: float = stats.ALPHA) -> list[WithinRun]:
    """For each evaluation-only option the baseline's runs (else all runs) recorded both ways,
    the paired test of its effect (SciPy's ttest_rel)."""
    runs = study.runs[study.runs["status"] == USABLE]
    where = "all runs"
    if study.baseline:
        runs = runs[matching(runs, study.baseline)]
        where = ", ".join(f"{k}={v}" for k, v in study.baseline.items())
    out = []
    for option in WITHOUT:
        column = without_key(option)
        if column not in runs:
            continue
        both = runs.dropna(subset=[column, METRIC])
        if len(both):
            with_it, without = both[METRIC].astype(float), both[column].astype(float)
            out.append(WithinRun(option, where, stats.paired(with_it, without, alpha), len(both)))
    return out


# --- the budget check and the planner -------------------------------------------------------


@dataclass(frozen=True)
class BudgetCheck:
    """The baseline trained again at more epochs against the baseline (Welch, 1 - alpha)."""

    epochs: str
    check_epochs: str
    n: int
    check_n: int
    comparison: stats.Comparison | None


def budget_check(study: Study, verdicts: Verdicts) -> BudgetCheck | None:
    """The gap the budget check's runs (usable ones) open on the baseline's (`study.baseline`:
    a factorial's reference configuration, see budget.reference_study), or None when the study
    has no check."""
    base = verdicts.baseline_arm(study.baseline) if study.check is not None else None
    if base is None:
        return None
    check = study.check[study.check["status"] == USABLE]
    check = check[matching(check, study.baseline)]  # the baseline's own, of the arms it checks
    values = check[METRIC].astype(float).tolist()
    enough = len(values) > 1 and base.n > 1
    test = stats.welch(values, list(base.values), verdicts.alpha) if enough else None
    return BudgetCheck(base.epochs, _joined(check["epochs"]), base.n, len(values), test)


@dataclass(frozen=True)
class BudgetEffect:
    """One arm's difference from the baseline at the study's budget and at its check's (each
    Welch's test alone), and the test of how the two differ (check minus study; its interval
    at the level that makes the check's arms one Bonferroni family)."""

    arm: dict[str, str]
    now: stats.Comparison
    later: stats.Comparison
    change: stats.Comparison
    epochs: str
    check_epochs: str

    @property
    def outcome(self) -> str:
        """'no clear change' (the two budgets' effects within seed noise of each other: not
        proof that they are equal), or a clear change that 'flips' (the other sign), 'shrinks'
        or 'grows' the effect."""
        if not self.change.differs:
            return "no clear change"
        if self.now.diff * self.later.diff < 0:
            return "flips"
        return "shrinks" if abs(self.later.diff) < abs(self.now.diff) else "grows"


def budget_effects(study: Study, alpha: float = stats.ALPHA) -> list[BudgetEffect]:
    """Each arm the budget check trained again, with at least two usable runs of it and of the
    baseline at both budgets: its effect at each budget and whether more training changed it."""
    if study.check is None or not study.baseline:
        return []
    now = study.runs[study.runs["status"] == USABLE]
    later = study.check[study.check["status"] == USABLE]
    measured = []  # (arm, its Welch test at the study's budget, at the check's, its check runs)
    for levels, runs in groups(replace(study, runs=later)):
        arm = {f: str(v) for f, v in levels.items()}
        if runs.empty or matching(runs, study.baseline).all():
            continue
        groups_of = [_values(now, arm), _values(now, study.baseline)]
        groups_of += [_values(later, arm), _values(later, study.baseline)]
        if min(map(len, groups_of)) < 2:
            continue
        first = stats.welch(groups_of[0], groups_of[1], alpha)
        second = stats.welch(groups_of[2], groups_of[3], alpha)
        if first.se > 0 and second.se > 0:  # every seed alike measures no noise
            measured.append((arm, first, second, runs))
    family = len(measured)
    out = []
    for arm, first, second, runs in measured:
        change = stats.difference(_estimate(second), _estimate(first), alpha / family)
        change = replace(change, p_adjusted=min(1.0, change.p * family), correction=stats.METHOD)
        epochs = _joined(now[matching(now, arm)]["epochs"])
        out.append(BudgetEffect(arm, first, second, change, epochs, _joined(runs["epochs"])))
    return out


def _values(runs: pd.DataFrame, levels: dict[str, Any]) -> list[float]:
    return runs.loc[matching(runs, levels), METRIC].astype(float).tolist()


def _estimate(c: stats.Comparison) -> tuple[float, float, float]:
    return c.diff, c.se, c.df


@dataclass(frozen=True)
class Plan:
    """Seeds per arm this study would need to detect each target, and the time they take."""

    sigma: float
    arms: int  # the arms of the design, the baseline included
    level: float  # the per-comparison level of its verdicts
    seconds_per_run: float
    seeds: dict[float, int | None]  # target difference -> seeds per arm (None: over 1000)

    def hours(self, target: float) -> float | None:
        n = self.seeds.get(target)
        return None if n is None else n * self.arms * self.seconds_per_run / 3600


TARGETS = (0.01, 0.005)  # 1 and 0.5 points of accuracy


def plan(verdicts: Verdicts, family: Family) -> Plan | None:
    """Where the arms' variances agree (so one standard deviation describes them): the seeds
    per arm that detect 1 and 0.5 points by Welch's test at the level the family's verdicts
    ran at (its first step, for Holm)."""
    variances = family.variances
    levels = [
        a.comparison.level
        for a in verdicts.compared
        if a.comparison is not None and a.comparison.test == "welch" and a.comparison.level > 0
    ]
    if not variances.pooled or variances.left_out or not levels:
        return None
    level = min(levels)
    arms = sum(a.n > 0 for a in verdicts.arms)
    seconds = float(pd.Series([a.seconds for a in verdicts.arms if a.n > 0], dtype=float).mean())
    seeds = {t: stats.seeds_needed(variances.sigma, t, level) for t in TARGETS}
    return Plan(variances.sigma, arms, level, seconds, seeds)


def _seconds(row: pd.Series) -> float:
    """A summary row's mean wall seconds a run, or its training seconds where no wall time
    was kept."""
    for column in ("wall_seconds_mean", "train_seconds_mean"):
        value = row.get(column)
        if value is not None and pd.notna(value):
            return float(value)
    return float("nan")


def _joined(column: pd.Series) -> str:
    return ", ".join(sorted({str(int(v)) for v in column.dropna()}))
