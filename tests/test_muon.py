"""Muon: orthogonalised filter updates at a fixed filter norm, plain Nesterov SGD elsewhere."""

from __future__ import annotations

import torch
from conftest import TINY, make_config
from torch import nn

from cnnexp.muon import Muon, orthogonalise
from cnnexp.train import train

SETTINGS = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, filter_lr=0.05,
                filter_momentum=0.6)  # fmt: skip


def test_orthogonalise_keeps_the_singular_vectors_and_evens_out_the_values():
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(32, 32))
    v, _ = torch.linalg.qr(torch.randn(288, 32))
    values = torch.logspace(0, -1.5, 32)  # from 1 down to 0.03
    out = orthogonalise(u @ torch.diag(values) @ v.T).float()
    in_its_basis = u.T @ out @ v  # diagonal if the singular vectors are kept
    off_diagonal = in_its_basis - torch.diag(in_its_basis.diag())
    assert off_diagonal.abs().max() < 0.05
    assert in_its_basis.diag().min() > 0.3 and in_its_basis.diag().max() < 1.6  # was 0.03 .. 1
    tall = orthogonalise((u @ torch.diag(values) @ v.T).T)  # (288, 32): the same, transposed
    assert torch.allclose(tall.float(), out.T, atol=0.02)


def test_filters_take_the_muon_step_and_keep_a_fixed_norm():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3)
    optimizer = Muon(conv.parameters(), **SETTINGS)
    before = conv.weight.detach().clone()
    conv(torch.randn(2, 4, 6, 6)).square().mean().backward()
    gradient = conv.weight.grad.clone()
    optimizer.step()
    rescaled = before * 8**0.5 / before.norm()  # norm sqrt(out channels) before the step
    nesterov = (1 + SETTINGS["filter_momentum"]) * gradient  # first step: buffer = gradient
    step = orthogonalise(nesterov.reshape(8, -1)).view_as(before)
    expected = rescaled - SETTINGS["filter_lr"] * step
    assert torch.allclose(conv.weight, expected, atol=1e-5)


def test_everything_but_filters_steps_exactly_as_sgd():
    torch.manual_seed(0)
    ours, theirs = nn.Linear(5, 3), nn.Linear(5, 3)
    theirs.load_state_dict(ours.state_dict())
    muon = Muon(ours.parameters(), **SETTINGS)
    sgd = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)  # fmt: skip
    for _ in range(3):
        x = torch.randn(4, 5)
        for model, optimizer in ((ours, muon), (theirs, sgd)):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_network_trains_with_muon_and_resumes_from_its_state(tmp_path):
    cfg = make_config(*TINY, "+experiment=cifar10_fast", "data=synthetic", "data.channels=3",
                      "model.widths=[8,16,16]", "optimizer=muon", "optimizer.lr=0.2",
                      "epochs=3", "batch_size=64", "device=cpu")  # fmt: skip
    metrics = train(cfg, tmp_path)
    losses = [row["train_loss"] for row in metrics["history"]]
    assert losses[-1] < losses[0] and metrics["final_test_acc"] > 0.5
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["optimizer"]
    assert any("momentum_buffer" in s for s in state["state"].values())
