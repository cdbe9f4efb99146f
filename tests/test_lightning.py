"""trainer=lightning: the same science as our own loop, resumable, and DDP under torchrun."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY, make_config, run_cli, stop_when

import cnnexp
from cnnexp.errors import ConfigError
from cnnexp.schema import read_metrics
from cnnexp.train import train

pytest.importorskip(
    "lightning", reason="PyTorch Lightning is an extra: pip install -e .[lightning]"
)

QUIET = ["tracking.images_every=0", "tracking.graph=false", "precision=fp32"]


def test_both_backends_reach_the_same_accuracy_from_the_same_seed(tmp_path):
    args = (*TINY, *QUIET, "epochs=3", "data.synthetic.noise=2.0")
    native = train(make_config(*args, "trainer=native"), tmp_path / "native")
    lightning = train(make_config(*args, "trainer=lightning"), tmp_path / "lightning")
    assert native["status"] == lightning["status"] == "completed"
    assert native["final_test_acc"] > 0.5  # it learned (chance is 0.1)
    assert lightning["final_test_acc"] == pytest.approx(native["final_test_acc"], abs=0.05)
    assert [r["epoch"] for r in lightning["history"]] == [1, 2, 3]
    assert (tmp_path / "lightning" / "lightning.ckpt").exists()
    # Lightning's TensorBoard logger wrote our tags into the run folder.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "lightning" / "tb"))
    events.Reload()
    assert {"train/loss", "test/acc", "lr"} <= set(events.Tags()["scalars"])


@pytest.mark.slow  # 25 s: two Lightning processes
def test_lightning_run_killed_after_an_epoch_resumes_and_completes(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, *QUIET, "trainer=lightning", "epochs=6", "data.synthetic.train_size=4096",
            "tracking.monitor_interval=0", f"hydra.run.dir={run_dir}"]  # fmt: skip
    # 0.2 s after the first checkpoint appears: let it be written whole
    code = stop_when(run_dir / "lightning.ckpt", *args, stop=signal.SIGKILL, settle=0.2)
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    assert read_metrics(run_dir)["status"] == "running"
    done_before = len(read_metrics(run_dir)["history"])
    assert done_before < 6

    resumed = run_cli(*args, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout + resumed.stderr
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed"
    assert [r["epoch"] for r in metrics["history"]] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow  # two processes, 21 s
def test_two_process_ddp_through_lightning_writes_one_record(tmp_path):
    run_dir = tmp_path / "run"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    result = subprocess.run(
        [torchrun, "--nproc_per_node=2", "--standalone", "-m", "cnnexp", *TINY, *QUIET,
         "trainer=lightning", "data.synthetic.train_size=1024", f"hydra.run.dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # rank 1 wrote no folder
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["world_size"] == 2
    assert metrics["backend"] == "gloo"
    assert [row["images"] for row in metrics["history"]] == [1024, 1024]  # each rank half
    checksums = metrics["rank_weight_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]


@pytest.mark.slow  # 25 s: torchrun with two processes
def test_trainer_devices_starts_the_run_under_torchrun(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(*TINY, *QUIET, "trainer=lightning", "trainer.devices=2", "epochs=1",
                     "data.synthetic.train_size=512", f"hydra.run.dir={run_dir}", cwd=REPO,
                     env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["world_size"] == 2


def test_without_lightning_the_run_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "cnnexp.lightning_backend", raising=False)
    monkeypatch.delattr(cnnexp, "lightning_backend", raising=False)  # imported afresh
    with pytest.raises(ConfigError, match=r"pip install -e \".\[lightning\]\""):
        train(make_config(*TINY, "trainer=lightning"), tmp_path)
    assert read_metrics(tmp_path)["status"] == "failed"
