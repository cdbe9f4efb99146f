"""The launcher of a machine's GPUs (hydra/launcher=workers) and a cluster's time limit: jobs K
at a time with the cores split between them, a killed job resumed by the restarted sweep, a
stopped sweep, and a job that submitit requeues after its time-limit signal."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from conftest import REPO, TINY, run_cli

from cnnexp.errors import ConfigError
from cnnexp.schema import read_metrics
from cnnexp.workers import Slot, slots, visible_gpus

# Long enough (about 10 s a job on one core) to be caught running; fixed precision, so a resumed
# run and an uninterrupted one train alike.
JOB = [*TINY, "epochs=4", "data.synthetic.train_size=4096", "precision=fp32"]
WORKERS = ["hydra/launcher=workers", "hydra.launcher.per_device=2", "hydra.launcher.devices=cpu"]


def test_workers_share_out_gpus_and_cores():
    four = slots(["0", "1"], per_device=2, cores=list(range(8)))
    assert [s.gpu for s in four] == ["0", "0", "1", "1"]
    assert [s.cores for s in four] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    env = four[2].env()
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["OMP_NUM_THREADS"] == "2"

    cpu = slots([], per_device=2, cores=[0, 1])
    assert cpu == [Slot(None, (0,)), Slot(None, (1,))]
    assert cpu[0].env()["OMP_NUM_THREADS"] == "1"
    # More workers than cores: they share, each with at least one.
    assert [s.cores for s in slots([], per_device=3, cores=[0, 1])] == [(0,), (1,), (0,)]


def test_visible_gpus_follow_the_setting(monkeypatch):
    assert visible_gpus("cpu") == []
    assert visible_gpus([2, 3]) == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    assert visible_gpus("auto") == ["4", "5"]
    with pytest.raises(ConfigError, match="hydra.launcher.devices='gpu' is not valid"):
        visible_gpus("gpu")


def _statuses(sweep: Path, jobs: int) -> list[str | None]:
    return [(read_metrics(sweep / str(i)) or {}).get("status") for i in range(jobs)]


def _job_processes(sweep_process: psutil.Process) -> dict[str, psutil.Process]:
    """The sweep's running jobs by their order file's name (`2.job` runs job 2)."""
    jobs = {}
    for child in sweep_process.children():
        try:
            command = child.cmdline()
        except psutil.Error:  # just ended
            continue
        if "cnnexp.workers" in command:
            jobs[Path(command[-1]).name] = child
    return jobs


def _start_sweep(command: list[str]) -> subprocess.Popen:
    """`python -m cnnexp -m COMMAND` in the background, its output (Hydra's log too) in stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", "cnnexp", "-m", *command],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow  # 6 jobs 2 at a time, then the restart: about 90 s on two cores
def test_a_sweep_two_at_a_time_survives_a_killed_job(tmp_path):
    sweep = tmp_path / "sweep"
    command = [*JOB, *WORKERS, "seed=0,1,2,3,4,5", f"hydra.sweep.dir={sweep}"]
    proc = _start_sweep(command)
    parent, most, killed = psutil.Process(proc.pid), 0, None
    while proc.poll() is None:
        jobs = _job_processes(parent)
        most = max(most, len(jobs))
        if killed is None and "2.job" in jobs and (sweep / "2" / "checkpoint.pt").exists():
            jobs["2.job"].kill()
            killed = 2
        time.sleep(0.05)
    out = proc.stdout.read()
    assert proc.returncode == 1, out  # a job that did not finish: a cluster script retries
    assert "1 of 6 jobs did not end for good (1 not finished)" in out
    assert killed == 2, "job 2 finished before it could be killed"
    assert most == 2, f"{most} jobs ran at once; the launcher was asked for 2"
    assert "job 2 ended without an answer (killed by SIGKILL)" in out
    assert _statuses(sweep, 6) == ["completed"] * 2 + ["running"] + ["completed"] * 3
    # Each of the two workers had one of the two cores.
    assert json.loads((sweep / "0" / "env.json").read_text())["torch_threads"] == 1

    again = run_cli("-m", *command, cwd=REPO)
    assert again.returncode == 0, again.stderr
    said = again.stdout + again.stderr
    assert f"resuming {sweep / '2'} from epoch" in said
    assert said.count("already holds this completed run") == 5
    assert _statuses(sweep, 6) == ["completed"] * 6
    assert "(6 completed)" in said


@pytest.mark.slow  # two jobs stopped and resumed: about 40 s
def test_a_stopped_sweep_stops_every_job_and_resumes(tmp_path):
    sweep = tmp_path / "sweep"
    command = [*JOB, *WORKERS, "seed=0,1,2", f"hydra.sweep.dir={sweep}"]
    proc = _start_sweep(command)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if all((sweep / j / "checkpoint.pt").exists() for j in "01"):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    assert "the sweep was stopped by SIGTERM" in out
    assert _statuses(sweep, 3) == ["interrupted", "interrupted", None]
    assert "stopped by SIGTERM" in read_metrics(sweep / "0")["error"]

    again = run_cli("-m", *command, cwd=REPO)
    assert again.returncode == 0, again.stderr
    assert _statuses(sweep, 3) == ["completed"] * 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_workers_run_jobs_on_the_given_gpu(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_cli(
        "-m",
        "data=synthetic",
        "epochs=1",
        "progress=false",
        "device=cuda",
        "hydra/launcher=workers",
        "hydra.launcher.per_device=2",
        "hydra.launcher.devices=[0]",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    for job in "01":
        record = read_metrics(sweep / job)
        assert record["status"] == "completed" and record["device"] == "cuda:0"
        env = json.loads((sweep / job / "env.json").read_text())
        assert env["gpus"], env


def seconds_per_epoch(job: list[str], run_dir: Path) -> float:
    """An epoch's training and test seconds: the faster of epochs 2 and 3 of `job` (the first
    warms up), so that a slow moment while measuring does not shorten the job it sizes."""
    done = run_cli(*job, "epochs=3", f"hydra.run.dir={run_dir}", cwd=REPO)
    assert done.returncode == 0, done.stderr
    later = read_metrics(run_dir)["history"][1:]
    return min(r["train_seconds"] + r["test_seconds"] for r in later)


@pytest.mark.slow  # submitit's local executor: a time-limit signal and requeues, about 3.5 min
def test_submitit_requeues_a_job_at_its_time_limit_and_it_resumes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    # Submitit's local executor signals the time limit 30 s after a job starts (timeout_min
    # minus 30 s); a job spends 5-15 s of each 30 s starting, so it trains 15-25 s a window. The job
    # trains for about 50 s (an epoch measured here) and may be requeued 5 times (6 windows, the
    # most submitit's local controller starts a job): it outlasts its first window even if its
    # epochs run 2x faster than measured (a CI run once saw 1.5x), and ends within its 6 windows
    # (90-150 s of training) even if they run 1.8x slower.
    job = [*TINY, "data.synthetic.train_size=8192", "precision=fp32", "seed=0"]
    epochs = max(8, math.ceil(50 / seconds_per_epoch(job, tmp_path / "measure")))
    run = [*job, f"epochs={epochs}"]
    whole = run_cli(*run, f"hydra.run.dir={tmp_path / 'whole'}", cwd=REPO)
    assert whole.returncode == 0, whole.stderr

    sweep = tmp_path / "sweep"
    done = run_cli(
        "-m",
        *run,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=1",
        "+hydra.launcher.max_num_timeout=5",
        f"hydra.sweep.dir={sweep}",
        cwd=REPO,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs
    job_log = (sweep / "0" / "cnnexp.log").read_text()
    assert "stopped by SIGUSR2" in job_log and f"resuming {sweep / '0'} from epoch" in job_log
    a, b = read_metrics(tmp_path / "whole"), read_metrics(sweep / "0")
    assert b["status"] == "completed"
    keys = ("train_loss", "test_loss", "test_acc", "lr")
    assert [[r[k] for k in keys] for r in a["history"]] == [
        [r[k] for k in keys] for r in b["history"]
    ]
