"""Learning-rate schedules stepped once per optimizer step, as multipliers of the optimizer's lr."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from cnnexp.config import Built, schema


@schema("schedule", "warmup")
@dataclass
class WarmupConfig(Built):
    """conf/schedule/cosine.yaml."""

    warmup: float  # fraction of all steps


@schema("schedule", "warmup_linear")
@dataclass
class WarmupLinearConfig(WarmupConfig):
    """conf/schedule/onecycle.yaml."""

    final: float  # the last step's learning rate, as a fraction of the peak


def warmup_linear(optimizer: Optimizer, total_steps: int, warmup: float, final: float) -> LambdaLR:
    """Linear rise from 0 over the first `warmup` fraction of steps, then linear fall to `final`."""
    peak = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < peak:
            return (step + 1) / peak
        return 1.0 - (1.0 - final) * (step - peak) / max(1, total_steps - peak)

    return LambdaLR(optimizer, factor)


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup: float) -> LambdaLR:
    """Linear rise over the first `warmup` fraction of steps, then a cosine fall to 0."""
    peak = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < peak:
            return (step + 1) / peak
        return 0.5 * (1 + math.cos(math.pi * (step - peak) / max(1, total_steps - peak)))

    return LambdaLR(optimizer, factor)


def constant(optimizer: Optimizer, total_steps: int) -> LambdaLR:
    """The optimizer's lr throughout."""
    return LambdaLR(optimizer, lambda step: 1.0)
