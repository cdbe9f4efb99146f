"""What a run or sweep says when it ends (Hydra callbacks, registered in conf/config.yaml)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from cnnexp.distributed import rank_and_world


class EndOfJob(Callback):
    """A single run prints its folder; a sweep counts its jobs by status, prints the command
    that reports on it, and exits non-zero when not one job completed."""

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if rank_and_world()[0] == 0:
            print(f"run folder: {config.hydra.runtime.output_dir}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        statuses = Counter(_status(p) for p in sorted(root.glob("*/")) if p.is_dir())
        counts = ", ".join(f"{n} {status}" for status, n in statuses.most_common())
        print(f"sweep folder: {root} ({counts or 'no jobs'})")
        print(f"report: python -m cnnexp.report {root}")
        if statuses and not statuses.get("completed"):
            print(
                "error: no job of the sweep completed; see each job's cnnexp.log", file=sys.stderr
            )
            sys.exit(1)


def _status(job: Path) -> str:
    metrics = job / "metrics.json"
    if not metrics.exists():
        return "not started"
    try:
        return json.loads(metrics.read_text()).get("status", "unknown")
    except json.JSONDecodeError:
        return "unreadable"
