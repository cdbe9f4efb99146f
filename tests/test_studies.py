"""The studies that answer the lab's questions: every arm is the change it names, each study runs
end to end as a real Hydra multirun (synthetic data, tiny budget), and its report judges it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, budget_settings, make_config, run_cli, study_config
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cnnexp import CONF_DIR, deciding, studies
from cnnexp.models import build_model, count_macs
from cnnexp.report import main as report_main
from cnnexp.report.runs import load_study
from cnnexp.studies import flatten

CPU_STUDIES = ["architecture", "pooling", "ablation"]
# Every budget of every one-factor study: each is one YAML, its budgets options of it.
STUDIES = [(study, budget) for study in CPU_STUDIES
           for budget in make_config(f"+experiment={study}").study.budgets]  # fmt: skip


def sweep_params(study: str, budget: str | None = None) -> dict[str, str]:
    """The swept keys and their values, as the study's YAML and its budget give them."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={study}"], return_hydra_config=True)
    params = {k: str(v) for k, v in cfg.hydra.sweeper.params.items()}
    return {**params, **(budget_settings(study, budget)[1] if budget else {})}


def arm_key(study: str) -> str:
    return next(k for k in sweep_params(study) if k not in ("seed", "optimizer.lr"))


def flat(cfg) -> dict:
    return flatten(OmegaConf.to_container(cfg, resolve=True))


def model_of(cfg):
    return build_model(cfg)


@pytest.mark.parametrize(("study", "budget"), STUDIES)
def test_each_arm_is_the_change_it_names(study, budget):
    """Every arm at every budget composes, builds a network that fits the data, and differs from
    the baseline in exactly the keys its name says (or, for architecture arms, in the model it
    builds)."""
    key = arm_key(study)
    arms = sweep_params(study, budget)[key].split(",")
    base_cfg = study_config(study, budget, f"{key}={arms[0]}")
    base = flat(base_cfg)
    assert str(base_cfg.study.baseline[key]) == arms[0]
    for arm in arms[1:]:
        cfg = study_config(study, budget, f"{key}={arm}")
        changed = {k for k, v in flat(cfg).items() if base.get(k) != v}
        assert changed, f"{key}={arm} leaves the config as the baseline's"
        shape = (cfg.data.channels, cfg.data.size, cfg.data.size)
        assert count_macs(model_of(cfg), shape) > 0
        if key == "arch" and not arm.startswith("activation"):
            factor = arm.split("-")[0]
            assert f"model.{factor}" in changed, (arm, changed)


def test_cpu_budgets_fix_one_number_format_and_gpu_budgets_tune_or_lengthen():
    for study, budget in STUDIES:
        if budget.endswith("_cpu"):
            assert study_config(study, budget).precision == "fp32", (study, budget)
    cpu = study_config("architecture", "cifar10_cpu")
    gpu = study_config("architecture", "cifar10_gpu", "optimizer.lr=0.1")
    assert studies.of(gpu.study).tuned_key() == "optimizer.lr" and gpu.data.validation > 0
    assert "optimizer.lr" in sweep_params("architecture", "cifar10_gpu")
    assert gpu.epochs > cpu.epochs
    ablation_gpu = study_config("ablation", "cifar10_gpu")
    assert ablation_gpu.epochs == make_config("+experiment=cifar10_fast").epochs


def hydra_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize(("study", "budget"), STUDIES)
def test_the_one_factor_studies_decide_in_rounds_unless_a_budget_gives_seeds(study, budget):
    """Each one-factor study names the deciding sweeper in its YAML, and it is the one the sweep
    gets (an experiment's sweeper once lost to config.yaml's); a tuned budget keeps a grid."""
    cfg = hydra_config(f"+experiment={study}", f"study.budget={budget}")
    assert cfg.hydra.sweeper._target_.endswith(".DecideSweeper")
    assert "seed" not in cfg.hydra.sweeper.params
    tuned = (study, budget) == ("architecture", "cifar10_gpu")
    assert deciding.in_rounds(cfg.hydra.sweeper, studies.arms_of(cfg)[1]) is not tuned
    caps = studies.of(studies._budgeted(cfg.study, set())).decide
    assert caps.max_seeds >= 5 and caps.minutes


def test_any_experiment_may_name_its_sweeper_and_a_plain_sweep_gets_the_study_sweeper():
    assert hydra_config("pool=avg").hydra.sweeper._target_.endswith(".StudySweeper")
    assert hydra_config("+experiment=pooling").hydra.sweeper._target_.endswith(".DecideSweeper")
    chosen = hydra_config("+experiment=pooling", "hydra/sweeper=study").hydra.sweeper._target_
    assert chosen.endswith(".StudySweeper")  # the command line still wins


def test_the_search_experiment_is_an_optuna_search():
    # Optuna's sweeper is an extra (.[hpo]): the README's `pip install -e ".[dev]"` lacks it
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    assert "Optuna" in hydra_config("+experiment=search").hydra.sweeper._target_


TINY_STUDY = ["data=synthetic", "data.subset=null", "data.synthetic.train_size=256",
              "data.synthetic.test_size=128", "data.synthetic.noise=1.0", "device=cpu",
              "progress=false", "epochs=1", "tracking.graph=false", "tracking.misclassified=0",
              "tracking.monitor_interval=0", "study.check.seeds=[]"]  # fmt: skip
# Two seeds where the report needs pairs or spread; the others one, to keep the suite short.
SEEDS = {"pooling": "seed=0,1", "ablation": "seed=0,1"}
# The ablation's batch of 256 would be one step an epoch on 256 images: it would not train.
EXTRA = {"ablation": ["batch_size=32", "epochs=2", "data.synthetic.noise=0.5"]}


# The architecture study (11 arms, about 15 s here), the ablation (8 arms x 2 seeds, 50 s on an
# AVX2-only CPU) and the CIFAR-10 pooling study (20 s; its report's pooling section is tested
# by itself below) run with the slow tests: the default suite stays under 5 minutes.
SLOW_STUDIES = ("architecture", "ablation", "pooling")


@pytest.mark.parametrize(
    "study", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW_STUDIES else s
              for s in CPU_STUDIES],
)  # fmt: skip
def test_study_runs_end_to_end_and_is_reported(study, tmp_path):
    """The real multirun with every arm of the study, then its report."""
    root = tmp_path / study
    seeds = SEEDS.get(study, "seed=0")
    result = run_cli("-m", f"+experiment={study}", *TINY_STUDY, *EXTRA.get(study, []), seeds,
                     f"hydra.sweep.dir={root}", cwd=REPO, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    loaded = load_study(root)
    key = arm_key(study)
    arms = sweep_params(study)[key].split(",")
    assert sorted(loaded.table[key].unique()) == sorted(arms)
    assert len(loaded.runs) == len(seeds.split(",")) * len(arms)
    assert (loaded.table["status"] != "failed").all(), loaded.table[["run", "error"]]
    assert report_main([str(root), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "budget: cifar10_cpu: sized for two cpu cores" in text.lower()
    assert f"{key}={arms[1]}" in text
    assert "| images read from " in text and "synthetic" in text  # the recipe table's source
    if loaded.table["config"].iloc[0]["model"].get("widths"):  # a convnet: its channels
        assert "| channels per stage, at width 1 " in text
    if study == "ablation":  # the test-time flip is measured inside each run, never retrained
        assert "Measured inside each run" in text and "test-time augmentation (tta)" in text
        assert "test_flip-off" not in text  # no arm trains the full recipe's networks again
        assert all("final_test_acc_without_tta" in m for m in map(metrics_of, loaded.table["run"]))


BUDGET_OUTCOMES = ("no clear change", "it flips", "it shrinks", "it grows")


def metrics_of(run: str) -> dict:
    return json.loads((Path(run) / "metrics.json").read_text())


@pytest.mark.slow  # 8 tiny runs, 45 s
def test_a_budget_check_runs_in_the_study_sweep_and_tests_each_effect_at_both_budgets(tmp_path):
    """The pooling study and its budget check in one sweep: both arms again at twice the
    epochs, in check/. The report states the baseline's gap with its interval (never
    'converged' alone) and each effect at both budgets with the test of their difference."""
    root = tmp_path / "pooling"
    learns = [
        "epochs=2",
        "seed=0,1",
        "batch_size=32",
        "data.synthetic.noise=3.0",
    ]  # noisy: seeds differ
    result = run_cli("-m", "+experiment=pooling", *TINY_STUDY, *learns,
                     "study.check.seeds=[0,1]", f"hydra.sweep.dir={root}", cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "job 8 of 8" in result.stdout
    study = load_study(root)
    assert len(study.runs) == 4 and len(study.check) == 4
    assert sorted(r.levels["pool"] for r in study.check) == ["avg", "avg", "max", "max"]
    assert {r.record.epochs for r in study.check} == {4}
    assert report_main([str(root), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    (line,) = [x for x in text.splitlines() if "At 4 epochs instead of 2" in x]
    assert "95% CI" in line and "Welch" in line and "(2 runs against 2;" in line
    assert "Convergence not checked" not in text
    held = text.split("### Does the answer hold with more training?")[1].split("\n#")[0]
    (effect,) = [x for x in held.splitlines() if x.startswith("- pool=avg against pool=max")]
    assert " points at 2 epochs, " in effect and " at 4: " in effect
    assert any(f": {words} with more training" in effect for words in BUDGET_OUTCOMES)
    assert "Bonferroni over the one arm checked" in effect
    # A sweep of the study without its check says so, and how to run it.
    alone = tmp_path / "alone"
    result = run_cli("-m", "+experiment=pooling", *TINY_STUDY, *learns,
                     f"hydra.sweep.dir={alone}", cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert report_main([str(alone), "--out", str(tmp_path / "alone-report")]) == 0
    said = (tmp_path / "alone-report" / "report.md").read_text()
    assert "Convergence not checked" in said
    command = "+experiment=pooling study.budget=cifar10_cpu 'study.check.seeds=[0,1,2]'"
    assert f"python -m cnnexp -m {command}" in said


def test_pooling_report_shows_first_epochs_and_feature_maps(tmp_path):
    root = tmp_path / "pooling"
    result = run_cli("-m", "+experiment=pooling", *TINY_STUDY, "epochs=2", "seed=0,1",
                     f"hydra.sweep.dir={root}", cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert report_main([str(root), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    section = text.split("What differs between max and average pooling")[1].split("###")[0]
    assert "test acc % after epoch 1" in section and "train loss after epoch 2" in section
    assert "the same test images' feature maps" in section
    picture = next((tmp_path / "report" / "figures").glob("*feature-maps.png"))
    assert picture.stat().st_size > 10_000


@pytest.mark.slow  # eight runs with a validation split, 23 s
def test_a_tuned_study_compares_each_variant_at_its_best_validation_lr(tmp_path):
    """The architecture study's GPU budget tunes the learning rate per variant on the validation
    split: the report keeps, per variant, only the runs of the lr with the best mean validation
    accuracy."""
    root = tmp_path / "tuned"
    result = run_cli("-m", "+experiment=architecture", "study.budget=cifar10_gpu", *TINY_STUDY,
                     "data.validation=64",
                     "arch=baseline,stride-2", "optimizer.lr=0.01,0.1", "seed=0,1",
                     "epochs=2", "data.synthetic.train_size=512",
                     "precision=fp32", "model.widths=[8,16,32]",
                     "tracking.images_every=0", f"hydra.sweep.dir={root}", cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    everything = [json.loads(p.read_text()) for p in root.glob("*/metrics.json")]
    assert len(everything) == 8
    assert {m["status"] for m in everything} == {"completed"}
    study = load_study(root)
    assert study.factors == ["arch"] and study.baseline == {"arch": "baseline"}
    assert len(study.runs) == 4
    for arch in ("baseline", "stride-2"):
        val = {}
        for m in everything:
            if m["overrides"]["arch"] == arch:
                val.setdefault(m["overrides"]["optimizer.lr"], []).append(m["final_val_acc"])
        best = max(val, key=lambda lr: sum(val[lr]) / len(val[lr]))
        chosen = study.tuning.set_index("arch").loc[arch, "optimizer.lr"]
        assert chosen == best
        assert {r.levels["optimizer.lr"] for r in study.runs if r.levels["arch"] == arch} == {best}
    assert report_main([str(root), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "chosen for each variant from the grid below" in text


# The other budgets and data sets, each run end to end on its first two arms (a network small
# enough for the suite where the study's own is a GPU's).
OTHER_BUDGETS = {
    ("pooling", "mnist_cpu"): [],
    ("architecture", "mnist_cpu"): [],
    ("pooling", "cifar10_gpu"): ["model.widths=[8,16,32]", "precision=fp32"],
    ("ablation", "cifar10_gpu"): ["model.widths=[8,16,16]", "precision=fp32", "batch_size=128"],
}


@pytest.mark.slow  # 30 s together: they keep the default suite near 5 minutes
@pytest.mark.parametrize(("study", "budget"), OTHER_BUDGETS)
def test_other_budgets_run_end_to_end(study, budget, tmp_path):
    key = arm_key(study)
    arms = sweep_params(study, budget)[key].split(",")[:2]
    root = tmp_path / study
    result = run_cli("-m", f"+experiment={study}", f"study.budget={budget}", *TINY_STUDY,
                     *OTHER_BUDGETS[(study, budget)], "seed=0",
                     f"{key}={','.join(arms)}", "tracking.images_every=0",
                     f"hydra.sweep.dir={root}", cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    loaded = load_study(root)
    assert sorted(loaded.table[key].unique()) == sorted(arms)
    assert (loaded.table["status"] != "failed").all(), loaded.table[["run", "error"]]
    assert report_main([str(root), "--out", str(tmp_path / "report")]) == 0
