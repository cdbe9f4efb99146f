"""Lookahead weight averaging as airbench94 does it: every few steps the network's weights are
pulled into a slow average and the network restarts from that average.

The average moves ever more slowly as training goes on (its decay rises with the cube of the
fraction of training done), and at the end the network takes the average's weights. Unlike an
exponential moving average evaluated beside the network, the network itself is reset, so it
trains on from the smoothed point.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Lookahead:
    """The slow weights of `model`, updated every `every` optimizer steps of `total_steps`."""

    def __init__(self, model: nn.Module, total_steps: int, every: int = 5, decay: float = 0.95):
        self.model = model
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.total_steps = total_steps
        self.every = every
        self.decay = decay
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        """Count one optimizer step; every `every` steps, average and reset; at the end, adopt."""
        self.steps += 1
        if self.steps >= self.total_steps:
            self._pull(1.0)  # the last step: the network becomes the average
        elif self.steps % self.every == 0:
            progress = self.steps / self.total_steps
            self._pull(self.decay**self.every * progress**3)

    def _pull(self, decay: float) -> None:
        """slow <- decay * slow + (1 - decay) * weights; weights <- slow (floating tensors only)."""
        for weights, slow in zip(self.model.state_dict().values(), self.slow.values(), strict=True):
            if weights.is_floating_point():
                slow.lerp_(weights, 1 - decay)
                weights.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state["slow"].items():
            self.slow[key].copy_(value)
        self.steps = state["steps"]
