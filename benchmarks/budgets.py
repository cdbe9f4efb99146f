"""Which budget gives the narrowest intervals in the time a study may take.

For each study given (a sweep folder, or the runs.csv a report wrote), read from its runs:
its budget (training images x epochs, the widths it trained), the seed standard deviation
(pooled within configurations: the residual of statsmodels' OLS of test accuracy on the
configuration, so every configuration with two or more seeds informs it), the seconds a run
takes, and what follows for a study of `--minutes` with `--jobs` runs at a time: how many runs
fit, and the 95% half-width of one effect of a two-level design (high minus low, each half of
the runs: standard error 2 sd / sqrt(runs)), which is also that of two arms of half the runs
each. The seconds are each run's whole time (start, training, testing), as the study paid them.
Where the folder `<study>-check` is beside a study's folder, also what its baseline gains at
twice the epochs (the budget check): how far the budget is from converged.

A second table follows one network through every budget the folders hold: the baseline's (or a
design's reference configuration's) own runs in each study, its budget check at twice the
epochs and the baseline arm of a confirmation (`<study>-confirm`), grouped by images x epochs x
width. Its seed sd comes from those seeds alone, with a 95% interval (chi-square): a budget is
chosen on the half-width its sd and seconds give in the time.

    python benchmarks/budgets.py multirun/docs/factorial-cifar10 \
        multirun/docs/architecture-cifar10 multirun/docs/pooling-cifar10 \
        docs/architecture-cifar10/runs.csv
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from scipy import stats

from cnnexp.report.runs import (
    Study,
    StudyRun,
    frame,
    groups,
    jobs_at_a_time,
    load_studies,
    mean_of,
)
from cnnexp.stats import pooled_fit
from cnnexp.studies import flatten

Z = stats.norm.isf(0.025)  # a two-sided 95% interval with many residual degrees of freedom


def seed_sd(study: Study) -> tuple[float, int]:
    """The pooled within-configuration standard deviation of test accuracy, in points, and its
    degrees of freedom (the report's OLS of accuracy on the configuration)."""
    by_config = {
        str(levels): [100 * r.final() for r in part if r.usable] for levels, part in groups(study)
    }
    sd, df = pooled_fit(by_config)
    return sd, int(df)


def budget_of(study: Study) -> dict[str, object]:
    """What the study trained: images, epochs and widths, from its runs' records and configs."""
    widths = sorted({flatten(c).get("model.width_mult") for c in study.configs()} - {None})
    return {
        "images": _one(r.record.train_images for r in study.runs),
        "epochs": _one(r.record.epochs for r in study.runs),
        "widths": "/".join(f"{w:g}" for w in widths) or "-",
    }


def _one(values: Iterable[int | None]) -> str:
    return "/".join(f"{v:,}" for v in sorted({int(v) for v in values if v is not None}))


def baseline_acc(study: Study) -> float:
    """The mean test accuracy (%) of the baseline, or of a design's reference configuration."""
    return 100 * mean_of(study.usable(baseline_levels(study)))


def check_gain(path: Path, baseline: float) -> float:
    """What the baseline gains at twice the epochs (points): the budget check in the folder
    beside the study's (`<folder>-check`, as docs/make.sh names it), where there is one."""
    check = path.with_name(path.name + "-check")
    if path.suffix or not check.is_dir():
        return math.nan
    found = load_studies(check)[0]
    return 100 * mean_of([r for r in found.check or found.runs if r.usable]) - baseline


def half_width(sd: float, seconds: float, jobs: int, minutes: float) -> tuple[int, float]:
    """The runs that fit in `minutes` at `jobs` at a time, and the 95% half-width of one
    two-level effect (high minus low, half of the runs each: standard error 2 sd / sqrt(runs))."""
    runs = int(minutes * 60 * jobs / seconds) if seconds > 0 else 0
    return runs, (Z * 2 * sd / math.sqrt(runs) if runs else math.nan)


def row(path: Path, study: Study, minutes: float, default_jobs: int) -> dict[str, object]:
    """One study's budget, noise, cost and the half-width they give in `minutes`."""
    sd, df = seed_sd(study)
    usable = study.usable()
    baseline = baseline_acc(study)
    seconds = mean_of(usable, "wall_seconds")
    jobs = jobs_at_a_time(study.runs) or default_jobs
    runs_in_time, half = half_width(sd, seconds, jobs, minutes)
    return {
        "study": study.name,
        **budget_of(study),
        "runs": len(usable),
        "baseline acc (%)": round(baseline, 2),
        "gain at 2x epochs": round(check_gain(path, baseline), 2),
        "seed sd (points)": round(sd, 2),
        "sd df": df,
        "s per run": round(seconds, 1),
        "at a time": jobs,
        f"runs in {minutes:g} min": runs_in_time,
        "95% half-width (points)": round(half, 2),
    }


def baseline_runs(path: Path, study: Study) -> list[StudyRun]:
    """The usable runs of the baseline network in a study folder, in its budget check (inside
    it, or in the folder beside it) and in the confirmation folder beside it."""
    runs = study.usable(baseline_levels(study))
    runs += [r for r in study.check if r.usable and r.at(baseline_levels(study))]
    check = path.with_name(path.name + "-check")
    if not path.suffix and check.is_dir():
        found = load_studies(check)[0]
        runs += [r for r in found.check or found.runs if r.usable]
    confirm = path.with_name(path.name + "-confirm")
    if not path.suffix and confirm.is_dir():
        found = load_studies(confirm)[0]
        runs += found.usable(baseline_levels(found))
    return runs


def baseline_levels(study: Study) -> dict[str, str]:
    """The baseline's levels, or a design's reference configuration (every factor low)."""
    return study.baseline or study.kind.reference()


def budget_rows(path: Path, study: Study, minutes: float, default_jobs: int) -> list[dict]:
    """The baseline network at each budget its folders hold: seeds, accuracy, seed sd with its
    95% interval, seconds per run and the half-width they give in `minutes`."""
    found = baseline_runs(path, study)
    jobs = jobs_at_a_time(found) or default_jobs
    width = [flatten(r.config).get("model.width_mult") for r in found]
    runs = frame(found).assign(width=[f"{w:g}" if w is not None else "-" for w in width])
    out = []
    for (images, epochs, w), part in runs.groupby(["train_images", "epochs", "width"]):
        acc = 100 * part["final_test_acc"].astype(float)
        n = len(acc)
        sd = acc.std(ddof=1) if n > 1 else math.nan
        low, high = (
            (sd * math.sqrt((n - 1) / stats.chi2.ppf(q, n - 1)) for q in (0.975, 0.025))
            if n > 1
            else (math.nan, math.nan)
        )
        seconds = part["wall_seconds"].astype(float).mean()
        runs_in_time, half = half_width(sd, seconds, jobs, minutes)
        out.append(
            {
                "study": study.name,
                "images": f"{int(images):,}",
                "epochs": int(epochs),
                "width": w,
                "seeds": n,
                "acc (%)": round(acc.mean(), 2),
                "seed sd (points)": round(sd, 2),
                "sd 95% CI": f"{low:.2f} to {high:.2f}",
                "s per run": round(seconds, 1),
                f"runs in {minutes:g} min": runs_in_time,
                "95% half-width (points)": round(half, 2),
                "_acc": acc.reset_index(drop=True),  # for the test of equal sds, not shown
                "_jobs": jobs,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="+", type=Path, help="sweep folders or runs.csv files")
    parser.add_argument("--minutes", type=float, default=30.0, help="the time a study may take")
    parser.add_argument(
        "--jobs", type=int, default=2, help="runs at a time, for a runs.csv (a folder says)"
    )
    args = parser.parse_args()
    rows = [
        row(path, study, args.minutes, args.jobs)
        for path in args.studies
        for study in load_studies(path)
        if study.runs
    ]
    print(f"{args.minutes:g} minutes a study; half-widths are one effect's, not family-wise")
    print(pd.DataFrame(rows).to_markdown(index=False))
    network = [
        line
        for path in args.studies
        if not path.suffix
        for study in load_studies(path)
        if study.runs
        for line in budget_rows(path, study, args.minutes, args.jobs)
    ]
    if network:
        print("\nThe baseline network at each budget (its own seeds only)")
        shown = [{k: v for k, v in line.items() if not k.startswith("_")} for line in network]
        print(pd.DataFrame(shown).to_markdown(index=False))
        print(same_noise(network, args.minutes))


def same_noise(network: list[dict], minutes: float) -> str:
    """Whether the budgets' seed sds differ (Bartlett's test), and, where they need not, the
    half-width each budget would give at their pooled sd: then seconds per run alone rank them."""
    groups_ = [line["_acc"] for line in network if len(line["_acc"]) > 1]
    if len(groups_) < 2:
        return ""
    p = stats.bartlett(*groups_).pvalue
    df = sum(len(g) - 1 for g in groups_)
    pooled = math.sqrt(sum((len(g) - 1) * g.var(ddof=1) for g in groups_) / df)
    ranks = ", ".join(
        f"{line['images']} x {line['epochs']} at width {line['width']} ({line['study']}): "
        f"{half_width(pooled, line['s per run'], line['_jobs'], minutes)[1]:.2f}"
        for line in sorted(network, key=lambda line: line["s per run"])
    )
    verdict = "differ" if p < 0.05 else "do not differ detectably"
    return (
        f"\nBartlett's test: the budgets' seed sds {verdict} (p = {p:.3f}); pooled, "
        f"{pooled:.2f} points with {df} df. At the pooled sd, the 95% half-width in "
        f"{minutes:g} min: {ranks}."
    )


if __name__ == "__main__":
    main()
