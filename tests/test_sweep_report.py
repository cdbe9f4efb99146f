"""A real Hydra multirun on synthetic data, then the report: its numbers are the runs' numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, make_config, run_cli
from PIL import Image

from cnnexp.errors import DivergedError
from cnnexp.report import main as report_main
from cnnexp.report.answers import answers, plain_verdicts
from cnnexp.report.runs import Study, runs_of
from cnnexp.report.verdicts import summarise
from cnnexp.train import train

SWEEP = [
    "-m",
    "data=synthetic",
    "data.synthetic.train_size=1024",
    "data.synthetic.noise=1.0",  # learnable in 2 epochs by both arms
    "epochs=2",
    "device=cpu",
    "progress=false",
    "pool=max,avg",
    "seed=0,1",
    "batch_size=64,4096",
    "+study.baseline.pool=max",
    "tracking.images_every=0",
    "tracking.graph=false",
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    result = run_cli(*SWEEP, f"hydra.sweep.dir={root}", cwd=REPO)
    assert result.returncode == 1, result.stdout + result.stderr  # 4 jobs failed: not all ended
    assert "4 of 8 jobs did not end for good (4 failed)" in result.stderr
    (root.parent / "sweep-stdout.txt").write_text(result.stdout)
    assert report_main([str(root)]) == 0
    return root


def test_each_job_says_where_the_sweep_is_and_the_end_its_total_time(sweep):
    said = (sweep.parent / "sweep-stdout.txt").read_text().splitlines()
    places = [line for line in said if line.startswith("job ")]
    assert [p.split(":")[0] for p in places] == [f"job {i} of 8" for i in range(1, 9)]
    assert places[0] == "job 1 of 8: 0 finished"
    assert places[-1].startswith("job 8 of 8: 7 finished (")
    assert "failed" in places[-1] and places[-1].endswith(" left")
    (end,) = [line for line in said if line.startswith("sweep folder:")]
    assert "4 completed" in end and "4 failed" in end and end.rstrip().endswith(" s")


def metrics_of(root: Path) -> list[dict]:
    return [
        json.loads(p.read_text()) | {"dir": p.parent.name}
        for p in sorted(root.glob("*/metrics.json"))
    ]


def test_every_job_has_its_folder_and_failures_do_not_stop_the_sweep(sweep):
    jobs = metrics_of(sweep)
    assert len(jobs) == 8
    statuses = sorted(j["status"] for j in jobs)
    assert statuses == ["completed"] * 4 + ["failed"] * 4  # batch_size=4096 > 1024 images
    failed = [j for j in jobs if j["status"] == "failed"]
    assert all("batch_size=4096" in j["error"] for j in failed)


def test_summary_equals_the_runs_result_files(sweep):
    summary = pd.read_csv(sweep / "report" / "summary.csv")
    done = [j for j in metrics_of(sweep) if j["status"] == "completed"]
    # (pool=max|avg) x (batch_size=64|4096): the failed groups count their failures, no mean.
    assert len(summary) == 4
    failed = summary[summary["batch_size"] == 4096]
    assert list(failed["failed"]) == [2, 2] and list(failed["n"]) == [0, 0]
    assert failed["mean"].isna().all()
    for _, row in summary[summary["batch_size"] == 64].iterrows():
        accs = [j["final_test_acc"] for j in done if j["choices"]["pool"] == row["pool"]]
        assert row["n"] == row["usable"] == row["runs"] == len(accs) == 2
        assert row["mean"] == pytest.approx(sum(accs) / 2, abs=1e-12)
        assert row["std"] == pytest.approx(pd.Series(accs).std(), abs=1e-12)
    runs = pd.read_csv(sweep / "report" / "runs.csv")
    assert len(runs) == 8
    assert set(runs["status"]) == {"completed", "failed"}
    assert {
        "pool",
        "seed",
        "batch_size",
        "final_test_acc",
        "parameters",
        "macs",
        "train_seconds",
        "images_per_second",
    } <= set(runs.columns)


def test_report_files_figures_and_failed_runs(sweep):
    out = sweep / "report"
    pngs = list((out / "figures").glob("*.png"))
    assert {p.name.split("-", 2)[-1] for p in pngs} >= {
        "verdicts0.png",
        "test_acc.png",
        "train_loss.png",
        "test_loss.png",
    }
    for png in pngs:
        with Image.open(png) as image:
            image.verify()
            assert image.format == "PNG"
    md = (out / "report.md").read_text()
    not_complete = md.split("### Runs not in the means")[1].split("\n#")[0]
    assert not_complete.count("| failed ") == 4
    assert "pool=avg on batch_size=64:" in md  # the answer sentence
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)  # self-contained


def study_of(rows: list[dict]) -> Study:
    runs = runs_of(
        [
            {
                "status": "completed",
                "final_train_loss": 0.1,
                "train_seconds": 1.0,
                "images_per_second": 1.0,
                "parameters": 1,
                "macs": 1,
                "error": None,
                **r,
            }
            for r in rows
        ]
    )
    return Study("pooling", Path("."), runs, ["pool"], {"pool": "max"})


def pooling_rows(groups: dict[str, list[float]]) -> list[dict]:
    return [
        {"pool": pool, "seed": seed, "final_test_acc": acc, "final_train_loss": 1 - acc}
        for pool, accs in groups.items()
        for seed, acc in enumerate(accs)
    ]


def test_answer_names_a_clear_gap_and_its_size():
    study = study_of(pooling_rows({"max": [0.990, 0.991, 0.992], "avg": [0.980, 0.981, 0.982]}))
    (line,) = answers(study, summarise(study))
    assert line.startswith("pool=avg: worse — 1.00 points below pool=max")
    assert "3 seeds" in line and "95% CI -1.23 to -0.77" in line


def test_answer_says_no_clear_difference_within_the_noise():
    study = study_of(pooling_rows({"max": [0.990, 0.980, 0.995], "avg": [0.985, 0.992, 0.979]}))
    (line,) = answers(study, summarise(study))
    assert "no clear difference from pool=max" in line
    assert "with these runs a true difference of" in line and "80% of the time" in line
    assert not math.isnan(summarise(study).table["diff"].iloc[1])


def test_a_study_of_several_arms_opens_with_them_grouped_by_verdict_in_plain_words():
    study = study_of(pooling_rows({"max": [0.990, 0.991, 0.992], "avg": [0.980, 0.981, 0.982],
                                   "mixed": [0.990, 0.980, 0.995],
                                   "lp": [0.995, 0.996, 0.997]}))  # fmt: skip
    assert plain_verdicts(study, summarise(study), "ConvNet") == (
        "On ConvNet, against pool=max (99.10%): better: lp 99.60% (+0.50 points); worse: avg "
        "98.10% (-1.00 points); no clear difference: mixed."
    )
    two = study_of(pooling_rows({"max": [0.990, 0.991, 0.992], "avg": [0.980, 0.981, 0.982]}))
    assert plain_verdicts(two, summarise(two), "ConvNet") is None  # its own sentence says it


def test_diverging_run_is_recorded_as_diverged(tmp_path):
    cfg = make_config(
        "data=synthetic",
        "device=cpu",
        "epochs=2",
        "optimizer.lr=1e8",
        "progress=false",
        "schedule=constant",
    )
    with pytest.raises(DivergedError, match="diverged"):
        train(cfg, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"


def test_report_without_runs_says_what_to_do(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    assert "holds no runs" in capsys.readouterr().err


def test_one_seed_per_arm_says_it_cannot_decide_and_gives_the_command_that_would(tmp_path):
    """The design card's own command, `python -m cnnexp -m pool=max,avg`: its report compares
    the arms with the first level, says one run per arm cannot tell them from seed noise, and
    gives the sweep again with 5 seeds per arm and its estimated time."""
    root = tmp_path / "sweep"
    tiny = ["data=synthetic", "data.synthetic.train_size=1024", "data.synthetic.noise=1.0",
            "epochs=2", "batch_size=32", "device=cpu", "progress=false", "tracking.images_every=0",
            "tracking.graph=false"]  # fmt: skip
    result = run_cli("-m", *tiny, "pool=max,avg", f"hydra.sweep.dir={root}", cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert report_main([str(root), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    conclusions = text.split("## Findings")[1].split("\n## ")[0]
    assert "Against pool=max" in conclusions
    (said,) = [line for line in conclusions.splitlines() if "one run per arm" in line]
    assert "cannot say which arm is better" in said
    command = said.split("`")[1]
    assert command.startswith("python -m cnnexp -m hydra/sweeper=decide data=synthetic ")
    assert "pool=max,avg hydra.sweep.dir=" in command and "seed=" not in command
    assert " on the machine that ran these, often less)" in said  # the time it would take
