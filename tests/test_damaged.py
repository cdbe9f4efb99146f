"""Damaged files and clashing sweeps: every file we read that is cut short, corrupt or not of our
form is named in one line with what to do, never a traceback; a sweep folder is one sweep's; a
sweep's exit status says whether every job ended for good."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, TINY, run_cli, stop_when

from cnnexp import files
from cnnexp.callbacks import NOT_FINISHED, PROGRESS, exit_status
from cnnexp.errors import STOPPED, DamagedFileError
from cnnexp.report import main as report_main

SMALL = [*TINY, "data.synthetic.train_size=256", "data.synthetic.test_size=64",
         "tracking.images_every=0", "tracking.graph=false",
         "tracking.monitor_interval=0"]  # fmt: skip


def _cut(path: Path) -> None:
    """Cut a file short in the middle, as a full disk or a killed copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# --- the rule: every reader of a file checks it and names it --------------------------------


def _events(folder: Path) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(folder)) as writer:
        for step in range(3):
            writer.add_scalar("loss", 1.0 / (step + 1), step)
            writer.add_image("features/x", np.zeros((3, 8, 8)), step)
    return next(folder.glob("*tfevents*"))


KINDS = {
    "json": (lambda p: p.write_text(json.dumps({"status": "completed", "seed": 1})),
             lambda p: files.read_json(p, "fix")),
    "yaml": (lambda p: p.write_text("a: 1\nb: [1, 2]\n"),
             lambda p: files.read_yaml(p, "fix", dict)),
    "csv": (lambda p: p.write_text("time_s,cpu\n0.5,10\n1.5,12\n"),
            lambda p: files.read_csv(p, "fix", ("time_s",))),
    "torch": (lambda p: torch.save({"w": torch.ones(64)}, p), lambda p: files.read_torch(p, "fix")),
    "text": (lambda p: p.write_text("GPU 0: NVIDIA H100\n"), lambda p: files.read_text(p, "fix")),
}  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("damage", ["cut", "garbage", "empty"])
def test_each_reader_names_a_damaged_file(tmp_path, kind, damage):
    write, read = KINDS[kind]
    path = tmp_path / f"file.{kind}"
    write(path)
    assert read(path) is not None  # the intact file reads
    if damage == "cut":
        _cut(path)
    elif damage == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    else:
        path.write_bytes(b"")
    with pytest.raises(DamagedFileError) as err:
        read(path)
    said = str(err.value)
    assert said.startswith(f"{path} cannot be read (") and said.endswith("; fix")
    assert "\n" not in said and "Traceback" not in said


def test_a_record_not_of_our_form_is_damaged(tmp_path):
    from cnnexp.schema import read_record

    (tmp_path / "metrics.json").write_text(json.dumps([1, 2, 3]))
    with pytest.raises(DamagedFileError, match="holds a list, not a dict"):
        read_record(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "splendid"}))
    with pytest.raises(DamagedFileError, match="not a run record: status 'splendid'"):
        read_record(tmp_path)
    record = {"status": "completed", "final_test_acc": "0.98", "epochs_done": 1}
    (tmp_path / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(DamagedFileError, match="final_test_acc is '0.98', not a number"):
        read_record(tmp_path)
    names = ("test_acc", "test_loss", "train_loss", "train_acc", "lr", "train_seconds",
             "test_seconds", "images_per_second", "images")  # fmt: skip
    epoch = {"epoch": 1, **dict.fromkeys(names, 1.0), "test_acc": [0.5]}
    record = {"status": "completed", "history": [epoch]}
    (tmp_path / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(DamagedFileError, match=re.escape("history[1].test_acc is [0.5]")):
        read_record(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"history": "abc"}))
    with pytest.raises(DamagedFileError, match="not a run record"):
        read_record(tmp_path)


@pytest.mark.parametrize("damage", ["cut", "flipped"])
def test_a_damaged_event_file_is_named_though_tensorboard_skips_it(tmp_path, damage):
    event = _events(tmp_path)
    files.check_events(tmp_path, "fix")  # intact
    data = bytearray(event.read_bytes())
    if damage == "cut":
        event.write_bytes(bytes(data[: len(data) // 2 + 7]))
    else:
        data[len(data) // 2] ^= 0xFF  # one byte: a checksum fails
        event.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match=re.escape(str(event))):
        files.read_events(tmp_path, "fix")


def test_a_damaged_cache_is_said_and_made_again(tmp_path, monkeypatch, caplog):
    from cnnexp import precision
    from cnnexp.models.lenet import LeNet5

    monkeypatch.setattr(precision, "_seconds_per_step", lambda m, e, name, w, r: 0.1)
    cache = tmp_path / "precision-probes.json"
    cache.write_text('{"a": {"fp32": 0.')  # cut short
    model = LeNet5(1, 32, 10, torch.nn.MaxPool2d, torch.nn.ReLU)
    measure = precision.step_timer(model, torch.zeros(8, 1, 32, 32), cache_dir=tmp_path)
    assert measure() == {"fp32": 0.1, "bf16": 0.1}
    (said,) = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert said.startswith(f"{cache} cannot be read (cut short") and "measured again" in said
    assert list(json.loads(cache.read_text()).values()) == [{"fp32": 0.1, "bf16": 0.1}]


def test_every_reader_of_a_file_is_a_checked_one():
    """Only cnnexp/files.py calls the libraries' readers; everything else goes through it."""
    readers = re.compile(r"json\.load|torch\.load|pd\.read_csv\(|safe_load|EventAccumulator\(")
    found = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted((REPO / "cnnexp").rglob("*.py"))
        if path.name != "files.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if readers.search(line) and "import" not in line
    ]  # fmt: skip
    assert found == []


def test_the_exit_status_of_a_sweep():
    assert exit_status(Counter(completed=3, diverged=1)) == (0, "")
    assert exit_status(Counter({"completed": 2, "did not train": 1}))[0] == 0
    code, why = exit_status(Counter(completed=2, interrupted=2))
    assert code == STOPPED and "2 of 4 jobs were interrupted" in why and "resume" in why
    code, why = exit_status(Counter(completed=2, interrupted=1, failed=1))
    assert code == 1 and "2 of 4 jobs did not end for good (1 interrupted, 1 failed)" in why
    assert exit_status(Counter({"completed": 1, NOT_FINISHED: 1}))[0] == 1


# --- a damaged record in a sweep: named, counted, and the report goes on ---------------------


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged") / "sweep"
    learns = ["data.synthetic.train_size=512", "data.synthetic.noise=1.0", "batch_size=32"]
    done = run_cli("-m", *SMALL, *learns, "pool=max,avg", "seed=0,1", "+study.baseline.pool=max",
                   f"hydra.sweep.dir={root}", cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_a_damaged_record_is_named_and_the_report_goes_on_without_it(sweep, capsys):
    _cut(sweep / "1" / "metrics.json")
    assert report_main([str(sweep), "--out", str(sweep.parent / "report")]) == 0
    (said,) = capsys.readouterr().err.strip().splitlines()  # one line, and on it goes
    assert said.startswith(f"warning: {sweep / '1' / 'metrics.json'} cannot be read (cut short")
    assert said.endswith("; the report goes on without that run")
    summary = pd.read_csv(sweep.parent / "report" / "summary.csv")
    assert summary["unreadable"].sum() == 1 and summary["runs"].sum() == 4
    text = (sweep.parent / "report" / "report.md").read_text()
    accuracy = text.split("### Test accuracy")[1].split("###")[0]
    assert re.search(r"\|\s+unreadable\s+\|", accuracy)  # counted beside the usable runs
    shown = text.split("### Runs not in the means\n\n")[1].split("\n\n")[0]  # its table
    (row,) = [line for line in shown.splitlines() if "| unreadable" in line]
    assert "metrics.json cannot be read (cut short" in row and "nan" not in row


def test_a_damaged_runs_table_stops_the_report_with_one_line(tmp_path, capsys):
    table = tmp_path / "runs.csv"
    table.write_text('study,run,status\n"pooling,0,completed\n')  # a quote never closed
    assert report_main([str(table), "--out", str(tmp_path / "report")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {table} cannot be read (") and "runs.csv a report wrote" in line
    table.write_text("study,run,status,final_test_acc\npooling,0,completed,0.9x\n")
    assert report_main([str(table), "--out", str(tmp_path / "report")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "column final_test_acc holds '0.9x', not a number" in line
    table.write_text("a,b\n1,2\n")  # a CSV, not ours
    assert report_main([str(table), "--out", str(tmp_path / "report")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{table} cannot be read (it has no 'study', 'run', 'status' column)" in line


# --- a damaged checkpoint: set aside, never deleted; the same command starts over -------------


@pytest.mark.slow  # a run stopped, resumed and run again: about 20 s
def test_a_damaged_checkpoint_is_set_aside_and_the_run_starts_over(tmp_path):
    run = [*TINY, "epochs=5", "data.synthetic.train_size=4096", "precision=fp32",
           f"hydra.run.dir={tmp_path}"]  # fmt: skip
    checkpoint = tmp_path / "checkpoint.pt"
    assert stop_when(checkpoint, *run) == STOPPED  # SIGTERM after the first epoch
    before = (tmp_path / "metrics.json").read_bytes()
    _cut(checkpoint)

    again = run_cli(*run, cwd=REPO)
    assert again.returncode == 2
    out = again.stdout + again.stderr
    assert "Traceback" not in out
    (line,) = [x for x in out.splitlines() if "cannot be read" in x]
    assert f"{checkpoint} cannot be read (" in line
    assert "kept as checkpoint.pt.damaged" in line and "start this run over from epoch 1" in line
    assert (tmp_path / "checkpoint.pt.damaged").exists() and not checkpoint.exists()
    assert (tmp_path / "metrics.json").read_bytes() == before  # the interrupted record, as it was

    over = run_cli(*run, cwd=REPO)
    assert over.returncode == 0, over.stderr[-3000:]
    assert "resuming" not in over.stdout + over.stderr
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "completed" and len(record["history"]) == 5
    assert (tmp_path / "checkpoint.pt.damaged").exists()  # still kept


# --- one sweep per folder ---------------------------------------------------------------------


@pytest.mark.slow  # four sweeps into one folder, two of them refused: about 35 s
def test_a_sweep_folder_belongs_to_one_sweep(tmp_path):
    root = tmp_path / "sweep"
    first = [*SMALL, "data.synthetic.train_size=4096", "epochs=4", "seed=0,1",
             f"hydra.sweep.dir={root}"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "cnnexp", "-m", *first], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.time() + 120
    while not (root / "0").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)

    clash = run_cli("-m", *SMALL, "seed=5", f"hydra.sweep.dir={root}", cwd=REPO)
    assert clash.returncode == 2
    (line,) = clash.stderr.strip().splitlines()
    assert line.startswith(f"error: {root} is the folder of a sweep that is running (process ")
    assert f"process {proc.pid} on " in line and "seed=0,1" in line

    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"sweep folder: {root} (2 completed)" in out
    assert "seed=5" not in (root / "multirun.yaml").read_text()

    later = run_cli("-m", *SMALL, "seed=5", f"hydra.sweep.dir={root}", cwd=REPO)
    assert later.returncode == 2  # over, but its folder holds its jobs
    (line,) = later.stderr.strip().splitlines()
    assert f"{root} holds the jobs of another sweep (python -m cnnexp -m " in line
    assert json.loads((root / "0" / "metrics.json").read_text())["seed"] == 0

    again = run_cli("-m", *first, cwd=REPO)  # the same sweep again: it resumes, and counts its own
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"sweep folder: {root} (2 completed)" in again.stdout
    (end,) = [line for line in again.stdout.splitlines() if line.startswith("sweep folder:")]
    assert " this time (first started " in end  # its own time, not the time it stood stopped
    assert json.loads((root / PROGRESS).read_text())["owner"]["pid"] != proc.pid


def test_the_sweep_callback_travels_to_a_job_without_the_lock(tmp_path):
    import pickle

    from cnnexp.callbacks import EndOfJob, take_folder

    callback = EndOfJob()
    callback.lock = take_folder(tmp_path, ["seed=0,1"])
    copy = pickle.loads(pickle.dumps(callback))  # as joblib and submitit send it to a job
    assert copy.lock is None and callback.lock.is_locked
