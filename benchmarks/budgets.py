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

    python benchmarks/budgets.py multirun/docs/factorial-cifar10 \
        multirun/docs/architecture-cifar10 multirun/docs/pooling-cifar10 \
        docs/architecture-cifar10/runs.csv
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
from scipy import stats

from cnnexp.report.runs import (
    USABLE,
    Study,
    flatten,
    groups,
    jobs_at_a_time,
    load_studies,
    matching,
    reference_levels,
)
from cnnexp.stats import pooled_fit

Z = stats.norm.isf(0.025)  # a two-sided 95% interval with many residual degrees of freedom


def seed_sd(study: Study) -> tuple[float, int]:
    """The pooled within-configuration standard deviation of test accuracy, in points, and its
    degrees of freedom (the report's OLS of accuracy on the configuration)."""
    by_config = {
        str(levels): 100 * part.loc[part["status"] == USABLE, "final_test_acc"].astype(float)
        for levels, part in groups(study)
    }
    sd, df = pooled_fit(by_config)
    return sd, int(df)


def budget_of(study: Study) -> dict[str, object]:
    """What the study trained: images, epochs and widths, from its runs' records and configs."""
    configs = [flatten(c) for c in study.runs["config"] if c]
    widths = sorted({c.get("model.width_mult") for c in configs} - {None})
    return {
        "images": _one(study.runs["train_images"]),
        "epochs": _one(study.runs["epochs"]),
        "widths": "/".join(f"{w:g}" for w in widths) or "-",
    }


def _one(column: pd.Series) -> str:
    values = sorted({int(v) for v in column.dropna()})
    return "/".join(f"{v:,}" for v in values)


def baseline_acc(study: Study, usable: pd.DataFrame) -> float:
    """The mean test accuracy (%) of the baseline, or of a design's reference configuration."""
    declared = next((c.get("study") or {} for c in study.runs["config"] if c), {})
    levels = study.baseline or reference_levels(declared)
    return 100 * usable.loc[matching(usable, levels), "final_test_acc"].astype(float).mean()


def check_gain(path: Path, baseline: float) -> float:
    """What the baseline gains at twice the epochs (points): the budget check in the folder
    beside the study's (`<folder>-check`, as docs/make.sh names it), where there is one."""
    check = path.with_name(path.name + "-check")
    if path.suffix or not check.is_dir():
        return math.nan
    runs = load_studies(check)[0]
    runs = runs.check if runs.check is not None else runs.runs
    done = runs[runs["status"] == USABLE]
    return 100 * done["final_test_acc"].astype(float).mean() - baseline


def row(path: Path, study: Study, minutes: float, default_jobs: int) -> dict[str, object]:
    """One study's budget, noise, cost and the half-width they give in `minutes`."""
    sd, df = seed_sd(study)
    usable = study.runs[study.runs["status"] == USABLE]
    baseline = baseline_acc(study, usable)
    seconds = usable["wall_seconds"].astype(float).mean()
    jobs = jobs_at_a_time(study.runs) or default_jobs
    runs_in_time = int(minutes * 60 * jobs / seconds) if seconds > 0 else 0
    half = Z * 2 * sd / math.sqrt(runs_in_time) if runs_in_time else math.nan
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
        if not study.runs.empty
    ]
    print(f"{args.minutes:g} minutes a study; half-widths are one effect's, not family-wise")
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
