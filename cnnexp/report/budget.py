"""The baseline check: whether the baseline reached what its study states, and whether its
budget let it converge, from the study's budget check (the arms it decides trained again at twice
the epochs in the study's own sweep, `study.check`). Without that check the report says so; it
never calls a baseline converged from its own curve."""

from __future__ import annotations

from dataclasses import replace

from cnnexp import stats
from cnnexp.report.document import Document
from cnnexp.report.runs import Study, experiment_of
from cnnexp.report.verdicts import (
    BudgetCheck,
    BudgetEffect,
    Verdicts,
    budget_check,
    budget_effects,
)


def seeds_phrase(n: int) -> str:
    return f"mean of {n} seeds" if n > 1 else "one run"


def add_baseline_check(doc: Document, study: Study, verdicts: Verdicts) -> None:
    """Whether the baseline reached the accuracy its config states, and what twice the epochs
    gave it."""
    arm, alpha = verdicts.baseline_arm(study.baseline), verdicts.alpha
    if arm is None:
        return
    stated = study.kind.baseline_reaches
    text = f"The baseline ({arm.label or study.name}) reached {100 * arm.mean:.2f}% "
    text += f"({seeds_phrase(arm.n)})"
    if stated is not None:
        met = "met" if arm.mean >= float(stated) else "NOT met"
        text += f"; its study states at least {100 * float(stated):.1f}%: {met}"
    doc.heading(3, "Baseline check")
    doc.bullets([text + ". " + convergence(study, budget_check(study, verdicts), alpha)])
    add_budget_effects(doc, study, alpha)


def add_budget_effects(doc: Document, study: Study, alpha: float) -> None:
    """Each effect the budget check measured again: at both budgets, and whether it changed
    (shrinks, grows or flips) with more training or not clearly."""
    effects = budget_effects(study, alpha)
    if not effects:
        return
    doc.heading(3, "Does the answer hold with more training?")
    doc.bullets([effect_sentence(study, effect, len(effects), alpha) for effect in effects])


def effect_sentence(study: Study, e: BudgetEffect, family: int, alpha: float = stats.ALPHA) -> str:
    """'pool=avg against pool=max: -0.55 points at 6 epochs, +0.30 at 12: it flips with more
    training (the change +0.85 points, 95% CI ...)', of one of `family` checked arms."""
    c = e.change
    against = ", ".join(f"{k}={v}" for k, v in study.baseline.items())
    said = {
        "no clear change": "no clear change with more training",
        "flips": "it flips with more training",
        "shrinks": "it shrinks with more training",
        "grows": "it grows with more training",
    }[e.outcome]
    return (
        f"{changed(study, e)} against {against}: {100 * e.now.diff:+.2f} points at {e.epochs} "
        "epochs, "
        f"{100 * e.later.diff:+.2f} at {e.check_epochs}: {said} (the change "
        f"{100 * c.diff:+.2f} points, {100 * (1 - alpha):.0f}% CI {100 * c.ci_low:+.2f} to "
        f"{100 * c.ci_high:+.2f}, Welch's test of the difference, Bonferroni over the "
        f"{'one arm' if family == 1 else f'{family} arms'} checked; p {c.p_adjusted:.3g})."
    )


def changed(study: Study, e: BudgetEffect) -> str:
    """What a checked arm changes from the baseline: 'pool=avg'."""
    return ", ".join(f"{k}={v}" for k, v in e.arm.items() if study.baseline.get(k) != v)


def convergence(study: Study, check: BudgetCheck | None, alpha: float = stats.ALPHA) -> str:
    """What the budget check says, with its interval; or that convergence was not checked."""
    if check is None:
        return (
            "Convergence not checked: the baseline was not trained again at twice the epochs "
            f"({again(study)})."
        )
    c = check.comparison
    if c is None or not c.se > 0:
        return (
            f"The budget check has {check.check_n} usable run(s) at {check.check_epochs} "
            "epochs: too few to measure the gap."
        )
    gap = (
        f"At {check.check_epochs} epochs instead of {check.epochs} the baseline gains "
        f"{100 * c.diff:+.2f} points ({check.check_n} runs against {check.n}; "
        f"{100 * (1 - alpha):.0f}% CI {100 * c.ci_low:+.2f} to {100 * c.ci_high:+.2f}, Welch)"
    )
    return (
        gap
        + {
            "gains": ": not converged at this budget; longer training may change the answers.",
            "loses": ": it loses at twice the epochs (over-fitting, or a schedule to re-tune).",
            "within": f": no clear gain; converged to within {100 * c.ci_high:.2f} points at this "
            "budget.",
        }[outcome(c)]
    )


def outcome(c: stats.Comparison) -> str:
    """What twice the epochs did to the baseline: 'gains', 'loses' or stays 'within' noise."""
    return "gains" if c.ci_low > 0 else "loses" if c.ci_high < 0 else "within"


def again(study: Study) -> str:
    """The command that runs the study with its budget check, into a folder of its own."""
    experiment = experiment_of(study)
    budget = f" study.budget={study.kind.budget}" if study.kind.budgets else ""
    start = (
        f"python -m cnnexp -m +experiment={experiment}{budget}"
        if experiment
        else "its sweep again with"
    )
    return (
        f"{start} 'study.check.seeds=[0,1,2]' hydra.sweep.dir=<a new folder>, then name that "
        "folder beside this one"
    )


def reference_study(study: Study) -> Study:
    """A factorial study's arms are not compared one by one (its effects answer), but its
    reference configuration (every factor low) is checked as a baseline is."""
    if not study.kind.answers_factors() or study.baseline:
        return study
    levels = study.kind.reference()
    return replace(study, baseline={k: v for k, v in levels.items() if k in study.factors})


def plain_check(study: Study, verdicts: Verdicts) -> str:
    """Whether the answers hold with more training, in plain words: the baseline's gain at
    twice the epochs, and each checked arm's effect at both budgets (check_phrase gives the
    intervals)."""
    study = reference_study(study)
    check = budget_check(study, verdicts) if study.baseline else None
    c = check.comparison if check else None
    if check is None or c is None or not c.se > 0:
        return "Whether these answers hold with more training was not checked."
    said = {
        "gains": f"the baseline gains {100 * c.diff:.2f} points, so it had not converged",
        "loses": f"the baseline loses {-100 * c.diff:.2f} points",
        "within": f"the baseline gains nothing clear (at most {100 * c.ci_high:.2f} points), so "
        "it had converged",
    }[outcome(c)]
    held = [
        f"{changed(study, e)} {100 * e.now.diff:+.2f} then {100 * e.later.diff:+.2f} points "
        f"({e.outcome})"
        for e in budget_effects(study, verdicts.alpha)
    ]
    effects = f"; {', '.join(held)}" if held else ""
    return (
        f"With more training ({check.check_epochs} epochs instead of {check.epochs}): "
        f"{said}{effects}."
    )


def check_phrase(study: Study, verdicts: Verdicts) -> str:
    """What the budget check found, in a phrase to stand beside a verdict."""
    study, alpha = reference_study(study), verdicts.alpha
    check = budget_check(study, verdicts) if study.baseline else None
    if check is None:
        return "convergence not checked (no budget check among these runs)"
    c = check.comparison
    if c is None or not c.se > 0:
        return f"the budget check has too few runs ({check.check_n}) to say"
    gap = (
        f"{100 * c.diff:+.2f} points at {check.check_epochs} epochs instead of {check.epochs} "
        f"({100 * (1 - alpha):.0f}% CI {100 * c.ci_low:+.2f} to {100 * c.ci_high:+.2f})"
    )
    said = {
        "gains": f"not converged: the baseline gains {gap}, so more training may change it",
        "loses": f"the baseline loses {gap} at twice the epochs",
        "within": f"converged to within {100 * c.ci_high:.2f} points: the baseline gains {gap}",
    }[outcome(c)]
    effects = budget_effects(study, alpha)
    if effects:
        held = "; ".join(
            f"{changed(study, e)}: {e.outcome} ({100 * e.now.diff:+.2f} then "
            f"{100 * e.later.diff:+.2f} points)"
            for e in effects
        )
        said += f"; the effect at twice the epochs: {held}"
    return said
