"""A configurable VGG-style family: every factor the lab asks about is a constructor argument."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from cnnexp.config import schema
from cnnexp.models import (
    ActivationFactory,
    PoolFactory,
    activate_and_pool,
    check_counts,
    check_fits,
    check_widths,
)
from cnnexp.models.lenet import LeNetConfig


@schema("model", "convnet")
@dataclass
class ConvNetConfig(LeNetConfig):
    """conf/model/convnet.yaml: every factor the lab asks about is a key."""

    widths: list[int]
    width_mult: float
    convs_per_stage: int
    kernel_size: int
    stride: int
    fc_layers: int
    fc_width: int
    batch_norm: bool
    dropout: float

    @staticmethod
    def check(node: DictConfig) -> None:
        check_counts(node, ("kernel_size", "stride", "convs_per_stage", "fc_layers", "fc_width"))
        check_widths(node)


class ConvNet(nn.Module):
    """Stages of `convs_per_stage` convs (each conv -> [batch norm] -> activation), a pool after
    each stage, then `fc_layers` fully connected layers (the last one gives the class scores)."""

    # What each part is for (the lab report's words).
    IN_WORDS = (
        "The ConvNet is a VGG-style family (Simonyan and Zisserman 2015) in which every change "
        "the lab asks about is one key: stages of convolutions (their number, kernel size, "
        "stride and channels), each conv optionally batch-normalised and followed by the "
        "activation, a 2x2 pool after each stage to halve the map, then fully connected "
        "layers whose last one gives the class scores."
    )

    # The formatter leaves this signature as it is (marked below): its arguments stay grouped,
    # a line each, by what they build.
    def __init__(
        self, in_channels: int, image_size: int, num_classes: int,  # the data's (interpolated)
        pool: PoolFactory, activation: ActivationFactory,  # from conf/pool, conf/activation
        *, widths: Sequence[int], width_mult: float,  # the stages' channels
        convs_per_stage: int, kernel_size: int, stride: int, batch_norm: bool,  # their convs
        fc_layers: int, fc_width: int, dropout: float,  # the classifier
    ):  # fmt: skip
        super().__init__()  # counts and widths >= 1: checked with the config (config.validate)
        layers: list[nn.Module] = []
        channels = in_channels
        for stage, width in enumerate(widths):
            out = max(1, round(width * width_mult))
            for i in range(convs_per_stage):
                # Only the network's first conv carries the stride (a coarser, cheaper first
                # layer, as in AlexNet); "same" padding keeps every other conv's size.
                conv_stride = stride if stage == i == 0 else 1
                layers.append(
                    nn.Conv2d(
                        channels,
                        out,
                        kernel_size,
                        conv_stride,
                        kernel_size // 2,
                        bias=not batch_norm,
                    )
                )
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out))
                if i < convs_per_stage - 1:
                    layers.append(activation())
                channels = out
            layers += activate_and_pool(activation, pool)
        self.features = nn.Sequential(*layers)
        shape = check_fits(self.features, (in_channels, image_size, image_size), "convnet")
        head: list[nn.Module] = [nn.Flatten()]
        features = math.prod(shape)
        for _ in range(fc_layers - 1):
            head += [nn.Dropout(dropout), nn.Linear(features, fc_width), activation()]
            features = fc_width
        head += [nn.Dropout(dropout), nn.Linear(features, num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (B, C, H, W) -> (B, classes)
