"""Every config option composes, and every model maps a batch to (batch, classes)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_config
from hydra.utils import instantiate

from cnnexp import CONF_DIR


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def build(cfg):
    return instantiate(
        cfg.model, pool=instantiate(cfg.pool), activation=instantiate(cfg.activation)
    )


@pytest.mark.parametrize("data", options("data"))
@pytest.mark.parametrize("model", options("model"))
def test_every_model_fits_every_dataset(model, data):
    cfg = make_config(f"model={model}", f"data={data}")
    net = build(cfg)
    x = torch.randn(3, cfg.data.channels, cfg.data.size, cfg.data.size)
    assert net(x).shape == (3, cfg.data.classes)


@pytest.mark.parametrize("pool", options("pool"))
@pytest.mark.parametrize("activation", options("activation"))
def test_pool_and_activation_are_built_in(pool, activation):
    cfg = make_config(f"pool={pool}", f"activation={activation}")
    net = build(cfg)
    pool_cls = instantiate(cfg.pool).func
    act_cls = instantiate(cfg.activation).func
    assert sum(isinstance(m, pool_cls) for m in net.modules()) == 2
    assert sum(isinstance(m, act_cls) for m in net.modules()) == 4
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("optimizer", options("optimizer"))
@pytest.mark.parametrize("schedule", options("schedule"))
def test_optimizer_and_schedule_compose(optimizer, schedule):
    cfg = make_config(f"optimizer={optimizer}", f"schedule={schedule}")
    net = build(cfg)
    opt = instantiate(cfg.optimizer)(net.parameters())
    sched = instantiate(cfg.schedule)(opt, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(0 <= lr <= cfg.optimizer.lr + 1e-12 for lr in lrs)
    assert max(lrs) == pytest.approx(cfg.optimizer.lr)


def test_lenet5_has_the_papers_parameter_count():
    from cnnexp.models import count_parameters

    assert count_parameters(build(make_config("model=lenet", "data=mnist"))) == 61_706
