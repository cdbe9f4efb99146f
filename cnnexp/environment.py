"""What a run ran on: software versions, hardware and the code's git commit."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import torch

_REPO = Path(__file__).resolve().parent.parent


def git_commit() -> str | None:
    """The commit of the code that ran, with '-dirty' when it had uncommitted changes."""
    try:

        def git(*args: str) -> str:
            return subprocess.run(
                ["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()

        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The CPU's marketing name where the OS tells it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The instruction-set flags that decide how fast each number format runs, and the variables
# that cap what PyTorch (ATen) and oneDNN use of them: `ATEN_CPU_CAPABILITY=avx2
# ONEDNN_MAX_CPU_ISA=AVX2` makes a bf16 CPU behave as an AVX2-only one (bf16 then emulated).
ISA_FLAGS = ("avx512_bf16", "amx_bf16", "avx512f", "avx2")
ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
# Caps below native bf16, in capitals: ATen's kernels without AVX-512 (DEFAULT, AVX2) and
# oneDNN's instruction sets before AVX512_CORE_BF16.
NO_BF16_CAPS = {
    "ATEN_CPU_CAPABILITY": {"DEFAULT", "AVX2"},
    "ONEDNN_MAX_CPU_ISA": {
        "SSE41",
        "AVX",
        "AVX2",
        "AVX2_VNNI",
        "AVX2_VNNI_2",
        "AVX512_CORE",
        "AVX512_CORE_VNNI",
    },
}


def cpu_flags() -> set[str]:
    """The CPU's instruction-set flags of ISA_FLAGS, where the OS tells them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split()) & set(ISA_FLAGS)
    except OSError:
        pass
    return set()


def isa_caps() -> dict[str, str | None]:
    """The instruction-set caps set in this process's environment (ISA_VARIABLES)."""
    return {name: os.environ.get(name) for name in ISA_VARIABLES}


def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX) and no cap in the
    environment keeps PyTorch or oneDNN from it, so autocast can pay off."""
    if not cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        return False
    return not any((value or "").upper() in NO_BF16_CAPS[k] for k, value in isa_caps().items())


def environment() -> dict:
    """Python, torch, CUDA, cuDNN, GPUs, driver, CPU, host and git commit."""
    cuda = torch.cuda.is_available()
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "driver": _nvidia_driver(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": cpu_has_bf16(),
        "cpu_flags": sorted(cpu_flags()),
        "isa_caps": {k: v for k, v in isa_caps().items() if v},
        "hostname": socket.gethostname(),
        "git_commit": git_commit(),
    }
    return info


def _nvidia_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
            return version.decode() if isinstance(version, bytes) else version
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVIDIA driver or no nvidia-ml-py: not an error, just no GPU facts
        return None


def nvidia_smi() -> str | None:
    """The output of `nvidia-smi` where it exists."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        return subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
