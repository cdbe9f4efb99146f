"""Which number format a run trains in, and the autocast context and gradient scaler for it.

`precision=auto` decides by the hardware:
- a CUDA GPU with native bf16 (compute capability 8.0 and up: A100, RTX 30xx, H100) -> bf16;
- an older CUDA GPU (RTX 2080 Ti, T4, GTX 10xx) -> fp16 with a gradient scaler, the fast path
  there (their tensor cores compute fp16, not bf16);
- a CPU without native bf16 (AVX2 only) -> fp32: emulated bf16 is slower;
- a CPU with native bf16 (AVX512-BF16 or AMX) -> whichever of bf16 and fp32 trains this model
  faster, measured on a few steps and remembered per machine and model: tiny convolutions, such
  as LeNet-5's, can be faster in fp32;
- anything else (Apple's MPS) -> fp32.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnexp.environment import cpu_flags, cpu_has_bf16, cpu_model, isa_caps
from cnnexp.errors import DamagedFileError
from cnnexp.files import atomic_write_json, read_json

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
BF16_GPU_CAPABILITY = (8, 0)  # Ampere: the first CUDA GPUs that compute bf16 natively
# bf16 must beat fp32 by this factor on the probe to be chosen: the probe is short and noisy,
# and fp32 is the safer format for accuracy.
BF16_MARGIN = 1.1


@dataclass(frozen=True)
class Precision:
    """A chosen number format (`bf16`, `fp16` or `fp32`) on one device, and why it was chosen."""

    name: str
    device_type: str
    reason: str = ""

    def autocast(self) -> AbstractContextManager:
        """The context a forward pass runs in: autocast to bf16/fp16, or nothing for fp32."""
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(self.device_type, dtype=DTYPES[self.name])

    def scaler(self) -> torch.amp.GradScaler | None:
        """A gradient scaler for fp16 (its small range underflows small gradients), else None."""
        return torch.amp.GradScaler(self.device_type) if self.name == "fp16" else None


def choose(
    setting: str,
    device: torch.device,
    measure: Callable[[], dict[str, float]] | None = None,
) -> Precision:
    """The precision for `setting` (auto|bf16|fp16|fp32) on `device`.

    `measure` times training steps of the run's model in fp32 and bf16 (seconds per step); auto
    calls it only on a CPU with native bf16.
    """
    if setting != "auto":
        return Precision(setting, device.type, "set by the config")
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        return for_cuda(capability, device.type)
    if device.type == "cpu" and cpu_has_bf16() and measure is not None:
        return from_timings(measure(), device.type)
    if device.type == "cpu":
        caps = ", ".join(f"{k}={v}" for k, v in isa_caps().items() if v)
        capped = f" ({caps} in the environment)" if caps else ""
        return Precision("fp32", "cpu", f"auto: this CPU has no native bf16{capped}")
    return Precision("fp32", device.type, f"auto: fp32 on {device.type}")


def for_cuda(capability: tuple[int, int], device_type: str = "cuda") -> Precision:
    """bf16 on GPUs with native bf16, fp16 with a gradient scaler on older ones."""
    sm = f"compute capability {capability[0]}.{capability[1]}"
    if tuple(capability) >= BF16_GPU_CAPABILITY:
        return Precision("bf16", device_type, f"auto: {sm} computes bf16 natively")
    return Precision("fp16", device_type, f"auto: {sm} has no native bf16; fp16 with a scaler")


def from_timings(seconds_per_step: dict[str, float], device_type: str = "cpu") -> Precision:
    """bf16 where it trained the model at least BF16_MARGIN times faster than fp32."""
    fp32, bf16 = seconds_per_step["fp32"], seconds_per_step["bf16"]
    speedup = fp32 / bf16
    name = "bf16" if speedup >= BF16_MARGIN else "fp32"
    return Precision(name, device_type, f"auto: bf16 measured {speedup:.2f}x fp32's speed here")


def step_timer(
    model: nn.Module,
    example: torch.Tensor,
    *,
    cache_dir: str | Path | None,
    warmup: int = 2,
    repeats: int = 5,
) -> Callable[[], dict[str, float]]:
    """A `measure` for `choose`: median seconds of one training step of a copy of `model` on
    `example` (B, C, H, W) in fp32 and in bf16, remembered in `cache_dir` per CPU and model."""

    def measure() -> dict[str, float]:
        key = _probe_key(model, example)
        path = Path(cache_dir) / "precision-probes.json" if cache_dir else None
        known = _known(path)
        if key not in known:
            known[key] = {
                name: _seconds_per_step(model, example, name, warmup, repeats)
                for name in ("fp32", "bf16")
            }
            if path:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(known, path)
        return known[key]

    return measure


def _known(path: Path | None) -> dict[str, Any]:
    """The remembered timings; a damaged file is measured again and written anew (it only
    remembers timings), said in one line."""
    try:
        return (read_json(path, "it is measured again") if path else None) or {}
    except DamagedFileError as err:
        log.warning("%s", err)
        return {}


def _seconds_per_step(
    model: nn.Module, example: torch.Tensor, name: str, warmup: int, repeats: int
) -> float:
    """Median wall time of a forward, backward and SGD step of a copy of `model`."""
    probe = copy.deepcopy(model).train()  # the run's model, its statistics and RNG stay untouched
    optimizer = torch.optim.SGD(probe.parameters(), lr=1e-6)
    precision = Precision(name, example.device.type)
    times = []
    with torch.random.fork_rng(devices=[]):
        for step in range(warmup + repeats):
            start = time.perf_counter()
            with precision.autocast():
                loss = probe(example).float().square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def _probe_key(model: nn.Module, example: torch.Tensor) -> str:
    """What the timing depends on: the CPU (its name can be shared by kinds with and without
    native bf16, so its instruction-set flags and the caps set in the environment too), torch,
    threads, the network, its weights' memory layout (channels_last or not) and the batch's
    shape and layout."""
    facts = [
        cpu_model(),
        sorted(cpu_flags()),
        isa_caps(),
        torch.__version__,
        torch.get_num_threads(),
        repr(model),
        [p.is_contiguous() for p in model.parameters()],
        tuple(example.shape),
        str(example.dtype),
        example.is_contiguous(),
    ]
    return hashlib.sha1(json.dumps(facts, default=str).encode()).hexdigest()[:16]
