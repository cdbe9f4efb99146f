"""The GPU kit's code paths, run on the CPU in smoke mode (synthetic data, tiny runs)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow  # 110 s on an AVX2-only CPU: the kit runs every check and two small sweeps
def test_gpu_kit_smoke_runs_every_check_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.md"
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--smoke", "--out", str(out),
         "--workdir", str(tmp_path / "runs")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = out.read_text()
    for section in ("Precision and memory layout", "mnist_fast", "airbench94's ingredients",
                    "against airbench94", "### Checks", "auto precision and in fp32",
                    "Jobs at a time per GPU"):  # fmt: skip
        assert section in report
    checks = [line for line in report.splitlines() if line.startswith("| ") and "| ok |" in line]
    assert len(checks) == 9  # auto, bf16, fp16, fp32, channels_last, compile, torchrun, NVML, smi
    assert "FAILED" not in report
    assert "torchrun, one process, gloo | ok" in report
    assert "| 2 | " in report and "| 2/2 |" in report  # the launcher's sweep at K=2, both jobs
