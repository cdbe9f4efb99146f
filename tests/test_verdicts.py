"""Verdicts a statistician would sign: each number checked against SciPy and statsmodels called
directly, on constructed run tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from conftest import REPO, run_cli
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from cnnexp import stats
from cnnexp.report import main as report_main
from cnnexp.report.answers import answers, method_sentence
from cnnexp.report.runs import Study, load_study, runs_of
from cnnexp.report.verdicts import (
    DECIDED,
    TOO_FEW,
    UNCLEAR,
    WORSE,
    Verdict,
    as_decided,
    summarise,
    within_run_pairs,
)
from cnnexp.schema import chance_reason


def study(
    groups: dict[str, list[float]],
    statuses: dict[tuple[str, int], str] | None = None,
    losses: dict[tuple[str, int], float] | None = None,
    extra: dict[tuple[str, int], dict] | None = None,
) -> Study:
    """A table of runs of one factor `arch` with `baseline` as its baseline level. Each run's
    final training loss differs (as different networks' do) unless `losses` says otherwise."""
    rows = []
    for a, (level, values) in enumerate(groups.items()):
        for seed, acc in enumerate(values):
            key = (level, seed)
            rows.append({"arch": level, "seed": seed, "final_test_acc": acc,
                         "status": (statuses or {}).get(key, "completed"),
                         "final_train_loss": (losses or {}).get(key, 0.5 + 0.01 * a + 0.001 * seed),
                         "train_seconds": 10.0, "wall_seconds": 12.0, "images_per_second": 1.0,
                         "parameters": 1, "macs": 1, "error": None,
                         **(extra or {}).get(key, {})})  # fmt: skip
    return Study("architecture", Path("."), runs_of(rows), ["arch"], {"arch": "baseline"})


def planted(mean: float, std: float, n: int, seed: int) -> list[float]:
    """n values with exactly this mean and sample std."""
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    return (mean + std * z).tolist()


def row(summary: pd.DataFrame, level: str) -> pd.Series:
    return summary[summary["arch"] == level].iloc[0]


def test_each_arm_is_welchs_test_with_bonferroni_intervals_over_the_family():
    rng = np.random.default_rng(0)
    groups = {"baseline": (0.60 + 0.01 * rng.standard_normal(4)).tolist()}
    for i, shift in enumerate([0.0, 0.02, -0.03, 0.005]):
        groups[f"v{i}"] = (0.60 + shift + 0.01 * rng.standard_normal(4)).tolist()
    verdicts = summarise(study(groups))
    summary = verdicts.table
    arms = [k for k in groups if k != "baseline"]
    m = len(arms)
    for arm in arms:
        expected = scipy_stats.ttest_ind(groups[arm], groups["baseline"], equal_var=False)
        interval = expected.confidence_interval(1 - 0.05 / m)
        r = row(summary, arm)
        assert (r["test"], r["correction"]) == ("welch", "bonferroni")
        assert r["p"] == pytest.approx(expected.pvalue, rel=1e-9)
        assert r["p_adjusted"] == pytest.approx(min(1, m * expected.pvalue), rel=1e-9)
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((interval.low, interval.high))
        assert r["level"] == pytest.approx(0.05 / m)
        assert r["diff"] == pytest.approx(np.mean(groups[arm]) - np.mean(groups["baseline"]))
    assert row(summary, "v2")["verdict"] == WORSE  # -3 points against a noise of 1
    (family,) = verdicts.families
    said = method_sentence(study(groups), family, 0.05)
    assert "Welch's test" in said and "Bonferroni" in said and "simultaneous 95%" in said
    # The noise is described (Bartlett, the pooled standard deviation of statsmodels' OLS) for
    # the planner, never to choose a test.
    frame = pd.DataFrame([{"arm": k, "y": y} for k, vs in groups.items() for y in vs])
    ols = smf.ols("y ~ C(arm)", frame).fit()
    assert family.variances.pooled and family.variances.df == ols.df_resid == 15
    assert family.variances.sigma == pytest.approx(math.sqrt(ols.mse_resid), rel=1e-12)
    assert family.variances.bartlett_p == pytest.approx(
        scipy_stats.bartlett(*groups.values()).pvalue
    )


def test_each_arm_is_typed_with_its_levels_values_comparison_verdict_and_budget():
    groups = {"baseline": planted(0.90, 0.004, 4, 0), "wide": planted(0.95, 0.004, 4, 1)}
    groups["same_ish"] = planted(0.9005, 0.004, 4, 2)
    s = study(groups, extra={(k, i): {"epochs": 4} for k in groups for i in range(4)})
    verdicts = summarise(s)
    wide, other = verdicts.compared
    assert wide.levels == {"arch": "wide"} and wide.label == "arch=wide"
    assert wide.verdict is Verdict.BETTER and wide.words == "better"
    assert wide.values == pytest.approx(groups["wide"]) and (wide.n, wide.runs) == (4, 4)
    assert wide.comparison.diff == pytest.approx(0.05) and wide.comparison.test == "welch"
    assert wide.epochs == "4" and wide.decided_at is None and wide.left_out == {}
    assert other.verdict is Verdict.UNCLEAR and other.comparison.ci_low < 0
    control = verdicts.control_of(wide)
    assert control.levels == {"arch": "baseline"} and control.verdict is None
    assert control.mean == pytest.approx(0.90)
    assert [a.label for a in verdicts.arms] == ["arch=baseline", "arch=wide", "arch=same_ish"]


def test_an_arm_a_deciding_sweep_left_open_says_so_and_not_a_planned_power():
    groups = {"baseline": planted(0.90, 0.004, 3, 0), "wide": planted(0.901, 0.004, 3, 1)}
    s = study(groups)
    record = {"margin_points": 0.2, "arms": {"wide": {
        "overrides": ["arch=wide"], "verdict": "open", "seeds": 3, "look": 4, "diff": 0.001,
        "ci_low": -0.01, "ci_high": 0.012, "level": 0.01, "df": 4.0}}}  # fmt: skip
    verdicts = as_decided(summarise(s), record)
    (arm,) = verdicts.compared
    assert arm.verdict is Verdict.UNCLEAR and arm.decided_at == "3 seeds, look 4"
    (line,) = answers(s, verdicts)
    assert "still open at the sweep's cap" in line and "nan" not in line


def test_two_arms_with_identical_runs_are_never_called():
    base = planted(0.90, 0.004, 3, 0)
    groups = {"baseline": base, "same": list(base), "other": planted(0.90, 0.004, 3, 1)}
    for method in stats.METHODS:
        summary = summarise(study(groups), method=method).table
        same = row(summary, "same")
        assert same["diff"] == 0 and same["verdict"] == UNCLEAR, method
        assert same["ci_low"] < 0 < same["ci_high"]


@pytest.mark.parametrize("method", stats.METHODS)
def test_an_interval_excludes_zero_exactly_when_the_verdict_says_better_or_worse(method):
    rng = np.random.default_rng(1)
    seen = set()
    for trial in range(12):
        groups = {"baseline": (0.7 + 0.01 * rng.standard_normal(3)).tolist()}
        for i in range(5):
            shift = rng.choice([0.0, 0.01, 0.02, -0.025])
            groups[f"v{i}"] = (0.7 + shift + 0.01 * rng.standard_normal(3)).tolist()
        summary = summarise(study(groups), method=method).table
        arms = summary[summary["arch"] != "baseline"]
        for _, r in arms.iterrows():
            excludes = r["ci_low"] > 0 or r["ci_high"] < 0
            assert excludes == (r["verdict"] in DECIDED), (trial, r.to_dict())
            assert excludes == (r["p_adjusted"] < 0.05), (trial, r.to_dict())
            seen.add(r["verdict"])
    assert {UNCLEAR} < seen  # both kinds of verdict were met


def test_holm_intervals_are_at_the_level_of_the_step_that_decided():
    groups = {"baseline": planted(0.90, 0.002, 3, 0)}
    for i, gap in enumerate([0.02, 0.01, 0.004, 0.0]):
        groups[f"v{i}"] = planted(0.90 + gap, 0.002, 3, i + 1)
    summary = summarise(study(groups), method="holm").table
    tested = summary[summary["arch"] != "baseline"].sort_values("p")
    levels = tested["level"].tolist()
    m = len(tested)
    decided = tested["verdict"].isin(DECIDED).tolist()
    first_not = decided.index(False)
    assert levels[:first_not] == pytest.approx([0.05 / (m - k) for k in range(first_not)])
    assert levels[first_not:] == pytest.approx([0.05 / (m - first_not)] * (m - first_not))
    holm = multipletests(tested["p"], method="holm")[1]
    assert tested["p_adjusted"].tolist() == pytest.approx(holm.tolist())


def test_unequal_variances_change_no_test_and_the_report_says_the_spread_differs():
    groups = {"baseline": planted(0.60, 0.01, 4, 0), "calm": planted(0.61, 0.01, 4, 1),
              "wild": planted(0.55, 0.08, 4, 2)}  # fmt: skip
    s = study(groups)
    verdicts = summarise(s)
    summary = verdicts.table
    (family,) = verdicts.families
    assert family.variances.bartlett_all_p < 0.05
    assert set(summary["test"].dropna()) == {"welch"}  # no preliminary test picks the test
    expected = scipy_stats.ttest_ind(groups["wild"], groups["baseline"], equal_var=False)
    assert row(summary, "wild")["p"] == pytest.approx(expected.pvalue)
    said = method_sentence(s, family, 0.05)
    assert "the seeds' spread differs between arms" in said and "Welch" in said


def test_an_arm_that_trained_the_baselines_networks_is_compared_in_pairs():
    base = [0.640, 0.650, 0.655]
    flip_off = [0.632, 0.641, 0.648]  # the same networks, tested without the flip
    losses = {(lvl, s): 1.5 + 0.01 * s for lvl in ("baseline", "test_flip-off") for s in range(3)}
    s = study({"baseline": base, "test_flip-off": flip_off, "other": [0.6, 0.61, 0.62]},
              losses=losses)  # fmt: skip
    verdicts = summarise(s)
    summary = verdicts.table
    paired = row(summary, "test_flip-off")
    expected = scipy_stats.ttest_rel(flip_off, base)
    assert paired["test"] == "paired t"
    assert paired["p"] == pytest.approx(expected.pvalue)
    # One of the family's two comparisons: its interval and p at the family's Bonferroni share.
    ci = expected.confidence_interval(1 - 0.05 / 2)
    assert (paired["ci_low"], paired["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert paired["p_adjusted"] == pytest.approx(2 * expected.pvalue)
    assert paired["verdict"] == WORSE  # -0.8 points on every pair: the pairing decides
    assert row(summary, "other")["test"] == "welch"
    (family,) = verdicts.families
    assert family.paired == ("arch=test_flip-off",)


def test_a_within_run_tta_pair_is_tested_paired():
    with_tta = [0.9105, 0.9120, 0.9098, 0.9131]
    without = [0.9030, 0.9052, 0.9011, 0.9060]
    extra = {("baseline", i): {"final_test_acc_without_tta": v} for i, v in enumerate(without)}
    s = study({"baseline": with_tta, "other": [0.9, 0.91, 0.905, 0.9]}, extra=extra)
    (pair,) = within_run_pairs(s)
    expected = scipy_stats.ttest_rel(with_tta, without)
    assert pair.option == "tta" and pair.n == 4 and pair.where == "arch=baseline"
    assert pair.comparison.p == pytest.approx(expected.pvalue)
    assert pair.comparison.t == pytest.approx(expected.statistic)
    assert pair.comparison.diff == pytest.approx(np.mean(with_tta) - np.mean(without))


@pytest.mark.slow  # 300 simulated studies, 30 s
def test_the_detectable_difference_is_found_80_percent_of_the_time():
    """Over simulated studies with a true gap of the stated size, Welch's test at the family's
    Bonferroni level finds it 80% +- 6% with 5 seeds. (Its degrees of freedom are estimated,
    which costs power with fewer seeds: with 3 it finds such a gap about 62% of the time.)"""
    sigma, n, arms = 0.01, 5, 4
    rng = np.random.default_rng(7)

    def simulated(gap: float) -> dict[str, list[float]]:
        groups = {"control": (sigma * rng.standard_normal(n)).tolist()}
        for i in range(arms):
            groups[f"a{i}"] = ((gap if i == 0 else 0.0) + sigma * rng.standard_normal(n)).tolist()
        return groups

    gap = stats.detectable(sigma * math.sqrt(2 / n), 2 * (n - 1), 0.05 / arms)
    hits = [stats.against_control(simulated(gap), "control")["a0"].differs for _ in range(300)]
    assert np.mean(hits) == pytest.approx(0.8, abs=0.06)


def test_the_planner_asks_for_the_seeds_that_reach_the_target():
    sigma, level = 0.01, 0.005
    n = stats.seeds_needed(sigma, 0.01, level)
    assert stats.detectable(sigma * math.sqrt(2 / n), 2 * (n - 1), level) <= 0.01
    assert stats.detectable(sigma * math.sqrt(2 / (n - 1)), 2 * (n - 2), level) > 0.01
    assert stats.seeds_needed(sigma, 0.005, level) > n


def test_one_seed_has_no_variance_of_its_own_so_no_verdict():
    summary = summarise(study({"baseline": [0.9, 0.91, 0.92], "b": [0.905, 0.91, 0.915],
                               "lonely": [0.99]})).table  # fmt: skip
    assert row(summary, "lonely")["verdict"] == TOO_FEW
    assert row(summary, "b")["test"] == "welch"


def test_chance_level_runs_are_flagged_and_kept_out_of_the_means():
    mnist_test = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    metrics = {"final_test_acc": 0.1135, "final_train_loss": 2.301,
               "test_class_counts": mnist_test}  # fmt: skip
    assert "chance" in chance_reason(metrics)  # 11.35% is answering "1" every time
    assert "ln(10)" in chance_reason({**metrics, "final_test_acc": 0.3, "final_train_loss": 2.29})
    assert chance_reason({**metrics, "final_test_acc": 0.97, "final_train_loss": 0.1}) is None

    statuses = {("sigmoid", s): "did_not_train" for s in range(3)}
    losses = {("sigmoid", s): 2.303 for s in range(3)}
    chance = {("sigmoid", s): {"error": "test accuracy is chance"} for s in range(3)}
    s = study({"baseline": [0.97, 0.975, 0.98], "sigmoid": [0.1135, 0.101, 0.1135]}, statuses,
              losses, chance)  # fmt: skip
    verdicts = summarise(s)
    summary = verdicts.table
    sigmoid = row(summary, "sigmoid")
    assert sigmoid["verdict"] == "did not train" and sigmoid["n"] == 0
    assert sigmoid["did not train"] == 3 and np.isnan(sigmoid["mean"])
    (line,) = answers(s, verdicts)
    assert "did not train under this recipe" in line and "2.303" in line
    assert "worse —" not in line and "points below" not in line


def test_diverged_run_is_counted_not_averaged():
    statuses = {("high_lr", 2): "diverged"}
    s = study({"baseline": [0.97, 0.975, 0.98], "high_lr": [0.96, 0.965, 0.10]}, statuses)
    high = row(summarise(s).table, "high_lr")
    assert (high["runs"], high["n"], high["diverged"]) == (3, 2, 1)
    assert high["mean"] == pytest.approx(0.9625)
    (line,) = [x for x in answers(s, summarise(s)) if x.startswith("arch=high_lr")]
    assert "mean of 2 of 3 runs (1 diverged)" in line


def test_no_clear_difference_says_what_the_runs_could_have_found():
    s = study({"baseline": planted(0.9, 0.005, 3, 0), "narrow": planted(0.897, 0.005, 3, 1)})
    verdicts = summarise(s)
    summary = verdicts.table
    narrow = row(summary, "narrow")
    assert narrow["verdict"] == UNCLEAR
    assert narrow["detectable"] == pytest.approx(
        stats.detectable(narrow["se"], narrow["df"], narrow["level"])
    )
    (line,) = answers(s, verdicts)
    assert "would be found 80% of the time" in line and "could not have" not in line


@pytest.mark.slow  # a sweep of its own, 26 s
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
    runs = load_study(root).table
    lr = runs["optimizer.lr"].astype(float)
    assert set(runs.loc[lr == 1e-7, "status"]) == {"did_not_train"}
    assert set(runs.loc[lr == 0.05, "status"]) == {"completed"}
    assert report_main([str(root)]) == 0
    md = (root / "report" / "report.md").read_text()
    answer = next(x for x in md.splitlines() if x.startswith("- optimizer.lr=1e-07"))
    assert ": did not train under this recipe" in answer
    assert "worse —" not in answer and "points below" not in answer
    assert "### Recipe and budget" in md and "optimizer steps" in md
    assert "Convergence not checked" in md and "converged at this budget" not in md
    # The report's runs.csv makes the same report again, without the run folders.
    assert report_main([str(root / "report" / "runs.csv"), "--out", str(tmp_path / "again")]) == 0
    again = (tmp_path / "again" / "report.md").read_text()
    assert answer in again and "optimizer steps" in again


@pytest.mark.parametrize("order", [("base", "arm"), ("arm", "base")])
def test_two_arms_of_unequal_variance_are_both_compared_by_welch(order):
    from cnnexp.stats import check_variances

    values = {"base": [0.9816, 0.9817, 0.9846, 0.9828, 0.9847],
              "arm": [0.9712, 0.9869, 0.9888, 0.9889, 0.9861]}  # fmt: skip
    v = check_variances({k: values[k] for k in order}, control="base")
    # Bartlett rejects, but which of two is "out of line" no test can say: nothing is pooled.
    assert v.bartlett_all_p < 0.05
    assert not v.pooled and v.left_out == ()


def test_groups_without_a_baseline_get_the_pooled_interval_where_their_variances_agree(tmp_path):
    from cnnexp.report.section import accuracy_figures

    agree = {"a": planted(0.60, 0.010, 2, 0), "b": planted(0.65, 0.012, 2, 1),
             "c": planted(0.70, 0.009, 2, 2)}  # fmt: skip
    s = study(agree)
    s.baseline = {}
    ((path, caption),) = accuracy_figures(s, summarise(s).table, tmp_path, "t")
    sigma, df = stats.pooled_fit(agree)
    assert path.exists()
    assert f"from the pooled standard deviation ({100 * sigma:.2f} points, {df:.0f} df)" in caption
    # Two groups whose spreads differ a hundredfold: Bartlett's test rejects, nothing is pooled.
    differ = {"a": planted(0.60, 0.0001, 6, 3), "b": planted(0.65, 0.05, 6, 4)}
    s = study(differ)
    s.baseline = {}
    ((_, caption),) = accuracy_figures(s, summarise(s).table, tmp_path, "u")
    assert caption.endswith("from its own seeds")


def test_a_study_states_what_its_runs_took_against_what_its_budget_allows():
    from cnnexp.report.recipe import time_taken

    slow = {
        (level, seed): {"wall_seconds": 300.0} for level in ("baseline", "v") for seed in range(4)
    }
    s = study({"baseline": [0.60, 0.61, 0.62, 0.63], "v": [0.61, 0.62, 0.63, 0.64]}, extra=slow)
    assert time_taken(s, "cpu") == (
        "The 8 runs' times add up to 40.0 min, over the 30 minutes by 10.0 "
        "(without the launcher's start-up)."
    )
    assert time_taken(s, "gpu").startswith("The 8 runs' times add up to 40.0 min (")


def test_the_difference_of_two_estimates_is_welchs_test_of_them():
    """Two groups' means as estimates (mean, standard error, n - 1): their difference is the
    test SciPy's Welch test gives on the groups themselves."""
    a, b = planted(0.71, 0.01, 4, 0), planted(0.70, 0.02, 6, 1)
    estimate = [(np.mean(g), np.std(g, ddof=1) / math.sqrt(len(g)), len(g) - 1) for g in (a, b)]
    found = stats.difference(*estimate, 0.05)
    expected = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert found.p == pytest.approx(expected.pvalue)
    ci = expected.confidence_interval(0.95)
    assert (found.ci_low, found.ci_high) == pytest.approx((ci.low, ci.high))
