"""The run record's keeper: the object that keeps a run's metrics.json, TensorBoard events and
system monitor from the run's first moment to its last. What the record holds is defined once,
as the dataclasses of cnnexp.schema; this module fills in their status, error and headline."""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import Any

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
    SYSTEM,
    Headline,
    Run,
)
from cnnexp.tracking import Tracker


class RunRecord:
    """metrics.json, TensorBoard and the system monitor of one run. As a context manager it puts
    the run on record as running from the start and, whatever happens, leaves the right status
    (completed, diverged, interrupted or failed, with the error) and closes what it opened."""

    def __init__(self, run: Run, run_dir: Path, tracking: Any, is_main: bool):
        """`run`: the record so far (what ran, on what); `tracking`: the config's `tracking`
        node, what TensorBoard and the system monitor keep (conf/config.yaml)."""
        self.run, self.run_dir, self.is_main = run, run_dir, is_main
        self.start = time.perf_counter()
        env = environment()
        run.git_commit, run.torch, run.cuda = env["git_commit"], env["torch"], env["cuda"]
        self.tracker = Tracker(run_dir, enabled=is_main, settings=tracking, epochs=run.epochs)
        self.monitor = None
        if is_main:
            atomic_write_json(env, run_dir / ENVIRONMENT)
            smi = nvidia_smi()
            if smi:
                (run_dir / NVIDIA_SMI).write_text(smi)
            if tracking.monitor_interval > 0:
                interval = tracking.monitor_interval
                self.monitor = SystemMonitor(run_dir / SYSTEM, interval, self.tracker.scalar)
                self.monitor.start()

    def save(self) -> None:
        """Summarise the history so far and write metrics.json (rank 0 only)."""
        self.run.headline = Headline.of(self.run.history, time.perf_counter() - self.start)
        if self.is_main:
            atomic_write_json(self.run.to_json(), self.run_dir / METRICS)

    def __enter__(self) -> RunRecord:
        self.save()  # a run in progress is on record as running from the start
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.run.status = _status(err)
        if err is not None:
            self.run.error = describe(err)
        try:
            if self.monitor is not None:
                self.run.system = self.monitor.stop()
            self.save()
        finally:
            self.tracker.close()


def describe(err: BaseException) -> str:
    """An error as the record gives it: our own errors' message alone (it says what to do)."""
    return str(err) if isinstance(err, CnnexpError) else f"{type(err).__name__}: {err}"


def _status(err: BaseException | None) -> str:
    if err is None:
        return COMPLETED
    if isinstance(err, DivergedError):
        return DIVERGED
    return INTERRUPTED if isinstance(err, KeyboardInterrupt) else FAILED
