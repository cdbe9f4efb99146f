"""Bad values and missing data: a short message naming the key or path, a non-zero exit."""

from __future__ import annotations

import re

import pytest
from conftest import REPO, TINY, make_config, run_cli

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
        ("compile=yes", "compile='yes'"),
        ("model=convnet model.kernel_size=abc", "model.kernel_size='abc'"),
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


def test_bad_value_on_the_command_line_exits_without_traceback(tmp_path):
    result = run_cli(*TINY, "epochs=0", f"hydra.run.dir={tmp_path}", cwd=REPO)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "epochs=0 is not valid" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("args", [["pool=median"], ["-m", "optimizer=sgd,rmsprop"]])
def test_an_option_that_does_not_exist_is_one_line_and_exit_2(tmp_path, args):
    result = run_cli(*TINY, *args, f"hydra.run.dir={tmp_path}", cwd=REPO)
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    group, _, bad = args[-1].partition("=")
    assert f"{group}={bad.split(',')[-1]} is not an option" in lines[0]
    assert "choose one of" in lines[0] and "Traceback" not in lines[0]


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


def test_unknown_key_is_refused_by_hydra(tmp_path):
    result = run_cli(*TINY, "epoch=3", f"hydra.run.dir={tmp_path}", cwd=REPO)
    assert result.returncode != 0
    assert "epoch" in result.stdout + result.stderr


def test_a_sweep_where_every_job_failed_exits_non_zero(tmp_path):
    result = run_cli("-m", *TINY, "optimizer.lr=-1,-2", f"hydra.sweep.dir={tmp_path}", cwd=REPO)
    assert result.returncode == 1
    assert f"sweep folder: {tmp_path} (2 failed)" in result.stdout
    assert f"report: python -m cnnexp.report {tmp_path}" in result.stdout
    assert "no job of the sweep completed" in result.stderr


def test_a_search_without_a_validation_split_is_refused(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    result = run_cli("-m", *TINY, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                     "optimizer.lr=tag(log,interval(0.001,0.1))", f"hydra.sweep.dir={tmp_path}",
                     cwd=REPO)  # fmt: skip
    assert result.returncode == 2
    assert "data.validation=5000" in result.stdout + result.stderr
    assert not list(tmp_path.glob("*/metrics.json"))  # refused before any trial trained
