"""The run record: the object that keeps a run's metrics.json, TensorBoard events and system
monitor from the run's first moment to its last. What the record holds is defined once, in
cnnexp.schema."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from omegaconf import DictConfig

from cnnexp.environment import environment, nvidia_smi
from cnnexp.errors import CnnexpError, DivergedError
from cnnexp.files import atomic_write_json
from cnnexp.monitor import SystemMonitor
from cnnexp.schema import (
    COMPLETED,
    DIVERGED,
    ENVIRONMENT,
    FAILED,
    INTERRUPTED,
    METRICS,
    NVIDIA_SMI,
    RECORD_VERSION,
    RUNNING,
    SYSTEM,
    WITHOUT,
)
from cnnexp.tracking import Tracker


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The run's metrics.json, or None where there is none."""
    path = Path(run_dir) / METRICS
    return json.loads(path.read_text()) if path.exists() else None


def summarise(metrics: dict[str, Any], wall_seconds: float) -> None:
    """Headline numbers from the per-epoch history."""
    history = metrics["history"]
    if not history:
        return
    train_seconds = sum(row["train_seconds"] for row in history)
    metrics.update(
        final_test_acc=history[-1]["test_acc"],
        final_test_loss=history[-1]["test_loss"],
        final_train_loss=history[-1]["train_loss"],
        epochs_done=len(history),
        train_seconds=train_seconds,
        images_per_second=sum(r["images_per_second"] * r["train_seconds"] for r in history)
        / train_seconds,
    )
    for key in WITHOUT.values():  # the last epoch's evaluation-only pairs
        if key in history[-1]:
            metrics[f"final_{key}"] = history[-1][key]
    if "val_acc" in history[-1]:
        metrics.update(
            final_val_acc=history[-1]["val_acc"],
            best_val_acc=max(row["val_acc"] for row in history),
        )
    metrics["wall_seconds"] = wall_seconds  # of this process; a resumed run counts from resuming


class RunRecord:
    """metrics.json, TensorBoard and the system monitor of one run. As a context manager it puts
    the run on record as running from the start and, whatever happens, leaves the right status
    (completed, diverged, interrupted or failed, with the error) and closes what it opened."""

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        job: dict[str, Any],
        device: torch.device,
        world: int,
        is_main: bool,
        config_hash: str,
    ):
        self.run_dir, self.is_main = run_dir, is_main
        self.start = time.perf_counter()
        env = environment()
        self.metrics: dict[str, Any] = {
            "record_version": RECORD_VERSION,
            "status": RUNNING,
            "error": None,
            "device": str(device),
            "world_size": world,
            "seed": cfg.seed,
            "epochs": cfg.epochs,
            "config_hash": config_hash,
            "choices": job.get("choices", {}),
            "overrides": job.get("overrides", {}),
            "git_commit": env["git_commit"],
            "torch": env["torch"],
            "cuda": env["cuda"],
            "history": [],
        }
        self.tracker = Tracker(run_dir, enabled=is_main, settings=cfg.tracking, epochs=cfg.epochs)
        self.monitor = None
        if is_main:
            atomic_write_json(env, run_dir / ENVIRONMENT)
            smi = nvidia_smi()
            if smi:
                (run_dir / NVIDIA_SMI).write_text(smi)
            if cfg.tracking.monitor_interval > 0:
                interval = cfg.tracking.monitor_interval
                self.monitor = SystemMonitor(run_dir / SYSTEM, interval, self.tracker.scalar)
                self.monitor.start()

    def save(self) -> None:
        """Summarise the history so far and write metrics.json (rank 0 only)."""
        summarise(self.metrics, time.perf_counter() - self.start)
        if self.is_main:
            atomic_write_json(self.metrics, self.run_dir / METRICS)

    def __enter__(self) -> RunRecord:
        self.save()  # a run in progress is on record as running from the start
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.metrics["status"] = _status(err)
        if err is not None:
            self.metrics["error"] = (
                str(err) if isinstance(err, CnnexpError) else f"{type(err).__name__}: {err}"
            )
        try:
            if self.monitor is not None:
                self.metrics["system"] = self.monitor.stop()
            self.save()
        finally:
            self.tracker.close()


def _status(err: BaseException | None) -> str:
    if err is None:
        return COMPLETED
    if isinstance(err, DivergedError):
        return DIVERGED
    return INTERRUPTED if isinstance(err, KeyboardInterrupt) else FAILED
