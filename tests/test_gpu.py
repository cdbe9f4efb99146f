"""What only a CUDA GPU can show, checked where there is one (skipped elsewhere): bf16 and fp16
autocast, channels_last, torch.compile and a one-process nccl DDP run. benchmarks/gpu.py
measures the same paths for speed; these tests check that they train."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY, make_config

from cnnexp.schema import read_metrics
from cnnexp.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

ON_GPU = [*TINY, "device=cuda", "data.synthetic.noise=1.0", "data.synthetic.train_size=1024",
          "tracking.images_every=0", "tracking.graph=false"]  # fmt: skip


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_each_precision_trains(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    metrics = train(make_config(*ON_GPU, f"precision={precision}"), tmp_path)
    assert metrics["status"] == "completed" and metrics["precision"] == precision
    assert metrics["final_test_acc"] > 0.5  # chance is 0.1


def test_auto_precision_follows_the_compute_capability(tmp_path):
    metrics = train(make_config(*ON_GPU, "precision=auto", "epochs=1"), tmp_path)
    major, _ = torch.cuda.get_device_capability()
    assert metrics["precision"] == ("bf16" if major >= 8 else "fp16")


def test_channels_last_and_compile_train(tmp_path):
    metrics = train(make_config(*ON_GPU, "channels_last=true", "compile=true",
                                "model=convnet", "model.widths=[8,16]"), tmp_path)  # fmt: skip
    assert metrics["status"] == "completed" and metrics["final_test_acc"] > 0.5


def test_one_process_ddp_over_nccl(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    result = subprocess.run(
        [torchrun, "--nproc_per_node=1", "--standalone", "-m", "cnnexp", *ON_GPU,
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "completed" and metrics["backend"] == "nccl"
