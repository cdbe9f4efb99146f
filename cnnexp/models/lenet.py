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

    # What each part is for, and how ours differs from the 1998 network (the lab report's words).
    IN_WORDS = (
        "LeNet-5 (LeCun et al. 1998) reads a 32x32 image (MNIST's 28x28 digits padded by 2 "
        "pixels, as in the paper). Two convolutions with 5x5 kernels (6, then 16 output "
        "channels) find strokes, then combinations of strokes; each is followed by an "
        "activation and a 2x2 pooling that halves the map, so later layers see a larger part "
        "of the digit and small shifts matter less. Three fully connected layers (120, 84, then "
        "one score per class) turn the 16 maps of 5x5 into a decision. Ours differs from the "
        "paper's in three ways: ReLU instead of a scaled tanh, max pooling instead of trained "
        "subsampling (the pool is the lab's question 3.1, so the config chooses it), and C3 "
        "connected to all six maps of S2 rather than to chosen subsets."
    )

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
