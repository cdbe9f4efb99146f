"""The whole lab in one command (python -m cnnexp.lab) and its ladder study (study=ladder): the
ladder's jobs and its gains, the lab's plan, its refusal to mix commits, and a stopped lab that
goes on without training a completed run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from cnnexp import lab, studies
from cnnexp.errors import STOPPED, ConfigError
from cnnexp.report import ladder
from cnnexp.report.runs import USABLE, Study, runs_of
from cnnexp.schema import TEST_ACC

STEPS = {
    "lenet5": {"model": "lenet"},
    "convnet": {"model": "convnet", "model.widths": [6, 16], "model.batch_norm": False},
    "wider": {"model.widths": [32, 64]},
    "ours": {"model": "whitened_resnet", "model.whiten": False},
    "whitening": {"model.whiten": True},
}
# Every study of conf/lab.yaml on small synthetic images.
SYNTHETIC = ["data=synthetic", "data.subset=null", "data.synthetic.train_size=256",
             "data.synthetic.test_size=128", "data.synthetic.noise=3.0", "batch_size=32",
             "device=cpu", "progress=false", "tracking.graph=false", "tracking.misclassified=0",
             "tracking.images_every=0", "tracking.monitor_interval=0"]  # fmt: skip


def test_a_ladder_step_keeps_the_changes_before_it_and_a_new_network_drops_the_old_ones():
    study = studies.Ladder(steps=STEPS)
    assert study.overrides("wider") == [
        "model=convnet", "model.batch_norm=false", "model.widths=[32,64]", "study.step=wider"
    ]  # fmt: skip
    # The whitened ResNet replaces the convnet: the convnet's widths and batch norm go.
    assert study.overrides("whitening") == [
        "model=whitened_resnet", "model.whiten=true", "study.step=whitening"
    ]  # fmt: skip
    jobs = study.jobs([["seed=0"], ["seed=1"]])
    assert len(jobs) == 10 and jobs[0] == ["model=lenet", "study.step=lenet5", "seed=0"]
    # Its check: the first and the last step, unless it names others.
    arms = studies._arms(jobs)
    assert [a[-1] for a in study.check_arms(arms)] == ["study.step=lenet5", "study.step=whitening"]
    study.check.arms = ["wider"]
    assert [a[-1] for a in study.check_arms(arms)] == ["study.step=wider"]


def test_a_ladder_names_what_is_wrong_with_its_steps():
    with pytest.raises(ConfigError, match="two or more steps"):
        studies.Ladder(steps={"only": {"model": "lenet"}}).validate()
    with pytest.raises(ConfigError, match="choose from lenet5"):
        studies.Ladder(steps=STEPS, check=studies.Check(arms=["typo"])).validate()


def _ladder_study(values: dict[str, list[float]], tta_gain: float = 0.0) -> Study:
    rows = []
    for name, accuracies in values.items():
        for seed, acc in enumerate(accuracies):
            rows.append({
                "status": USABLE, "study.step": name, "seed": seed,
                TEST_ACC: acc + tta_gain + 0.002 * seed,
                ladder.NO_TTA: acc, "parameters": 1000.0, "macs": 5000.0, "wall_seconds": 60.0,
            })  # fmt: skip
    kind = studies.Ladder(name="ladder", steps={name: {} for name in values})
    return Study("ladder", Path("."), runs_of(rows), ["study.step"], kind=kind)


def test_a_ladder_decides_each_gain_against_the_step_before_it_as_one_family():
    study = _ladder_study(
        {
            "a": [0.50, 0.51, 0.49],
            "b": [0.60, 0.61, 0.59],  # +10 points: decided
            "c": [0.605, 0.595, 0.60],  # +0.0: not decided
            "d": [0.55, 0.56, 0.54],  # -5 points: decided
        },
        tta_gain=0.01,
    )
    steps, tta = ladder.steps(study)
    assert [s.verdict for s in steps] == ["", "gains", "no clear difference", "loses"]
    # 3 gains and the test-time augmentation pair: each interval at 0.05 / 4.
    assert all(s.gain.level == pytest.approx(0.0125) for s in steps[1:])
    assert tta.level == pytest.approx(0.0125) and tta.diff == pytest.approx(0.012)
    assert steps[1].gain.diff == pytest.approx(0.10)
    said = ladder.answer(study)
    assert said.startswith("Changing one thing at a time, step a scored 50.00% and step d 55.00%")
    assert "Clear gains: b +10.00 points" in said and "Clear losses: d -5.00 points" in said
    table = ladder.table(steps, tta)
    assert list(table["step"]) == ["a", "b", "c", "d", "tta"]


def test_the_ladders_last_step_is_set_beside_question_2_at_its_own_budget():
    climb = _ladder_study({"a": [0.50, 0.51, 0.49], "ours": [0.80, 0.81, 0.79]})
    ours = Study("ours", Path("."), runs_of([
        {"status": USABLE, TEST_ACC: acc, ladder.NO_TTA: without}
        for acc, without in [(0.88, 0.86), (0.87, 0.85), (0.89, 0.87)]
    ]), [])  # fmt: skip
    said = ladder.at_full_budget(climb, ours)
    assert "Its last step, ours, is Question 2's network: 80.00% here against 86.00%" in said
    assert "the longer training adds +6.00 points (95% interval +" in said
    one_seed = Study("ours", Path("."), ours.runs[:1], [])
    assert ladder.at_full_budget(climb, one_seed) is None  # no spread: nothing to test


def test_under_no_change_a_ladder_rarely_claims_a_gain():
    """Null ladders (every step the same network): the family's intervals hold together, so
    at most about 5% of ladders claim any gain or loss."""
    rng = __import__("numpy").random.default_rng(0)
    claims = 0
    for _ in range(400):
        values = {f"s{i}": list(0.7 + 0.01 * rng.standard_normal(3)) for i in range(6)}
        steps, _ = ladder.steps(_ladder_study(values))
        claims += any(s.verdict in ("gains", "loses") for s in steps)
    # Bonferroni over 5 gains: at most 5%; 400 ladders give a Monte Carlo sd of 1.1 points.
    assert claims / 400 <= 0.05 + 3 * 0.011


def test_the_plan_names_each_study_its_runs_and_minutes_and_the_total(capsys):
    argv = ["--dry-run", "--budget", "quick", "--only", "lenet,pooling_lenet", "--", *SYNTHETIC]
    assert lab.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("lab plan: --budget quick")
    lenet = next(line for line in lines if " lenet " in line)
    assert "3 runs" in lenet and "min" in lenet  # seed=0,1,2
    pooling = next(line for line in lines if "pooling_lenet" in line)
    assert "10 runs" in pooling  # 2 arms x 3 seeds, and its check: 2 arms x 2 seeds
    assert lines[-1].startswith("  total: 13 runs, about ")


def test_a_study_takes_as_long_as_its_jobs_in_order_on_the_free_slots():
    """Three equal jobs two at a time take two jobs' time (the third runs alone on its one
    slot), not one and a half; a long job first keeps one slot while the short ones share
    the other."""
    assert lab.Planned("ours", "2", [], seconds=[600.0] * 3).minutes(2) == 20.0
    assert lab.Planned("ours", "2", [], seconds=[600.0] * 4).minutes(2) == 20.0
    assert lab.Planned("ladder", "3.2", [], seconds=[1800.0, 600, 600, 600]).minutes(2) == 30.0
    assert lab.Planned("lenet", "1", [], seconds=[60.0] * 3).minutes(1) == 3.0


def test_a_lab_folder_refuses_another_commit_or_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(lab, "git_commit", lambda: "abc")
    assert lab.check_commit(tmp_path, "quick", []) is None  # new: recorded
    assert json.loads((tmp_path / lab.LAB_FILE).read_text())["commit"] == "abc"
    assert lab.check_commit(tmp_path, "quick", []) is None  # the same: goes on
    refused = lab.check_commit(tmp_path, "standard", [])
    assert "holds a lab of commit abc, --budget quick" in refused
    monkeypatch.setattr(lab, "git_commit", lambda: "def")
    assert "this is commit def" in lab.check_commit(tmp_path, "quick", [])


def test_the_budgets_and_hardware_variants_compose_for_every_study():
    config = lab.lab_config()
    for budget in lab.BUDGETS:
        for kind in ("cpu_avx2", "cpu_bf16", "gpu"):
            for study in lab.studies_of(config, budget, kind, []):
                jobs = studies.sweep_jobs(lab.sweep_config(study.overrides))
                assert jobs, (budget, kind, study.name)


@pytest.mark.slow
def test_a_stopped_lab_goes_on_where_it_stopped_without_training_a_run_again(tmp_path):
    out = tmp_path / "lab"
    command = [sys.executable, "-m", "cnnexp.lab", "--budget", "quick", "--only",
               "lenet,pooling_lenet", "--out", str(out), "--", *SYNTHETIC, "epochs=2"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "pooling_lenet" / "0" / "checkpoint.pt"
    deadline = time.time() + 240
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == STOPPED
    done = {p: p.stat().st_mtime_ns for p in (out / "lenet").glob("*/metrics.json")}
    assert len(done) == 3
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "3 of 13 runs done" in result.stdout  # the lenet study's, kept
    assert {p: p.stat().st_mtime_ns for p in done} == done  # not trained again
    assert len(list((out / "pooling_lenet").rglob("metrics.json"))) == 10
    plan = json.loads((out / lab.PLAN_FILE).read_text())["studies"]
    times = json.loads((out / lab.TIMES_FILE).read_text())
    assert set(plan) == set(times) == {"lenet", "pooling_lenet"}  # both sittings' times summed
    text = (out / "report" / "report.md").read_text()
    # The quick budget's caveat opens both answers (1 and 3.1; the others have no runs here).
    assert text.count("**Answer.**\n- Starved: this is the lab's quick budget") == 2
    assert (out / "report" / "report.html").exists()
    # The report again from the same runs (a later commit's report code would do the same).
    (out / "report" / "report.md").unlink()
    again = [*command[: command.index("--")], "--report-only"]
    result = subprocess.run(again, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lab plan" not in result.stdout and "report.html" in result.stdout  # nothing trained
    assert (out / "report" / "report.md").read_text().count("lenet") >= 1


def test_a_report_of_a_folder_without_runs_says_so_in_one_line(tmp_path, capsys):
    assert lab.main(["--report-only", "--out", str(tmp_path)]) == 2
    assert "holds no study's runs: run the lab into it first" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ("device=cuda", "device=cuda but PyTorch sees no CUDA GPU here"),
        ("epochz=3", "epochz"),
    ],
)
def test_a_bad_override_or_a_missing_gpu_is_one_line(extra, said, capsys):
    if extra == "device=cuda" and __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert lab.main(["--dry-run", "--only", "lenet", "--", extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_a_ladder_sweep_reports_each_step_and_opens_the_lab_answer_to_3_2(tmp_path):
    from test_study_kinds import _sweep

    from cnnexp.report import main as report_main

    study = """
        # @package _global_
        defaults:
          - override /tta: flip
        study:
          _target_: cnnexp.studies.Ladder
          name: ladder
          steps:
            lenet5: {model: lenet}
            convnet: {model: convnet, model.widths: [8, 16], model.convs_per_stage: 1}
            batch_norm: {model.batch_norm: true}
          check: {seeds: [0]}
        hydra:
          sweeper:
            params: {seed: "0,1"}
    """
    result = _sweep(study, tmp_path / "sweep")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "job 8 of 8" in result.stdout  # 3 steps x 2 seeds, and its check: the first and last
    out = tmp_path / "report"
    assert report_main([str(tmp_path / "sweep"), "--lab", "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    answer = text.split("## 3.2 ")[1].split("**Answer.**")[1].split("\n\n")[0]
    assert answer.strip().startswith("Changing one thing at a time, step lenet5 scored")
    assert "ladder-ladder.png" in text.split("## 3.2 ")[1].split("### ")[0]  # under the answer
    assert text.count("ladder-ladder.png") == 1
    for step in ("| lenet5 ", "| convnet ", "| batch_norm ", "| tta "):
        assert step in text
