"""A ladder's section (study=ladder, cnnexp.studies.Ladder): each step's accuracy over its seeds,
its gain over the step before it with a family-wise interval, its size and its minutes, then
what test-time augmentation adds to the last step (the same runs, scored twice)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt  # its backend: Agg, set by cnnexp.report.figures
import pandas as pd

from cnnexp import stats, studies
from cnnexp.report.curves import NO_TTA
from cnnexp.report.document import Document
from cnnexp.report.figures import WIDTH, _save
from cnnexp.report.runs import Study, mean_of
from cnnexp.report.verdicts import NO_NOISE, UNCLEAR
from cnnexp.schema import TEST_ACC

STEP = studies.STEP  # the override that names a ladder job's step
TTA = "test-time augmentation"


@dataclass(frozen=True)
class Step:
    """One rung: its seeds' test accuracies (without test-time augmentation), its size and
    time, and its gain over the step before it (None for the first)."""

    name: str
    change: str
    values: tuple[float, ...]
    runs: int  # its runs, usable or not
    parameters: float
    macs: float
    minutes: float
    gain: stats.Comparison | None

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else math.nan

    @property
    def verdict(self) -> str:
        if not self.values:
            return f"did not train ({self.runs} runs)"
        if self.gain is None:
            return ""
        if not self.gain.se > 0:
            return NO_NOISE
        if not self.gain.differs:
            return UNCLEAR
        return "gains" if self.gain.diff > 0 else "loses"


def steps(study: Study, alpha: float = stats.ALPHA) -> tuple[list[Step], stats.Comparison | None]:
    """The ladder's steps in order, each gain one of a family (Bonferroni over every gain and
    the test-time augmentation pair, so all its intervals hold together at 1 - alpha), and the
    last step's test-time augmentation gain, measured in pairs on its own runs."""
    runs = study.usable()
    names = [n for n in study.kind.steps if any(r.levels.get(STEP) == n for r in study.runs)]
    with_tta = runs and all(r.has(NO_TTA) for r in runs)
    metric = NO_TTA if with_tta else TEST_ACC
    last = study.usable({STEP: names[-1]}) if names else []
    tta_pair = metric == NO_TTA and len(last) > 1
    level = alpha / max(1, len(names) - 1 + tta_pair)
    out: list[Step] = []
    for name in names:
        mine = study.usable({STEP: name})
        values = tuple(r.final(metric) for r in mine)
        gain = None
        if out and len(values) > 1 and len(out[-1].values) > 1:
            gain = stats.welch(values, out[-1].values, level)
        out.append(
            Step(
                name,
                _change(study.kind.steps[name]),
                values,
                sum(r.levels.get(STEP) == name for r in study.runs),
                mean_of(mine, "parameters"),
                mean_of(mine, "macs"),
                mean_of(mine, "wall_seconds") / 60,
                gain,
            )
        )
    tta = None
    if tta_pair:
        tta = stats.paired(
            [r.final(TEST_ACC) for r in last], [r.final(NO_TTA) for r in last], level
        )
    return out, tta


def _change(changes: dict) -> str:
    return ", ".join(f"{k}={studies.override_text(v)}" for k, v in changes.items())


def table(ladder: list[Step], tta: stats.Comparison | None) -> pd.DataFrame:
    """One row a step: what it changes, accuracy, gain and its interval, size and time."""
    rows = []
    for step in ladder:
        gain = step.gain
        rows.append(
            {
                "step": step.name,
                "what it changes": step.change,
                "seeds": len(step.values),
                "test acc (%)": f"{100 * step.mean:.2f}" if step.values else "",
                "gain (points)": f"{100 * gain.diff:+.2f}" if gain else "",
                "95% interval": _interval(gain),
                "verdict": step.verdict,
                "parameters": _number(step.parameters, ",.0f"),
                "multiply-accumulates": _number(step.macs, ",.0f"),
                "minutes a run": _number(step.minutes, ".2f"),
            }
        )
    if tta is not None:
        rows.append(
            {
                "step": "tta",
                "what it changes": f"{TTA} (the last step's runs scored again)",
                "seeds": len(ladder[-1].values),
                "test acc (%)": f"{100 * (ladder[-1].mean + tta.diff):.2f}",
                "gain (points)": f"{100 * tta.diff:+.2f}",
                "95% interval": _interval(tta),
                "verdict": "gains" if tta.differs and tta.diff > 0 else "",
                "parameters": "",
                "multiply-accumulates": "",
                "minutes a run": "",
            }
        )
    return pd.DataFrame(rows)


def _number(value: float, form: str) -> str:
    return "" if math.isnan(value) else format(value, form)


def _interval(gain: stats.Comparison | None) -> str:
    if gain is None or not gain.se > 0:
        return ""
    return f"{100 * gain.ci_low:+.2f} to {100 * gain.ci_high:+.2f}"


def figure(ladder: list[Step], path: Path) -> Path:
    """Accuracy per step (each seed a dot, the mean a bar) over minutes a run per step."""
    fig, (acc, minutes) = plt.subplots(
        2, 1, figsize=(WIDTH, 6.0), sharex=True, height_ratios=(3, 1.3), layout="constrained"
    )
    x = range(len(ladder))
    means = [100 * s.mean if s.values else 0.0 for s in ladder]  # no bar: it did not train
    acc.bar(x, means, color="#9ecae1", label="mean over seeds")
    for i, step in enumerate(ladder):
        acc.plot([i] * len(step.values), [100 * v for v in step.values], "k.", ms=5)
    acc.set_ylabel("test accuracy (%)")
    low = min(100 * min(s.values) for s in ladder if s.values)
    acc.set_ylim(max(0.0, low - 5), 100)
    acc.set_title(f"From {ladder[0].name} to {ladder[-1].name}, one change at a time")
    acc.legend(loc="lower right")
    minutes.bar(x, [0.0 if math.isnan(s.minutes) else s.minutes for s in ladder], color="#fdae6b")
    minutes.set_ylabel("minutes a run")
    minutes.set_xticks(list(x), [s.name for s in ladder], rotation=35, ha="right")
    return _save(fig, path)


def answer(study: Study, alpha: float = stats.ALPHA) -> str:
    """3.2 in words: from the first step to the last, then the steps that decided a gain or a
    loss, then those that did not."""
    ladder, tta = steps(study, alpha)
    if len(ladder) < 2:
        return f"{study.name}: the ladder has fewer than two steps with usable runs."
    trained = [s for s in ladder if s.values]
    if len(trained) < 2:
        return f"{study.name}: fewer than two of the ladder's steps trained."
    first, last = trained[0], trained[-1]
    said = (
        f"Changing one thing at a time, step {first.name} scored {100 * first.mean:.2f}% and "
        f"step {last.name} {100 * last.mean:.2f}%: {100 * (last.mean - first.mean):+.2f} points "
        f"over {len(ladder) - 1} steps"
    )
    failed = [s.name for s in ladder if not s.values]
    if failed:
        said += f"; {', '.join(failed)} did not train under this recipe"
    gains = [s for s in ladder if s.verdict == "gains"]
    losses = [s for s in ladder if s.verdict == "loses"]
    said += ". Clear gains: " + (_listed(gains) or "none")
    said += ". Clear losses: " + (_listed(losses) or "none")
    unclear = [s.name for s in ladder[1:] if s.values and s.verdict not in ("gains", "loses")]
    if unclear:
        said += f". Not decided with these seeds: {', '.join(unclear)}"
    if tta is not None:
        said += f". Test-time augmentation adds {100 * tta.diff:+.2f} points to the last step"
    return said + " (each gain against the step before it; intervals that hold together at 95%)."


def _listed(chosen: list[Step]) -> str:
    return ", ".join(f"{s.name} {100 * s.gain.diff:+.2f} points" for s in chosen if s.gain)


def add_ladder(doc: Document, study: Study, tag: str, alpha: float) -> None:
    """The ladder's figure, then its table, then how its gains were decided."""
    ladder, tta = steps(study, alpha)
    if len(ladder) < 2:
        doc.para("The ladder has fewer than two steps with usable runs: nothing to compare.")
        return
    doc.heading(3, "The ladder, step by step")
    doc.para(answer(study, alpha))
    add_figure(doc, study, tag, alpha)
    doc.table(table(ladder, tta))
    m = len(ladder) - 1 + (tta is not None)
    doc.para(
        f"Each gain is the step's mean minus the step before it, over their seeds, without "
        f"test-time augmentation. Its interval is Welch's at level {alpha}/{m} (Bonferroni "
        f"over the {m} gains), so all of them hold together 95% of the time; a gain whose "
        "interval excludes zero is decided. The test-time augmentation row compares the last "
        "step's runs with and without it, seed by seed (paired t)."
    )


def add_figure(doc: Document, study: Study, tag: str, alpha: float = stats.ALPHA) -> None:
    """The ladder's figure, once in a document: the lab report shows it under its answer,
    before the ladder's own section."""
    ladder, _ = steps(study, alpha)
    path = doc.out / "figures" / f"{tag}-ladder.png"
    if len([s for s in ladder if s.values]) < 2 or any(
        block[:2] == ("img", path) for block in doc.blocks
    ):
        return
    doc.image(
        figure(ladder, path),
        f"test accuracy (each seed a dot) and minutes a run at each of the {len(ladder)} steps, "
        f"from {ladder[0].name} to {ladder[-1].name}",
    )


def at_full_budget(study: Study, ours: Study, alpha: float = stats.ALPHA) -> str | None:
    """The ladder's last step (Question 2's network at the ladder's budget) against Question
    2's own runs at Question 2's budget, both without test-time augmentation: what the longer
    training adds, and what that says of the steps' gains, measured at the ladder's budget."""
    ladder, _ = steps(study, alpha)
    last = ladder[-1] if ladder else None
    usable = ours.usable()
    if last is None or not last.values or not all(r.has(NO_TTA) for r in usable):
        return None
    full = [r.final(NO_TTA) for r in usable]
    if len(full) < 2 or len(last.values) < 2:
        return None
    test = stats.welch(full, list(last.values), alpha)
    interval = f"{1 - alpha:.0%} interval {100 * test.ci_low:+.2f} to {100 * test.ci_high:+.2f}"
    return (
        f"The ladder ran at a smaller budget than Question 2. Its last step, {last.name}, is "
        f"Question 2's network: {100 * last.mean:.2f}% here against "
        f"{100 * sum(full) / len(full):.2f}% at Question 2's budget ({len(full)} seeds, both "
        f"without test-time augmentation), so the longer training adds "
        f"{100 * test.diff:+.2f} points ({interval}). The steps' gains were measured at the "
        "ladder's budget only; its budget check (in the appendix) trained its first and last "
        "steps at twice the epochs, which says whether the whole climb holds with more "
        "training, not each step's gain."
    )
