"""Speed and accuracy on this machine, measured side by side in one run; prints markdown.

    python benchmarks/bench.py                  # LeNet-5 loops, mnist_fast time to 99% (3 seeds)
    python benchmarks/bench.py --cifar cifar10_cpu --cifar-epochs 2   # + a CIFAR-10 preset

Needs the real datasets under $CNNEXP_DATA (e.g. ../shared/data). On a GPU, see gpu.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pandas as pd
import torch
import torchvision
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch import nn
from torchvision import transforms

from cnnexp import CONF_DIR
from cnnexp.data import ImageTensorDataset, load_torchvision, pad_images
from cnnexp.engine import train_one_epoch
from cnnexp.environment import environment
from cnnexp.loader import DeviceLoader
from cnnexp.precision import Precision, choose, step_timer
from cnnexp.report.curves import time_to
from cnnexp.train import build, build_model, build_optimizer, train

WARMUP_STEPS = 5  # untimed steps before each window: allocations, oneDNN kernel choice
TEXTBOOK_BATCH = 64  # the PyTorch tutorials' DataLoader batch size


def config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def lenet(cfg: DictConfig) -> nn.Module:
    return build_model(cfg)


def cpu_flags() -> str:
    """The CPU features that decide bf16 speed: AVX512-BF16, AMX, else AVX2 only."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    found = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2") if f in flags]
    return ", ".join(found) or "none of avx2/avx512/amx"


def textbook_rate(root: str, device: torch.device, batch: int, images: int) -> float:
    """Images per second of the tutorial loop: torchvision dataset, per-image Pad/ToTensor/
    Normalize, a shuffling DataLoader, fp32; timed over `images` after WARMUP_STEPS steps."""
    cfg = config(f"device={device.type}")
    d = cfg.data  # the same padding and normalisation as our loop, from the data config
    tf = transforms.Compose(
        [transforms.Pad(d.pad), transforms.ToTensor(), transforms.Normalize(d.mean, d.std)]
    )
    dataset = torchvision.datasets.MNIST(root, train=True, download=False, transform=tf)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True)
    model = lenet(cfg).to(device)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.norm_bias_lr)
    loss_fn = nn.CrossEntropyLoss()
    seen, start = 0, time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if step == WARMUP_STEPS:
            seen, start = 0, time.perf_counter()
        x, y = x.to(device), y.to(device)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(y)
        if step >= WARMUP_STEPS and seen >= images:
            break
    return seen / (time.perf_counter() - start)


def our_rate(
    train_set: ImageTensorDataset,
    device: torch.device,
    batch: int,
    images: int,
    autocast: Callable[[], AbstractContextManager],
) -> float:
    """Images per second of cnnexp's loop (DeviceLoader + train_one_epoch) over `images`
    training images after WARMUP_STEPS steps, in the given precision."""
    cfg = config(f"device={device.type}")
    d = cfg.data
    model = lenet(cfg).to(device)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.norm_bias_lr)

    def window(n: int):
        subset = ImageTensorDataset(train_set.images[:n], train_set.labels[:n], [])
        loader = DeviceLoader(subset, batch_size=batch, device=device, mean=list(d.mean),
                              std=list(d.std), train=True)  # fmt: skip
        schedule = build(cfg.schedule)(optimizer, total_steps=len(loader))
        return train_one_epoch(model, loader, optimizer, schedule, nn.CrossEntropyLoss(), autocast)

    window(WARMUP_STEPS * batch)
    stats = window(images)
    return stats.images / stats.seconds


def auto_precision(train_set: ImageTensorDataset, device: torch.device, batch: int) -> Precision:
    """What `precision=auto` picks for LeNet-5 here, as a run would pick it."""
    cfg = config(f"device={device.type}")
    example = train_set.images[:batch].float().to(device)
    return choose(cfg.precision, device, step_timer(lenet(cfg), example, cache_dir=cfg.data.cache))


def throughput(root: str, device: torch.device, repeats: int, images: int) -> pd.DataFrame:
    """Both loops at their defaults and at equal batch size, interleaved so that they share the
    machine's noise; median and range of `repeats` windows of `images` images each."""
    defaults = config(f"device={device.type}")
    train_set = pad_images(load_torchvision("mnist", root, download=False)[0], defaults.data.pad)
    ours = auto_precision(train_set, device, defaults.batch_size)
    loops = {
        f"textbook, b={TEXTBOOK_BATCH} (its default), fp32": lambda: textbook_rate(
            root, device, TEXTBOOK_BATCH, images
        ),
        f"cnnexp, b={defaults.batch_size} (its default), {ours.name} (auto)": lambda: our_rate(
            train_set, device, defaults.batch_size, images, ours.autocast
        ),
        f"textbook, b={defaults.batch_size}, fp32": lambda: textbook_rate(
            root, device, defaults.batch_size, images
        ),
        f"cnnexp, b={TEXTBOOK_BATCH}, {ours.name} (auto)": lambda: our_rate(
            train_set, device, TEXTBOOK_BATCH, images, ours.autocast
        ),
        f"cnnexp, b={defaults.batch_size}, fp32": lambda: our_rate(
            train_set, device, defaults.batch_size, images, nullcontext
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, measure in loops.items():
            rates[name].append(measure())
    base = statistics.median(next(iter(rates.values())))
    rows = []
    for name, values in rates.items():
        rows.append({
            "loop": name,
            "img/s median": round(statistics.median(values)),
            "min - max": f"{min(values):,.0f} - {max(values):,.0f}",
            "vs textbook default": round(statistics.median(values) / base, 2),
        })  # fmt: skip
    print(f"precision=auto for LeNet-5 here: {ours.name} ({ours.reason})\n")
    return pd.DataFrame(rows)


def run_preset(preset: str, device: torch.device, *overrides: str) -> dict:
    """Train `+experiment=preset` in a temporary folder; return its metrics."""
    cfg = config(f"+experiment={preset}", f"device={device.type}", "progress=false", *overrides)
    with tempfile.TemporaryDirectory() as tmp:
        return train(cfg, Path(tmp))


def mnist_fast(device: torch.device, seeds: int) -> pd.DataFrame:
    """`+experiment=mnist_fast` for `seeds` seeds: training seconds to 99.0% test accuracy."""
    rows = []
    for seed in range(seeds):
        m = run_preset("mnist_fast", device, f"seed={seed}")
        reached = time_to(m["history"], 0.99)
        rows.append({
            "seed": seed,
            "precision": m["precision"],
            "final test acc": f"{100 * m['final_test_acc']:.2f}%",
            "training s to 99.0%": round(reached, 2) if reached else "not reached",
            "training s": round(m["train_seconds"], 2),
            "whole run s": round(m["wall_seconds"], 1),
        })  # fmt: skip
    return pd.DataFrame(rows)


def cifar(preset: str, device: torch.device, epochs: int | None) -> pd.DataFrame:
    """One CIFAR-10 preset's per-epoch curve: accuracy and cumulative seconds."""
    m = run_preset(preset, device, *([f"epochs={epochs}"] if epochs else []))
    rows = pd.DataFrame(m["history"])[["epoch", "train_seconds", "test_seconds", "test_acc"]]
    rows["cumulative s"] = (rows["train_seconds"] + rows["test_seconds"]).cumsum()
    print(f"{preset}: {m['precision']} ({m['precision_reason']}); {m['wall_seconds']:.0f} s in all")
    return rows.round(4)


def backends(device: torch.device) -> pd.DataFrame:
    """Our loop and Lightning's Trainer on the same runs, side by side (fp32 for both, so only
    the loop differs): LeNet-5 `mnist_fast`, and the CIFAR-10 fast network for 100 steps."""
    runs = {
        "LeNet-5 mnist_fast (2 epochs, 938 steps)": ("mnist_fast", ["precision=fp32"], 0.99),
        "cifar10_fast, 25,600 images x 2 epochs (100 steps)": (
            "cifar10_fast", ["precision=fp32", "data.subset=25600", "epochs=2"], None),
    }  # fmt: skip
    rows = []
    for name, (preset, overrides, target) in runs.items():
        results = {b: run_preset(preset, device, *overrides, f"trainer={b}")
                   for b in ("native", "lightning")}  # fmt: skip
        # The same accuracy for both: the target, or the lower of the two final accuracies.
        goal = target or min(m["final_test_acc"] for m in results.values())
        for backend, m in results.items():
            rows.append({
                "run": name, "trainer": backend, "img/s": round(m["images_per_second"]),
                "final test acc": f"{100 * m['final_test_acc']:.2f}%",
                "training s to the same accuracy": _seconds(time_to(m["history"], goal)),
                "whole run s": round(m["wall_seconds"], 1),
            })  # fmt: skip
        extra = rows[-2]["img/s"] / rows[-1]["img/s"] - 1
        rows[-1]["overhead"] = f"{extra:+.0%} time per image"
    return pd.DataFrame(rows).fillna("")


def _seconds(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "not reached"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timing windows per loop")
    parser.add_argument("--images", type=int, default=12_800, help="images per timing window")
    parser.add_argument("--seeds", type=int, default=3, help="mnist_fast seeds")
    parser.add_argument("--cifar", nargs="*", default=[], help="presets, e.g. cifar10_cpu")
    parser.add_argument("--cifar-epochs", type=int, default=None, help="override their epochs")
    parser.add_argument("--backends", action="store_true",
                        help="also our loop against Lightning's (.[lightning])")  # fmt: skip
    args = parser.parse_args()
    root = os.environ.get("CNNEXP_DATA", "data")
    device = torch.device(args.device)
    env = environment()
    print(
        f"## Machine\n\n{env['cpu']} ({env['cpu_cores']} cores, {env['torch_threads']} torch "
        f"threads; flags: {cpu_flags()}), GPUs: {env['gpus'] or 'none'}; torch {env['torch']}, "
        f"Python {env['python']}, {platform.platform()}; git {env['git_commit']}\n"
    )
    print(f"## LeNet-5 on MNIST: training images per second ({device}), {args.repeats} "
          f"windows of {args.images:,} images after {WARMUP_STEPS} steps\n")  # fmt: skip
    print(throughput(root, device, args.repeats, args.images).to_markdown(index=False), "\n")
    print(f"## `+experiment=mnist_fast` time to 99.0% MNIST test accuracy ({args.seeds} seeds)\n")
    print(mnist_fast(device, args.seeds).to_markdown(index=False), "\n")
    if args.backends:
        print("## Our loop against PyTorch Lightning's Trainer, side by side\n")
        print(backends(device).to_markdown(index=False), "\n")
    for preset in args.cifar:
        print(f"## `+experiment={preset}` on {device}\n")
        print(cifar(preset, device, args.cifar_epochs).to_markdown(index=False), "\n")
    print(f"(measured {time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()
