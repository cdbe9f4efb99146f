"""Bad values and missing data: a short message naming the key or path, a non-zero exit."""

from __future__ import annotations

import re

import pytest
from conftest import REPO, TINY, make_config, run_cli

from cnnexp import CONF_DIR
from cnnexp.config import command_line_problem
from cnnexp.errors import ConfigError, DataError
from cnnexp.train import train


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("epochs=0", "epochs=0"),
        ("epochs=-3", "epochs=-3"),
        ("batch_size=0", "batch_size=0"),
        ("optimizer.lr=0", "optimizer.lr=0"),
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1"),
        ("device=tpu", "auto, cpu, cuda, mps"),
        ("precision=fp8", "auto, bf16, fp16, fp32"),
        ("seed=-1", "seed=-1"),
        ("data.augment.translate=-1", "data.augment.translate=-1"),
        ("model=convnet model.widths=[32,0]", "model.widths=[32, 0]"),
    ],
)
def test_bad_values_are_refused_by_name(tmp_path, override, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        train(make_config(*TINY, *override.split()), tmp_path)


def test_cuda_without_gpu_is_refused(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="device=cuda"):
        train(make_config(*TINY, "device=cuda"), tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # a value out of range, a wrong type, a typo for a boolean, an option or key that is not
        # there: each names the key, the value and what is allowed
        ("seed=-1", "seed=-1 is not valid: it must be a whole number from 0 to 2**32 - 1"),
        ("data.augment.translate=-1", "data.augment.translate=-1 is not valid: it must be a whole "
                                      "number of pixels >= 0"),
        ("compile=yes", "compile=yes is not valid: compile is true or false"),
        ("model=convnet model.kernel_size=abc",
         "model.kernel_size=abc is not valid: model.kernel_size is a whole number"),
        ("pool=median", "pool=median is not an option: choose one of avg, max"),
        ("optimizer=rmsprop", "optimizer=rmsprop is not an option: choose one of adam, adamw, "
                              "muon, sgd"),
        ("epochs=0", "epochs=0 is not valid: it must be a whole number >= 1"),
        ("label_smoothing=lots", "label_smoothing=lots is not valid: label_smoothing is a number"),
        ("ema=often", "ema=often is not valid: ema is a number or null"),
        ("model=convnet model.widths=[32,x]", "model.widths=[32,x] is not valid: Value 'x' of type "
                                              "'str' could not be converted to Integer"),
        ("epoch=3", "epoch is not a config key; the top level has: data, model,"),
        ("model.kernel_size=5", "model.kernel_size is not a config key; model (LeNet) has: "
                                "in_channels, image_size, num_classes"),
        ("+model.kernelsize=5", "model.kernelsize is not a config key; model (LeNet) has"),
        ("seed=0,1 epochs=2,0", "epochs=0 is not valid"),  # every value of a sweep
        ("seed=[", "seed=[ cannot be read"),
        ("epochs=1 epochs=2.5", "epochs=2.5 is not valid"),  # a key given twice: the wrong one
        ("epochs=2.5 epochs=1", "epochs=2.5 is not valid"),
        ("epochs=1,2.5 epochs=3", "epochs=2.5 is not valid"),
    ],
)  # fmt: skip
def test_the_command_line_is_checked_before_anything_runs(args, message):
    assert message in command_line_problem(args.split(), CONF_DIR)


def test_good_command_lines_pass_the_check():
    for args in ("", "+experiment=cifar10_cpu seed=3", "model=convnet model.widths=[8,16]",
                 "compile=true ema=null", "-m pool=max,avg +study.baseline.pool=max",
                 "hydra/sweeper=optuna optimizer.lr=tag(log,interval(0.001,0.1))"):  # fmt: skip
        assert command_line_problem(args.split(), CONF_DIR) is None, args


@pytest.mark.parametrize(
    "args",
    [["epochs=0"], ["compile=yes"], ["-m", "optimizer=sgd,rmsprop"]],  # range, type, option
)
def test_a_bad_command_line_is_one_line_and_exit_2(tmp_path, args):
    result = run_cli(*TINY, *args, f"hydra.run.dir={tmp_path}", cwd=REPO)
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "Traceback" not in lines[0]
    assert args[-1].partition("=")[0] in lines[0]  # names the key
    assert not list(tmp_path.iterdir())  # refused before Hydra made a run folder


def test_missing_dataset_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere"
    cfg = make_config(*TINY, "data=mnist", f"data.root={missing}", "data.download=false")
    with pytest.raises(DataError) as err:
        train(cfg, tmp_path / "run")
    assert str(missing) in str(err.value)
    assert "CNNEXP_DATA" in str(err.value)
    assert (tmp_path / "run" / "metrics.json").exists()  # the failure is on record


def test_batch_larger_than_dataset_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="batch_size=4096"):
        train(make_config(*TINY, "batch_size=4096"), tmp_path)


def test_a_sweep_where_every_job_failed_exits_non_zero(tmp_path):
    missing = f"data.root={tmp_path / 'nowhere'}"  # each job fails when it looks for its data
    result = run_cli("-m", *TINY, "data=mnist", missing, "data.download=false", "seed=0,1",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=REPO)  # fmt: skip
    assert result.returncode == 1
    assert f"sweep folder: {tmp_path / 'sweep'} (2 failed)" in result.stdout
    assert f"report: python -m cnnexp.report {tmp_path / 'sweep'}" in result.stdout
    assert "2 of 2 jobs did not end for good (2 failed)" in result.stderr


@pytest.mark.slow  # an Optuna sweep, 14 s
def test_a_search_without_a_validation_split_is_refused(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    result = run_cli("-m", *TINY, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                     "optimizer.lr=tag(log,interval(0.001,0.1))", f"hydra.sweep.dir={tmp_path}",
                     cwd=REPO)  # fmt: skip
    assert result.returncode == 2
    assert "data.validation=5000" in result.stdout + result.stderr
    assert not list(tmp_path.glob("*/metrics.json"))  # refused before any trial trained
