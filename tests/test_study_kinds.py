"""A study is one object: a new study of an existing kind is one YAML, a new kind one class and
one YAML, and each gets its jobs and its report section from that alone."""

from __future__ import annotations

import json
import os
import textwrap
import uuid
from pathlib import Path

import pytest
from conftest import REPO, run_cli, stop_when

from cnnexp.errors import STOPPED
from cnnexp.report import main as report_main

TINY = ["data=synthetic", "data.synthetic.train_size=256", "data.synthetic.test_size=128",
        "data.synthetic.noise=3.0", "device=cpu", "progress=false", "epochs=3", "batch_size=16",
        "tracking.graph=false", "tracking.misclassified=0", "tracking.images_every=0",
        "tracking.monitor_interval=0"]  # fmt: skip
TESTS = Path(__file__).resolve().parent


def _write_experiment(text: str) -> str:
    """A study YAML in conf/experiment/ under a fresh name (the caller removes it)."""
    name = f"test_{uuid.uuid4().hex[:8]}"
    (REPO / "conf" / "experiment" / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip())
    return name


def _sweep(study: str, root: Path):
    """Run the study its YAML text describes, from conf/experiment/ (removed after), with the
    tests' folder on the path for a kind defined there."""
    name = _write_experiment(study)
    env = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    try:
        return run_cli("-m", f"+experiment={name}", *TINY, f"hydra.sweep.dir={root}",
                       cwd=REPO, env=env)  # fmt: skip
    finally:
        (REPO / "conf" / "experiment" / f"{name}.yaml").unlink()


def test_a_new_study_of_an_existing_kind_is_one_yaml(tmp_path):
    study = """
        # @package _global_
        study:
          name: smoothing
          question: Does label smoothing help LeNet-5?
          baseline: {label_smoothing: 0.0}
          check: {seeds: [0, 1]}
        hydra:
          sweeper:
            params: {label_smoothing: "0.0,0.1", seed: "0,1"}
    """
    result = _sweep(study, tmp_path / "sweep")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "job 8 of 8" in result.stdout  # 2 arms x 2 seeds, and its check: both arms again
    assert len(list((tmp_path / "sweep" / "check").glob("*/metrics.json"))) == 4
    assert report_main([str(tmp_path / "sweep"), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Does label smoothing help LeNet-5?" in text
    assert "label_smoothing=0.1 against label_smoothing=0.0" in text
    assert "Does the answer hold with more training?" in text


def test_a_new_kind_of_study_is_one_class_and_one_yaml(tmp_path):
    study = """
        # @package _global_
        study: {_target_: toy_study.Doubled, name: doubled}
        hydra:
          sweeper:
            params: {pool: "max,avg", seed: "0"}
    """
    result = _sweep(study, tmp_path / "sweep")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "job 4 of 4" in result.stdout  # the kind's own jobs: each arm at seeds 0 and 1
    seeds = sorted(
        p.read_text().count("seed=1") for p in (tmp_path / "sweep").glob("*/.hydra/overrides.yaml")
    )
    assert seeds == [0, 0, 1, 1]
    assert report_main([str(tmp_path / "sweep"), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "### The toy kind's section" in text
    assert "4 runs of the doubled study doubled." in text


@pytest.mark.slow  # four tiny runs, one of them stopped and resumed: 20 s
def test_a_stopped_study_and_its_check_resume_as_one_sweep(tmp_path):
    """Stopped in its check's first job, the same command finishes the sweep: the study's own
    jobs are not trained again, the stopped one goes on from its checkpoint."""
    sweep = tmp_path / "sweep"
    args = ["-m", "+experiment=pooling", "study.budget=mnist_cpu", *TINY, "epochs=2", "seed=0",
            "study.check.seeds=[0]", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    assert stop_when(sweep / "check" / "2" / "checkpoint.pt", *args) == STOPPED
    done = {job: (sweep / job / "metrics.json").read_bytes() for job in ("0", "1")}
    result = run_cli(*args, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(4 completed)" in result.stdout
    assert {job: (sweep / job / "metrics.json").read_bytes() for job in done} == done
    resumed = json.loads((sweep / "check" / "2" / "metrics.json").read_text())
    assert resumed["epochs"] == 4 and len(resumed["history"]) == 4
    assert "resuming" in (sweep / "check" / "2" / "cnnexp.log").read_text()
