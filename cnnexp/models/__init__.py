"""The networks. Each takes its input facts (channels, size, classes) and its pool and
activation factories explicitly; the config wires them up with `instantiate`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig
from torch import nn

from cnnexp.config import build
from cnnexp.errors import ConfigError, ModelError

PoolFactory = Callable[..., nn.Module]  # called as pool(kernel_size=2, stride=2)
ActivationFactory = Callable[[], nn.Module]

# Activations that never decrease: max pooling commutes with them, max(f(x)) = f(max(x)).
NON_DECREASING = (nn.ReLU, nn.ReLU6, nn.ELU, nn.CELU, nn.Sigmoid, nn.Tanh, nn.Hardtanh)


def non_decreasing(activation: nn.Module) -> bool:
    if isinstance(activation, nn.LeakyReLU):
        return activation.negative_slope >= 0
    return isinstance(activation, NON_DECREASING)


class ActivatedMaxPool2d(nn.MaxPool2d):
    """A non-decreasing activation then max pooling, computed in the other order (as LeNet-5's
    own subsampling layers did): the same values and gradients, with the activation and its
    backward pass on a quarter of the elements, which in LeNet-5 are the largest tensors of a
    step (benchmarks/RESULTS.md). A max pool still, so the pictures and the pooling report see
    one; `pool_input` is what the pool gets in the textbook order."""

    def __init__(self, activation: nn.Module, pool: nn.MaxPool2d):
        super().__init__(**{key: getattr(pool, key) for key in pool.__constants__})
        # Not a submodule: one layer, as the layer tables and pictures show it (the activations
        # fused here hold no parameters).
        self.__dict__["activation"] = activation

    def extra_repr(self) -> str:
        return f"{self.activation}, then {super().extra_repr()}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(super().forward(x))

    def pool_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x)


def check_counts(node: DictConfig, keys: tuple[str, ...]) -> None:
    """Whole numbers of a network's shape: each >= 1."""
    for key in keys:
        if node[key] < 1:
            raise ConfigError(
                f"model.{key}={node[key]!r} is not valid: it must be a whole number >= 1"
            )


def check_widths(node: DictConfig) -> None:
    """Stage widths: a list of whole numbers >= 1, and a positive multiplier."""
    if not node.widths or min(node.widths) < 1:
        raise ConfigError(
            f"model.widths={list(node.widths)!r} is not valid: it must be a list of "
            "whole numbers >= 1, e.g. [32,64,128]"
        )
    if node.width_mult <= 0:
        raise ConfigError(
            f"model.width_mult={node.width_mult!r} is not valid: it must be a number > 0"
        )


def activate_and_pool(activation: ActivationFactory, pool: PoolFactory) -> list[nn.Module]:
    """A stage's activation and its 2x2 pooling, fused where the two commute."""
    act, layer = activation(), pool(kernel_size=2, stride=2)
    if type(layer) is nn.MaxPool2d and non_decreasing(act):
        return [ActivatedMaxPool2d(act, layer)]
    return [act, layer]


def check_fits(layers: nn.Sequential, in_shape: tuple[int, int, int], network: str) -> torch.Size:
    """Run one blank image through `layers`; refuse, naming the layer, a map that shrinks away."""
    x = torch.zeros(1, *in_shape)
    was_training = layers.training
    layers.eval()  # batch norm cannot train on one image
    with torch.no_grad():
        for name, layer in layers.named_children():
            size = "x".join(str(d) for d in x.shape[1:])
            try:
                x = layer(x)
            except (RuntimeError, ValueError) as err:
                raise ModelError(
                    f"{network} does not fit its {in_shape[1]}x{in_shape[2]} input: layer {name} "
                    f"({layer.__class__.__name__}) gets a {size} (C x H x W) feature map and "
                    f"cannot make an output from it ({str(err).splitlines()[0]}). Use fewer "
                    "pooling stages or conv layers, a smaller kernel or stride, or larger images"
                ) from err
            if x.ndim == 4 and min(x.shape[2:]) < 1:
                raise ModelError(f"{network}: layer {name} shrinks the feature map to nothing")
    layers.train(was_training)
    return x.shape[1:]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, in_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass of one image through the conv and linear layers."""
    total = 0

    def conv_hook(layer: nn.Conv2d, _: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = layer.kernel_size[0] * layer.kernel_size[1] * layer.in_channels // layer.groups
        total += out.numel() * k

    def linear_hook(layer: nn.Linear, _: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * layer.in_features

    handles = [
        m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *in_shape))
    model.train(was_training)
    for handle in handles:
        handle.remove()
    return total


def build_model(cfg: DictConfig) -> nn.Module:
    """The configured network with its pool and activation: the one place a model is made
    (training, tests and benchmarks alike)."""
    return build(cfg.model, pool=build(cfg.pool), activation=build(cfg.activation))
