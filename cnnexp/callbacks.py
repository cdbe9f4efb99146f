"""What a run or sweep says as it goes and when it ends (Hydra callbacks, registered in
conf/config.yaml): each job of a sweep prints its place, the counts so far and the time left;
the sweep's end its counts, its total time, its report command and an exit status a cluster
script can trust. A sweep holds its folder's lock while it runs, and counts only its own jobs:
each job notes its outcome in the sweep's ledger, which the sweep starts afresh. Every launcher
runs them."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.errors import OverrideParseException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from cnnexp import deciding
from cnnexp.distributed import rank_and_world
from cnnexp.errors import STOPPED, CnnexpError
from cnnexp.files import atomic_write_json, read_json
from cnnexp.schema import COMPLETED, DIVERGED, INTERRUPTED, Run, chance_reason
from cnnexp.studies import arms_of

# In the sweep folder: how many jobs, since when, run by which process; the lock that makes the
# folder one sweep's at a time; the ledger of this sweep's jobs, one file per job.
PROGRESS, LOCK, LEDGER = ".cnnexp-sweep.json", ".cnnexp-sweep.lock", ".cnnexp-jobs"
NOT_FINISHED = "not finished"  # a job of the sweep that noted no outcome: killed, or never ran
# Outcomes that end a job for good: another try gives the same (a diverged run is a result, and
# the report shows it). Any other outcome makes the sweep exit non-zero, for a retry.
DID_NOT_TRAIN = "did not train"  # a completed job at chance (kind)
FINAL = (COMPLETED, DID_NOT_TRAIN, DIVERGED)


class EndOfJob(Callback):
    """A single run prints its folder; each job of a sweep its place (job 12 of 48), the counts
    so far and the time left estimated from the finished jobs; a sweep's end counts its jobs by
    status, gives the total time and the command that reports on it, and exits as
    `exit_status` says."""

    def __init__(self) -> None:
        self.lock: FileLock | None = None  # the sweep folder's, while the sweep runs

    def __getstate__(self) -> dict[str, Any]:
        """A copy sent to a job's process (joblib and submitit pickle the callbacks) holds no
        lock: the sweep's own process does."""
        return {**self.__dict__, "lock": None}

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if rank_and_world()[0] == 0:
            print(f"run folder: {config.hydra.runtime.output_dir}")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        root.mkdir(parents=True, exist_ok=True)
        jobs = sweep_overrides(config)
        try:
            self.lock = take_folder(root, jobs)
        except CnnexpError as err:  # Hydra turns a callback's exception into a warning
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        now = time.time()
        started = _progress(root).get("started", now)  # a restarted sweep keeps its first start
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command()}
        state = {
            "total": sweep_size(config),
            "started": started,
            "this_start": now,  # its time, not the time it stood stopped
            "overrides": jobs,
            "owner": owner,
        }
        atomic_write_json(state, root / PROGRESS)
        shutil.rmtree(root / LEDGER, ignore_errors=True)  # a restarted sweep notes its jobs anew

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        if rank_and_world()[0] != 0:
            return
        print(where_the_sweep_is(config), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        outcomes = ledger(root)
        total = _progress(root).get("total") or len(outcomes)
        missing = max(total - len(outcomes), 0)
        statuses = Counter(o["status"] for o in outcomes.values()) + Counter(
            {NOT_FINISHED: missing}
        )
        counts = ", ".join(f"{n} {status}" for status, n in statuses.most_common())
        took = _took(_progress(root), time.time())
        print(f"sweep folder: {root} ({counts or 'no jobs'}){took}")
        print(f"report: python -m cnnexp.report {root}")
        if self.lock is not None:
            self.lock.release()
        code, why = exit_status(statuses)
        if code:
            print(f"error: {why}; see each job's cnnexp.log", file=sys.stderr)
            sys.exit(code)


def _took(progress: dict[str, Any], now: float) -> str:
    """' in 3 min', since this start; a sweep started again also says when it first started
    (the time between stood stopped, and is not its time)."""
    first = progress.get("started")
    this = progress.get("this_start", first)  # a folder of an older sweep kept only its first
    if this is None:
        return ""
    said = f" in {_duration(now - this)}"
    if this - first > 1:
        said += f" this time (first started {_duration(now - first)} ago)"
    return said


def take_folder(root: Path, overrides: list[str]) -> FileLock:
    """The sweep folder's lock, held until the sweep ends (or its process dies), for a folder
    that is new or holds this same sweep (the same overrides: a restart). Else the error names
    the other sweep: its process while it runs, its command after, so that one folder holds one
    sweep's jobs and Hydra's files of each job are never another sweep's."""
    lock = FileLock(root / LOCK)
    other = _progress(root)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        owner = other.get("owner") or {}
        who = f"process {owner.get('pid')} on {owner.get('host')}: {owner.get('command')}"
        raise CnnexpError(
            f"{root} is the folder of a sweep that is running ({who}); wait for it to end, or "
            "give this sweep another hydra.sweep.dir"
        ) from None
    held = other.get("overrides")
    if held is not None and held != overrides:
        lock.release()
        raise CnnexpError(
            f"{root} holds the jobs of another sweep (python -m cnnexp -m {' '.join(held)}); "
            "give this sweep another hydra.sweep.dir, or run that command to resume that sweep"
        )
    return lock


def sweep_overrides(config: DictConfig) -> list[str]:
    """What makes the sweep's jobs: its overrides, without Hydra's own (the launcher, the
    folder), which a restart may change."""
    return sorted(o for o in config.hydra.overrides.task if not o.lstrip("+~").startswith("hydra"))


def _command() -> str:
    return " ".join(["python -m cnnexp", *sys.argv[1:]])


def exit_status(statuses: Counter[str]) -> tuple[int, str]:
    """0 when every job of the sweep ended for good (completed, or a result such as diverged);
    143 (STOPPED) when the only others were interrupted, to resume; else 1: a job failed or did
    not finish. With the reason, for the error line."""
    total = sum(statuses.values())
    left = {status: n for status, n in statuses.items() if status not in FINAL and n}
    if not left:
        return 0, ""
    again = "start the sweep again with its folder to "
    if set(left) == {INTERRUPTED}:
        return STOPPED, f"{left[INTERRUPTED]} of {total} jobs were interrupted: {again}resume them"
    listed = ", ".join(f"{n} {status}" for status, n in left.items())
    return 1, f"{sum(left.values())} of {total} jobs did not end for good ({listed}): {again}retry"


def note_outcome(hydra: DictConfig, status: str, wall_seconds: float | None) -> None:
    """A job of a sweep (`hydra`: its Hydra node) notes how it ended in the sweep's ledger, so
    that the sweep's counts and exit status are of its own jobs, not of whatever else the
    folder holds."""
    if hydra.mode != RunMode.MULTIRUN or rank_and_world()[0] != 0:
        return
    entry = {"status": status, "wall_seconds": wall_seconds}
    atomic_write_json(entry, Path(hydra.sweep.dir) / LEDGER / f"{hydra.job.num}.json")


def ledger(root: Path) -> dict[int, dict[str, Any]]:
    """This sweep's noted jobs by number: {"status": ..., "wall_seconds": ...}."""
    noted = {}
    for path in sorted((root / LEDGER).glob("*.json")):
        try:
            noted[int(path.stem)] = read_json(path, "", form=dict)
        except (CnnexpError, ValueError):  # ours, written atomically: only a foreign file
            continue
    return noted


def where_the_sweep_is(config: DictConfig) -> str:
    """'job 12 of 48: 11 finished (10 completed, 1 failed), about 14 min left'."""
    root = Path(config.hydra.sweep.dir)
    total = _progress(root).get("total")
    me = int(config.hydra.job.num)
    finished = [o for num, o in ledger(root).items() if num != me]
    counts = Counter(o["status"] for o in finished)
    place = f"job {me + 1}" + (f" of {total}" if total else "")
    said = f"{place}: {len(finished)} finished"
    if counts:
        said += " (" + ", ".join(f"{n} {kind}" for kind, n in counts.most_common()) + ")"
    seconds = [o["wall_seconds"] for o in finished if o.get("wall_seconds")]
    if total and seconds:
        parallel = _progress(root).get("parallel") or config.hydra.launcher.get("n_jobs") or 1
        left = (total - len(finished)) * (sum(seconds) / len(seconds)) / max(int(parallel), 1)
        said += f", about {_duration(left)} left"
    return said


def note_parallel(root: Path, jobs: int) -> None:
    """A launcher that runs `jobs` at a time says so, for the estimate of the time left."""
    atomic_write_json({**_progress(root), "parallel": jobs}, root / PROGRESS)


def sweep_size(config: DictConfig) -> int | None:
    """How many jobs the sweep will run: its study's (cnnexp.studies: the swept values'
    combinations, a design's points, the budget check's), or a search's trials; None for a
    deciding sweep, whose rounds decide how many (it says its own time left each round)."""
    sweeper = config.hydra.sweeper
    if sweeper.get("n_trials"):
        return int(sweeper.n_trials)
    try:
        _, arms, checks = arms_of(config)
        return None if deciding.in_rounds(sweeper, arms) else len(arms) + len(checks)
    except (OverrideParseException, CnnexpError):  # no estimate, no harm: the jobs still run
        return None


def _progress(root: Path) -> dict[str, Any]:
    try:
        return read_json(root / PROGRESS, "") or {}
    except CnnexpError:  # only the counts and the estimate go without it
        return {}


def kind(record: Run) -> str:
    """A finished job's status, with a completed run at chance counted as did not train."""
    if record.status == COMPLETED and chance_reason(record):
        return DID_NOT_TRAIN
    return record.status


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
