"""Speed and accuracy, measured side by side in one run on one machine; prints markdown tables.

    python benchmarks/bench.py                      # LeNet-5 loops + time to 99% on MNIST
    python benchmarks/bench.py --cifar cifar10_fast --cifar-epochs 2   # + a CIFAR-10 preset

Needs the real datasets under $CNNEXP_DATA (e.g. ../shared/data).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch
import torchvision
from hydra import compose, initialize_config_dir
from torch import nn
from torchvision import transforms

from cnnexp import CONF_DIR
from cnnexp.data import load_torchvision, pad_images
from cnnexp.engine import train_one_epoch
from cnnexp.environment import cpu_model, environment
from cnnexp.loader import DeviceLoader
from cnnexp.train import build, train


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def lenet(cfg) -> nn.Module:
    return build(cfg.model, pool=build(cfg.pool), activation=build(cfg.activation))


def textbook_loop(root: str, device: torch.device, images: int) -> float:
    """Images per second of the usual tutorial loop: per-image transforms, DataLoader(batch 64)."""
    cfg = config("device=cpu")
    d = cfg.data  # the same padding and normalisation as our loop, from the data config
    tf = transforms.Compose(
        [transforms.Pad(d.pad), transforms.ToTensor(), transforms.Normalize(d.mean, d.std)]
    )
    dataset = torchvision.datasets.MNIST(root, train=True, download=False, transform=tf)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True)
    model = lenet(cfg).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    seen, start = 0, None
    for step, (x, y) in enumerate(loader):
        if step == 5:  # warm-up steps are not timed
            start, seen = time.perf_counter(), 0
        x, y = x.to(device), y.to(device)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
        if start is not None and seen >= images:
            break
    return seen / (time.perf_counter() - start)


def our_loop(root: str, device: torch.device, epochs: int = 1) -> float:
    """Images per second of cnnexp's loop with the default config's batch size."""
    cfg = config(f"device={device.type}")
    train_set, _ = load_torchvision("mnist", root, download=False)
    d = cfg.data
    loader = DeviceLoader(
        pad_images(train_set, d.pad),
        batch_size=cfg.batch_size,
        device=device,
        mean=list(d.mean),
        std=list(d.std),
        train=True,
    )
    model = lenet(cfg).to(device)
    opt = build(cfg.optimizer)(model.parameters())
    sched = build(cfg.schedule)(opt, total_steps=len(loader) * epochs)
    stats = [
        train_one_epoch(model, loader, opt, sched, nn.CrossEntropyLoss(), nullcontext)
        for _ in range(epochs)
    ]
    return sum(s.images for s in stats) / sum(s.seconds for s in stats)


def time_to(history: list[dict], target: float) -> tuple[float | None, int | None]:
    """Training seconds (cumulative) and epoch at which test accuracy first reached `target`."""
    seconds = 0.0
    for row in history:
        seconds += row["train_seconds"] + row["test_seconds"]
        if row["test_acc"] >= target:
            return seconds, row["epoch"]
    return None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--textbook-images", type=int, default=12_800)
    parser.add_argument("--cifar", nargs="*", default=[], help="presets, e.g. cifar10_fast")
    parser.add_argument("--cifar-epochs", type=int, default=None, help="override their epochs")
    parser.add_argument("--skip-mnist", action="store_true")
    parser.add_argument(
        "--monitor-ab",
        action="store_true",
        help="also train the default run without the system monitor",
    )
    args = parser.parse_args()
    root = os.environ.get("CNNEXP_DATA", "data")
    device = torch.device(args.device)
    env = environment()
    print(
        f"## Machine\n\n{env['cpu']} ({env['cpu_cores']} cores, {env['torch_threads']} torch "
        f"threads), GPUs: {env['gpus'] or 'none'}; torch {env['torch']}, CUDA {env['cuda']}, "
        f"Python {env['python']}, {platform.platform()}; git {env['git_commit']}\n"
    )

    if not args.skip_mnist:
        textbook = textbook_loop(root, device, args.textbook_images)
        ours = our_loop(root, device)
        table = pd.DataFrame(
            [
                {
                    "loop": "textbook (torchvision dataset, per-image transforms, DataLoader b=64)",
                    "images/s": round(textbook),
                    "ratio": 1.0,
                },
                {
                    "loop": "cnnexp (uint8 on device, batched normalise, b=128)",
                    "images/s": round(ours),
                    "ratio": round(ours / textbook, 2),
                },
            ]
        )
        print(f"## LeNet-5 on MNIST, training images per second ({device})\n")
        print(table.to_markdown(index=False), "\n")

        with tempfile.TemporaryDirectory() as tmp:
            metrics = train(config(f"device={args.device}", "progress=false"), Path(tmp))
        seconds, epoch = time_to(metrics["history"], 0.99)
        if args.monitor_ab:
            with tempfile.TemporaryDirectory() as tmp:
                quiet = train(
                    config(
                        f"device={args.device}", "progress=false", "tracking.monitor_interval=0"
                    ),
                    Path(tmp),
                )
        print("## Time to 99.0% MNIST test accuracy (default config: LeNet-5, 8 epochs)\n")
        print(
            f"{seconds:.1f} s of training and testing, reached in epoch {epoch}; "
            f"final {metrics['final_test_acc']:.4f} after {metrics['train_seconds']:.1f} s "
            f"training ({metrics['wall_seconds']:.1f} s wall)\n"
            if seconds
            else f"not reached: final {metrics['final_test_acc']:.4f}\n"
        )

        system = metrics.get("system", {})
        print("## System monitor overhead (the default run above)\n")
        print(
            f"{system.get('samples')} samples cost {system.get('cost_seconds')} s of sampling "
            f"in a {metrics['wall_seconds']:.1f} s run: "
            f"{100 * system.get('cost_seconds', 0) / metrics['wall_seconds']:.3f}% of its time",
            end="",
        )
        if args.monitor_ab:
            print(
                f"; training took {metrics['train_seconds']:.1f} s with the monitor and "
                f"{quiet['train_seconds']:.1f} s without it "
                f"({100 * (metrics['train_seconds'] / quiet['train_seconds'] - 1):+.1f}%)"
            )
        print()

    for preset in args.cifar:
        overrides = [f"+experiment={preset}", f"device={args.device}", "progress=false"]
        if args.cifar_epochs:
            overrides.append(f"epochs={args.cifar_epochs}")
        with tempfile.TemporaryDirectory() as tmp:
            metrics = train(config(*overrides), Path(tmp))
        rows = pd.DataFrame(metrics["history"])[["epoch", "train_seconds", "test_acc"]]
        rows["cumulative_s"] = (
            (rows["train_seconds"] + pd.DataFrame(metrics["history"])["test_seconds"])
            .cumsum()
            .round(1)
        )
        seconds, epoch = time_to(metrics["history"], 0.94)
        print(f"## {preset} ({' '.join(overrides[1:])}) on {device}\n")
        print(rows.round(4).to_markdown(index=False), "\n")
        print(f"time to 94%: {f'{seconds:.1f} s (epoch {epoch})' if seconds else 'not reached'}\n")

    print(f"(measured {time.strftime('%Y-%m-%d %H:%M')} on {cpu_model()})")


if __name__ == "__main__":
    main()
