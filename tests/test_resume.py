"""A run killed with SIGKILL, or stopped by SIGTERM or SIGUSR1 (a cluster's time limit), resumes
from its checkpoint and ends as if never interrupted."""

from __future__ import annotations

import signal

import pytest
import torch
from conftest import REPO, TINY, run_cli, stop_when

from cnnexp.schema import read_metrics

# precision is fixed: on a CPU with native bf16, precision=auto times both formats per run, and
# two runs under different load may choose differently (a resumed run keeps its own choice).
ARGS = [*TINY, "epochs=5", "data.synthetic.train_size=4096", "precision=fp32"]


# SIGKILL leaves the record as running; SIGTERM and SIGUSR1 are caught and recorded.
STOPS = [
    (signal.SIGKILL, "running"),
    pytest.param(signal.SIGTERM, "interrupted", marks=pytest.mark.slow),  # 35-90 s each
    pytest.param(signal.SIGUSR1, "interrupted", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("stop", "status"), STOPS)
def test_resume_after_a_stop_matches_uninterrupted_run(tmp_path, stop, status):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = run_cli(*ARGS, f"hydra.run.dir={whole}", cwd=REPO)
    assert done.returncode == 0, done.stderr

    ckpt = broken / "checkpoint.pt"
    code = stop_when(ckpt, *ARGS, f"hydra.run.dir={broken}", stop=stop)
    assert code == (-signal.SIGKILL if stop == signal.SIGKILL else 143)
    killed_at = torch.load(ckpt, weights_only=False)["epoch"]
    assert killed_at < 4, "the run finished before it could be stopped"
    record = read_metrics(broken)
    assert record["status"] == status
    if status == "interrupted":
        assert f"stopped by {stop.name}" in record["error"]

    # The documented resume command: the same overrides, the same run folder.
    resumed = run_cli(*ARGS, f"hydra.run.dir={broken}", cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {broken} from epoch {killed_at + 2}" in resumed.stdout + resumed.stderr

    a, b = read_metrics(whole), read_metrics(broken)
    assert b["status"] == "completed"
    keys = ("train_loss", "train_acc", "test_loss", "test_acc", "lr")
    assert [[r[k] for k in keys] for r in a["history"]] == [
        [r[k] for k in keys] for r in b["history"]
    ]
    assert a["final_test_acc"] == b["final_test_acc"]
