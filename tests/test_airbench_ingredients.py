"""airbench94's per-epoch ingredients as options: each does what it says."""

from __future__ import annotations

import torch
from conftest import TINY, make_config
from torch import nn

from cnnexp.data import make_synthetic
from cnnexp.engine import Mirror, MirrorTranslate
from cnnexp.loader import DeviceLoader
from cnnexp.lookahead import Lookahead
from cnnexp.models.whitened_resnet import WhitenedResNet
from cnnexp.train import build_optimizer, train

CPU = torch.device("cpu")


def resnet(**overrides) -> WhitenedResNet:
    args = dict(widths=[8, 8, 8], width_mult=1.0, bn_momentum=0.4, head_scale=0.125,
                identity_init=False, whiten_bias_epochs=None, whiten=True, residual=True,
                batch_norm=True)  # fmt: skip
    return WhitenedResNet(3, 32, 10, nn.MaxPool2d, nn.GELU, **{**args, **overrides})


def test_alternate_flip_mirrors_each_image_every_other_epoch():
    train_set, _ = make_synthetic(channels=1, size=8, classes=2, train_size=64, test_size=8,
                                  noise=1.0)  # fmt: skip
    loader = DeviceLoader(train_set, batch_size=64, device=CPU, mean=[0.0], std=[1.0],
                          train=True, flip="alternate")  # fmt: skip
    seen = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        x, y = next(iter(loader))
        # Undo the shuffle: order the batch by which original image each row is.
        order = loader._indices()
        by_image = torch.empty_like(x)
        by_image[order] = x
        seen.append(by_image)
    flipped = [seen[0][i].flip(-1) for i in range(64)]
    plain = [seen[0][i] for i in range(64)]
    for i in range(64):
        assert torch.equal(seen[1][i], flipped[i]) or torch.equal(seen[1][i], plain[i].flip(-1))
        assert torch.equal(seen[2][i], plain[i])  # two epochs later: as it was
    assert not torch.equal(seen[0], seen[1])


def test_mirror_translate_tta_is_six_passes_and_exact_for_a_symmetric_model():
    calls = []

    def mean_colour(x):  # a model that ignores where things are: every view gives the same logits
        calls.append(len(x))
        return x.mean(dim=(2, 3))

    x = torch.rand(4, 3, 8, 8)
    assert torch.allclose(Mirror()(mean_colour, x), x.mean(dim=(2, 3)))
    calls.clear()
    MirrorTranslate()(mean_colour, x)
    assert len(calls) == MirrorTranslate.passes == 6


def test_identity_init_passes_the_first_channels_through():
    net = resnet(identity_init=True)
    conv = net.features[2].residual[0]  # (8 out, 8 in, 3, 3)
    x = torch.randn(1, 8, 5, 5)
    assert torch.allclose(conv(x), x, atol=1e-6)


def test_whitening_bias_is_frozen_after_its_epochs():
    net = resnet(whiten_bias_epochs=2)
    net.set_epoch(1)
    assert net.whiten.bias.requires_grad
    net.set_epoch(2)
    assert not net.whiten.bias.requires_grad


def test_batch_norm_biases_get_their_own_learning_rate_and_the_same_decay():
    net = resnet()
    cfg = make_config("optimizer=sgd", "optimizer.lr=0.1", "optimizer.weight_decay=0.001")
    optimizer = build_optimizer(cfg.optimizer, net, 64.0)
    rest, biases = optimizer.param_groups
    n_bn = sum(1 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert len(biases["params"]) == n_bn
    assert biases["lr"] == 6.4 and rest["lr"] == 0.1
    assert biases["lr"] * biases["weight_decay"] == rest["lr"] * rest["weight_decay"]
    single = build_optimizer(cfg.optimizer, net, 1.0)
    assert [g["lr"] for g in single.param_groups] == [0.1, 0.1]


def test_lookahead_pulls_towards_the_slow_weights_and_adopts_them_at_the_end():
    net = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(net.weight)
    lookahead = Lookahead(net, total_steps=10, every=5, decay=0.5)
    for step in range(1, 11):
        with torch.no_grad():
            net.weight.add_(1.0)  # an "optimizer step"
        before = net.weight.clone()
        lookahead.step()
        if step == 5:  # decay 0.5**5 * (5/10)**3: mostly the fast weights
            slow = before * (1 - 0.5**5 * 0.125)
            assert torch.allclose(net.weight, slow)
        elif step % 5:
            assert torch.equal(net.weight, before)
    assert torch.equal(net.weight, lookahead.slow["weight"])  # the end: the average, adopted


def test_cifar10_cpu_preset_composes_and_trains_on_synthetic_data(tmp_path):
    cfg = make_config("+experiment=cifar10_cpu", *TINY, "model.width_mult=0.125",
                      "data.synthetic.noise=0.5", "tracking.images_every=0")  # fmt: skip
    assert cfg.tta._target_ == "cnnexp.engine.MirrorTranslate" and cfg.norm_bias_lr == 64.0
    assert cfg.optimizer._target_ == "cnnexp.muon.Muon" and cfg.data.augment.translate == 2
    metrics = train(cfg, tmp_path)
    assert metrics["status"] == "completed" and metrics["final_test_acc"] > 0.5
