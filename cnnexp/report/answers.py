"""The words of a verdict: how a study's arms were compared (once per study), one sentence per
arm with its simultaneous interval, what the runs could have detected and how many seeds would
detect more, the pairs measured inside each run, and the conclusions per lab question."""

from __future__ import annotations

import math

import pandas as pd

from cnnexp import stats
from cnnexp.report.budget import check_phrase, seeds_phrase
from cnnexp.report.document import INTERVAL_KINDS, Document
from cnnexp.report.factorial import best_point_sentence
from cnnexp.report.recipe import budget_phrase
from cnnexp.report.runs import (
    NOT_TRAINED,
    REPLICATE,
    Study,
    jobs_at_a_time,
    numbers,
    shown_path,
)
from cnnexp.report.verdicts import (
    BETTER,
    DECIDED,
    DID_NOT_TRAIN,
    EQUIVALENT,
    NO_NOISE,
    SAME_NETWORKS,
    TOO_FEW,
    UNCLEAR,
    WORSE,
    Arm,
    Family,
    Plan,
    Unstable,
    Verdicts,
    WithinRun,
    plan,
    unstable_runs,
    within_run_pairs,
    without_run,
)
from cnnexp.schema import TEST_ACC, TRAIN_LOSS
from cnnexp.studies import Decide

TESTS = {"welch": "Welch", "paired t": "paired t"}

POWER = f"{100 * stats.POWER:.0f}%"


def add_answers(doc: Document, study: Study, verdicts: Verdicts) -> None:
    """The study's answers: the method once, one sentence per arm, the planner, the pairs."""
    alpha = verdicts.alpha
    found = answers(study, verdicts)
    pairs = within_run_pairs(study, alpha)
    if not found and not pairs:
        return
    doc.heading(3, "Answers")
    if verdicts.decided:  # the rounds decided: their method, and no planner (they plan)
        doc.para(rounds_sentence(verdicts.decided))
    for family in [] if verdicts.decided else verdicts.families:
        if family.arms:
            doc.para(method_sentence(study, family, alpha))
    doc.bullets(found + unstable_sentences(study, verdicts))
    for family in [] if verdicts.decided else verdicts.families:
        planned = plan(verdicts, family)
        if planned is not None:
            doc.para(plan_sentence(planned))
    if pairs:
        doc.heading(3, "Measured inside each run (the same networks evaluated both ways)")
        doc.bullets([within_run_sentence(p, alpha) for p in pairs])


# What each correction makes of an interval, for the sentence that states the method once.
INTERVALS = {
    "bonferroni": "simultaneous {level} interval (Bonferroni: each at 1 - {alpha}/m over the m "
    "comparisons of the family, so all hold together)",
    "holm": "interval at the level of the Holm step that decided it (it excludes zero exactly "
    "when Holm's step-down rejects; not simultaneous)",
    "none": "{level} interval of that test alone, not corrected for the other comparisons (the "
    "family-wise level does not hold)",
}


def rounds_sentence(decided: dict) -> str:
    """How a deciding sweep's rounds decided (its decide.json): the looks, the level each
    spent, what better, worse and equivalent mean there."""
    arms = len(decided["arms"])
    looks = ", ".join(map(str, decided["looks"]))
    power = decided.get("spending", 3)  # records before the key spent as t^3
    spending = {1: "t", 2: "t²", 3: "t³"}.get(power, f"t^{power:g}")
    margin = decided.get("margin_points")
    equivalent = (
        f", or equivalent when the two one-sided tests put the difference inside ±{margin:g} "
        "points (the interval shown for it is then the one at twice the look's level, which "
        "lies inside that margin)"
        if margin
        else ""
    )
    return (
        f"{arms} arm{'s' if arms != 1 else ''} compared with {decided['control']} in rounds of "
        f"seeds (looks at {looks} seeds an arm). At each look every open arm is tested by "
        f"Welch's test at that look's share of the {decided['alpha']:.0%} level (spent over the "
        f"looks as {spending}, Bonferroni over the arms), and stops once its interval excludes "
        f"zero (better or worse){equivalent}. Stopping when decided keeps the family's level; an "
        "arm still open at the cap ends with no clear difference."
    )


def method_sentence(study: Study, family: Family, alpha: float) -> str:
    """How one family of comparisons was made, and what its intervals are."""
    v = family.variances
    where = ", ".join(f"{k}={val}" for k, val in family.context.items())
    head = f"On {where}: " if where else ""
    level = f"{100 * (1 - alpha):.0f}%"
    shown = INTERVALS[family.method].format(level=level, alpha=alpha)
    share = f" (the level split over {family.contexts} contexts)" if family.contexts > 1 else ""
    bartlett = f" (Bartlett's test p {p_text(v.bartlett_all_p)})"
    noise = (
        "too few arms with spread to compare their noise"
        if math.isnan(v.bartlett_all_p)
        else f"the seeds' spread agrees between arms{bartlett}"
        if v.bartlett_all_p >= alpha
        else f"the seeds' spread differs between arms{bartlett}"
    )
    paired = ""
    if family.paired:
        paired = (
            f" {', '.join(family.paired)} trained the baseline's very networks (the same "
            "seeds give the same final training loss): it is compared in pairs by seed "
            "(paired t test), as one of the family's comparisons."
        )
    return (
        f"{head}{family.arms} arm{'s' if family.arms != 1 else ''} compared with the baseline, "
        f"each by Welch's test (its own seeds' variance and the baseline's, so no arm's noise "
        f"is lent to another; {noise}). Every interval below is a {shown}{share}: an arm is "
        "called better or worse exactly when its interval excludes zero, otherwise 'no clear "
        f"difference'.{paired} Runs that did not train, diverged, failed or did not finish are "
        "counted but kept out of the comparisons."
    )


def answers(study: Study, verdicts: Verdicts) -> list[str]:
    """One sentence per compared arm with its numbers: better, worse, no clear difference
    (with what the runs could have detected), did not train, or no verdict."""
    return [_answer(study, verdicts, arm) for arm in verdicts.compared]


def _answer(study: Study, verdicts: Verdicts, arm: Arm) -> str:
    what, base, where = _levels(study, arm)
    said = f"{what}{where}"
    if arm.verdict == DID_NOT_TRAIN:
        return (
            f"{said}: did not train under this recipe ({_not_trained(study, arm)}). This is a "
            "failed training run, not evidence that the architecture is worse; a different "
            "learning rate, batch norm or more epochs usually fixes it."
        )
    ref = verdicts.control_of(arm)
    means = f"{pct(arm.mean)} vs {pct(ref.mean)}"
    if arm.verdict not in (*DECIDED, EQUIVALENT, UNCLEAR):  # no test, or none needed
        return f"{said}: {arm.words} ({counted(arm)} against {ref.n} for {base}; means {means})."
    numbers = f"{means}; {interval(arm, verdicts.alpha)}; {counted(arm)}"
    if arm.verdict in DECIDED:
        side = "above" if arm.verdict == BETTER else "below"
        gap = f"{abs(100 * arm.comparison.diff):.2f} points {side} {base}"
        return f"{said}: {arm.verdict} — {gap} ({numbers})."
    if arm.verdict == EQUIVALENT:
        return f"{said}: {arm.words} of {base} ({numbers})."
    detectable = could_find(arm.comparison)
    return f"{said}: no clear difference from {base} ({numbers}); {detectable}."


def unstable_sentences(study: Study, verdicts: Verdicts) -> list[str]:
    """Each run out of line with its arm's other seeds, named with its numbers, and the
    verdicts that change without it (it stays in the numbers: nothing is dropped silently)."""
    alpha = verdicts.alpha
    said = []
    for run in unstable_runs(study, verdicts):
        again = without_run(study, run.run, alpha, verdicts.method)
        said.append(f"{unstable_phrase(run)} {changed_without(verdicts, again)}")
    return said


def unstable_phrase(run: Unstable) -> str:
    """'Seed 10 of convs=2 is out of line with the arm's other seeds: ...'."""
    first = ""
    if run.first is not None and run.others_first:
        first = f"; after its first epoch {pct(run.first)} against {_span(run.others_first)}"
    return (
        f"Seed {run.seed} of {run.arm} is out of line with the arm's other seeds (an unstable "
        f"run): final {pct(run.final)} against {_span(run.others_final)}{first} (studentized "
        f"residual within its arm, Bonferroni over the study's runs, p {p_text(run.p)}). It is "
        "kept in the numbers above."
    )


def changed_without(verdicts: Verdicts, again: Verdicts) -> str:
    """The verdicts that differ without the run, with their numbers; or that none does."""
    changed = [
        f"{after.label} {after.words}, "
        + (f"{interval(after, again.alpha)} " if after.comparison else "")
        + f"({counted(after)})"
        for before, after in zip(verdicts.arms, again.arms, strict=True)
        if before.verdict is not None and after.words != before.words
    ]
    if not changed:
        return "Without it no verdict changes."
    return "Without it: " + "; ".join(changed) + "."


def _span(values) -> str:
    low, high = min(values), max(values)
    return pct(low) if low == high else f"{pct(low)}-{pct(high)}"


STILL_OPEN = "still open at the sweep's cap: more seeds, or a wider margin, would decide"


def could_find(comparison: stats.Comparison) -> str:
    """What an unclear comparison's runs could have found; a deciding sweep's open arm (no
    fixed-sample power to state) is still open at its cap."""
    if pd.isna(comparison.detectable):
        return STILL_OPEN
    return detectable_phrase(comparison.detectable)


def detectable_phrase(value: float) -> str:
    return (
        f"with these runs a true difference of {100 * value:.2f} points would be found "
        f"{POWER} of the time"
    )


def interval(arm: Arm, alpha: float) -> str:
    """'difference +1.00 points, simultaneous 95% CI ..., Welch with 8 df, family-wise p = ...'."""
    c = arm.comparison
    kind = INTERVAL_KINDS.get(c.correction, "")
    name = f"{kind} {100 * (1 - alpha):.0f}% CI".strip()
    if c.correction == "sequential":  # at its look's share of the level
        name = f"{100 * (1 - c.level):.1f}% CI (its look's share of the {1 - alpha:.0%} level)"
    p = "p" if c.correction == "none" else "family-wise p"
    said = (
        f"difference {100 * c.diff:+.2f} points, {name} {100 * c.ci_low:+.2f} "
        f"to {100 * c.ci_high:+.2f}, {TESTS.get(c.test, c.test)}"
    )
    if pd.notna(c.df):
        said += f" with {c.df:.0f} df"
    if pd.notna(c.p_adjusted):  # none for a deciding sweep: its level was spent
        said += f", {p} {p_text(c.p_adjusted)}"
    return said


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
        f"Planner: for {POWER} power by Welch's test at this family's level "
        f"({planned.level:.3g} per comparison), with the seeds' standard deviation of "
        f"{100 * planned.sigma:.2f} points (pooled over the {planned.arms} arms, whose spread "
        "agrees), detecting "
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
        f"{100 * c.ci_high:+.2f}, paired t = {c.t:.2f} with {c.df:.0f} df, p {p_text(c.p)}; "
        f"{detectable_phrase(c.detectable)})."
    )


def _levels(study: Study, arm: Arm) -> tuple[str, str, str]:
    """(what changed, the baseline it is compared with, the context) of an arm."""
    levels = arm.levels
    changed = [f for f in study.baseline if str(levels[f]) != study.baseline[f]]
    what = ", ".join(f"{f}={levels[f]}" for f in changed)
    base = ", ".join(f"{f}={study.baseline[f]}" for f in changed)
    context = [f for f in study.factors if f not in study.baseline]
    where = " on " + ", ".join(f"{f}={levels[f]}" for f in context) if context else ""
    return what, base, where


def counted(arm: Arm) -> str:
    """'3 seeds', or '2 of 3 runs (1 diverged)' when some runs are not in the mean."""
    if arm.n == arm.runs:
        return f"{arm.n} seed{'s' if arm.n != 1 else ''}"
    left_out = ", ".join(f"{count} {why}" for why, count in arm.left_out.items())
    return f"mean of {arm.n} of {arm.runs} runs ({left_out})"


def _not_trained(study: Study, arm: Arm) -> str:
    """The numbers of an arm's runs that did not train: their losses and accuracies."""
    bad = [r for r in study.runs if r.status == NOT_TRAINED and r.at(arm.levels)]
    losses = ", ".join(f"{r.final(TRAIN_LOSS):.3f}" for r in bad)
    accs = ", ".join(pct(r.final(TEST_ACC)) for r in bad)
    return (
        f"{len(bad)} of {arm.runs} runs: final training loss {losses}, test accuracy "
        f"{accs}; {bad[0].record.error}"
    )


def pct(value: float) -> str:
    """'99.10%'; a dash where there is no value (an arm with no usable run)."""
    return f"{100 * value:.2f}%" if pd.notna(value) else "—"


def p_text(value: float) -> str:
    """'= 0.0206', or '< 0.0001' for the smallest."""
    return "< 0.0001" if value < 1e-4 else f"= {value:.3g}"


# --- conclusions ---------------------------------------------------------------------------------


def conclusions(
    studies: list[Study], verdicts: list[Verdicts], only: Study | None = None
) -> list[str]:
    """Two or three generated sentences per study (or the `only` one): what was better, worse,
    unclear or failed to train, under which budget (one_seed_sentence says what one run per
    arm cannot)."""
    lines = []
    for study, decided in zip(studies, verdicts, strict=True):
        if only is not None and study is not only:
            continue
        if not study.baseline or not decided.compared:
            lines += _accuracy_sentences(study, decided)
        else:
            lines.append(verdict_sentences(study, decided))
        if study.kind.confirms():
            lines += [s for s in [best_point_sentence(study, decided, studies)] if s]
    return lines


def one_seed_sentence(study: Study, verdicts: Verdicts) -> str | None:
    """Where arms were compared but none has two usable runs: that seed noise cannot be told
    apart from a difference, and the deciding sweep's command (hydra/sweeper=decide), with its
    longest time estimated from these runs'."""
    arms = [a for a in verdicts.arms if a.n > 0]
    if len(arms) < 2 or any(a.n > 1 for a in arms):
        return None
    command = deciding_command(study)
    most = Decide().max_seeds
    seconds = numbers(study.runs, "wall_seconds")
    took = ""
    if seconds:
        mean = sum(seconds) / len(seconds)
        minutes = mean * len(arms) * most / (jobs_at_a_time(study.runs) or 1) / 60
        took = "under a minute" if minutes < 1 else f"about {minutes:.0f} min"
        took = f" (at most {took} on the machine that ran these, often less)"
    return (
        f"{study.name}: one run per arm cannot say which arm is better: it gives no measure of "
        "how far two seeds of the same network land apart, so a difference between the arms "
        f"may be seed noise alone. To decide, let the sweep add seeds in rounds until each arm "
        f"is decided (better, worse or equivalent) or has {most} seeds: `{command}`{took}; its "
        "report then gives each verdict with its interval and the seeds it took."
    )


def deciding_command(study: Study) -> str:
    """The sweep's own command line with the factors' levels, as a deciding sweep into a
    folder of its own."""
    given = study.runs[0].given
    texts = [t for k, t in given.items() if k not in (*study.factors, REPLICATE)]
    levels = [
        f"{f}={','.join(dict.fromkeys(str(r.levels.get(f)) for r in study.runs))}"
        for f in study.factors
    ]
    folder = f"hydra.sweep.dir={shown_path(study.root)}-decided"
    return " ".join(["python -m cnnexp -m hydra/sweeper=decide", *texts, *levels, folder])


def _accuracy_sentences(study: Study, verdicts: Verdicts) -> list[str]:
    """'name: 99.29% test accuracy (one run) — budget.' for a study without a baseline."""
    return [
        f"{', '.join([study.name, arm.label]) if arm.label else study.name}: {pct(arm.mean)} "
        f"test accuracy ({seeds_phrase(arm.n)}) — {budget_phrase(study)}."
        for arm in verdicts.arms
        if arm.n > 0
    ]


DECIDED_IN_ROUNDS = (
    "These arms were decided in rounds of seeds (hydra/sweeper=decide): each arm stopped once "
    "decided, each look tested at a share of the 5% level spent over the planned looks, so "
    "that stopping when decided keeps the level (cnnexp/sequential.py)."
)


def _when_decided(arm: Arm) -> str:
    """'; decided at 5 seeds, look 2' for an arm a deciding sweep's rounds decided."""
    return f"; decided at {arm.decided_at}" if arm.decided_at else ""


def _gap(arm: Arm, interval_name: str) -> str:
    """'pool=avg (-0.09 points, interval -0.20 to +0.01; decided at 7 seeds, look 3)'."""
    c = arm.comparison
    return (
        f"{arm.label} ({100 * c.diff:+.2f} points, {interval_name} {100 * c.ci_low:+.2f} to "
        f"{100 * c.ci_high:+.2f}{_when_decided(arm)})"
    )


def plain_verdicts(study: Study, verdicts: Verdicts, network: str) -> str | None:
    """A study of several arms in one plain sentence: its arms grouped by verdict, each better
    or worse one with its mean and gap, against the baseline's mean (the intervals, the test
    and the budget check follow it); None without a baseline or with one arm compared."""
    base = verdicts.baseline_arm()
    if base is None or len(verdicts.compared) < 2:
        return None
    by: dict[str, list[str]] = {}
    order = [BETTER, WORSE, EQUIVALENT, SAME_NETWORKS, UNCLEAR, DID_NOT_TRAIN]
    ranked = sorted(verdicts.compared, key=lambda a: _rank(order, a.verdict))
    for arm in ranked:
        name = _level_name(study, arm)
        if arm.verdict in DECIDED:
            name += f" {pct(arm.mean)} ({100 * arm.comparison.diff:+.2f} points)"
        by.setdefault(arm.words, []).append(name)
    groups = "; ".join(f"{words}: {', '.join(names)}" for words, names in by.items())
    return f"On {network}, against {base.label} ({pct(base.mean)}): {groups}."


def _rank(order: list, verdict) -> int:
    return order.index(verdict) if verdict in order else len(order)


def _level_name(study: Study, arm: Arm) -> str:
    """An arm by its level alone where one factor varies ('activation-gelu'), else its label."""
    if len(study.factors) == 1:
        return str(arm.levels[study.factors[0]])
    return arm.label


def verdict_sentences(study: Study, verdicts: Verdicts) -> str:
    """The verdicts of a study against its baseline, grouped, with the budget caveat."""
    by: dict[str, list[Arm]] = {}
    for arm in verdicts.compared:
        by.setdefault(arm.words, []).append(arm)
    base = ", ".join(f"{k}={v}" for k, v in study.baseline.items())
    question = study.kind.question or ""
    said = [
        f"{study.name}:{' ' + question if question else ''} Against {base}, under "
        f"{budget_phrase(study)}:"
    ]
    for verdict in DECIDED:
        if verdict in by:
            kind = INTERVAL_KINDS.get(by[verdict][0].comparison.correction, "")
            said.append(f"{verdict}: {', '.join(_gap(a, f'{kind} CI') for a in by[verdict])}.")
    for words, arms in by.items():
        if arms[0].verdict in (EQUIVALENT, SAME_NETWORKS):
            said.append(
                f"{words[0].upper()}{words[1:]}: {', '.join(_gap(a, 'interval') for a in arms)}."
            )
    if verdicts.decided:
        said.append(DECIDED_IN_ROUNDS)
    said += _undecided_sentences(by)
    said.append(f"Budget check: {check_phrase(study, verdicts)}.")
    return " ".join(said)


def _undecided_sentences(by: dict[str, list[Arm]]) -> list[str]:
    """The arms with no clear difference (what the runs could have found), those that did not
    train and those too few to test."""
    said = []
    if UNCLEAR in by:
        detectable = [a.comparison.detectable for a in by[UNCLEAR]]
        low, high = 100 * min(detectable), 100 * max(detectable)
        size = f"{low:.2f}" if round(low, 2) == round(high, 2) else f"{low:.2f} to {high:.2f}"
        found = (
            f"; with these runs a true difference of {size} points would be found {POWER} of "
            "the time"
            if pd.notna(low)
            else f" ({STILL_OPEN})"
        )
        said.append(f"No clear difference: {', '.join(a.label for a in by[UNCLEAR])}{found}.")
    if DID_NOT_TRAIN in by:
        failed = ", ".join(a.label for a in by[DID_NOT_TRAIN])
        said.append(
            "Did not train under this recipe (a failed run, not evidence against the "
            f"architecture): {failed}."
        )
    undecided = [a for words, arms in by.items() for a in arms if words in (TOO_FEW, NO_NOISE)]
    if undecided:
        names = ", ".join(f"{a.label} ({counted(a)})" for a in undecided)
        said.append(f"No verdict possible: {names}.")
    return said
