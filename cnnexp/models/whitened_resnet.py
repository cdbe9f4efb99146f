"""A fast residual network for CIFAR-10 with a patch-whitening stem.

In the spirit of David Page's ResNet-9 and KellerJordan/cifar10-airbench: the first layer is a
fixed 2x2 convolution that whitens image patches (its weights come from the training data, not
from training), then stages of conv -> pool -> batch norm -> activation with a residual conv,
global max pooling and a linear head whose logits are scaled down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from cnnexp.config import schema
from cnnexp.models import ActivationFactory, PoolFactory, check_fits, check_widths
from cnnexp.models.lenet import LeNetConfig


@schema("model", "whitened_resnet")
@dataclass
class WhitenedResNetConfig(LeNetConfig):
    """conf/model/whitened_resnet.yaml."""

    widths: list[int]
    width_mult: float
    bn_momentum: float
    head_scale: float
    identity_init: bool
    whiten_bias_epochs: int | None
    whiten: bool
    residual: bool
    batch_norm: bool

    @staticmethod
    def check(node: DictConfig) -> None:
        check_widths(node)


def _batch_norm(channels: int, momentum: float | None) -> nn.Module:
    """Batch norm with a fixed scale of 1 (only the shift is learned: trains faster at high
    learning rates); with momentum None (the ablation without batch norm), a learned bias."""
    if momentum is None:
        return _Bias(channels)
    bn = nn.BatchNorm2d(channels, momentum=momentum)
    bn.weight.requires_grad_(False)
    return bn


class _Bias(nn.Module):
    """A learned per-channel shift: what is left of batch norm without the normalisation."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class Stage(nn.Module):
    """conv -> pool -> BN -> act, then x + act(BN(conv(x)))."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        pool: PoolFactory,
        activation: ActivationFactory,
        bn_momentum: float | None,
        identity_init: bool,
        residual: bool,
    ):
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            pool(kernel_size=2, stride=2),
            _batch_norm(out_channels, bn_momentum),
            activation(),
        )
        self.residual = (
            nn.Sequential(
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                _batch_norm(out_channels, bn_momentum),
                activation(),
            )
            if residual
            else None
        )

        if identity_init:  # each conv starts by passing its first channels through (airbench94)
            for block in (self.down, self.residual):
                if block is not None:
                    nn.init.dirac_(block[0].weight[: block[0].in_channels])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)  # (B, out, H/2, W/2)
        return x if self.residual is None else x + self.residual(x)


class WhitenedResNet(nn.Module):
    """Whitening stem (2x2 patches), residual stages of `widths`, max pool, scaled linear head."""

    # What each part is for, with the ideas it borrows (the lab report's words).
    IN_WORDS = (
        "Our network is a small residual network in the style of David Page's ResNet-9 and Keller "
        "Jordan's airbench. Its first layer is fixed, not trained: a 2x2 convolution whose filters"
        " are set from the training images so that it decorrelates neighbouring pixels and colours"
        " (whitening); the later layers then learn from inputs of equal scale in every direction, "
        "which lets a high learning rate work. Then three stages each convolve with 3x3 kernels, "
        "halve the map with a 2x2 pool, normalise with batch norm (Ioffe and Szegedy 2015: each "
        "channel rescaled to a steady range, so training tolerates large steps) and apply the "
        "activation; a second 3x3 convolution is added back onto its own input (a residual "
        "connection, He et al. 2016), so a stage can refine rather than replace what it receives. "
        "A global max pool keeps each channel's strongest response anywhere in the image, and one "
        "linear layer, its scores scaled down (a cooler softmax trains faster at a high learning "
        "rate), gives the ten class scores."
    )

    # The formatter leaves this signature as it is (marked below): its arguments stay grouped,
    # a line each, by what they build.
    def __init__(
        self, in_channels: int, image_size: int, num_classes: int,  # the data's (interpolated)
        pool: PoolFactory, activation: ActivationFactory,  # from conf/pool, conf/activation
        *, widths: Sequence[int], width_mult: float,  # the stages' channels
        whiten: bool, whiten_bias_epochs: int | None,  # the stem
        residual: bool, batch_norm: bool, bn_momentum: float, identity_init: bool,  # the stages
        head_scale: float,  # the head
    ):  # fmt: skip
        super().__init__()
        patch = 2
        whiten_channels = 2 * in_channels * patch * patch  # each eigenvector and its negative
        self.whiten = nn.Conv2d(in_channels, whiten_channels, patch, padding=0, bias=True)
        # Whitening: the stem is fixed, set from the data by init_from_data; without it (the
        # ablation), the same conv is learned from PyTorch's default initialisation.
        self.whiten.weight.requires_grad_(not whiten)
        self.whitened = whiten
        layers: list[nn.Module] = [self.whiten, activation()]
        channels = whiten_channels
        momentum = bn_momentum if batch_norm else None
        for width in widths:
            out = max(1, round(width * width_mult))
            layers.append(Stage(channels, out, pool, activation, momentum, identity_init, residual))
            channels = out
        self.features = nn.Sequential(*layers)
        check_fits(self.features, (in_channels, image_size, image_size), "whitened_resnet")
        self.head = nn.Sequential(
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes, bias=False)
        )
        self.head_scale = head_scale
        self.whiten_bias_epochs = whiten_bias_epochs

    def set_epoch(self, epoch: int) -> None:
        """Freeze the whitening stem's bias after `whiten_bias_epochs` epochs (airbench94: 3):
        it settles early, and a moving first layer unsettles everything after it."""
        if self.whiten_bias_epochs is not None:
            self.whiten.bias.requires_grad_(epoch < self.whiten_bias_epochs)

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem to whiten the 2x2 patches of `images` (B, C, H, W), normalised."""
        if not self.whitened:
            return
        c, k = self.whiten.in_channels, self.whiten.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # (B, C, H', W', k, k)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
        patches = patches - patches.mean(0)
        cov = patches.T @ patches / len(patches)
        eigvals, eigvecs = torch.linalg.eigh(cov)
        filters = (eigvecs.T / torch.sqrt(eigvals + eps)[:, None]).reshape(-1, c, k, k)
        weight = torch.cat([filters, -filters])
        self.whiten.weight.copy_(weight.to(self.whiten.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.head_scale  # (B, C, H, W) -> (B, classes)
