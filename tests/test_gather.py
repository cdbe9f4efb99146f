"""A budget check joins the study of its name and data set: the MNIST and CIFAR-10 pooling
studies share the name "pooling", and each check must land with its own."""

from pathlib import Path

import pandas as pd

from cnnexp.report import build
from cnnexp.report.runs import Study, runs_of


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
