"""LeNet-5 (LeCun et al. 1998), with the pooling and activation chosen by the config."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from cnnexp.config import Built, schema
from cnnexp.models import ActivationFactory, PoolFactory, activate_and_pool, check_fits


@schema("model", "lenet")
@dataclass
class LeNetConfig(Built):
    """conf/model/lenet.yaml: the input's facts, from the data config."""

    in_channels: int
    image_size: int
    num_classes: int


class LeNet5(nn.Module):
    """C1 6@5x5, S2 2x2, C3 16@5x5, S4 2x2, C5 120, F6 84, outputs: 61,706 parameters on MNIST."""

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        pool: PoolFactory,
        activation: ActivationFactory,
    ):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5),  # C1
            *activate_and_pool(activation, pool),  # S2
            nn.Conv2d(6, 16, 5),  # C3 (fully connected to S2, as most reimplementations)
            *activate_and_pool(activation, pool),  # S4
        )
        shape = check_fits(self.features, (in_channels, image_size, image_size), "LeNet-5")
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(shape), 120),  # C5: a 5x5 conv over a 5x5 map is a linear layer
            activation(),
            nn.Linear(120, 84),  # F6
            activation(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (B, C, H, W) -> (B, classes)
