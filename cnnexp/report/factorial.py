"""The factorial section (`study: factorial`, cnnexp.studies.Factorial): every main effect in
points with its family-wise interval and the effects its estimate carries, the two-factor
interactions the design can estimate, the checks of the model (normality, outliers, the logit
scale), and a figure of the effects sorted. The numbers come from cnnexp.design."""

from __future__ import annotations

import pandas as pd

from cnnexp import design, stats
from cnnexp.report import figures
from cnnexp.report.document import Document
from cnnexp.report.runs import Study, experiment_of
from cnnexp.report.verdicts import Verdicts
from cnnexp.schema import TEST_ACC
from cnnexp.stats import ALPHA
from cnnexp.studies import flatten

RESPONSE = TEST_ACC


def coded_runs(study: Study) -> tuple[pd.DataFrame, list[str]]:
    """The usable runs as the table a model is fitted to: the response and one column per
    design factor, coded -1 (low) and +1 (high)."""
    spec = study.kind.factors
    names = list(spec)
    rows = []
    for run in study.usable():
        row = {"run": run.path, RESPONSE: run.final(RESPONSE)}
        for name in names:
            key, low, high = spec[name]["key"], str(spec[name]["low"]), str(spec[name]["high"])
            level = run.levels[key] if key in run.levels else flatten(run.config).get(key)
            row[name] = {low: -1, high: 1}.get(str(level))
        rows.append(row)
    runs = pd.DataFrame(rows, columns=["run", RESPONSE, *names])
    return runs.dropna(subset=names), names


def fitted_design(study: Study, alpha: float = ALPHA) -> design.FactorialFit | None:
    """The design's fit over its usable runs, or None where they are too few for its effects."""
    runs, names = coded_runs(study)
    if len(runs) <= len(names) + 1:
        return None
    return design.fit(runs, names, RESPONSE, study.kind.generators, alpha)


def effect_phrase(effect: design.Effect, spec) -> str:
    """'activation gelu vs relu: +0.35 points (simultaneous 95% CI +0.10 to +0.60)'."""
    levels = f"{spec[effect.name]['high']} vs {spec[effect.name]['low']}"
    return (
        f"{effect.name} {levels}: {100 * effect.estimate:+.2f} points (simultaneous CI "
        f"{100 * effect.ci_low:+.2f} to {100 * effect.ci_high:+.2f})"
    )


def effects_answer(study: Study, setting: str, alpha: float = ALPHA) -> str:
    """The lab's answer from a factorial: which factors change accuracy, by how much, and which
    the runs cannot tell apart from none, with the interval every effect would need."""
    fitted = fitted_design(study, alpha)
    if fitted is None:
        return f"On {setting}: too few usable runs to estimate the design's effects."
    spec = study.kind.factors
    mains = [e for e in fitted.effects if ":" not in e.name]
    clear = sorted((e for e in mains if e.differs), key=lambda e: -abs(e.estimate))
    unclear = [e.name for e in mains if not e.differs]
    level = f"{100 * (1 - alpha):.0f}%"
    text = f"On {setting}, a two-level factorial design of {len(mains)} factors ({level} "
    text += "intervals simultaneous over its effects): "
    text += (
        "; ".join(effect_phrase(e, spec) for e in clear)
        if clear
        else "no factor changes accuracy clearly"
    )
    if unclear:
        half = max(100 * (e.ci_high - e.ci_low) / 2 for e in mains if e.name in unclear)
        text += (
            f". No clear effect of {', '.join(unclear)}: their intervals include zero, with "
            f"half-widths up to {half:.2f} points"
        )
    return text + "."


def pooling_effect(study: Study, setting: str, alpha: float = ALPHA) -> str | None:
    """A factorial's estimate of max against average pooling, for the lab's question 3.1."""
    spec = study.kind.factors
    name = next((n for n, s in spec.items() if s["key"] == "pool"), None)
    fitted = fitted_design(study, alpha) if name else None
    if fitted is None:
        return None
    effect = next(e for e in fitted.effects if e.name == name)
    verdict = "" if effect.differs else "no clear difference, "
    return (
        f"In the factorial design on {setting}, averaged over the other factors: {verdict}"
        f"{effect_phrase(effect, spec)}."
    )


def add_factorial(doc: Document, study: Study, tag: str, alpha: float = ALPHA) -> None:
    """The effects of a factorial study, in words, a table and a figure."""
    runs, names = coded_runs(study)
    generators = study.kind.generators
    doc.heading(3, "Effects of the factorial design")
    points = runs[names].drop_duplicates()
    if len(runs) <= len(names) + 1:
        doc.para(
            f"Too few usable runs ({len(runs)}) to estimate {len(names)} effects: no analysis."
        )
        return
    fitted = design.fit(runs, names, RESPONSE, generators, alpha)
    spec = study.kind.factors
    doc.para(
        f"A two-level design of {len(points)} configurations (generators {generators}, "
        f"resolution {design.resolution(generators) or 'full'}), {len(runs)} usable runs. Each "
        "effect is the mean at the high level minus the mean at the low level, averaged over "
        "the other factors (twice the coefficient of an ordinary least squares fit on the "
        f"coded factors), with Šidák's simultaneous {100 * (1 - alpha):.0f}% interval over the "
        f"{len(fitted.effects)} effects fitted: residual standard deviation "
        f"{100 * fitted.sigma:.2f} points with {fitted.df:.0f} degrees of freedom; the "
        f"intervals' half-widths are {half_widths(fitted)} points."
    )
    doc.table(effects_table(fitted, spec), as_text=True)
    doc.para(checks_sentence(fitted, study, runs, names, generators, alpha))
    doc.para(prediction_sentence(fitted, spec, study))
    path = figures.effects_figure(fitted.effects, doc.out / "figures" / f"{tag}-effects.png")
    doc.image(path, "each effect with its simultaneous interval, sorted (points of accuracy)")


def half_widths(fitted: design.FactorialFit) -> str:
    """'0.81', or '0.81 to 0.95' where runs lost make the design unbalanced."""
    widths = [100 * (e.ci_high - e.ci_low) / 2 for e in fitted.effects]
    low, high = min(widths), max(widths)
    return f"{low:.2f}" if high - low < 0.005 else f"{low:.2f} to {high:.2f}"


def effects_table(fitted: design.FactorialFit, spec) -> pd.DataFrame:
    rows = []
    for e in fitted.effects:
        main = ":" not in e.name
        rows.append(
            {
                "effect": e.name,
                "high vs low": f"{spec[e.name]['high']} vs {spec[e.name]['low']}" if main else "",
                "effect (points)": f"{100 * e.estimate:+.2f}",
                "simultaneous CI": f"{100 * e.ci_low:+.2f} to {100 * e.ci_high:+.2f}",
                "family-wise p": f"{e.p_adjusted:.3g}",
                "verdict": ("higher is better" if e.estimate > 0 else "lower is better")
                if e.differs
                else "no clear effect",
                "also carries": ", ".join(e.aliases) or "nothing",
            }
        )
    return pd.DataFrame(rows)


def checks_sentence(fitted, study, runs, names, generators, alpha) -> str:
    normal = (
        f"Shapiro-Wilk on the residuals p = {fitted.normality_p:.3g}"
        if fitted.normality_p is not None
        else "too few residuals for a normality test"
    )
    outliers = (
        "no run is an outlier (Bonferroni test of the studentized residuals)"
        if not fitted.outliers
        else "outliers: " + ", ".join(str(runs["run"].iloc[i]) for i in fitted.outliers)
    )
    scale = (
        "the same effects are called on the logit scale"
        if design.logit_agrees(fitted, runs, names, RESPONSE, generators, alpha)
        else "on the logit scale another set of effects is called: the accuracy scale's "
        "effects are partly the ceiling's"
    )
    missing = len(study.runs) - len(runs)
    lost = f" {missing} runs did not train or failed and are left out." if missing else ""
    return f"Checks: {normal}; {outliers}; {scale}.{lost}"


def prediction_sentence(fitted: design.FactorialFit, spec, study: Study) -> str:
    """The configuration the design supports best, its predicted gain as the range its alias
    chains allow, the factor choices the runs could not decide, and the command that confirms
    it against the reference."""
    best = design.recommend(fitted)
    undecided = [e.name for e in fitted.effects if ":" not in e.name and not e.differs]
    open_choices = (
        f" The runs could not decide {', '.join(undecided)} (no clear main effect): the "
        "recommendation keeps them at the reference's level."
        if undecided
        else ""
    )
    if not best.changed:
        helps = [e for e in fitted.effects if ":" not in e.name and e.differs and e.estimate > 0]
        why = "no high level helps clearly"
        if helps:
            ranges = "; ".join(range_phrase(design.predict(fitted, [e.name])) for e in helps)
            why = (
                "no change is supported once the interactions aliased with the effects are "
                f"allowed for ({ranges}: the range reaches below zero)"
            )
        return (
            f"Predicted best: the reference configuration (every factor low): {why}.{open_choices}"
        )
    experiment = experiment_of(study) or study.kind.name or "factorial"
    budget = f" study.budget={study.kind.budget}" if study.kind.budgets else ""
    what = ", ".join(f"{f}={spec[f]['high']}" for f in best.changed)
    levels = " ".join(f"+study.confirm.{f}={spec[f]['high']}" for f in best.changed)
    return (
        f"Predicted best: {what}, each other factor at its low level. The main effects alone "
        f"predict {100 * best.mains:+.2f} points over the reference configuration; read with "
        f"the interactions aliased with them, the design supports {range_phrase(best)} (a "
        f"prediction, not a measurement).{open_choices} Only runs confirm it: train it "
        "against the reference configuration with fresh seeds, `python -m cnnexp -m "
        f"+experiment={experiment}{budget} study=confirm {levels} "
        f"study.name={study.kind.name or experiment}_confirm seed=10,11,12,13,14 "
        f"hydra.sweep.dir=multirun/{experiment}_confirm`, and report its folder beside this "
        "study's."
    )


def range_phrase(prediction: design.Prediction) -> str:
    """'anything from +0.27 to +1.49 points for convs, width'."""
    return (
        f"anything from {100 * prediction.low:+.2f} to {100 * prediction.high:+.2f} points for "
        f"{', '.join(prediction.changed)}"
    )


def best_point(study: Study) -> tuple[dict[str, str], list[float]] | None:
    """The measured design point with the highest mean test accuracy: its levels by factor
    name, and its runs' accuracies."""
    runs, names = coded_runs(study)
    if runs.empty:
        return None
    means = runs.groupby(names)[RESPONSE].mean()
    top = means.idxmax()
    spec = study.kind.factors
    coded = dict(zip(names, top if isinstance(top, tuple) else (top,), strict=True))
    levels = {n: str(spec[n]["high" if c > 0 else "low"]) for n, c in coded.items()}
    mask = (runs[names] == pd.Series(coded)).all(axis=1)
    return levels, runs.loc[mask, RESPONSE].astype(float).tolist()


def design_of(confirm: Study, studies: list[Study]) -> Study | None:
    """The factorial study a confirmation confirms: the one with its factors and data set."""
    data = {flatten(c).get("data.name") for c in confirm.configs()}
    for study in studies:
        if not study.kind.answers_factors():
            continue
        same = {flatten(c).get("data.name") for c in study.configs()} == data
        if same and study.kind.factors == confirm.kind.factors:
            return study
    return None


def best_point_sentence(confirm: Study, verdicts: Verdicts, studies: list[Study]) -> str | None:
    """The confirmed network against the best configuration the design measured (Welch's
    test of the confirmation's fresh seeds against the design's runs of that point)."""
    source = design_of(confirm, studies)
    found = best_point(source) if source is not None else None
    arms = [a for a in verdicts.compared if a.n > 1]
    if found is None or not arms:
        return None
    levels, values = found
    spec = confirm.kind.factors
    arm = arms[0]
    point = {spec[n]["key"]: v for n, v in levels.items()}
    mine = {
        **{s["key"]: str(s["low"]) for s in spec.values()},
        **{k: str(v) for k, v in arm.levels.items()},
    }
    changed = ", ".join(f"{n}={v}" for n, v in levels.items() if v != str(spec[n]["low"]))
    named = f"{changed}, every other factor low" if changed else "the reference configuration"
    if mine == point:
        return (
            f"The confirmed network is also the best configuration the design measured ({named})."
        )
    test = welch_or_none(list(arm.values), values)
    what = (
        f"the best configuration the design measured ({named}: "
        f"{100 * sum(values) / len(values):.2f}%, {len(values)} seeds of the design)"
    )
    if test is None:
        return f"Against {what}: too few seeds for a test."
    verdict = (
        f"is {'better' if test.diff > 0 else 'worse'}"
        if test.differs
        else "shows no clear difference"
    )
    return (
        f"Against {what}, the confirmed network ({100 * arm.mean:.2f}%, "
        f"{arm.n} fresh seeds) {verdict}: {100 * test.diff:+.2f} points (95% CI "
        f"{100 * test.ci_low:+.2f} to {100 * test.ci_high:+.2f}, Welch with {test.df:.0f} df; "
        "the design's seeds against the confirmation's, at the same budget)."
    )


def welch_or_none(arm: list[float], base: list[float]):
    """Welch's test of two groups, or None where either has fewer than two values."""
    return stats.welch(arm, base) if len(arm) > 1 and len(base) > 1 else None
