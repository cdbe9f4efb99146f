"""Factorial designs: the points, the alias structure, and effects found where they were planted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import REPO, run_cli, study_config

from cnnexp import design, studies
from cnnexp.errors import ConfigError
from cnnexp.report import main as report_main

FACTORS = ["kernel", "stride", "convs", "fc", "activation", "width", "pool"]


def test_seven_factors_in_sixteen_points_at_resolution_four():
    x = design.points(design.SEVEN_IN_SIXTEEN)
    assert x.shape == (16, 7)
    assert set(np.unique(x)) == {-1, 1}
    assert (x.sum(axis=0) == 0).all()  # balanced
    assert (x.T @ x == 16 * np.eye(7)).all()  # main effects orthogonal
    assert len({tuple(row) for row in x}) == 16
    assert design.resolution(design.SEVEN_IN_SIXTEEN) == 4
    # Each generated column is the product of its generator's columns: E = ABC.
    assert (x[:, 4] == x[:, 0] * x[:, 1] * x[:, 2]).all()


def test_alias_table_names_what_each_estimate_carries():
    chains = design.aliases(design.SEVEN_IN_SIXTEEN, FACTORS)
    # E = ABC: the activation's main effect carries kernel x stride x convs.
    assert "convs:kernel:stride" in {":".join(sorted(e.split(":"))) for e in chains["activation"]}
    # Resolution IV: no main effect carries a two-factor interaction ...
    assert all(e.count(":") >= 2 for name in FACTORS for e in chains[name])
    # ... and two-factor interactions are aliased with each other in chains of three.
    pairs = [e for e in chains["kernel:stride"] if e.count(":") == 1]
    assert len(pairs) == 2


def planted(seeds: int = 2, noise: float = 0.003, rng: int = 0) -> pd.DataFrame:
    """16 points x seeds runs: accuracy 0.70, +1 point for kernel's high level, +0.5 for the
    activation's, nothing for the others."""
    x = design.points(design.SEVEN_IN_SIXTEEN)
    rows = np.repeat(x, seeds, axis=0)
    gen = np.random.default_rng(rng)
    acc = 0.70 + 0.005 * rows[:, 0] + 0.0025 * rows[:, 4] + gen.normal(0, noise, len(rows))
    table = pd.DataFrame(rows, columns=FACTORS)
    table["final_test_acc"] = acc
    return table


def test_a_planted_effect_is_found_with_an_interval_that_covers_it():
    fitted = design.fit(planted(rng=1), FACTORS, "final_test_acc", design.SEVEN_IN_SIXTEEN)
    effects = {e.name: e for e in fitted.effects}
    kernel = effects["kernel"]
    assert kernel.differs and kernel.ci_low < 0.01 < kernel.ci_high
    assert kernel.estimate == pytest.approx(0.01, abs=0.003)
    assert effects["activation"].ci_low < 0.005 < effects["activation"].ci_high
    # Null factors are not called, and every main effect names its aliases.
    for name in ("stride", "convs", "fc", "width", "pool"):
        assert not effects[name].differs, effects[name]
    assert effects["activation"].aliases
    # 7 main effects and one interaction per two-factor chain: 15 terms on 32 runs.
    assert len(fitted.effects) == 14 and fitted.df == 32 - 15
    assert 0 <= fitted.normality_p <= 1


def test_estimates_equal_statsmodels_ols_called_directly():
    table = planted(rng=3)
    fitted = design.fit(
        table, FACTORS, "final_test_acc", design.SEVEN_IN_SIXTEEN, interactions=False
    )
    direct = sm.OLS(table["final_test_acc"], sm.add_constant(table[FACTORS].astype(float))).fit()
    for effect, name in zip(fitted.effects, FACTORS, strict=True):
        assert effect.estimate == pytest.approx(2 * direct.params[name], rel=1e-10)
        assert effect.se == pytest.approx(2 * direct.bse[name], rel=1e-10)
    assert fitted.sigma == pytest.approx(np.sqrt(direct.scale), rel=1e-10)
    # Šidák: an interval excludes zero exactly when the family-wise p is below the level.
    for effect in fitted.effects:
        assert effect.differs == (effect.p_adjusted < 0.05)


def test_null_factors_are_called_no_more_often_than_the_family_wise_level():
    called = 0
    for rng in range(100):
        fitted = design.fit(planted(rng=rng), FACTORS, "final_test_acc", design.SEVEN_IN_SIXTEEN)
        effects = {e.name: e for e in fitted.effects}
        called += any(effects[n].differs for n in ("stride", "convs", "fc", "width", "pool"))
    assert called / 100 <= 0.05 + 0.04  # the level, and room for 100 draws' noise


def test_with_too_few_runs_for_the_interactions_only_main_effects_are_fitted():
    """One seed of 16 points less two runs that did not train: 14 runs, 7 main effects."""
    table = planted(seeds=1).drop(index=[3, 9])
    fitted = design.fit(table, FACTORS, "final_test_acc", design.SEVEN_IN_SIXTEEN)
    assert [e.name for e in fitted.effects] == FACTORS and fitted.df == 14 - 8


def test_an_outlier_is_named():
    """A run 5 points off: named, with (at most) its replicate, whose residual mirrors it."""
    table = planted()
    table.loc[5, "final_test_acc"] += 0.05
    fitted = design.fit(table, FACTORS, "final_test_acc", design.SEVEN_IN_SIXTEEN)
    assert 5 in fitted.outliers and set(fitted.outliers) <= {4, 5}


@pytest.mark.slow  # 16 tiny runs and 2 of the budget check, about 60 s
def test_the_factorial_study_runs_its_design_and_reports_its_effects(tmp_path):
    root = tmp_path / "factorial"
    tiny = ["data=synthetic", "data.subset=null", "data.synthetic.train_size=512",
            "data.synthetic.test_size=128", "data.synthetic.noise=1.0", "batch_size=32",
            "device=cpu", "progress=false", "tracking.graph=false", "tracking.misclassified=0",
            "tracking.images_every=0", "tracking.monitor_interval=0"]  # fmt: skip
    result = run_cli("-m", "+experiment=factorial", *tiny, "epochs=2", "seed=0",
                     "study.check.seeds=[0,1]", f"hydra.sweep.dir={root}", cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(root.glob("*/metrics.json"))]
    assert len(records) == 16
    # The design's points and then its check, in the same sweep: the reference configuration
    # (every factor low) again at twice the epochs, in check/.
    assert "job 18 of 18: 17 finished" in result.stdout
    checked = [json.loads(p.read_text()) for p in sorted(root.glob("check/*/metrics.json"))]
    assert [r["epochs"] for r in checked] == [4, 4]
    keys = ["model.kernel_size", "model.stride", "model.convs_per_stage", "model.fc_layers",
            "activation", "model.width_mult", "pool"]  # fmt: skip
    points = {tuple(r["overrides"][k] for k in keys) for r in records}
    assert len(points) == 16  # every design point once, its levels typed in the record
    assert {r["overrides"]["model.kernel_size"] for r in records} == {3, 5}
    assert {r["overrides"]["model.width_mult"] for r in records} == {0.5, 1.0}
    assert report_main([str(root), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    # The reference configuration (every factor low) is checked at twice the epochs (with one
    # run at 2 epochs there is no gap to measure, but the check is read and counted).
    assert "The baseline (model.kernel_size=3, model.stride=1" in text
    assert "The budget check has 2 usable run(s) at 4 epochs" in text
    effects = text.split("### Effects of the factorial design")[1].split("\n#")[0]
    assert "resolution 4" in effects
    for name in ("kernel", "stride", "convs", "fc", "activation", "width", "pool"):
        assert f"| {name} " in effects
    assert "also carries" in effects and "Checks:" in effects
    assert "the intervals' half-widths are " in effects
    assert "Predicted best:" in effects
    if "Only runs confirm it" in effects:  # a high level helped: the command that confirms it
        assert "study=confirm +study.confirm." in effects


def test_a_design_with_too_few_factors_for_its_generators_is_refused():
    study = studies.Factorial(generators="a b ab", factors={"x": {"key": "k", "low": 1, "high": 2}})
    with pytest.raises(ConfigError, match="3 columns but study.factors names 1"):
        study.points()
    two = studies.Factorial(
        **{
            "generators": "a b",
            "factors": {
                "x": {"key": "model.stride", "low": 1, "high": 2},
                "y": {"key": "pool", "low": "max", "high": "avg"},
            },
        }
    )
    assert two.points() == [
        ["model.stride=1", "pool=max"],
        ["model.stride=1", "pool=avg"],
        ["model.stride=2", "pool=max"],
        ["model.stride=2", "pool=avg"],
    ]


@pytest.mark.parametrize(
    ("experiment", "budget"),
    [
        ("factorial", "cifar10_cpu"),
        ("factorial", "mnist_cpu"),
        ("factorial", "cifar10_gpu"),
        ("ablation_factorial", "cifar10_cpu"),
        ("ablation_factorial", "cifar10_gpu"),
    ],
)
def test_every_design_point_of_each_factorial_study_composes_and_builds(experiment, budget):
    """The design's corners and a middle point of each study compose, validate and build a
    network (the end-to-end test above runs all 16 of the CIFAR-10 study)."""
    from cnnexp.config import validate
    from cnnexp.models import build_model

    points = studies.of(study_config(experiment, budget).study).points()
    assert len(points) == 16 and len({tuple(p) for p in points}) == 16
    for point in (points[0], points[7], points[-1]):
        cfg = study_config(experiment, budget, *point)
        validate(cfg)
        assert sum(p.numel() for p in build_model(cfg).parameters()) > 0


def test_a_confirmation_trains_the_reference_against_the_levels_it_names():
    study = study_config(
        "factorial",
        "mnist_cpu",
        "study=confirm",
        "+study.confirm.activation=gelu",
        "+study.confirm.width=1.0",
    ).study
    reference, best = studies.of(study).points()
    assert "activation=relu" in reference and "model.width_mult=0.5" in reference
    assert "activation=gelu" in best and "model.width_mult=1.0" in best
    # Every other factor stays at its low level in both arms.
    assert [o for o in reference if "activation" not in o and "width" not in o] == [
        o for o in best if "activation" not in o and "width" not in o
    ]
    # The design's budget check: the reference alone, at twice the epochs, in check/.
    design = studies.of(study_config("factorial", "mnist_cpu").study)
    checks = design.check_jobs(design.jobs([["seed=0"], ["seed=1"]]), epochs=3)
    assert [job[: len(reference)] for job in checks] == [reference] * 3
    assert {"epochs=6", "study.role=budget_check"} <= set(checks[0])
    assert "hydra.sweep.subdir=check/${hydra.job.num}" in checks[0]


@pytest.mark.parametrize(
    ("confirm", "message"),
    [
        (["+study.confirm.colour=red"], "study.confirm.colour: no such factor"),
        (["+study.confirm.activation=tanh"], "levels are relu and gelu"),
        ([], "give it"),
    ],
)
def test_a_confirmation_of_levels_the_design_lacks_is_refused(confirm, message):
    study = study_config("factorial", "mnist_cpu", "study=confirm", *confirm).study
    with pytest.raises(ConfigError, match=message):
        studies.of(study).validate()


@pytest.mark.slow  # 4 tiny runs: about 30 s
def test_a_confirmation_is_reported_as_the_predicted_best_against_the_reference(tmp_path):
    tiny = ["data=synthetic", "data.subset=null", "data.synthetic.train_size=512",
            "data.synthetic.test_size=128", "batch_size=32", "epochs=3", "device=cpu",
            "progress=false", "tracking.graph=false", "tracking.misclassified=0",
            "tracking.images_every=0", "tracking.monitor_interval=0"]  # fmt: skip
    confirm = tmp_path / "confirm"
    done = run_cli("-m", "+experiment=factorial", *tiny, "study=confirm", "study.check.seeds=[]",
                   "+study.confirm.activation=gelu", "study.name=factorial_confirm",
                   "seed=10,11", f"hydra.sweep.dir={confirm}", cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "job 4 of 4" in done.stdout
    assert report_main([str(confirm), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    gelu = summary[summary["activation"] == "gelu"].iloc[0]
    assert gelu["verdict"] in ("better", "worse", "no clear difference")
    assert "The baseline (activation=relu)" in text  # the reference configuration
    assert "activation=gelu" in text


def _rows(study: dict, arms: list[dict], values: list[list[float]]) -> list[dict]:
    """Run rows as the report reads them: each arm's levels, one row per seed and value."""
    config = {"study": study, "data": {"name": "mnist"}, "model": {"_target_": "x.ConvNet"}}
    return [
        {
            "run": f"{i}-{seed}",
            "status": "completed",
            "seed": seed,
            "final_test_acc": value,
            "final_train_loss": 1 - value,  # each run's own: no two arms trained alike
            "parameters": 1000,
            "epochs": 3,
            "train_images": 20000,
            "test_images": 10000,
            "train_seconds": 10.0,
            "model": "ConvNet",
            "device": "cpu",
            "precision": "fp32",
            "history": [],
            "config": config,
            **arm,
        }
        for i, (arm, seeds) in enumerate(zip(arms, values, strict=True))
        for seed, value in enumerate(seeds)
    ]


def test_the_lab_answers_pooling_and_changes_from_a_factorial_and_names_the_confirmed_gain():
    from pathlib import Path

    from cnnexp.report.lab import answer, pooling_effects
    from cnnexp.report.runs import make_study, runs_of
    from cnnexp.report.verdicts import summarise

    spec = study_config("factorial", "mnist_cpu").study
    factors = {n: {"key": s.key, "low": s.low, "high": s.high} for n, s in spec.factors.items()}
    declared = {"name": "factorial_mnist", "design": "factorial", "factors": factors,
                "generators": spec.generators}  # fmt: skip
    table = planted(rng=1)  # kernel +1 point, activation +0.5, the rest nothing
    coded = table[FACTORS].to_dict("records")
    arms = [
        {factors[n]["key"]: factors[n]["high" if c[n] > 0 else "low"] for n in FACTORS}
        for c in coded
    ]
    rows = _rows(declared, arms, [[v] for v in table["final_test_acc"]])
    for i, row in enumerate(rows):  # one row per run: two seeds of each point
        row["seed"] = i % 2
    factorial = make_study(runs_of(rows), Path("factorial"))
    kernel = factors["kernel"]
    best = {**{f["key"]: f["low"] for f in factors.values()}, kernel["key"]: kernel["high"]}
    reference = {f["key"]: f["low"] for f in factors.values()}
    confirmation = make_study(
        runs_of(_rows({**declared, "design": "confirm", "name": "factorial_mnist_confirm"},
                      [reference, best], [[0.970, 0.971, 0.969], [0.981, 0.980, 0.982]])),
        Path("confirm"),
    )  # fmt: skip
    assert confirmation.baseline == {kernel["key"]: str(kernel["low"])}  # the reference
    studies = [factorial, confirmation]
    summaries = [summarise(s) for s in studies]

    pairs = list(zip(studies, summaries, strict=True))
    pooling = " ".join(pooling_effects(studies, pairs))  # 3.1, from the factorial alone
    members = [(i, s, m) for i, (s, m) in enumerate(zip(studies, summaries, strict=True))]
    changes = " ".join(answer("3.2", members, pairs))
    assert (
        "In the factorial design" in pooling and "no clear difference, pool avg vs max" in pooling
    )
    assert "kernel 3 vs 5: +1.0" in changes or "kernel 3 vs 5: +0.9" in changes
    assert "activation gelu vs relu: +0." in changes
    assert "No clear effect of stride, convs, fc, width, pool" in changes
    assert "Confirmed by runs" in changes and "gains 1.10 points" in changes
    # The budget beside the verdict, and the confirmed network against the best design point.
    assert "Budget check: convergence not checked" in changes
    assert "Against the best configuration the design measured" in changes


def test_a_prediction_is_the_range_its_alias_chains_allow_and_covers_the_true_gain():
    """A real stride:convs interaction (aliased with kernel:activation and fc:width): changing
    convs alone gains its main effect minus twice the interaction's coefficient, which the
    main effects alone miss and the range covers, whichever member of the chain is real."""
    x = np.repeat(design.points(design.SEVEN_IN_SIXTEEN), 2, axis=0)
    gen = np.random.default_rng(4)
    convs, stride = x[:, 2], x[:, 1]
    acc = 0.70 + 0.01 * convs + 0.004 * convs * stride + gen.normal(0, 0.001, len(x))
    table = pd.DataFrame(x, columns=FACTORS).assign(final_test_acc=acc)
    fitted = design.fit(table, FACTORS, "final_test_acc", design.SEVEN_IN_SIXTEEN)
    true_gain = 0.02 - 2 * 0.004  # convs -1 -> +1 with stride at -1
    alone = design.predict(fitted, ["convs"])
    assert alone.mains == pytest.approx(0.02, abs=0.002)
    assert alone.low - 0.002 <= true_gain <= alone.high + 0.002
    assert alone.high - alone.low == pytest.approx(0.008, abs=0.003)  # the chain: 0 or -2 x 0.004
    assert design.recommend(fitted).changed == ("convs",)


def test_two_studies_of_one_comparison_are_tested_for_agreement():
    """A pooling study whose average pooling gains 2 points against a factorial where pooling
    does nothing: they disagree; where it gains nothing in both, they agree."""
    from pathlib import Path

    from cnnexp.report.agreement import agreements, sentence
    from cnnexp.report.runs import make_study, runs_of
    from cnnexp.report.verdicts import summarise

    spec = study_config("factorial", "mnist_cpu").study
    factors = {n: {"key": s.key, "low": s.low, "high": s.high} for n, s in spec.factors.items()}
    declared = {"name": "factorial_mnist", "design": "factorial", "factors": factors,
                "generators": spec.generators}  # fmt: skip
    table = planted(rng=2)
    arms = [
        {factors[n]["key"]: factors[n]["high" if c[n] > 0 else "low"] for n in FACTORS}
        for c in table[FACTORS].to_dict("records")
    ]
    factorial = make_study(
        runs_of(_rows(declared, arms, [[v] for v in table["final_test_acc"]])), Path("f")
    )
    said = {}
    for gain in (0.02, 0.0):
        base, other = [0.700, 0.703, 0.697, 0.701, 0.699], [0.701, 0.699, 0.702, 0.698, 0.700]
        pooling = make_study(
            runs_of(_rows({"name": "pooling", "baseline": {"pool": "max"}},
                          [{"pool": "max"}, {"pool": "avg"}], [base, [v + gain for v in other]])),
            Path("p"),
        )  # fmt: skip
        studies = [pooling, factorial]
        (found,) = agreements(studies, [summarise(s) for s in studies])
        assert (found.one.key, found.one.high, found.other.high) == ("pool", "avg", "avg")
        said[gain] = sentence(found)
    assert "disagree about pool=avg against max" in said[0.02]
    assert "The answer depends on the setting" in said[0.02]
    assert "agree about pool=avg against max" in said[0.0] and "disagree" not in said[0.0]
