"""Full-length runs on the real datasets in ../shared/data (marked slow; CI runs them)."""

from __future__ import annotations

import pytest
from conftest import REPO, SHARED_DATA, run_cli

from cnnexp.schema import read_metrics

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="no shared MNIST copy")
def test_default_lenet5_reaches_99_percent_on_real_mnist(tmp_path):
    result = run_cli(
        "progress=false",
        f"hydra.run.dir={tmp_path}",
        cwd=REPO,
        timeout=900,
        env={"CNNEXP_DATA": str(SHARED_DATA)},
    )
    assert result.returncode == 0, result.stderr
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "completed"
    assert metrics["final_test_acc"] >= 0.99


@pytest.mark.skipif(not (SHARED_DATA / "cifar10-jpeg").is_dir(), reason="no shared CIFAR-10 copy")
def test_cifar10_image_folder_runs_one_epoch(tmp_path):
    result = run_cli(
        "data=cifar10",
        "epochs=1",
        "progress=false",
        f"hydra.run.dir={tmp_path}",
        cwd=REPO,
        timeout=900,
        env={"CNNEXP_DATA": str(SHARED_DATA)},
    )
    assert result.returncode == 0, result.stderr
    metrics = read_metrics(tmp_path)
    assert metrics["data_source"].startswith("image folder")
    assert metrics["train_images"] == 50_000 and metrics["test_images"] == 10_000
    assert metrics["final_test_acc"] > 0.3  # one epoch of LeNet-5; chance is 0.1
