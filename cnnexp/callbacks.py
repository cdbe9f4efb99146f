"""What a run or sweep says as it goes and when it ends (Hydra callbacks, registered in
conf/config.yaml): each job of a sweep prints its place, the counts so far and the time left;
the sweep's end its counts, its total time and its report command. Every launcher runs them."""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from cnnexp.distributed import rank_and_world
from cnnexp.schema import COMPLETED, METRICS, RUNNING, Run

PROGRESS = ".cnnexp-sweep.json"  # in the sweep folder: how many jobs, since when


class EndOfJob(Callback):
    """A single run prints its folder; each job of a sweep its place (job 12 of 48), the counts
    so far and the time left estimated from the finished jobs; a sweep's end counts its jobs by
    status, gives the total time and the command that reports on it, and exits non-zero when
    not one job completed."""

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if rank_and_world()[0] == 0:
            print(f"run folder: {config.hydra.runtime.output_dir}")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        root.mkdir(parents=True, exist_ok=True)
        started = _progress(root).get("started", time.time())  # a restarted sweep keeps its start
        state = {"total": sweep_size(config), "started": started}
        (root / PROGRESS).write_text(json.dumps(state))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        if rank_and_world()[0] != 0:
            return
        print(where_the_sweep_is(config), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        statuses = Counter(_status(p) for p in job_folders(root))
        counts = ", ".join(f"{n} {status}" for status, n in statuses.most_common())
        started = _progress(root).get("started")
        took = f" in {_duration(time.time() - started)}" if started else ""
        print(f"sweep folder: {root} ({counts or 'no jobs'}){took}")
        print(f"report: python -m cnnexp.report {root}")
        if statuses and not statuses.get(COMPLETED):
            print(
                "error: no job of the sweep completed; see each job's cnnexp.log", file=sys.stderr
            )
            sys.exit(1)


def job_folders(root: Path) -> list[Path]:
    """The sweep's job folders; hidden ones (a launcher's, like submitit's `.submitit/`) are not."""
    return [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]


def _status(job: Path) -> str:
    if not (job / METRICS).exists():
        return "not started"
    record = _record(job)
    return record.status if record is not None else "unreadable"


def where_the_sweep_is(config: DictConfig) -> str:
    """'job 12 of 48: 11 finished (10 completed, 1 failed), about 14 min left'."""
    root = Path(config.hydra.sweep.dir)
    total = _progress(root).get("total")
    me = Path(config.hydra.runtime.output_dir).resolve()
    finished = [
        record
        for job in job_folders(root)
        if job.resolve() != me
        for record in [_record(job)]
        if record is not None and record.status != RUNNING
    ]
    counts = Counter(_kind(r) for r in finished)
    place = f"job {int(config.hydra.job.num) + 1}" + (f" of {total}" if total else "")
    said = f"{place}: {len(finished)} finished"
    if counts:
        said += " (" + ", ".join(f"{n} {kind}" for kind, n in counts.most_common()) + ")"
    seconds = [r.headline.wall_seconds for r in finished if r.headline and r.headline.wall_seconds]
    if total and seconds:
        parallel = _progress(root).get("parallel") or config.hydra.launcher.get("n_jobs") or 1
        left = (total - len(finished)) * (sum(seconds) / len(seconds)) / max(int(parallel), 1)
        said += f", about {_duration(left)} left"
    return said


def note_parallel(root: Path, jobs: int) -> None:
    """A launcher that runs `jobs` at a time says so, for the estimate of the time left."""
    (root / PROGRESS).write_text(json.dumps({**_progress(root), "parallel": jobs}))


def sweep_size(config: DictConfig) -> int | None:
    """How many jobs the sweep will run: the product of its swept values (command line over
    the sweeper's params), times the design's points for a factorial sweep, or its trials."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    sweeper = config.hydra.sweeper
    if sweeper.get("n_trials"):
        return int(sweeper.n_trials)
    params = {k: f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()}
    for text in config.hydra.overrides.task:
        params[text.split("=", 1)[0]] = text
    try:
        overrides = OverridesParser.create().parse_overrides(list(params.values()))
    except OverrideParseException:  # no estimate, no harm: the jobs still run
        return None
    sizes = [len(list(o.sweep_string_iterator())) for o in overrides if o.is_discrete_sweep()]
    size = math.prod(sizes)
    if config.study.design:  # the factorial sweeper runs each of the design's points
        from hydra_plugins.cnnexp_factorial import point_overrides

        size *= len(point_overrides(config.study))
    return size


def _progress(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / PROGRESS).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _record(job: Path) -> Run | None:
    try:
        return Run.from_json(json.loads((job / METRICS).read_text()))
    except (OSError, json.JSONDecodeError, TypeError):  # being written, or not ours
        return None


def _kind(record: Run) -> str:
    """A finished job's status, with a completed run at chance counted as did not train."""
    from cnnexp.report.runs import chance_reason

    if record.status == COMPLETED and chance_reason(record):
        return "did not train"
    return record.status


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
