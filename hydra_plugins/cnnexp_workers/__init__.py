"""The launcher of a machine's GPUs (`hydra/launcher=workers`, conf/hydra/launcher/workers.yaml):
a sweep's jobs run `per_device` at a time on each visible GPU (each job sees its GPU alone,
through CUDA_VISIBLE_DEVICES), or, without a GPU, `per_device` at a time on the CPU. Either way
the machine's cores are split between the workers, so no two jobs fight over a core.

Each job runs in a process of its own (`python -m cnnexp.workers`, which holds the parts that are
not the plugin) through
Hydra's `run_job`, so its folder, its `.hydra/` files, the callbacks and the resume of a
restarted sweep are those of the basic launcher. A job whose process dies (SIGKILL, out of
memory) is reported and the sweep goes on; started again with its folder, the sweep resumes it.
SIGTERM, SIGUSR1 or Ctrl-C to the sweep stop every job the way they stop one run (each records
`interrupted` and keeps its checkpoint) and then the sweep, which resumes the same way."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnexp.callbacks import note_parallel
from cnnexp.errors import STOP_SIGNALS, STOPPED, ConfigError
from cnnexp.workers import Running, Slot, slots, task_reference, visible_gpus

log = logging.getLogger(__name__)

STOPS = (*STOP_SIGNALS, signal.SIGINT)  # a sweep stopped by one exits as a run does (STOPPED)
POLL_SECONDS = 0.2


class WorkersLauncher(Launcher):
    """Runs each job in its own process, `per_device` at a time per GPU or on the CPU."""

    def __init__(self, per_device: int, devices: Any) -> None:
        if int(per_device) < 1:
            raise ConfigError(f"hydra.launcher.per_device={per_device}: give 1 or more")
        self.per_device, self.devices = int(per_device), devices
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.stop: int | None = None  # the signal that stopped the sweep

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        workers = slots(
            visible_gpus(self.devices), self.per_device, sorted(os.sched_getaffinity(0))
        )
        note_parallel(sweep_dir, len(workers))
        where = "; ".join(map(str, workers))
        log.info("Launching %d jobs, %d at a time: %s", len(job_overrides), len(workers), where)
        queue = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
        with tempfile.TemporaryDirectory(prefix="cnnexp-workers-") as scratch:
            returns = self._run(queue, workers, Path(scratch))
        if self.stop is not None:
            name = signal.Signals(self.stop).name
            log.error(
                "the sweep was stopped by %s; to resume it: hydra.sweep.dir=%s", name, sweep_dir
            )
            sys.exit(STOPPED)
        return [returns[index] for index, _ in queue]

    def _run(
        self, queue: list[tuple[int, list[str]]], workers: list[Slot], scratch: Path
    ) -> dict[int, JobReturn]:
        """Keep every worker busy until the queue is empty and every job has answered."""
        free, running, returns = list(workers), [], {}
        previous = {s: signal.signal(s, self._stop_all(running)) for s in STOPS}
        try:
            pending = list(queue)
            while pending or running:
                while pending and free and self.stop is None:
                    index, overrides = pending.pop(0)
                    running.append(self._start(index, overrides, free.pop(0), scratch))
                for job in [j for j in running if j.process.poll() is not None]:
                    running.remove(job)
                    free.append(job.slot)
                    returns[job.index] = self._answer(job)
                if self.stop is not None:
                    pending.clear()
                time.sleep(POLL_SECONDS)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            for job in running:  # only where the launcher itself failed: stop, do not orphan
                job.process.terminate()
                job.process.wait()
        return returns

    def _stop_all(self, running: list[Running]) -> Any:
        def forward(number: int, frame: Any) -> None:
            self.stop = number
            for job in running:
                job.process.send_signal(signal.SIGTERM if number == signal.SIGINT else number)

        return forward

    def _start(self, index: int, overrides: list[str], slot: Slot, scratch: Path) -> Running:
        assert self.config is not None and self.hydra_context is not None
        log.info("\t#%d (%s) : %s", index, slot, " ".join(filter_overrides(overrides)))
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = index
            sweep_config.hydra.job.num = index
        order, answer = scratch / f"{index}.job", scratch / f"{index}.answer"
        job = {
            "task": task_reference(self.task_function),
            "config": sweep_config,
            "hydra_context": self.hydra_context,
            # Hydra's singletons (its ConfigStore, the job's runtime) without OmegaConf's
            # resolvers, which do not pickle: the job's process registers its own.
            "singletons": Singleton.get_state()["instances"],
            "cores": slot.cores,
            "answer": str(answer),
        }
        order.write_bytes(pickle.dumps(job))
        command = [sys.executable, "-m", "cnnexp.workers", str(order)]
        # Its own process group: a signal meant for one job reaches that job alone.
        process = subprocess.Popen(command, env=slot.env(), start_new_session=True)
        return Running(index, process, slot, answer, sweep_config)

    def _answer(self, job: Running) -> JobReturn:
        """The job's JobReturn; a job that died before answering returns None, as a failed job
        of ours does, so the sweep goes on and its report counts it."""
        ret = JobReturn(overrides=list(job.config.hydra.overrides.task), hydra_cfg=job.config)
        ret.cfg = OmegaConf.masked_copy(job.config, [k for k in job.config if k != "hydra"])
        if job.answer.exists():
            answer = pickle.loads(job.answer.read_bytes())
            ret.status, ret.return_value = answer["status"], answer["return_value"]
            ret.working_dir = answer["working_dir"]
            return ret
        code = job.process.returncode
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        if self.stop is None:
            log.error(
                "job %d ended without an answer (%s); to resume it, start the sweep again "
                "with its folder",
                job.index,
                how,
            )
        ret.status, ret.return_value = JobStatus.COMPLETED, None
        return ret
