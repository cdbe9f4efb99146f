"""The sweeper of every sweep (conf/hydra/sweeper/study.yaml; Hydra takes plugins only from its
hydra_plugins namespace, hence this package): Hydra's basic sweeper, whose jobs are those the
study's kind makes (cnnexp.studies): a one-factor study's swept combinations, a factorial
design's points x the seeds, and then its budget check's, in the sweep folder's check/. Each job
gets its levels as plain overrides (`model.kernel_size=5 activation=gelu ...`), so its folder and
its record carry them typed, like any other sweep's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override
from omegaconf import OmegaConf

from cnnexp import deciding
from cnnexp.errors import ConfigError
from cnnexp.studies import Study, arms_of, sweep_jobs


class StudySweeper(BasicSweeper):
    """Jobs: the study's own, then its check's, in batches of `max_batch_size`."""

    def split_arguments(  # an instance method here: it needs the study
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        jobs = sweep_jobs(self.config)  # from the sweep's config: its params, budget, overrides
        size = max_batch_size or len(jobs)
        return [jobs[i : i + size] for i in range(0, len(jobs), size)]


class DecideSweeper(StudySweeper):
    """hydra/sweeper=decide: a one-factor study's arms in rounds of seeds until each arm is
    decided against the control (better, worse or equivalent) or the caps are reached
    (study.decide; cnnexp.sequential says how the level holds). Each round's jobs go through
    the launcher (K per device with hydra/launcher=workers); the jobs are numbered in the order
    the rounds make them, so a stopped sweep started again finds its finished runs in their
    folders and its rounds decide the same way. Then its budget check, in check/: the control
    and the arms the rounds decided (and any study.check.arms names) at twice the epochs. An
    explicit seed list keeps a plain grid."""

    def sweep(self, arguments: list[str]) -> Any:
        study, arms, _ = arms_of(self.config)
        if not deciding.in_rounds(self.config.hydra.sweeper, arms):
            return super().sweep(arguments)  # the seeds are given: a plain grid
        if type(study) is not Study:
            raise ConfigError(
                f"hydra/sweeper=decide decides one-factor studies; this one is "
                f"study={type(study).__name__.lower()}, whose design keeps its replicates: "
                "use hydra/sweeper=study"
            )
        folder = Path(self.config.hydra.sweep.dir)
        folder.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, folder / "multirun.yaml")
        planned = deciding.plan(study, arms)
        at_a_time = int(self.config.hydra.launcher.get("per_device") or 1)
        loader = self.hydra_context.config_loader

        def compose(overrides: list[str]):
            return loader.load_sweep_config(self.config, overrides)

        seconds = deciding.run_seconds(planned, at_a_time, compose)
        deciding.say_plan(planned, seconds, at_a_time)
        returns = deciding.run(planned, self.launcher, self.validate_batch_is_legal, folder)
        _, _, checks = arms_of(self.config, deciding.checked_arms(planned))  # now with them
        if checks:  # the budget check after the rounds, numbered after their jobs
            deciding.say_check(planned, checks)
            self.validate_batch_is_legal(checks)
            done = sum(len(r) for r in returns)
            returns.append(self.launcher.launch(checks, initial_job_idx=done))
        return returns
