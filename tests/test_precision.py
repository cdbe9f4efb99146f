"""Number formats: the choice by hardware, fp16 with a gradient scaler, and the timing probe."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, make_config

from cnnexp import engine, precision
from cnnexp import trainer as train_module
from cnnexp.checkpoint import load_checkpoint
from cnnexp.models.lenet import LeNet5
from cnnexp.train import train

CPU = torch.device("cpu")


def test_cuda_gpus_get_bf16_from_ampere_on_and_fp16_before():
    assert precision.for_cuda((7, 5)).name == "fp16"  # RTX 2080 Ti, T4
    assert precision.for_cuda((6, 1)).name == "fp16"  # GTX 10xx
    assert precision.for_cuda((8, 0)).name == "bf16"  # A100
    assert precision.for_cuda((8, 6)).name == "bf16"  # RTX 30xx
    assert precision.for_cuda((9, 0)).name == "bf16"  # H100, H200
    assert precision.Precision("fp16", "cpu").scaler() is not None
    assert precision.Precision("bf16", "cpu").scaler() is None


def test_cpu_without_native_bf16_trains_in_fp32_without_measuring(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)

    def never():
        raise AssertionError("a CPU without native bf16 needs no measurement")

    assert precision.choose("auto", CPU, never).name == "fp32"


def test_cpu_with_native_bf16_takes_the_faster_format(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    fast_bf16 = precision.choose("auto", CPU, lambda: {"fp32": 1.0, "bf16": 0.5})
    slow_bf16 = precision.choose("auto", CPU, lambda: {"fp32": 1.0, "bf16": 1.2})
    tie = precision.choose("auto", CPU, lambda: {"fp32": 1.0, "bf16": 0.95})
    assert (fast_bf16.name, slow_bf16.name, tie.name) == ("bf16", "fp32", "fp32")
    assert "2.00x" in fast_bf16.reason


def test_an_explicit_setting_is_kept():
    for name in ("bf16", "fp16", "fp32"):
        assert precision.choose(name, CPU).name == name
    assert precision.choose("fp32", CPU).autocast().__class__.__name__ == "nullcontext"


def test_probe_times_both_formats_once_per_machine_and_model(tmp_path, monkeypatch):
    calls = []

    def fake(model, example, name, warmup, repeats):
        calls.append(name)
        return {"fp32": 0.2, "bf16": 0.1}[name]

    monkeypatch.setattr(precision, "_seconds_per_step", fake)
    model = LeNet5(1, 32, 10, torch.nn.MaxPool2d, torch.nn.ReLU)
    measure = precision.step_timer(model, torch.zeros(8, 1, 32, 32), cache_dir=tmp_path)
    assert measure() == {"fp32": 0.2, "bf16": 0.1}
    assert measure() == {"fp32": 0.2, "bf16": 0.1}
    assert calls == ["fp32", "bf16"]  # the second call read the cache
    assert (tmp_path / "precision-probes.json").exists()


def test_a_bf16_machines_cache_does_not_decide_under_the_avx2_caps(tmp_path, monkeypatch):
    """The same CPU name with and without the instruction-set caps is two machines: a cache
    written without them (bf16 measured faster) neither decides nor is read under them."""
    from cnnexp import environment

    monkeypatch.setattr(environment, "cpu_flags", lambda: {"avx512_bf16", "avx512f", "avx2"})
    monkeypatch.setattr(precision, "cpu_flags", environment.cpu_flags)
    monkeypatch.setattr(precision, "cpu_has_bf16", environment.cpu_has_bf16)
    for name in environment.ISA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    timings = {"fp32": 0.37, "bf16": 0.2}  # bf16 1.85x faster, as on the bf16 EPYC
    monkeypatch.setattr(precision, "_seconds_per_step", lambda model, x, name, *_: timings[name])
    model = LeNet5(1, 32, 10, torch.nn.MaxPool2d, torch.nn.ReLU)
    example = torch.zeros(8, 1, 32, 32)
    measure = precision.step_timer(model, example, cache_dir=tmp_path)
    assert precision.choose("auto", CPU, measure).name == "bf16"  # the bf16 machine's choice
    uncapped = precision._probe_key(model, example)

    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert precision._probe_key(model, example) != uncapped
    chosen = precision.choose("auto", CPU, precision.step_timer(model, example, cache_dir=tmp_path))
    assert chosen.name == "fp32" and "ONEDNN_MAX_CPU_ISA=AVX2" in chosen.reason
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_amx")  # a cap above bf16 keeps it
    assert environment.cpu_has_bf16()


def test_probe_leaves_the_model_and_random_state_alone():
    model = LeNet5(1, 32, 10, torch.nn.MaxPool2d, torch.nn.ReLU)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    example = torch.randn(8, 1, 32, 32)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    seconds = precision.step_timer(model, example, cache_dir=None)()
    assert seconds["fp32"] > 0 and seconds["bf16"] > 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.rand(3), expected)


def test_fp16_with_a_gradient_scaler_trains_on_the_cpu(tmp_path):
    args = (*TINY, "precision=fp16", "tracking.images_every=0", "tracking.graph=false")
    metrics = train(make_config(*args), tmp_path)
    assert metrics["status"] == "completed" and metrics["precision"] == "fp16"
    assert metrics["precision_reason"] == "set by the config"
    assert metrics["final_test_acc"] > 0.5  # chance is 0.1
    assert load_checkpoint(tmp_path / "checkpoint.pt")["scaler"]["scale"] > 0


def test_interrupted_run_with_scaler_and_lookahead_resumes_exactly(tmp_path, monkeypatch):
    """fp16's scaler and the lookahead's slow weights are part of the state a resume restores."""
    args = (*TINY, "epochs=3", "precision=fp16", "lookahead=true", "tracking.images_every=0",
            "tracking.graph=false")  # fmt: skip
    whole = train(make_config(*args), tmp_path / "whole")

    real_epoch, calls = engine.train_one_epoch, []

    def stop_in_third_epoch(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(*a, **k)

    monkeypatch.setattr(train_module, "train_one_epoch", stop_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(make_config(*args), tmp_path / "broken")
    monkeypatch.setattr(train_module, "train_one_epoch", real_epoch)
    resumed = train(make_config(*args), tmp_path / "broken")
    assert resumed["status"] == "completed"
    keys = ("train_loss", "test_loss", "test_acc", "lr")
    assert [[r[k] for k in keys] for r in resumed["history"]] == [
        [r[k] for k in keys] for r in whole["history"]
    ]


def test_the_timing_cache_tells_the_memory_layouts_apart():
    """channels_last changes a step's speed, so a timing of the model in one layout is not
    reused for the other."""
    model = LeNet5(1, 32, 10, torch.nn.MaxPool2d, torch.nn.ReLU)
    example = torch.zeros(8, 1, 32, 32)
    nchw = precision._probe_key(model, example)
    model.to(memory_format=torch.channels_last)
    assert precision._probe_key(model, example) != nchw
