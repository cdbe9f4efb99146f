"""benchmarks/budgets.py on a constructed study: one network at two budgets, with planted noise."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import statsmodels.formula.api as smf

from cnnexp.report.runs import USABLE, Study, runs_of

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "budgets.py"
spec = importlib.util.spec_from_file_location("budgets", SCRIPT)
budgets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(budgets)


def constructed_study() -> Study:
    """The baseline (pool=max) at 6 and 12 epochs, 6 seeds each, the 12-epoch runs twice as
    slow and twice as noisy; an avg arm that the budget table must leave out."""
    rng = np.random.default_rng(0)
    rows = []
    for epochs, sd, seconds in ((6, 0.4, 100.0), (12, 0.8, 200.0)):
        for seed, noise in enumerate(rng.normal(0, sd, 6)):
            for pool, shift in (("max", 0.0), ("avg", 5.0)):
                rows.append(
                    {
                        "pool": pool,
                        "seed": seed,
                        "epochs": epochs,
                        "train_images": 25000,
                        "status": USABLE,
                        "final_test_acc": (70 + epochs / 3 + shift + noise) / 100,
                        "wall_seconds": seconds,
                        "config": {"model": {"width_mult": 0.5}},
                    }
                )
    return Study("pooling", Path("constructed.csv"), runs_of(rows), ["pool"], {"pool": "max"})


def test_budget_table_follows_the_baseline_only_and_matches_its_seeds():
    study = constructed_study()
    lines = budgets.budget_rows(Path("constructed.csv"), study, minutes=30, default_jobs=2)
    assert [(line["epochs"], line["seeds"]) for line in lines] == [(6, 6), (12, 6)]
    baseline = study.table[study.table["pool"] == "max"]
    for line in lines:
        acc = 100 * baseline.loc[baseline["epochs"] == line["epochs"], "final_test_acc"]
        assert line["acc (%)"] == round(acc.mean(), 2)
        assert line["seed sd (points)"] == round(acc.std(ddof=1), 2)
        low, high = (float(x) for x in line["sd 95% CI"].split(" to "))
        assert low < acc.std(ddof=1) < high
        runs = int(30 * 60 * 2 / line["s per run"])  # two at a time
        assert line["runs in 30 min"] == runs
        assert math.isclose(
            line["95% half-width (points)"],
            round(1.959964 * 2 * acc.std(ddof=1) / math.sqrt(runs), 2),
            abs_tol=0.006,
        )


def test_pooled_sd_across_budgets_is_statsmodels_residual_sd():
    study = constructed_study()
    lines = budgets.budget_rows(Path("constructed.csv"), study, minutes=30, default_jobs=2)
    text = budgets.same_noise(lines, minutes=30)
    baseline = study.table[study.table["pool"] == "max"].assign(
        acc=lambda f: 100 * f["final_test_acc"].astype(float)
    )
    fit = smf.ols("acc ~ C(epochs)", data=baseline).fit()
    assert f"pooled, {math.sqrt(fit.scale):.2f} points with {int(fit.df_resid)} df" in text
    # the cheaper budget comes first, with the smaller half-width at the common sd
    assert text.index("x 6 at width 0.5") < text.index("x 12 at width 0.5")
