"""Speed and accuracy on this machine, measured side by side in one run; prints markdown.

    python benchmarks/bench.py                  # LeNet-5 loops, mnist_fast time to 99% (5 seeds),
                                                # the textbook recipe's time to 99%, the targets
    python benchmarks/bench.py --cpu-kind avx2  # the same as an AVX2-only CPU (instruction sets
                                                # capped: ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA)
    python benchmarks/bench.py --cifar cifar10_cpu --cifar-epochs 2   # + a CIFAR-10 preset

Needs the real datasets under $CNNEXP_DATA (e.g. ../shared/data). On a GPU, see gpu.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
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
from cnnexp.config import build
from cnnexp.data import ImageTensorDataset, load_torchvision, pad_images
from cnnexp.engine import train_one_epoch
from cnnexp.environment import cpu_flags, cpu_has_bf16, environment, isa_caps
from cnnexp.loader import DeviceLoader
from cnnexp.models import build_model
from cnnexp.precision import Precision, choose, step_timer
from cnnexp.report.curves import time_to
from cnnexp.train import build_optimizer, train, use_channels_last

WARMUP_STEPS = 5  # untimed steps before each window: allocations, oneDNN kernel choice
TEXTBOOK_BATCH = 64  # the PyTorch tutorials' DataLoader batch size


def config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def lenet(cfg: DictConfig) -> nn.Module:
    return build_model(cfg)


# What --cpu-kind avx2 sets: PyTorch's and oneDNN's instruction sets capped at AVX2, so that a
# CPU with AVX-512 and bf16 behaves as an AVX2-only one (bf16 then emulated, and slow).
AVX2_CAPS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def cpu_kind() -> str:
    """The CPU kind these figures are for: its flags, and the caps in the environment."""
    flags = ", ".join(sorted(cpu_flags())) or "none of avx2/avx512/amx"
    caps = " ".join(f"{k}={v}" for k, v in isa_caps().items() if v)
    kind = "bf16" if cpu_has_bf16() else "AVX2-only"
    return f"{kind} kind (flags: {flags}{'; capped by ' + caps if caps else ''})"


# --- the anchor: the loop a student writes from the PyTorch tutorials, nothing of cnnexp in it ---

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)  # the tutorials' constants, as tuples


def textbook_lenet() -> nn.Sequential:
    """LeNet-5 as the lab defines it (61,706 parameters, the same as our `model=lenet`)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def textbook_data(root: str, train: bool) -> torch.utils.data.Dataset:
    """torchvision's MNIST padded to 32x32, per image: Pad, ToTensor, Normalize."""
    tf = transforms.Compose(
        [transforms.Pad(2), transforms.ToTensor(), transforms.Normalize(MNIST_MEAN, MNIST_STD)]
    )
    return torchvision.datasets.MNIST(root, train=train, download=False, transform=tf)


def textbook_step(model, optimizer, loss_fn, x, y) -> None:
    """One training step as the tutorials write it."""
    loss = loss_fn(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def textbook_rate(root: str, device: torch.device, batch: int, images: int) -> float:
    """Images per second of the tutorial loop (a shuffling DataLoader, SGD with momentum, fp32)
    over `images` after WARMUP_STEPS steps."""
    loader = torch.utils.data.DataLoader(textbook_data(root, True), batch_size=batch, shuffle=True)
    model = textbook_lenet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    seen, start = 0, time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if step == WARMUP_STEPS:
            seen, start = 0, time.perf_counter()
        textbook_step(model, optimizer, loss_fn, x.to(device), y.to(device))
        seen += len(y)
        if step >= WARMUP_STEPS and seen >= images:
            break
    return seen / (time.perf_counter() - start)


def textbook_time_to(root: str, device: torch.device, target: float, epochs: int) -> dict:
    """The tutorial recipe (SGD lr 0.01, momentum 0.9, batch 64) trained an epoch at a time and
    tested after each, until the test accuracy reaches `target`: the training seconds a
    student waits, the epoch and the accuracy."""
    torch.manual_seed(0)
    train_loader = torch.utils.data.DataLoader(
        textbook_data(root, True), batch_size=TEXTBOOK_BATCH, shuffle=True
    )
    test_loader = torch.utils.data.DataLoader(textbook_data(root, False), batch_size=1000)
    model = textbook_lenet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    seconds, acc = 0.0, 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        for x, y in train_loader:
            textbook_step(model, optimizer, loss_fn, x.to(device), y.to(device))
        seconds += time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            right = sum(
                (model(x.to(device)).argmax(1) == y.to(device)).sum().item() for x, y in test_loader
            )
        acc = right / len(test_loader.dataset)
        if acc >= target:
            return {"seconds": seconds, "epoch": epoch, "acc": acc}
    return {"seconds": None, "epoch": epochs, "acc": acc}


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
    channels_last = use_channels_last(cfg.channels_last, device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = lenet(cfg).to(device, memory_format=layout)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.norm_bias_lr)

    def window(n: int):
        subset = ImageTensorDataset(train_set.images[:n], train_set.labels[:n], [])
        loader = DeviceLoader(subset, batch_size=batch, device=device, mean=list(d.mean),
                              std=list(d.std), train=True, channels_last=channels_last)  # fmt: skip
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


def targets(rates: pd.DataFrame, fast: pd.DataFrame, textbook: dict) -> pd.DataFrame:
    """The issue's figures from the tables above: our loop over the textbook loop at each
    one's defaults, the textbook recipe's time to 99% over mnist_fast's, mnist_fast's worst."""
    ratio = rates["img/s median"].iloc[1] / rates["img/s median"].iloc[0]
    reached = pd.to_numeric(fast["training s to 99.0%"], errors="coerce")
    every = reached.notna().all()
    worst = reached.max() if every else None
    over = textbook["seconds"] / reached.median() if textbook["seconds"] and every else None
    return pd.DataFrame([
        {"figure": "our loop / textbook loop, img/s at each one's defaults",
         "measured": f"{ratio:.2f}x"},
        {"figure": "textbook time to 99.0% / mnist_fast median time to 99.0%",
         "measured": f"{over:.1f}x" if over else "not reached"},
        {"figure": f"mnist_fast training s to 99.0%, the slowest of {len(fast)} seeds",
         "measured": _seconds(worst) if every else "not every seed reached 99.0%"},
    ])  # fmt: skip


def _seconds(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "not reached"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timing windows per loop")
    parser.add_argument("--images", type=int, default=12_800, help="images per timing window")
    parser.add_argument("--seeds", type=int, default=5, help="mnist_fast seeds")
    parser.add_argument(
        "--cpu-kind",
        choices=("native", "avx2"),
        default="native",
        help="avx2: run again with the instruction sets capped at AVX2",
    )
    parser.add_argument("--textbook-epochs", type=int, default=15,
                        help="most epochs the textbook recipe trains towards 99.0%%")  # fmt: skip
    parser.add_argument("--cifar", nargs="*", default=[], help="presets, e.g. cifar10_cpu")
    parser.add_argument("--cifar-epochs", type=int, default=None, help="override their epochs")
    parser.add_argument("--backends", action="store_true",
                        help="also our loop against Lightning's (.[lightning])")  # fmt: skip
    args = parser.parse_args()
    if args.cpu_kind == "avx2" and any(os.environ.get(k) != v for k, v in AVX2_CAPS.items()):
        # The caps are read when PyTorch loads: the benchmark starts again under them.
        given = sys.argv
        argv = [a for i, a in enumerate(given)
                if not a.startswith("--cpu-kind") and given[i - 1] != "--cpu-kind"]  # fmt: skip
        os.execve(sys.executable, [sys.executable, *argv], {**os.environ, **AVX2_CAPS})
    root = os.environ.get("CNNEXP_DATA", "data")
    device = torch.device(args.device)
    env = environment()
    print(
        f"## Machine\n\n{env['cpu']} ({env['cpu_cores']} cores, {env['torch_threads']} torch "
        f"threads), the {cpu_kind()}, GPUs: {env['gpus'] or 'none'}; torch {env['torch']}, "
        f"Python {env['python']}, {platform.platform()}; git {env['git_commit']}\n"
    )
    print(f"## LeNet-5 on MNIST: training images per second ({device}), {args.repeats} "
          f"windows of {args.images:,} images after {WARMUP_STEPS} steps\n")  # fmt: skip
    rates = throughput(root, device, args.repeats, args.images)
    print(rates.to_markdown(index=False), "\n")
    print(f"## `+experiment=mnist_fast` time to 99.0% MNIST test accuracy ({args.seeds} seeds)\n")
    fast = mnist_fast(device, args.seeds)
    print(fast.to_markdown(index=False), "\n")
    print("## The textbook recipe's time to 99.0% (SGD lr 0.01, momentum 0.9, batch 64, seed 0)\n")
    textbook = textbook_time_to(root, device, 0.99, args.textbook_epochs)
    reached = f"{textbook['seconds']:.2f} s of training" if textbook["seconds"] else "not reached"
    print(f"{reached}, epoch {textbook['epoch']}, test accuracy {100 * textbook['acc']:.2f}%\n")
    print(f"## Targets ({cpu_kind()})\n")
    print(targets(rates, fast, textbook).to_markdown(index=False), "\n")
    if args.backends:
        print("## Our loop against PyTorch Lightning's Trainer, side by side\n")
        print(backends(device).to_markdown(index=False), "\n")
    for preset in args.cifar:
        print(f"## `+experiment={preset}` on {device}\n")
        print(cifar(preset, device, args.cifar_epochs).to_markdown(index=False), "\n")
    print(f"(measured {time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()
