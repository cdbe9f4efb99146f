"""The sweeper of factorial studies (`study.design: factorial`, conf/hydra/sweeper/factorial.yaml;
Hydra takes plugins only from its hydra_plugins namespace, hence this package): Hydra's basic
sweeper, whose jobs are the design's points (cnnexp.design) crossed with the sweep's other
parameters (the seeds). Its confirmation (`study.design: confirm`) has two points: the
reference configuration (every factor low) and the one `study.confirm` names; its budget check
(`study.design: reference`) the reference alone. Each job gets its point's levels as plain
overrides (`model.kernel_size=5 activation=gelu ...`), so its folder and its record carry them
typed, like any other sweep's."""

from __future__ import annotations

from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override

from cnnexp import design
from cnnexp.config import validate_design
from cnnexp.errors import ConfigError


class FactorialSweeper(BasicSweeper):
    """Jobs: every design point x every combination of the swept parameters, in that order."""

    def split_arguments(  # an instance method here: it needs the study's design
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        (others,) = BasicSweeper.split_arguments(overrides, None)
        jobs = [point + job for point in point_overrides(self.config.study) for job in others]
        size = max_batch_size or len(jobs)
        return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def point_overrides(study: Any) -> list[list[str]]:
    """Each design point as overrides: [["model.kernel_size=3", "activation=relu", ...], ...]."""
    if study.design in ("confirm", "reference"):
        validate_design(study)
        reference = {name: spec.low for name, spec in study.factors.items()}
        confirm = study.design == "confirm"
        arms = [reference] + ([{**reference, **study.confirm}] if confirm else [])
        return [[f"{study.factors[n].key}={v}" for n, v in arm.items()] for arm in arms]
    if study.design != "factorial":
        raise ConfigError(
            "hydra/sweeper=factorial runs a factorial design: set study.design=factorial, "
            "study.generators and study.factors (see conf/experiment/factorial.yaml)"
        )
    factors = list(study.factors.items())
    coded = design.points(study.generators)
    if coded.shape[1] != len(factors):
        raise ConfigError(
            f"study.generators={study.generators!r} has {coded.shape[1]} columns but "
            f"study.factors names {len(factors)} factors: give one column per factor"
        )
    return [
        [
            f"{spec.key}={spec.high if level > 0 else spec.low}"
            for (_, spec), level in zip(factors, row, strict=True)
        ]
        for row in coded
    ]
