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
    NOT_TRAINED,
    REPLICATE,
    STATUSES,
    USABLE,
    Study,
    StudyRun,
    groups,
    joined,
    mean_of,
)
from cnnexp.schema import ACC, DECIDE_FILE, TEST_ACC, TRAIN_LOSS, WITHOUT, Run, without_key
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


# The mean over an arm's usable runs of each of these, for its row of the summary table
ARM_MEANS = ("train_seconds", "wall_seconds", "images_per_second", "parameters", "macs")


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
    seeds: tuple[Any, ...] = ()  # each value's seed
    compared_with: str | None = None  # 'pool=max': the baseline's levels, for a compared arm
    means: dict[str, float] = field(default_factory=dict)  # ARM_MEANS over its usable runs

    @property
    def words(self) -> str:
        """Its verdict as the tables and sentences say it ('equivalent within ±0.2 points')."""
        if self.verdict == EQUIVALENT and self.margin is not None:
            return equivalent_within(self.margin)
        return str(self.verdict or "")

    def at(self, levels: dict[str, Any]) -> bool:
        """Whether it is at these levels (as text; keys it does not vary are passed over)."""
        return all(str(self.levels[k]) == str(v) for k, v in levels.items() if k in self.levels)

    def row(self) -> dict[str, Any]:
        """Its row of the summary table (summary.csv, and the table the report draws)."""
        c = self.comparison
        compared = {k: getattr(c, k) if c else math.nan for k in COMPARISON}
        compared["correction"] = c.correction if c else None
        counts = {COUNT_COLUMNS[USABLE]: self.n}
        counts |= {name: self.left_out.get(name, 0) for name in list(COUNT_COLUMNS.values())[1:]}
        values = list(self.values)
        return {
            **self.levels,
            **counts,
            "runs": self.runs,
            "n": self.n,
            "mean": self.mean,
            "median": float(np.median(values)) if values else math.nan,
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
            "values": values,
            "value_seeds": list(self.seeds),
            "budget_epochs": self.epochs,
            **{f"{k}_mean": v for k, v in self.means.items()},
            **compared,
            "test": c.test if c else None,
            "verdict": self.words or None,
            "compared_with": self.compared_with,
            **({"decided_at": self.decided_at} if self.decided_at else {}),
        }


@dataclass
class Verdicts:
    """A study's arms against its baseline (summarise): one Arm per combination of the swept
    levels (run counts, the values over seeds, the comparison and the verdict), and how they
    were decided: the level, the correction, each context's family and, where a deciding
    sweep's rounds decided them, its record (decide.json). `table` is the arms as a table, for
    the tables drawn and the CSV files."""

    arms: list[Arm]
    alpha: float = stats.ALPHA
    method: str = stats.METHOD
    families: list[Family] = field(default_factory=list)
    decided: dict | None = None
    baseline: dict[str, Any] = field(default_factory=dict)  # the study's baseline levels
    factors: list[str] = field(default_factory=list)  # the study's swept keys

    @cached_property
    def table(self) -> pd.DataFrame:
        """One row per arm, in order (Arm.row)."""
        return pd.DataFrame([arm.row() for arm in self.arms])

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


def summarise(
    study: Study, metric: str = METRIC, alpha: float = stats.ALPHA, method: str = stats.METHOD
) -> Verdicts:
    """Per combination of the swept factors an Arm: how many runs of each status, and over the
    usable runs every seed's value and their mean; then each arm against the baseline
    (compare), each context one family."""
    arms = [_arm(study, levels, runs, metric) for levels, runs in groups(study)]
    arms, families = compare(study, arms, alpha, method)
    verdicts = Verdicts(arms, alpha, method, families, None, study.baseline, study.factors)
    fix = "run the deciding sweep again (it rewrites the file from its runs)"
    decided = read_json(study.root / DECIDE_FILE, fix)
    if decided:
        return as_decided(verdicts, decided)
    return with_equivalence(verdicts, study.kind.decide.margin)


def _arm(study: Study, levels: dict[str, Any], runs: list[StudyRun], metric: str) -> Arm:
    """One combination of levels and its runs, before any comparison."""
    usable = [r for r in runs if r.usable]
    values = tuple(r.final(metric) for r in usable)
    left_out = {COUNT_COLUMNS[s]: sum(r.status == s for r in runs) for s in STATUSES[1:]}
    means = {k: mean_of(usable, k) for k in ARM_MEANS}
    seconds = means["wall_seconds"]
    return Arm(
        levels=levels,
        label=", ".join(f"{f}={v}" for f, v in levels.items()),
        runs=len(runs),
        n=len(values),
        left_out={why: count for why, count in left_out.items() if count},
        values=values,
        mean=float(np.mean(values)) if values else math.nan,
        epochs=_epochs(usable),
        seconds=seconds if not math.isnan(seconds) else means["train_seconds"],
        seeds=tuple(r.levels.get(REPLICATE, i) for i, r in enumerate(usable)),
        means=means,
    )


def with_equivalence(verdicts: Verdicts, margin: float) -> Verdicts:
    """'Equivalent within +-margin points' for an arm with no clear difference whose interval
    lies inside the margin (its family-wise interval at 1 - alpha/m inside +-margin is the two
    one-sided tests of equivalence passing at alpha/(2m)): the runs show the arms differ by
    less than the margin, which is an answer, not a failure to find one."""

    def judged(arm: Arm) -> Arm:
        c = arm.comparison
        inside = c is not None and -margin / 100 < c.ci_low and c.ci_high < margin / 100
        if arm.verdict == UNCLEAR and inside:
            return replace(arm, verdict=EQUIVALENT, margin=margin)
        return arm

    return replace(verdicts, arms=[judged(arm) for arm in verdicts.arms])


def as_decided(verdicts: Verdicts, decided: dict) -> Verdicts:
    """A deciding sweep's verdicts (hydra/sweeper=decide): each arm's as its rounds decided it,
    at the level its look spent (cnnexp.sequential), not a fixed-sample test of the same runs,
    which would not hold its level after stopping when decided."""
    arms = list(verdicts.arms)
    margin = decided.get("margin_points")
    for record in decided["arms"].values():
        levels = dict(key_value(o) for o in record["overrides"])
        verdict = ROUNDS_VERDICTS.get(record["verdict"], UNCLEAR)
        equivalent = record["verdict"] == sequential.EQUIVALENT
        for i, arm in enumerate(arms):
            if not arm.at({k: v for k, v in levels.items() if k in verdicts.factors}):
                continue
            before = arm.comparison or stats.Comparison(*[math.nan] * 10, test="welch")
            arms[i] = replace(
                arm,
                verdict=EQUIVALENT if equivalent else verdict,
                margin=margin if equivalent else None,
                decided_at=f"{record['seeds']} seeds, look {record['look']}",
                comparison=replace(
                    before, diff=record["diff"], ci_low=record["ci_low"],
                    ci_high=record["ci_high"], correction="sequential", test="welch",
                    p_adjusted=math.nan, detectable=math.nan, level=record["level"],
                    df=record.get("df", math.nan),
                ),
            )  # fmt: skip
    return replace(verdicts, arms=arms, decided=decided)


def contexts(study: Study, arms: list[Arm]) -> list[list[int]]:
    """The positions of the arms of each combination of the factors that are not the
    baseline's, in order."""
    others = [f for f in study.factors if f not in study.baseline]
    found: dict[tuple[str, ...], list[int]] = {}
    for i, arm in enumerate(arms):
        found.setdefault(tuple(str(arm.levels[f]) for f in others), []).append(i)
    return list(found.values())


def compare(
    study: Study, arms: list[Arm], alpha: float, method: str
) -> tuple[list[Arm], list[Family]]:
    """Each arm against the baseline of its context, every context's arms one family (the
    study's level split evenly between contexts): the arms with their comparisons and verdicts,
    and the families."""
    if method not in stats.METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(stats.METHODS)}")
    if not study.baseline or not arms:
        return arms, []
    arms = list(arms)
    parts = []
    for part in contexts(study, arms):
        controls = [i for i in part if arms[i].at(study.baseline)]
        if len(controls) == 1:
            parts.append((part, controls[0]))
    families = [
        _compare_context(study, arms, part, control, alpha, method, len(parts))
        for part, control in parts
    ]
    return arms, families


def _compare_context(study, arms, part, control, alpha, method, share) -> Family:
    """The arms at positions `part` against the one at `control`, one family at the level
    alpha / share; `arms` is updated in place."""
    base = arms[control]
    others = [i for i in part if i != control]
    before = {i: _precheck(arms[i], base) for i in others}
    open_arms = [i for i in others if before[i] is None]
    paired = [i for i in open_arms if same_networks(study, arms[i], base)]
    values = {i: arms[i].values for i in open_arms if i not in paired}
    # The context's level is split between the paired arms and the rest by their numbers, so
    # the whole context stays one family (Bonferroni between the two parts).
    level, tests = alpha / share, len(paired) + len(values)
    results = _paired_family(arms, paired, base, level, tests, method)
    found, variances = {}, stats.Variances(False, *[math.nan] * 5, ())
    if base.n > 1 and values:
        part_of = 1.0 if method == "none" else len(values) / tests
        groups_ = {**values, "control": base.values}
        found = stats.against_control(groups_, "control", level * part_of, method)
        variances = stats.check_variances(groups_, "control", alpha)
        found = {i: _adjusted(c, c.p_adjusted / part_of) for i, c in found.items()}
    results |= found
    compared_with = ", ".join(f"{k}={v}" for k, v in study.baseline.items())
    for i in others:
        comparison = results.get(i)
        if comparison is not None:
            comparison = replace(comparison, p_adjusted=min(1.0, comparison.p_adjusted * share))
        verdict = _verdict(comparison) if comparison else before[i] or TOO_FEW
        arms[i] = replace(
            arms[i], comparison=comparison, verdict=verdict, compared_with=compared_with
        )
    names = [arms[i].label or study.name for i in range(len(arms))]
    variances = replace(variances, left_out=tuple(names[i] for i in variances.left_out))
    context = {k: base.levels[k] for k in study.factors if k not in study.baseline}
    return Family(context, variances, method, len(results), tuple(names[i] for i in paired), share)


def _paired_family(arms, paired, control, alpha, tests, method) -> dict[Any, stats.Comparison]:
    """Arms that trained the baseline's networks, each as pairs by seed, each at its share of
    the context's level (Bonferroni over its `tests` comparisons; none under method none), so
    each interval still excludes zero exactly when its adjusted p-value decides."""
    out = {}
    m = 1 if method == "none" else tests
    correction = "none" if method == "none" else "bonferroni"
    for i in paired:
        arm, base = _by_seed(arms[i]), _by_seed(control)
        seeds = sorted(set(arm) & set(base))
        test = stats.paired([arm[s] for s in seeds], [base[s] for s in seeds], alpha / m)
        p = test.p if math.isnan(test.p) else min(1.0, test.p * m)
        out[i] = replace(test, p_adjusted=p, correction=correction)
    return out


def _adjusted(comparison: stats.Comparison, p: float) -> stats.Comparison:
    p = float(p) if math.isnan(p) else min(1.0, float(p))
    return replace(comparison, p_adjusted=p)


def _by_seed(arm: Arm) -> dict[Any, float]:
    return dict(zip(arm.seeds, arm.values, strict=True))


def same_networks(study: Study, arm: Arm, control: Arm) -> bool:
    """An arm whose runs trained the very networks of the baseline's, seed by seed: the same
    seeds (at least two), and for each the same parameter count and the same final training
    loss to the last digit (training is deterministic for a seed, so only an option that acts
    after training, at evaluation, can differ). Such an arm is measured in pairs."""
    mine, theirs = (_trained(study.usable(a.levels)) for a in (arm, control))
    return mine is not None and len(mine) >= 2 and mine == theirs


def _trained(runs: list[StudyRun]) -> dict[Any, tuple] | None:
    """{seed: (final training loss, parameters)} of runs with one run a seed, else None."""
    seeds = [r.levels.get(REPLICATE) for r in runs]
    if None in seeds or len(set(seeds)) < len(seeds):
        return None
    return {r.levels[REPLICATE]: (r.final(TRAIN_LOSS), r.record.parameters) for r in runs}


def _precheck(arm: Arm, control: Arm) -> Verdict | None:
    """A verdict that needs no test: a level that did not train, or nothing to compare."""
    if arm.n == 0 and arm.left_out.get(COUNT_COLUMNS[NOT_TRAINED], 0) > 0:
        return DID_NOT_TRAIN
    if arm.n == 0 or control.n == 0:
        return TOO_FEW
    return None


def _verdict(comparison: stats.Comparison) -> Verdict:
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
    run: StudyRun
    seed: Any
    final: float
    first: float | None  # the first epoch's test accuracy
    others_final: tuple[float, ...]  # the arm's other seeds
    others_first: tuple[float, ...]
    p: float


def unstable_runs(study: Study, verdicts: Verdicts) -> list[Unstable]:
    """The runs out of line with the other seeds of their arm (three seeds or more)."""
    found, tested = [], 0
    for arm in verdicts.arms:
        runs = study.usable(arm.levels)
        if len(runs) < 3:
            continue
        values = np.array([r.final(METRIC) for r in runs])
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


def _unstable(arm: str, runs: list[StudyRun], position: int, p: float) -> Unstable:
    firsts = [_first_epoch(r.record) for r in runs]
    values = [r.final(METRIC) for r in runs]
    others = [i for i in range(len(runs)) if i != position]
    seed = runs[position].levels.get(REPLICATE, position)
    return Unstable(
        arm,
        runs[position],
        seed,
        values[position],
        firsts[position],
        tuple(values[i] for i in others),
        tuple(firsts[i] for i in others if firsts[i] is not None),
        p,
    )


def _first_epoch(record: Run) -> float | None:
    return getattr(record.history[0], ACC) if record.history else None


def without_run(study: Study, run: StudyRun, alpha: float, method: str) -> Verdicts:
    """The study's summary again with one run left out."""
    kept = tuple(r for r in study.runs if r is not run)
    return summarise(replace(study, runs=kept), alpha=alpha, method=method)


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
    runs = study.usable(study.baseline)
    where = ", ".join(f"{k}={v}" for k, v in study.baseline.items()) or "all runs"
    out = []
    for option in WITHOUT:
        both = [
            (r.final(METRIC), r.final(without_key(option)))
            for r in runs
            if r.has(METRIC) and r.has(without_key(option))
        ]
        if both:
            with_it, without = zip(*both, strict=True)
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
    base = verdicts.baseline_arm(study.baseline) if study.check else None
    if base is None:
        return None
    check = _checked(study, study.baseline)  # the baseline's own, of the arms it checks
    values = [r.final(METRIC) for r in check]
    enough = len(values) > 1 and base.n > 1
    test = stats.welch(values, list(base.values), verdicts.alpha) if enough else None
    return BudgetCheck(base.epochs, _epochs(check), base.n, len(values), test)


def _checked(study: Study, levels: dict[str, Any]) -> list[StudyRun]:
    """The budget check's usable runs at these levels."""
    return [r for r in study.check if r.usable and r.at(levels)]


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
    if not study.check or not study.baseline:
        return []
    later = replace(study, runs=tuple(r for r in study.check if r.usable))
    measured = []  # (arm, its Welch test at the study's budget, at the check's, its check runs)
    for levels, runs in groups(later):
        arm = {f: str(v) for f, v in levels.items()}
        if all(r.at(study.baseline) for r in runs):
            continue
        groups_of = [_values(study.usable(arm)), _values(study.usable(study.baseline))]
        groups_of += [_values(later.usable(arm)), _values(later.usable(study.baseline))]
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
        epochs = _epochs(study.usable(arm))
        out.append(BudgetEffect(arm, first, second, change, epochs, _epochs(runs)))
    return out


def _values(runs: list[StudyRun]) -> list[float]:
    return [r.final(METRIC) for r in runs]


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


def _epochs(runs: list[StudyRun]) -> str:
    """The epochs these runs trained for: '4', or '4, 8' where they differ."""
    return joined(r.record.epochs for r in runs)
