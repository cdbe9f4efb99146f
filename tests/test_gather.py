"""A budget check joins the study of its name and data set: the MNIST and CIFAR-10 pooling
studies share the name "pooling", and each check must land with its own."""

import json
from pathlib import Path

import pandas as pd

from cnnexp.report import build
from cnnexp.report.runs import OBJECTS, Study, StudyRun, from_row, runs_of, table_of_runs
from cnnexp.schema import Epoch, Headline, Run


def study(data: str, check: bool) -> Study:
    runs = runs_of([{"pool": "max", "seed": 0, "config": {"data": {"name": data}}}])
    if check:
        return Study("pooling", Path(f"{data}-check"), (), [], check=runs)
    return Study("pooling", Path(data), runs, ["pool"])


def test_each_check_joins_the_study_of_its_data_set(monkeypatch):
    folders = {
        Path("mnist"): study("mnist", False),
        Path("cifar10"): study("cifar10", False),
        Path("cifar10-check"): study("cifar10", True),
        Path("mnist-check"): study("mnist", True),
    }
    monkeypatch.setattr(build, "load_studies", lambda path: [folders[path]])
    studies = build.gather(list(folders))
    assert [s.root for s in studies] == [Path("mnist"), Path("cifar10")]
    for s in studies:
        assert len(s.check) == 1
        assert s.check[0].config["data"]["name"] == str(s.root)


def test_a_report_shows_no_absolute_path_of_the_machine_that_ran(tmp_path):
    """Where the images were read from is recorded as this machine's path; a report (and the
    runs table it keeps) shows only its last name, which a reader's machine can make sense of."""
    from conftest import REPO

    from cnnexp.report import main as report_main

    table = pd.read_csv(REPO / "docs" / "pooling-mnist" / "runs.csv")
    table["data_source"] = "torchvision mnist at /home/someone/datasets/shared/data"
    table.to_csv(tmp_path / "runs.csv", index=False)
    assert report_main([str(tmp_path / "runs.csv"), "--out", str(tmp_path / "report")]) == 0
    for name in ("report.md", "report.html", "runs.csv"):
        text = (tmp_path / "report" / name).read_text()
        assert "/home/someone" not in text, name
    assert "torchvision mnist at .../data" in (tmp_path / "report" / "report.md").read_text()


def test_a_run_read_back_from_its_row_of_the_runs_table_is_the_same_typed_run():
    """runs.csv keeps each run's row (StudyRun.row); reading it back (from_row) gives the same
    record, levels and provenance, a commit with uncommitted changes included."""
    history = [Epoch(epoch=e, test_acc=0.9 + e / 100, test_loss=0.3, train_loss=0.4,
                     train_acc=0.8, lr=0.1, train_seconds=2.0, test_seconds=0.5,
                     images_per_second=500.0, images=1000) for e in (1, 2)]  # fmt: skip
    record = Run(status="completed", seed=3, epochs=2, git_commit="abc123-dirty", device="cpu",
                 parameters=61706, history=history, headline=Headline.of(history, 9.5))  # fmt: skip
    run = StudyRun("multirun/x/0", record, {"pool": "avg", "model.widths": "[6,16]", "seed": 3},
                   {"data": {"name": "mnist"}}, {"pool": "pool=avg"})  # fmt: skip
    row = table_of_runs(Study("pooling", Path("x"), (run,), ["pool"])).iloc[0].to_dict()
    row = {k: json.loads(v) if k in OBJECTS else v for k, v in row.items()}  # as read_table does
    again = from_row(row)
    assert again.levels == run.levels and again.config == run.config and again.given == run.given
    assert again.record.git_commit == "abc123-dirty" and again.status == "completed"
    assert again.final() == run.final() == 0.92 and again.record.history == history
    assert again.final("parameters") == 61706 and again.seed == 3
