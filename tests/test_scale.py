"""Beyond one process: DDP under torchrun, parallel and searching sweeps, restartable sweeps."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPO, TINY, run_cli
from omegaconf import OmegaConf

from cnnexp.checkpoint import load_checkpoint
from cnnexp.data import load_splits
from cnnexp.engine import evaluate
from cnnexp.loader import DeviceLoader
from cnnexp.models import build_model
from cnnexp.report import main as report_main
from cnnexp.report.shots import free_port
from cnnexp.schema import read_metrics

QUIET = ["tracking.images_every=0", "tracking.graph=false", "tracking.histograms_every=0"]


@pytest.mark.slow  # two torchrun "nodes" of one process each, about 30 s
def test_one_run_across_two_nodes_through_a_c10d_rendezvous(tmp_path):
    """How a cluster starts one run on two nodes (srun starts torchrun once per node): two
    torchrun launchers meet at a c10d rendezvous on 127.0.0.1 and train one run together."""
    run_dir = tmp_path / "run"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    command = [
        torchrun,
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        "--rdzv-id=two-nodes",
        "-m",
        "cnnexp",
        *TINY,
        *QUIET,
        "precision=fp32",
        "data.synthetic.train_size=512",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # one run folder, one record
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["world_size"] == 2
    checksums = metrics["rank_weight_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert metrics["train_images"] == 512  # each node trained on its own half


@pytest.mark.slow  # two processes, 21 s
def test_torchrun_ddp_on_two_cpu_processes(tmp_path):
    run_dir = tmp_path / "run"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    result = subprocess.run(
        [
            torchrun,
            "--nproc_per_node=2",
            "--standalone",
            "-m",
            "cnnexp",
            *TINY,
            "epochs=2",
            "precision=fp32",  # the re-evaluation below runs in fp32
            "data.synthetic.train_size=1024",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Only rank 0 wrote a result folder; rank 1 wrote nowhere in the repository.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["world_size"] == 2
    checksums = metrics["rank_weight_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    # The confusion matrix comes from both ranks' last test pass, put back in order.
    matrix = metrics["confusion_matrix"]
    correct = sum(matrix[i][i] for i in range(len(matrix)))
    assert sum(map(sum, matrix)) == metrics["test_images"]
    assert correct / metrics["test_images"] == pytest.approx(metrics["final_test_acc"], abs=1e-9)
    # Each rank trained on its own half: an epoch is 1024 images over both ranks, not 2048.
    assert metrics["train_images"] == 1024
    assert [row["images"] for row in metrics["history"]] == [1024, 1024]

    # A single-process evaluation of the saved checkpoint gives the reported test accuracy.
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    cfg = OmegaConf.create(ckpt["config"])
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    _, test_set, _ = load_splits(cfg.data)
    loader = DeviceLoader(
        test_set,
        batch_size=100,
        device=torch.device("cpu"),
        mean=cfg.data.mean,
        std=cfg.data.std,
        train=False,
    )
    stats = evaluate(model, loader, torch.nn.CrossEntropyLoss(), nullcontext)
    assert stats.acc == pytest.approx(metrics["final_test_acc"], abs=1e-9)
    assert stats.images == 512


@pytest.mark.slow  # 23 s: two plugin sweeps
def test_joblib_sweep_and_optuna_search_are_read_by_the_report(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    parallel, search = tmp_path / "parallel", tmp_path / "search"
    result = run_cli(
        "-m",
        *TINY,
        *QUIET,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "pool=max,avg",
        f"hydra.sweep.dir={parallel}",
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli(
        "-m",
        *TINY,
        *QUIET,
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.direction=maximize",
        "hydra.sweeper.sampler.seed=0",
        "optimizer.lr=tag(log,interval(0.001,0.1))",
        "data.validation=256",
        f"hydra.sweep.dir={search}",
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = [read_metrics(p) for p in sorted(search.glob("[0-9]*"))]
    assert len(trials) == 3 and all(t["status"] == "completed" for t in trials)
    assert all("final_val_acc" in t for t in trials)
    lrs = {t["overrides"]["optimizer.lr"] for t in trials}  # recorded as numbers, not text
    assert len(lrs) == 3 and all(isinstance(lr, float) for lr in lrs)
    best = (search / "optimization_results.yaml").read_text()
    assert str(max(t["final_val_acc"] for t in trials))[:6] in best

    assert report_main([str(parallel), str(search), "--out", str(tmp_path / "report")]) == 0
    runs = pd.read_csv(tmp_path / "report" / "runs.csv")["run"]
    assert runs.str.startswith(str(parallel)).sum() == 2
    assert runs.str.startswith(str(search)).sum() == 3


@pytest.mark.slow  # two sweeps, 22-60 s on an AVX2-only CPU
def test_restarted_sweep_skips_finished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *TINY,
        *QUIET,
        "epochs=3",
        "data.synthetic.train_size=2048",
        "seed=0,1,2",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnexp", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        first, second = read_metrics(sweep / "0"), read_metrics(sweep / "1")
        if first and first["status"] == "completed" and second:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_metrics(sweep / "0")["status"] == "completed"
    assert not (sweep / "2" / "metrics.json").exists(), "the sweep finished before the kill"
    finished = (sweep / "0" / "metrics.json").read_bytes()

    result = run_cli(*args, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "already holds this completed run" in result.stdout + result.stderr
    assert (sweep / "0" / "metrics.json").read_bytes() == finished  # not trained again
    assert all(read_metrics(sweep / str(i))["status"] == "completed" for i in range(3))


def test_weights_checksum_sees_every_weight_and_buffer():
    from torch import nn

    from cnnexp.train import weights_checksum

    torch.manual_seed(0)
    a = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    b = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    b.load_state_dict(a.state_dict())
    assert weights_checksum(a) == weights_checksum(b)
    b[1].running_mean += 1e-6
    assert weights_checksum(a) != weights_checksum(b)


def test_slurm_launcher_preset_is_a_launcher_submitit_accepts(tmp_path):
    """The preset's keys are all parameters of the SLURM launcher: instantiating it fails on an
    unknown or misspelt key (the YAML alone would not)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from cnnexp import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", ["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    assert launcher.params["gpus_per_node"] == 1 and launcher.params["timeout_min"] == 120
