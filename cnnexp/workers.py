"""The parts of `hydra/launcher=workers` (hydra_plugins/cnnexp_workers) that are not Hydra's
plugin: where each worker runs (a GPU and a share of the cores), and one job in a process of
its own: `python -m cnnexp.workers ORDER`, where ORDER is the pickled job the launcher wrote
(the task's module and name, the job's composed config, Hydra's context, the cores to use).
The job runs through Hydra's `run_job`, exactly as the basic launcher runs it, and its
JobReturn's outcome is pickled beside ORDER for the launcher to collect."""

from __future__ import annotations

import importlib
import inspect
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnexp.errors import ConfigError


@dataclass(frozen=True)
class Slot:
    """Where one worker runs its jobs: a GPU (or None: the CPU) and the cores it may use."""

    gpu: str | None
    cores: tuple[int, ...]

    def env(self) -> dict[str, str]:
        threads = str(len(self.cores))
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env

    def __str__(self) -> str:
        where = f"GPU {self.gpu}" if self.gpu is not None else "CPU"
        return f"{where}, cores {','.join(map(str, self.cores))}"


def visible_gpus(devices: Any) -> list[str]:
    """The GPUs to use: `auto` is every GPU this process sees, `cpu` none, a list those ids."""
    if devices == "cpu":
        return []
    if isinstance(devices, str) and devices != "auto":
        raise ConfigError(
            f"hydra.launcher.devices={devices!r} is not valid; choose auto, cpu or a list of "
            "GPU ids such as [0,1]"
        )
    if devices != "auto":
        return [str(d) for d in devices]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d for d in visible.split(",") if d.strip()]
    import torch  # here, not above: a job's process (run_order) pins its cores before torch starts

    return [str(i) for i in range(torch.cuda.device_count())]


def slots(gpus: list[str], per_device: int, cores: list[int]) -> list[Slot]:
    """`per_device` workers per GPU (or on the CPU), the cores dealt out evenly between them."""
    places: list[str | None] = [g for g in gpus for _ in range(per_device)] or [None] * per_device
    share = max(len(cores) // len(places), 1)
    return [
        Slot(gpu, tuple(cores[(i * share) % len(cores) :][:share])) for i, gpu in enumerate(places)
    ]


@dataclass
class Running:
    """A job's process and the files it was handed and answers in."""

    index: int
    process: subprocess.Popen
    slot: Slot
    answer: Path
    config: Any  # the job's composed config


def task_reference(task: Any) -> tuple[str, str]:
    """(module, name) to import the task function from in a fresh process; a `python -m pkg`
    entry point's `__main__` is named by its real module name."""
    assert task is not None
    module = task.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None:
            raise ConfigError(
                "hydra/launcher=workers runs each job in a new process, which imports the task "
                "from its module: start the sweep as `python -m cnnexp`, not as a script"
            )
        module = spec.name
    return module, task.__qualname__


def _answer(ret: Any) -> dict[str, Any]:
    """What the launcher needs of a JobReturn; its configs stay behind (the launcher has them,
    and the structured configs in them do not pickle across Hydra's plugin scans)."""
    value = ret._return_value
    try:
        pickle.dumps(value)
    except Exception:  # an error of the job that does not pickle: keep its words
        value = RuntimeError(f"{type(value).__name__}: {value}")
    return {"status": ret.status, "return_value": value, "working_dir": ret.working_dir}


def run_order(order: Path) -> None:
    """Run the job the launcher pickled into `order`; pickle its JobReturn beside it."""
    job = pickle.loads(order.read_bytes())
    os.sched_setaffinity(0, job["cores"])  # before torch starts its threads on every core

    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals

    Singleton._instances = job["singletons"]  # as Singleton.set_state, less the resolvers
    Plugins.instance()
    setup_globals()
    module, name = job["task"]
    # The entry point's attribute is the @hydra.main wrapper; the launcher was given what it wraps.
    task = inspect.unwrap(getattr(importlib.import_module(module), name))
    ret = run_job(
        hydra_context=job["hydra_context"],
        task_function=task,
        config=job["config"],
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    answer = Path(job["answer"])
    partial = answer.with_suffix(".partial")
    partial.write_bytes(pickle.dumps(_answer(ret)))
    partial.replace(answer)  # the launcher reads an answer whole or not at all


if __name__ == "__main__":
    run_order(Path(sys.argv[1]))
