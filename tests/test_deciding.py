"""The deciding sweep (hydra/sweeper=decide): its plan from a sweep's arms, and real sweeps on
synthetic images that stop when decided, keep a plain grid for an explicit seed list, and
report the verdicts their rounds made."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, run_cli

from cnnexp import deciding
from cnnexp.errors import ConfigError
from cnnexp.report import main as report_main
from cnnexp.report.answers import rounds_sentence
from cnnexp.schema import DECIDE_FILE, read_record
from cnnexp.studies import Check, Decide, Study

TINY = ["data=synthetic", "data.synthetic.train_size=512", "data.synthetic.test_size=128",
        "device=cpu", "progress=false", "epochs=2",
        "batch_size=32", "tracking.graph=false", "tracking.misclassified=0"]  # fmt: skip


def test_the_arms_are_named_by_what_differs_and_the_baseline_is_the_control():
    arms = [["pool=max", "epochs=2"], ["pool=avg", "epochs=2"]]
    planned = deciding.plan(Study(baseline={"pool": "avg"}, decide=Decide(margin=0.5)), arms)
    assert list(planned.arms) == ["pool=max", "pool=avg"]
    assert planned.deciding.control == "pool=avg"
    assert planned.deciding.margin == pytest.approx(0.005)  # points as a fraction
    assert planned.deciding.wanted() == {"pool=avg": 3, "pool=max": 3}
    first = deciding.plan(Study(), arms)  # no baseline: the first arm
    assert first.deciding.control == "pool=max"


def test_the_spending_is_a_key_and_a_bad_one_is_named():
    assert deciding.plan(Study(), [["pool=max"], ["pool=avg"]]).deciding.rounds.spending == 2
    steep = deciding.plan(Study(decide=Decide(spending=3)), [["pool=max"], ["pool=avg"]])
    assert steep.deciding.level(0) == pytest.approx(0.05 / 27)  # (3/9)^3 of the level
    with pytest.raises(ConfigError, match=r"study.decide: .*spending=0"):
        Study(decide=Decide(spending=0)).validate()
    record = {"arms": {"a": {}}, "looks": [3, 5], "control": "pool=max", "alpha": 0.05}
    assert "looks as t³" in rounds_sentence(record)  # records before the key spent as t^3
    assert "looks as t²" in rounds_sentence({**record, "spending": 2})


def test_each_round_says_what_is_open_and_the_last_what_ends_undecided(capsys):
    arms = [["pool=max"], ["pool=avg"]]
    planned = deciding.plan(Study(decide=Decide(first=3, step=2, max_seeds=5)), arms)
    values = {"pool=max": [0.90, 0.92, 0.91], "pool=avg": [0.91, 0.89, 0.93]}
    planned.deciding.look(values)
    deciding.say_round(planned, values, seconds=60.0)
    assert "round 1 of 2: 6 runs done, 1 of 1 arms open, at most 4 more" in capsys.readouterr().out
    values = {name: [*v, 0.90, 0.92] for name, v in values.items()}
    planned.deciding.look(values)
    deciding.say_round(planned, values, seconds=100.0)
    assert "round 2 of 2: 10 runs done; 1 arms end undecided at the cap" in capsys.readouterr().out


@pytest.mark.slow  # six to ten small runs (about a minute)
def test_a_planted_change_is_decided_worse(tmp_path):
    """Noisier images (3.0 against 1.0) train to a lower accuracy, seed to seed anywhere from
    25% to 96% here: decided worse. (A learning rate ten times smaller, the issue's planted
    change, stays at chance at this tiny budget; on real MNIST, its runs against a fixed
    5-seed sweep are in benchmarks/RESULTS.md; runs saved on average: tests/test_sequential.py.)"""
    out = tmp_path / "sweep"
    result = run_cli("-m", "hydra/sweeper=decide", "hydra/launcher=workers",  # K at a time
                     *TINY, "data.synthetic.noise=1.0,3.0", f"hydra.sweep.dir={out}",
                     cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "decide: 2 arms against data.synthetic.noise=1.0" in result.stdout
        and " min here)" in result.stdout
    )
    decided = json.loads((out / DECIDE_FILE).read_text())
    (arm,) = decided["arms"].values()
    assert arm["verdict"] == "worse" and decided["spending"] == 2
    assert report_main([str(out), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "spent over the looks as t²" in text
    findings = text.split("## Findings")[1].split("\n## ")[0]
    assert "worse: data.synthetic.noise=3.0" in findings and "decided in rounds" in findings


@pytest.mark.slow  # six small runs
def test_an_arm_that_does_not_train_is_closed_after_its_first_round(tmp_path):
    """A rate of 1e-7 leaves the network at chance: its runs are left out as the report leaves
    them out, and the arm ends "did not train" after one round instead of running to the cap."""
    out = tmp_path / "sweep"
    result = run_cli("-m", "hydra/sweeper=decide", "hydra/launcher=workers", *TINY,
                     "data.synthetic.noise=1.0", "optimizer.lr=0.05,0.0000001",
                     f"hydra.sweep.dir={out}",
                     cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    decided = json.loads((out / DECIDE_FILE).read_text())
    ((name, arm),) = decided["arms"].items()
    assert arm["verdict"] == "did not train"
    assert decided["runs"] == {"optimizer.lr=0.05": 3, name: 3}
    assert report_main([str(out), "--out", str(tmp_path / "report")]) == 0
    assert "did not train" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.slow
def test_an_explicit_seed_list_keeps_a_plain_grid(tmp_path):
    out = tmp_path / "sweep"
    result = run_cli("-m", "hydra/sweeper=decide", "pool=max,avg", "seed=0,1", *TINY,
                     f"hydra.sweep.dir={out}", cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (out / DECIDE_FILE).exists()
    assert len(list(out.glob("*/metrics.json"))) == 4


def test_the_check_trains_the_control_and_the_arms_the_rounds_decided(capsys):
    """Of a larger study the check trains the baseline and the arms decided, not those left
    open: whether each answer holds with more training (a grid's check: the baseline alone)."""
    arms = [["arch=baseline"], ["arch=gelu"], ["arch=tanh"], ["arch=elu"]]
    study = Study(baseline={"arch": "baseline"}, check=Check(seeds=[0, 1]))
    planned = deciding.plan(study, arms)
    values = {"arch=baseline": [0.70, 0.71, 0.72], "arch=gelu": [0.80, 0.81, 0.82],
              "arch=tanh": [0.60, 0.61, 0.62], "arch=elu": [0.69, 0.73, 0.71]}  # fmt: skip
    planned.deciding.look(values)
    assert planned.deciding.decided() == ["arch=gelu", "arch=tanh"]
    assert planned.deciding.open_arms() == ["arch=elu"]
    checks = study.check_jobs(arms, epochs=3, also=deciding.checked_arms(planned))
    assert [job[:2] for job in checks] == [[arm, f"seed={seed}"]
                                           for arm in ("arch=baseline", "arch=gelu", "arch=tanh")
                                           for seed in (0, 1)]  # fmt: skip
    assert all("epochs=6" in job and "study.role=budget_check" in job for job in checks)
    assert [job[0] for job in study.check_jobs(arms, epochs=3)] == ["arch=baseline"] * 2
    deciding.say_check(planned, checks)
    said = "decide: the budget check, 6 runs at 6 epochs: arch=baseline, arch=gelu, arch=tanh"
    assert said in capsys.readouterr().out


def test_the_plan_says_the_check_after_the_rounds_and_its_time(capsys):
    arms = [["arch=baseline"], ["arch=gelu"], ["arch=tanh"]]
    seconds = {"arch=baseline": 60.0, "arch=gelu": 60.0, "arch=tanh": 60.0}
    study = Study(baseline={"arch": "baseline"}, check=Check(seeds=[0, 1, 2]))
    deciding.say_plan(deciding.plan(study, arms), seconds, at_a_time=2)
    said = capsys.readouterr().out
    assert ("decide: then its budget check: arch=baseline and the arms decided, 3 seeds each "
            "at 2 times the epochs (3 to 9 runs, about 3 to 9 min here)") in said  # fmt: skip
    two = Study(baseline={"arch": "baseline"}, check=Check(seeds=[0, 1]))
    deciding.say_plan(deciding.plan(two, arms[:2]), seconds, at_a_time=2)
    assert "check: arch=baseline, arch=gelu, 2 seeds each" in capsys.readouterr().out
    deciding.say_plan(deciding.plan(Study(), arms), seconds, at_a_time=2)
    assert "budget check" not in capsys.readouterr().out  # no seeds: no check


@pytest.mark.slow  # about twenty small runs
def test_a_deciding_sweep_checks_its_decided_arm_and_not_those_that_did_not_train(tmp_path):
    """Four arms: noisier images (decided worse), and a rate that leaves each noise level at
    chance (closed, not decided): the check, in the same sweep, trains the control and the
    decided arm again at twice the epochs, and the report tests that effect at both budgets."""
    out = tmp_path / "sweep"
    result = run_cli("-m", "hydra/sweeper=decide", "hydra/launcher=workers", *TINY,
                     "data.synthetic.noise=1.0,4.0", "optimizer.lr=0.05,0.0000001",
                     "study.check.seeds=[0,1]", f"hydra.sweep.dir={out}",
                     cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    decided = json.loads((out / DECIDE_FILE).read_text())
    verdicts = {name: arm["verdict"] for name, arm in decided["arms"].items()}
    assert sorted(verdicts.values()) == ["did not train", "did not train", "worse"]
    (worse,) = [name for name, verdict in verdicts.items() if verdict == "worse"]
    said = f"decide: the budget check, 4 runs at 4 epochs: {decided['control']}, {worse}"
    assert said in result.stdout
    checked = [read_record(folder) for folder in sorted((out / "check").iterdir())]
    assert [r.status for r in checked] == ["completed"] * 4 and {r.epochs for r in checked} == {4}
    assert report_main([str(out), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Does the answer hold with more training?" in text
    opening = text.split("## Findings")[1].split("<details>")[0]  # what is read first
    assert "With more training (4 epochs instead of 2): the baseline" in opening
    assert f"{worse.split()[0]} " in opening and "points (" in opening
