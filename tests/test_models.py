"""The convnet family follows its config; misfits are refused; the fast network learns."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, make_config
from hydra.utils import instantiate
from torch import nn

from cnnexp.errors import ModelError
from cnnexp.models import ActivatedMaxPool2d, build_model
from cnnexp.train import train, use_channels_last


def build(*overrides: str, data: str = "cifar10") -> nn.Module:
    cfg = make_config("model=convnet", f"data={data}", *overrides)
    return build_model(cfg)


def convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


def linears(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def test_convnet_baseline_shape():
    net = build()
    assert [c.out_channels for c in convs(net)] == [32, 32, 64, 64, 128, 128]
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_kernel_size(k):
    net = build(f"model.kernel_size={k}")
    assert {c.kernel_size for c in convs(net)} == {(k, k)}
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_stride_applies_to_the_first_conv_only():
    net = build("model.stride=2", "model.widths=[32,64]")
    assert [c.stride for c in convs(net)] == [(2, 2), (1, 1), (1, 1), (1, 1)]
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize(("stages", "per_stage"), [(2, 1), (3, 2), (3, 3), (4, 2)])
def test_number_of_conv_layers(stages, per_stage):
    widths = "[" + ",".join(["16"] * stages) + "]"
    net = build(f"model.widths={widths}", f"model.convs_per_stage={per_stage}")
    assert len(convs(net)) == stages * per_stage
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == stages


@pytest.mark.parametrize("fc", [1, 2, 3])
def test_number_of_fully_connected_layers(fc):
    net = build(f"model.fc_layers={fc}", "model.fc_width=77")
    layers = linears(net)
    assert len(layers) == fc
    assert [lin.out_features for lin in layers] == [77] * (fc - 1) + [10]


@pytest.mark.parametrize("mult", [0.5, 1.0, 2.0])
def test_width_multiplier(mult):
    net = build(f"model.width_mult={mult}")
    assert [c.out_channels for c in convs(net)][::2] == [round(w * mult) for w in (32, 64, 128)]


def test_batch_norm_and_dropout_switch():
    assert not any(isinstance(m, nn.BatchNorm2d) for m in build("model.batch_norm=false").modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in build().modules()) == 6
    drops = [m.p for m in build("model.dropout=0.3").modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.3, 0.3]


def test_activation_and_pool_come_from_their_groups():
    net = build("activation=tanh", "pool=avg")
    assert sum(isinstance(m, nn.Tanh) for m in net.modules()) == 6 + 1
    assert sum(isinstance(m, nn.AvgPool2d) for m in net.modules()) == 3


def textbook_lenet(activation: type[nn.Module], pool: type[nn.Module]) -> nn.Sequential:
    """LeNet-5 in the textbook order: each conv, then its activation, then the pool."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), activation(), pool(2, 2), nn.Conv2d(6, 16, 5), activation(), pool(2, 2),
        nn.Flatten(), nn.Linear(400, 120), activation(), nn.Linear(120, 84), activation(),
        nn.Linear(84, 10),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("activation", "fused"),
    [("relu", True), ("leaky_relu", True), ("elu", True), ("sigmoid", True), ("tanh", True),
     ("gelu", False), ("silu", False), ("mish", False)],
)  # fmt: skip
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_lenet_pools_before_a_non_decreasing_activation_with_the_textbook_result(
    activation, fused, pool
):
    """Max pooling commutes with a non-decreasing activation, so LeNet-5 pools first there (less
    work) and gives the textbook order's outputs and gradients; elsewhere it keeps that order."""
    net = build_model(make_config(f"activation={activation}", f"pool={pool}"))
    fused = fused and pool == "max"
    assert any(isinstance(m, ActivatedMaxPool2d) for m in net.modules()) == fused
    act_type = type(instantiate(make_config(f"activation={activation}").activation)())
    textbook = textbook_lenet(act_type, nn.MaxPool2d if pool == "max" else nn.AvgPool2d)
    ours = [p for p in net.parameters()]
    for mine, theirs in zip(ours, textbook.parameters(), strict=True):
        theirs.data.copy_(mine.data)
    x = torch.randn(16, 1, 32, 32)
    out, expected = net(x), textbook(x)
    torch.testing.assert_close(out, expected)
    out.square().sum().backward()
    expected.square().sum().backward()
    for mine, theirs in zip(ours, textbook.parameters(), strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad)


def test_channels_last_auto_is_nhwc_where_the_conv_kernels_prefer_it():
    assert use_channels_last("auto", torch.device("cpu"))
    assert use_channels_last("auto", torch.device("cuda"))
    assert not use_channels_last("auto", torch.device("mps"))
    assert not use_channels_last(False, torch.device("cpu"))


def test_network_that_shrinks_away_is_refused_with_layer_and_size():
    with pytest.raises(ModelError, match=r"layer \d+ \(ActivatedMaxPool2d\) gets a 128x1x1"):
        build("model.widths=[16,32,64,64,128,128]")


def test_misfit_is_refused_before_training(tmp_path):
    cfg = make_config(*TINY, "model=convnet", "model.widths=[8,8,8,8,8,8]")
    with pytest.raises(ModelError, match="does not fit its 32x32 input"):
        train(cfg, tmp_path)


def test_whitening_stem_whitens_patches():
    cfg = make_config("model=whitened_resnet", "data=cifar10", "model.widths=[8,8,8]")
    net = instantiate(cfg.model, pool=instantiate(cfg.pool), activation=instantiate(cfg.activation))
    images = torch.randn(64, 3, 32, 32) @ torch.randn(32, 32)  # correlated pixels
    net.init_from_data(images)
    out = net.whiten(images) - net.whiten.bias.view(1, -1, 1, 1)
    half = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    cov = torch.cov(half.T)
    assert torch.allclose(cov, torch.eye(12), atol=0.05)


def test_fast_network_trains_and_its_loss_falls(tmp_path):
    cfg = make_config(
        *TINY,
        "+experiment=cifar10_fast",
        "data=synthetic",
        "data.channels=3",
        "model.widths=[8,16,16]",
        "data.synthetic.train_size=1024",
        "data.synthetic.noise=2.0",
        "epochs=3",
        "batch_size=64",
        "device=cpu",
        "tta=flip",
        "ema=0.9",
    )
    metrics = train(cfg, tmp_path)
    losses = [row["train_loss"] for row in metrics["history"]]
    assert losses[-1] < losses[0]
    assert metrics["final_test_acc"] > 0.5
