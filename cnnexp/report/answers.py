"""The words of a verdict: how a study's arms were compared (once per study), one sentence per
arm with its simultaneous interval, what the runs could have detected and how many seeds would
detect more, the pairs measured inside each run, and the conclusions per lab question."""

from __future__ import annotations

import pandas as pd

from cnnexp import stats
from cnnexp.report.document import Document
from cnnexp.report.recipe import budget_phrase
from cnnexp.report.runs import COUNT_COLUMNS, NOT_TRAINED, Study, label, levels_of, matching
from cnnexp.report.verdicts import (
    BETTER,
    DECIDED,
    DID_NOT_TRAIN,
    UNCLEAR,
    WORSE,
    Family,
    Plan,
    WithinRun,
    is_baseline,
    plan,
    within_run_pairs,
)

TESTS = {"dunnett": "Dunnett", "pooled t": "pooled t", "welch": "Welch", "paired t": "paired t"}
POWER = f"{100 * stats.POWER:.0f}%"


def add_answers(doc: Document, study: Study, summary: pd.DataFrame, alpha: float) -> None:
    """The study's answers: the method once, one sentence per arm, the planner, the pairs."""
    found = answers(study, summary, alpha)
    pairs = within_run_pairs(study, alpha)
    if not found and not pairs:
        return
    doc.heading(3, "Answers")
    for family in summary.attrs.get("families", []):
        if family.arms:
            doc.para(method_sentence(study, family, alpha))
    doc.bullets(found)
    for family in summary.attrs.get("families", []):
        planned = plan(summary, family)
        if planned is not None:
            doc.para(plan_sentence(planned))
    if pairs:
        doc.heading(3, "Measured inside each run (the same networks evaluated both ways)")
        doc.bullets([within_run_sentence(p, alpha) for p in pairs])


def method_sentence(study: Study, family: Family, alpha: float) -> str:
    """How one family of comparisons was made, with the variance model and why."""
    v = family.variances
    where = ", ".join(f"{k}={val}" for k, val in family.context.items())
    head = f"On {where}: " if where else ""
    level = f"{100 * (1 - alpha):.0f}%"
    if v.pooled:
        model = (
            f"one model of the study's runs (accuracy by arm, ordinary least squares): residual "
            f"standard deviation {100 * v.sigma:.2f} points with {v.df:.0f} degrees of freedom, "
            f"pooled over the arms because Bartlett's test of equal variances does not reject "
            f"(p {_p(v.bartlett_p)})"
        )
        if v.left_out:
            model += (
                f"; over every arm it does (p {_p(v.bartlett_all_p)}), and "
                f"{', '.join(v.left_out)}, whose variance is out of line with the rest, is "
                "compared by Welch's test instead"
            )
        tests = {
            "dunnett": "Dunnett's many-to-one test of each arm against the baseline",
            "holm": "t tests on the pooled variance, Holm's correction over the family",
            "none": "t tests on the pooled variance, each alone (no correction)",
        }[family.method]
        if family.arms == 1:
            tests = "a t test on the pooled variance (with one arm, Dunnett's test is this test)"
    else:
        model = (
            "each arm with its own variance (Welch's test), because Bartlett's test rejects "
            f"equal variances (p {_p(v.bartlett_all_p)}) and no single arm explains it"
        )
        tests = {
            "dunnett": "Holm's correction over the family",
            "holm": "Holm's correction over the family",
            "none": "no correction",
        }[family.method]
    share = f" (the level split over {family.contexts} contexts)" if family.contexts > 1 else ""
    paired = ""
    if family.paired:
        paired = (
            f" {', '.join(family.paired)} trained the baseline's very networks (the same "
            "seeds give the same final training loss): it is compared in pairs by seed "
            "(paired t test, its 95% interval a family of its own), outside the pooled model."
        )
    return (
        f"{head}{family.arms} arm{'s' if family.arms != 1 else ''} compared with the baseline, "
        f"{tests}, from {model}. Every interval below is the family's simultaneous "
        f"{level} interval{share}: an arm is called better or worse exactly when its interval "
        f"excludes zero, otherwise 'no clear difference'.{paired} Runs that did not train, "
        "diverged, failed or did not finish are counted but kept out of the model."
    )


def answers(study: Study, summary: pd.DataFrame, alpha: float = stats.ALPHA) -> list[str]:
    """One sentence per compared arm with its numbers: better, worse, no clear difference
    (with what the runs could have detected), did not train, or no verdict."""
    lines = []
    for _, row in summary[summary["verdict"].notna()].iterrows():
        what, base, where = _levels(study, row)
        ref = _baseline_row(study, summary, row)
        verdict = row["verdict"]
        if verdict == DID_NOT_TRAIN:
            lines.append(
                f"{what}{where}: did not train under this recipe "
                f"({_not_trained(study, row)}). This is a failed training run, not evidence "
                "that the architecture is worse; a different learning rate, batch norm or "
                "more epochs usually fixes it."
            )
            continue
        means = f"{pct(row['mean'])} vs {pct(ref['mean'])}"
        if verdict in DECIDED:
            side = "above" if verdict == BETTER else "below"
            gap = f"{abs(100 * row['diff']):.2f} points {side} {base}"
            lines.append(
                f"{what}{where}: {verdict} — {gap} ({means}; {interval(row, alpha)}; "
                f"{counted(row)})."
            )
        elif verdict == UNCLEAR:
            lines.append(
                f"{what}{where}: no clear difference from {base} ({means}; "
                f"{interval(row, alpha)}; {counted(row)}); {detectable_phrase(row['detectable'])}."
            )
        else:
            lines.append(
                f"{what}{where}: {verdict} ({counted(row)} against {int(ref['n'])} "
                f"for {base}; means {means})."
            )
    return lines


def detectable_phrase(value: float) -> str:
    return (
        f"with these runs a true difference of {100 * value:.2f} points would be found "
        f"{POWER} of the time"
    )


def interval(row: pd.Series, alpha: float) -> str:
    """'difference +1.00 points, simultaneous 95% CI ..., Dunnett, family-wise p = ...'."""
    simultaneous = "95% CI" if row["test"] == "paired t" else "simultaneous 95% CI"
    simultaneous = simultaneous.replace("95%", f"{100 * (1 - alpha):.0f}%")
    return (
        f"difference {100 * row['diff']:+.2f} points, {simultaneous} {100 * row['ci_low']:+.2f} "
        f"to {100 * row['ci_high']:+.2f}, {TESTS.get(row['test'], row['test'])} with "
        f"{row['df']:.0f} df, family-wise p {_p(row['p_adjusted'])}"
    )


def plan_sentence(planned: Plan) -> str:
    """How many seeds per arm would detect 1 and 0.5 points, and how long they take."""
    parts = []
    for target, n in planned.seeds.items():
        points = f"{100 * target:.1f} point{'s' if target != 0.01 else ''}"
        if n is None:
            parts.append(f"{points}: more than 1000 seeds per arm")
            continue
        hours = planned.hours(target)
        took = f"{hours:.1f} hours" if hours >= 1 else f"{60 * hours:.0f} minutes"
        parts.append(f"{points}: {n} seeds per arm, {n * planned.arms} runs, about {took}")
    return (
        f"Planner: for {POWER} power at this family's level, with the pooled standard deviation "
        f"of {100 * planned.sigma:.2f} points and {planned.arms} arms, detecting "
        + "; ".join(parts)
        + f" on the machine that ran these runs ({planned.seconds_per_run:.0f} s per run)."
    )


def within_run_sentence(pair: WithinRun, alpha: float) -> str:
    c = pair.comparison
    what = {"tta": "test-time augmentation", "ema": "evaluating the weight average"}.get(
        pair.option, pair.option
    )
    if not c.se > 0:
        return (
            f"{what} ({pair.option}) on {pair.where}: {100 * c.diff:+.2f} points on every "
            f"one of {pair.n} runs alike: no noise to test."
        )
    verdict = (BETTER if c.diff > 0 else WORSE) if c.differs else UNCLEAR
    return (
        f"{what} ({pair.option}) on {pair.where}: {verdict} — {100 * c.diff:+.2f} points "
        f"(paired over {pair.n} runs, {100 * (1 - alpha):.0f}% CI {100 * c.ci_low:+.2f} to "
        f"{100 * c.ci_high:+.2f}, paired t = {c.t:.2f} with {c.df:.0f} df, p {_p(c.p)}; "
        f"{detectable_phrase(c.detectable)})."
    )


def _levels(study: Study, row: pd.Series) -> tuple[str, str, str]:
    """(what changed, the baseline it is compared with, the context) of a summary row."""
    changed = [f for f in study.baseline if str(row[f]) != study.baseline[f]]
    what = ", ".join(f"{f}={row[f]}" for f in changed)
    base = ", ".join(f"{f}={study.baseline[f]}" for f in changed)
    context = [f for f in study.factors if f not in study.baseline]
    where = " on " + ", ".join(f"{f}={row[f]}" for f in context) if context else ""
    return what, base, where


def _baseline_row(study: Study, summary: pd.DataFrame, row: pd.Series) -> pd.Series:
    context = [f for f in study.factors if f not in study.baseline]
    mask = is_baseline(study, summary) & matching(summary, levels_of(study, row, context))
    return summary[mask].iloc[0]


def counted(row: pd.Series) -> str:
    """'3 seeds', or '2 of 3 runs (1 diverged)' when some runs are not in the mean."""
    n, total = int(row["n"]), int(row["runs"])
    if n == total:
        return f"{n} seed{'s' if n != 1 else ''}"
    left_out = [f"{int(row[c])} {c}" for c in list(COUNT_COLUMNS.values())[1:] if row[c]]
    return f"mean of {n} of {total} runs ({', '.join(left_out)})"


def _not_trained(study: Study, row: pd.Series) -> str:
    """The numbers of a group's runs that did not train: their losses and accuracies."""
    mask = study.runs["status"] == NOT_TRAINED
    bad = study.runs[mask & matching(study.runs, levels_of(study, row))]
    losses = ", ".join(f"{v:.3f}" for v in bad["final_train_loss"].astype(float))
    accs = ", ".join(pct(v) for v in bad["final_test_acc"].astype(float))
    return (
        f"{len(bad)} of {int(row['runs'])} runs: final training loss {losses}, test accuracy "
        f"{accs}; {bad['error'].iloc[0]}"
    )


def pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _p(value: float) -> str:
    """'= 0.0206', or '< 0.0001' for the smallest."""
    return "< 0.0001" if value < 1e-4 else f"= {value:.3g}"


def seeds_phrase(row: pd.Series) -> str:
    n = int(row["n"])
    return f"mean of {n} seeds" if n > 1 else "one run"


# --- conclusions ---------------------------------------------------------------------------------


def conclusions(studies: list[Study], summaries: list[pd.DataFrame]) -> list[str]:
    """Two or three generated sentences per study: what was better, worse, unclear or failed to
    train, under which budget."""
    lines = []
    for study, summary in zip(studies, summaries, strict=True):
        if not study.baseline or summary["verdict"].isna().all():
            lines += _accuracy_sentences(study, summary)
        else:
            lines.append(verdict_sentences(study, summary))
    return lines


def _accuracy_sentences(study: Study, summary: pd.DataFrame) -> list[str]:
    """'name: 99.29% test accuracy (one run) — budget.' for a study without a baseline."""
    lines = []
    for _, row in summary[summary["n"] > 0].iterrows():
        name = label(study, row)
        name = f"{study.name}, {name}" if name != study.name else study.name
        lines.append(
            f"{name}: {pct(row['mean'])} test accuracy ({seeds_phrase(row)}) — "
            f"{budget_phrase(study)}."
        )
    return lines


def verdict_sentences(study: Study, summary: pd.DataFrame) -> str:
    """The verdicts of a study against its baseline, grouped, with the budget caveat."""
    by = {v: summary[summary["verdict"] == v] for v in summary["verdict"].dropna().unique()}
    base = ", ".join(f"{k}={v}" for k, v in study.baseline.items())
    question = study.setting("question") or ""
    said = [
        f"{study.name}{': ' + question if question else ''} Against {base}, under "
        f"{budget_phrase(study)}:"
    ]
    for verdict in DECIDED:
        if verdict in by:
            items = ", ".join(
                f"{label(study, r)} ({100 * r['diff']:+.2f} points, simultaneous CI "
                f"{100 * r['ci_low']:+.2f} to {100 * r['ci_high']:+.2f})"
                for _, r in by[verdict].iterrows()
            )
            said.append(f"{verdict}: {items}.")
    if UNCLEAR in by:
        unclear = by[UNCLEAR]
        low, high = 100 * unclear["detectable"].min(), 100 * unclear["detectable"].max()
        size = f"{low:.2f}" if round(low, 2) == round(high, 2) else f"{low:.2f} to {high:.2f}"
        names = ", ".join(label(study, r) for _, r in unclear.iterrows())
        said.append(
            f"No clear difference: {names}; with these runs a true difference of "
            f"{size} points would be found {POWER} of the time."
        )
    if DID_NOT_TRAIN in by:
        failed = ", ".join(label(study, r) for _, r in by[DID_NOT_TRAIN].iterrows())
        said.append(
            "Did not train under this recipe (a failed run, not evidence against the "
            f"architecture): {failed}."
        )
    undecided = summary[summary["verdict"].astype(str).str.startswith(("too few", "no verdict"))]
    if not undecided.empty:
        names = ", ".join(f"{label(study, r)} ({counted(r)})" for _, r in undecided.iterrows())
        said.append(f"No verdict possible: {names}.")
    said.append(
        "Another budget (more epochs, all images, each level at its own best learning "
        "rate) may change these answers."
    )
    return " ".join(said)
