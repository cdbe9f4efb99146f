"""The sweeper of every sweep (conf/hydra/sweeper/study.yaml; Hydra takes plugins only from its
hydra_plugins namespace, hence this package): Hydra's basic sweeper, whose jobs are those the
study's kind makes (cnnexp.studies): a one-factor study's swept combinations, a factorial
design's points x the seeds, and then its budget check's, in the sweep folder's check/. Each job
gets its levels as plain overrides (`model.kernel_size=5 activation=gelu ...`), so its folder and
its record carry them typed, like any other sweep's."""

from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override

from cnnexp.studies import sweep_jobs


class StudySweeper(BasicSweeper):
    """Jobs: the study's own, then its check's, in batches of `max_batch_size`."""

    def split_arguments(  # an instance method here: it needs the study
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        jobs = sweep_jobs(self.config)  # from the sweep's config: its params, budget, overrides
        size = max_batch_size or len(jobs)
        return [jobs[i : i + size] for i in range(0, len(jobs), size)]
