"""Two studies that answer one comparison: the one-factor study's arm against its baseline and a
factorial design's main effect of the same setting (pooling, an activation, a kernel size), on
the same data set and network. Whether the two estimates differ is Welch's test of their
difference (cnnexp.stats.difference), Bonferroni over every such pair in the report, so the
report never calls two answers consistent when the test says they differ."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnexp import stats
from cnnexp.report.answers import p_text
from cnnexp.report.factorial import fitted_design
from cnnexp.report.recipe import recipe
from cnnexp.report.runs import Study, StudyRun, data_title
from cnnexp.report.verdicts import Verdicts
from cnnexp.studies import flatten

# The recipe items that tell two settings apart for a reader (not paths, times or seeds).
SETTING_ITEMS = (
    "training images used",
    "epochs",
    "model",
    "channels per stage, at width 1",
    "width multiplier",
    "batch norm",
    "learning rate",
)


@dataclass(frozen=True)
class Estimate:
    """One study's estimate of `high` minus `low` of one setting (points of accuracy / 100)."""

    study: Study
    key: str  # the config key or group
    low: str
    high: str
    diff: float
    se: float
    df: float


@dataclass(frozen=True)
class Agreement:
    """Two estimates of one comparison and the test of their difference (one minus other,
    its interval and adjusted p at the family's Bonferroni level)."""

    one: Estimate
    other: Estimate
    test: stats.Comparison


def settings(run: StudyRun, factors: list[str]) -> dict[str, str]:
    """A run's config as text by key, with Hydra's group choices (activation, pool) and the
    study's swept overrides beside."""
    config = {k: str(v) for k, v in flatten(run.config).items()}
    choices = {k: str(v) for k, v in run.record.choices.items()}
    return {**config, **choices, **{f: str(run.levels.get(f)) for f in factors}}


def factorial_estimates(study: Study, alpha: float) -> list[Estimate]:
    """Each main effect of a factorial design, by its config key."""
    fitted = fitted_design(study, alpha)
    if fitted is None:
        return []
    spec = study.kind.factors
    return [
        Estimate(
            study,
            spec[e.name]["key"],
            str(spec[e.name]["low"]),
            str(spec[e.name]["high"]),
            e.estimate,
            e.se,
            fitted.df,
        )  # fmt: skip
        for e in fitted.effects
        if ":" not in e.name
    ]


def arm_estimates(study: Study, verdicts: Verdicts) -> list[Estimate]:
    """Each compared arm of a one-factor study, by the one config key it changes from the
    baseline (arms that change several keys, or none, estimate nothing a design has)."""
    out = []
    base = _first_settings(study, study.baseline)
    for arm in verdicts.compared:
        c = arm.comparison
        mine = _first_settings(study, arm.levels)
        if base is None or mine is None or c is None or not c.se > 0:
            continue
        keys = [k for k in set(base) | set(mine) if base.get(k) != mine.get(k)]
        out += [
            Estimate(study, k, base[k], mine[k], c.diff, c.se, c.df)
            for k in keys
            if k in base and k in mine
        ]
    return out


def _first_settings(study: Study, levels: dict[str, Any]) -> dict[str, str] | None:
    runs = study.usable(levels)
    return settings(runs[0], study.factors) if runs else None


def agreements(
    studies: list[Study], verdicts: list[Verdicts], alpha: float = stats.ALPHA
) -> list[Agreement]:
    """Every pair of a one-factor arm and a factorial main effect of the same key and levels on
    the same data set, tested as one family."""
    designs = [s for s in studies if s.kind.answers_factors()]
    factorial = [e for s in designs for e in factorial_estimates(s, alpha)]
    pairs = []
    for study, decided in zip(studies, verdicts, strict=True):
        if study.kind.answers_factors() or study.kind.confirms() or not study.baseline:
            continue
        for arm in arm_estimates(study, decided):
            for effect in factorial:
                same = {arm.low, arm.high} == {effect.low, effect.high} and arm.key == effect.key
                if same and _where(arm.study) == _where(effect.study):
                    pairs.append((_oriented(arm, effect), effect))
    return [_test(one, other, alpha, len(pairs)) for one, other in pairs]


def _oriented(arm: Estimate, effect: Estimate) -> Estimate:
    """The arm's estimate in the design's direction (high minus low)."""
    if arm.high == effect.high:
        return arm
    return Estimate(arm.study, arm.key, arm.high, arm.low, -arm.diff, arm.se, arm.df)


def _where(study: Study) -> set:
    """The data sets and network classes of a study's runs: two studies estimate one
    comparison only on the same data with the same kind of network."""
    keys = ("data.name", "model._target_")
    return {tuple(flatten(c).get(k) for k in keys) for c in study.configs()}


def named(study: Study) -> str:
    """'the pooling study (ConvNet on CIFAR-10)'."""
    data, model = sorted(_where(study), key=str)[0]
    network = str(model).rsplit(".", 1)[-1]
    titles = {data_title(c) for c in study.configs() if flatten(c).get("data.name") == data}
    return f"the {study.name} study ({network} on {titles.pop() if len(titles) == 1 else data})"


def _test(one: Estimate, other: Estimate, alpha: float, family: int) -> Agreement:
    """The difference of the two estimates, its interval at the family's Bonferroni level."""
    level = alpha / family
    test = stats.difference((one.diff, one.se, one.df), (other.diff, other.se, other.df), level)
    adjusted = {"p_adjusted": min(1.0, test.p * family), "correction": "bonferroni"}
    return Agreement(one, other, stats.Comparison(**{**test.__dict__, **adjusted}))


def sentence(agreement: Agreement, alpha: float = stats.ALPHA) -> str:
    """'The pooling study and the factorial design disagree about pool=avg against max: ...'."""
    a, one, other = agreement.test, agreement.one, agreement.other
    what = f"{one.key}={one.high} against {one.low}"
    numbers = (
        f"{100 * one.diff:+.2f} points in the first, {100 * other.diff:+.2f} in the design "
        f"(averaged over its other factors); their difference {100 * a.diff:+.2f} points, "
        f"simultaneous {100 * (1 - alpha):.0f}% CI {100 * a.ci_low:+.2f} to "
        f"{100 * a.ci_high:+.2f} (t = {a.t:.2f} with {a.df:.0f} df, p {p_text(a.p)}; Bonferroni "
        f"over the report's comparisons of studies, p {p_text(a.p_adjusted)})"
    )
    both = f"{named(one.study)} and {named(other.study)}"
    if not a.differs:  # the interval at the family's level holds zero
        return f"{both} agree about {what}: {numbers} is within what seed noise explains."
    return (
        f"{both} disagree about {what}: {numbers}, more than seed noise explains. The answer "
        f"depends on the setting: {what_differs(one, other)}."
    )


def what_differs(one: Estimate, other: Estimate) -> str:
    """The recipe items whose values differ between the two studies."""
    tables = [
        dict(zip(*recipe(e.study)[["what", "value"]].T.values, strict=True)) for e in (one, other)
    ]
    parts = [
        f"{item} {tables[0][item]} against {tables[1][item]}"
        for item in SETTING_ITEMS
        if item in tables[0] and item in tables[1] and tables[0][item] != tables[1][item]
    ]
    if other.study.kind.answers_factors():
        parts.append(
            f"and the design averages over {len(other.study.kind.factors) - 1} other factors"
        )
    return "; ".join(parts) or "nothing the recipes record"
