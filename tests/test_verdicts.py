"""Verdicts a statistician would sign: each number checked against SciPy called directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, run_cli
from scipy import stats as scipy_stats

from cnnexp import stats
from cnnexp.report import main as report_main
from cnnexp.report.runs import Study, answers, chance_reason, load_study, summarise


def study(groups: dict[str, list[float]], statuses: dict[tuple[str, int], str] | None = None,
          losses: dict[tuple[str, int], float] | None = None) -> Study:  # fmt: skip
    """A table of runs of one factor `arch` with `baseline` as its baseline level."""
    rows = []
    for level, values in groups.items():
        for seed, acc in enumerate(values):
            rows.append({"arch": level, "seed": seed, "final_test_acc": acc,
                         "status": (statuses or {}).get((level, seed), "completed"),
                         "final_train_loss": (losses or {}).get((level, seed), 0.1),
                         "train_seconds": 1.0, "images_per_second": 1.0, "parameters": 1,
                         "macs": 1, "error": None})  # fmt: skip
    return Study("architecture", Path("."), pd.DataFrame(rows), ["arch"], {"arch": "baseline"})


def planted(mean: float, std: float, n: int, seed: int) -> list[float]:
    """n values with exactly this mean and sample std."""
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    return (mean + std * z).tolist()


def row(summary: pd.DataFrame, level: str) -> pd.Series:
    return summary[summary["arch"] == level].iloc[0]


def test_planted_one_point_gap_with_five_seeds_is_better_with_scipys_p():
    base, better = planted(0.90, 0.001, 5, 0), planted(0.91, 0.001, 5, 1)
    summary = summarise(study({"baseline": base, "wider": better}))
    wider = row(summary, "wider")
    expected = scipy_stats.ttest_ind(better, base, equal_var=False)
    assert wider["verdict"] == "better"
    assert wider["p"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert wider["t"] == pytest.approx(expected.statistic, rel=1e-9)
    assert wider["diff"] == pytest.approx(0.01, abs=1e-12)
    ci = expected.confidence_interval(0.95)
    assert (wider["ci_low"], wider["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert wider["median"] == pytest.approx(np.median(better))
    assert wider["values"] == better  # every seed's value is kept beside the mean


def test_t_of_minus_two_with_three_seeds_a_side_is_no_clear_difference():
    se = 0.005 * np.sqrt(2 / 3)  # of the difference, each group's std being 0.005
    base, worse = planted(0.977, 0.005, 3, 0), planted(0.977 - 2 * se, 0.005, 3, 1)  # t = -2
    summary = summarise(study({"baseline": base, "narrow": worse}))
    narrow = row(summary, "narrow")
    assert narrow["t"] == pytest.approx(-2.0)
    assert narrow["p"] == pytest.approx(scipy_stats.ttest_ind(worse, base, equal_var=False).pvalue)
    assert narrow["verdict"] == "no clear difference"
    detectable = scipy_stats.t.ppf(0.975, narrow["df"]) + scipy_stats.t.ppf(0.8, narrow["df"])
    assert narrow["detectable"] == pytest.approx(detectable * narrow["se"])
    (line,) = answers(study({"baseline": base, "narrow": worse}), summary)
    assert "no clear difference" in line and "could only have detected" in line


def test_holm_over_fifteen_comparisons_matches_the_textbook_procedure():
    p = np.random.default_rng(3).uniform(0, 0.02, 15)
    order = np.argsort(p)
    expected = np.empty(15)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (15 - k) * p[i]))
        expected[i] = running
    assert stats.adjust(p.tolist(), "holm") == pytest.approx(expected.tolist())
    assert stats.adjust(p.tolist(), "bonferroni") == pytest.approx(np.minimum(1, 15 * p))
    # In a study the correction turns an uncorrected p of 0.02 into no verdict.
    groups = {"baseline": planted(0.90, 0.002, 3, 0)}
    for i in range(15):
        groups[f"v{i}"] = planted(0.90 + (0.0065 if i == 0 else 0.0), 0.002, 3, i + 1)
    summary = summarise(study(groups))
    first = row(summary, "v0")
    assert first["p"] < 0.05 and first["p_adjusted"] == pytest.approx(min(1, 15 * first["p"]))
    assert first["verdict"] == "no clear difference"
    assert summarise(study(groups), correction="none").pipe(row, "v0")["verdict"] == "better"


def test_one_seed_gives_no_verdict():
    summary = summarise(study({"baseline": [0.9, 0.91, 0.92], "lonely": [0.99]}))
    lonely = row(summary, "lonely")
    assert lonely["verdict"] == "too few seeds for a verdict"
    assert np.isnan(lonely["p"]) and np.isnan(lonely["std"])


def test_chance_level_runs_are_flagged_and_kept_out_of_the_means():
    mnist_test = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    metrics = {"final_test_acc": 0.1135, "final_train_loss": 2.301,
               "test_class_counts": mnist_test}  # fmt: skip
    assert "chance" in chance_reason(metrics)  # 11.35% is answering "1" every time
    assert "ln(10)" in chance_reason({**metrics, "final_test_acc": 0.3, "final_train_loss": 2.29})
    assert chance_reason({**metrics, "final_test_acc": 0.97, "final_train_loss": 0.1}) is None

    statuses = {("sigmoid", s): "did_not_train" for s in range(3)}
    losses = {("sigmoid", s): 2.303 for s in range(3)}
    s = study({"baseline": [0.97, 0.975, 0.98], "sigmoid": [0.1135, 0.101, 0.1135]}, statuses,
              losses)  # fmt: skip
    s.runs.loc[s.runs["status"] == "did_not_train", "error"] = "test accuracy is chance"
    summary = summarise(s)
    sigmoid = row(summary, "sigmoid")
    assert sigmoid["verdict"] == "did not train" and sigmoid["n"] == 0
    assert sigmoid["did not train"] == 3 and np.isnan(sigmoid["mean"])
    (line,) = answers(s, summary)
    assert "did not train under this recipe" in line and "2.303" in line
    assert "worse —" not in line and "points below" not in line


def test_diverged_run_is_counted_not_averaged():
    statuses = {("high_lr", 2): "diverged"}
    s = study({"baseline": [0.97, 0.975, 0.98], "high_lr": [0.96, 0.965, 0.10]}, statuses)
    high = row(summarise(s), "high_lr")
    assert (high["runs"], high["n"], high["diverged"]) == (3, 2, 1)
    assert high["mean"] == pytest.approx(0.9625)
    (line,) = [x for x in answers(s, summarise(s)) if x.startswith("arch=high_lr")]
    assert "mean of 2 of 3 runs (1 diverged)" in line


def test_an_arm_that_cannot_train_is_reported_as_not_trained(tmp_path):
    """A real sweep: one arm at a learning rate of 1e-7 stays at chance."""
    root = tmp_path / "sweep"
    result = run_cli("-m", "data=synthetic", "data.synthetic.train_size=1024", "epochs=2",
                     "data.synthetic.noise=1.0",
                     "device=cpu", "progress=false", "tracking.images_every=0",
                     "tracking.graph=false", "optimizer.lr=0.05,1e-7", "seed=0,1",
                     "+study.baseline.optimizer.lr=0.05", f"hydra.sweep.dir={root}",
                     cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    runs = load_study(root).runs
    lr = runs["optimizer.lr"].astype(float)
    assert set(runs.loc[lr == 1e-7, "status"]) == {"did_not_train"}
    assert set(runs.loc[lr == 0.05, "status"]) == {"completed"}
    assert report_main([str(root)]) == 0
    md = (root / "report" / "report.md").read_text()
    answer = next(x for x in md.splitlines() if x.startswith("- optimizer.lr=1e-07"))
    assert "did not train under this recipe" in answer
    assert ": did not train under this recipe" in answer
    assert "worse —" not in answer and "points below" not in answer
    assert "### Recipe and budget" in md and "optimizer steps" in md
