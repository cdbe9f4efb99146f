"""Muon for convolutional filters, Nesterov SGD for everything else (airbench94_muon's recipe).

Each conv filter bank (a 4-D weight) is first scaled back to a fixed norm, then stepped along its
momentum made orthogonal: the update's singular values are pushed towards 1 by a few quintic
Newton-Schulz iterations, so every direction of the filter bank moves about as far as every
other, however unevenly the gradient spreads. Batch norm after each conv makes the filters'
scale irrelevant to the output, which is why fixing the norm loses nothing. Biases, batch-norm
weights and the linear head keep plain SGD with Nesterov momentum and weight decay.

Jordan et al., "Muon: an optimizer for hidden layers" (2024); the quintic coefficients and the
filter normalisation are those of KellerJordan/cifar10-airbench, airbench94_muon.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import Optimizer

from cnnexp.config import SGD, schema


@schema("optimizer", "muon")
@dataclass
class MuonConfig(SGD):
    """conf/optimizer/muon.yaml: SGD's keys for the rest, and the filters' own."""

    filter_lr: float
    filter_momentum: float


# Coefficients of the quintic X <- aX + b(XX^T)X + c(XX^T)^2 X: chosen for the steepest slope at
# zero, so that three steps lift even small singular values to about 0.5-1.5 (not exactly 1,
# which does not matter for training).
QUINTIC = (3.4445, -4.7750, 2.0315)


def orthogonalise(update: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """An approximately orthogonal matrix with the singular vectors of `update` (rows, cols),
    computed in bf16, which Newton-Schulz tolerates and which is fast on CPUs and GPUs alike."""
    a, b, c = QUINTIC
    x = update.bfloat16()
    x = x / (x.norm() + eps)  # every singular value <= 1, where the iteration converges
    wide = x.size(0) <= x.size(1)
    x = x if wide else x.T  # (small, large): the Gram matrix below is the small one
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.T).to(update.dtype)


class Muon(Optimizer):
    """`filter_lr` and `filter_momentum` for conv filters (4-D parameters), `lr`, `momentum` and
    `weight_decay` for the rest. A schedule scales both learning rates by the same factor."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
        filter_lr: float,
        filter_momentum: float,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            filter_lr=filter_lr,
            filter_momentum=filter_momentum,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        """One step of every parameter with a gradient."""
        for group in self.param_groups:
            # The schedule's current factor: LambdaLR keeps the peak as initial_lr.
            factor = group["lr"] / group.get("initial_lr", group["lr"]) if group["lr"] else 0.0
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.ndim == 4:
                    self._filter_step(param, group, factor)
                else:
                    self._sgd_step(param, group)

    def _momentum(
        self, param: torch.Tensor, grad: torch.Tensor, momentum: float, nesterov: bool
    ) -> torch.Tensor:
        """The (Nesterov) momentum direction, as torch.optim.SGD computes it."""
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = grad.clone()
        else:
            state["momentum_buffer"].mul_(momentum).add_(grad)
        buffer = state["momentum_buffer"]
        return grad.add(buffer, alpha=momentum) if nesterov else buffer

    def _filter_step(self, param: torch.Tensor, group: dict[str, Any], factor: float) -> None:
        direction = self._momentum(param, param.grad, group["filter_momentum"], group["nesterov"])
        param.mul_(param.size(0) ** 0.5 / param.norm())  # (out, in, k, k): norm sqrt(out)
        update = orthogonalise(direction.reshape(param.size(0), -1)).view_as(param)
        param.add_(update, alpha=-group["filter_lr"] * factor)

    def _sgd_step(self, param: torch.Tensor, group: dict[str, Any]) -> None:
        grad = param.grad
        if group["weight_decay"]:
            grad = grad.add(param, alpha=group["weight_decay"])
        direction = self._momentum(param, grad, group["momentum"], group["nesterov"])
        param.add_(direction, alpha=-group["lr"])
