"""`python -m cnnexp [overrides]`: train one configured network, or a sweep with -m."""

from __future__ import annotations

import atexit
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cnnexp import CONF_DIR
from cnnexp.callbacks import kind, note_outcome
from cnnexp.config import command_line_problem, typed_overrides
from cnnexp.distributed import launched_by_torchrun, rank_and_world
from cnnexp.errors import STOPPED, CnnexpError, DivergedError, StopSignal
from cnnexp.schema import DIVERGED, FAILED, INTERRUPTED, Run, read_metrics
from cnnexp.train import train

log = logging.getLogger("cnnexp")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Train; in a sweep, a failing job is recorded in its folder and the sweep goes on."""
    hc = HydraConfig.get()
    sweeping = hc.mode == RunMode.MULTIRUN
    job = {
        "choices": OmegaConf.to_container(hc.runtime.choices),
        "overrides": typed_overrides(hc.overrides.task),
    }
    if "optuna" in str(hc.sweeper.get("_target_", "")) and not cfg.data.validation:
        log.error(
            "a search chooses by %s, which needs a validation split: add "
            "data.validation=5000 (training images held out; never the test set)",
            cfg.objective,
        )
        sys.exit(2)
    devices = cfg.trainer.devices  # checked (>= 1) before Hydra started
    if devices > 1 and not launched_by_torchrun():
        return _under_torchrun(devices, hc.overrides.task, hc.runtime.output_dir, cfg.objective)
    try:
        metrics = train(cfg, hc.runtime.output_dir, job)
    except CnnexpError as err:
        note_outcome(hc, DIVERGED if isinstance(err, DivergedError) else FAILED, None)
        log.error("%s", err)
        if sweeping:
            return None
        sys.exit(2)
    except StopSignal as err:  # recorded as interrupted; the whole sweep stops, and resumes
        note_outcome(hc, INTERRUPTED, None)
        log.error("%s: %s", hc.runtime.output_dir, err)
        sys.exit(STOPPED)
    except Exception:
        note_outcome(hc, FAILED, None)
        if not sweeping:
            raise
        log.exception("job %s failed; the sweep goes on", hc.job.num)
        return None
    note_finished(hc, metrics)
    # The number a search (hydra/sweeper=optuna) maximises: a validation metric, never a test one.
    return metrics.get(cfg.objective)


def _under_torchrun(
    processes: int, overrides: list[str], run_dir: str, objective: str
) -> float | None:
    """Run this job again as `torchrun --nproc_per_node=N -m cnnexp` into the same folder: DDP
    over N processes for `trainer.devices=N`. Returns what a plain run returns."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    command = [
        torchrun,
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "cnnexp",
        *overrides,
        f"hydra.run.dir={run_dir}",
    ]
    log.info("trainer.devices=%d: %s", processes, " ".join(command))
    code = subprocess.run(command, check=False).returncode
    try:
        metrics = read_metrics(Path(run_dir)) or {}
    except CnnexpError as err:  # the report names it too; the job's exit code says what happened
        log.error("%s", err)
        metrics = {}
    hydra = HydraConfig.get()
    if metrics:  # its record says how it ended, interrupted or diverged included
        note_finished(hydra, metrics)
    else:
        note_outcome(hydra, FAILED, None)
    if code != 0 and hydra.mode != RunMode.MULTIRUN:
        sys.exit(code)
    return metrics.get(objective)


def note_finished(hydra: DictConfig, metrics: dict[str, Any]) -> None:
    """A job with a record notes its outcome (completed, did not train, ...) in the sweep's
    ledger."""
    record = Run.from_json(metrics)
    note_outcome(hydra, kind(record), record.headline.wall_seconds if record.headline else None)


def _quiet_other_ranks() -> None:
    """Under torchrun only rank 0 keeps a Hydra run folder; the others write theirs to /tmp."""
    rank, _, _ = rank_and_world()
    if rank != 0:
        scratch = tempfile.mkdtemp(prefix=f"cnnexp-rank{rank}-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        sys.argv += [
            f"hydra.run.dir={scratch}",
            "hydra.output_subdir=null",
            "hydra/job_logging=disabled",
            "hydra/hydra_logging=disabled",
        ]


if __name__ == "__main__":
    if problem := command_line_problem(sys.argv[1:], CONF_DIR):
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    _quiet_other_ranks()
    main()
