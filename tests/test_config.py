"""Every config option composes, and every model maps a batch to (batch, classes)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_config
from hydra.utils import instantiate

from cnnexp import CONF_DIR
from cnnexp.models import build_model


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("data", options("data"))
@pytest.mark.parametrize("model", options("model"))
def test_every_model_fits_every_dataset(model, data):
    cfg = make_config(f"model={model}", f"data={data}")
    net = build_model(cfg)
    x = torch.randn(3, cfg.data.channels, cfg.data.size, cfg.data.size)
    assert net(x).shape == (3, cfg.data.classes)


@pytest.mark.parametrize("pool", options("pool"))
@pytest.mark.parametrize("activation", options("activation"))
def test_pool_and_activation_are_built_in(pool, activation):
    cfg = make_config(f"pool={pool}", f"activation={activation}")
    net = build_model(cfg)
    pool_cls = instantiate(cfg.pool).func
    act_cls = instantiate(cfg.activation).func
    assert sum(isinstance(m, pool_cls) for m in net.modules()) == 2
    # A max pool after a non-decreasing activation holds it (ActivatedMaxPool2d).
    held = [getattr(m, "activation", m) for m in net.modules()]
    assert sum(isinstance(m, act_cls) for m in held) == 4
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("optimizer", options("optimizer"))
@pytest.mark.parametrize("schedule", options("schedule"))
def test_optimizer_and_schedule_compose(optimizer, schedule):
    cfg = make_config(f"optimizer={optimizer}", f"schedule={schedule}")
    net = build_model(cfg)
    opt = instantiate(cfg.optimizer)(net.parameters())
    instantiate(cfg.schedule)(opt, total_steps=10)
    assert 0 < opt.param_groups[0]["lr"] <= cfg.optimizer.lr


def learning_rates(schedule: str, steps: int, *overrides: str) -> list[float]:
    cfg = make_config(f"schedule={schedule}", "optimizer.lr=1.0", *overrides)
    opt = instantiate(cfg.optimizer)(build_model(cfg).parameters())
    sched = instantiate(cfg.schedule)(opt, total_steps=steps)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_each_schedule_has_its_shape():
    # warmup_linear over 20 steps with 25% warm-up: rises 0.2, 0.4 ... 1.0 over 5 steps, then
    # falls linearly from 1.0 towards final x lr, which it would reach one step after the last.
    rates = learning_rates("onecycle", 20, "schedule.warmup=0.25", "schedule.final=0.1")
    assert rates[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert rates[5:] == pytest.approx([1 - 0.9 * k / 15 for k in range(15)])
    cosine = learning_rates("cosine", 20, "schedule.warmup=0.25")
    assert cosine[4] == pytest.approx(1.0)
    assert cosine[12] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 15)))
    assert all(a > b for a, b in zip(cosine[5:], cosine[6:], strict=False))  # falls after the peak
    assert learning_rates("constant", 20) == pytest.approx([1.0] * 20)


def test_lenet5_parameters_and_multiply_accumulates_worked_out_by_hand():
    """LeNet-5 as we build it (LeCun et al. 1998, with every C3 map seeing all six S2 maps,
    parameter-free pooling and a linear output layer: the paper's partial C3 table, trainable
    subsampling and RBF outputs give its "60,000" instead)."""
    from cnnexp.models import count_macs, count_parameters

    c1 = 6 * (1 * 5 * 5 + 1)  # 6 maps of 5x5 over 1 input channel, plus biases
    c3 = 16 * (6 * 5 * 5 + 1)
    c5 = 16 * 5 * 5 * 120 + 120  # a 5x5 conv over 5x5 maps: a linear layer
    f6 = 120 * 84 + 84
    out = 84 * 10 + 10
    assert (c1, c3, c5, f6, out) == (156, 2416, 48120, 10164, 850)
    net = build_model(make_config("model=lenet", "data=mnist"))
    assert count_parameters(net) == c1 + c3 + c5 + f6 + out == 61_706
    macs = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    assert macs == 416_520
    assert count_macs(net, (1, 32, 32)) == macs
