"""mnist_fast at larger batches, chosen on the validation split (never the test set).

    python benchmarks/mnist_fast_batch.py            # batch 128 (the preset), 192 and 256
    python benchmarks/mnist_fast_batch.py --seeds 2

A larger batch takes fewer, cheaper-per-image steps; this says whether the preset's two epochs
still reach its accuracy there. Each variant holds out 5,000 training images (data.validation)
and is judged by its validation accuracy after the last epoch.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from bench import config, cpu_kind

from cnnexp.train import train

# batch size -> peak learning rates tried there (the preset: 128 at 0.1)
VARIANTS = {128: [0.1], 192: [0.1, 0.15], 256: [0.1, 0.15, 0.2]}


def run(batch: int, lr: float, seed: int) -> dict:
    cfg = config(
        "+experiment=mnist_fast", "device=cpu", "progress=false", "data.validation=5000",
        f"batch_size={batch}", f"optimizer.lr={lr}", f"seed={seed}",
        "tracking.images_every=0", "tracking.histograms_every=0",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        m = train(cfg, Path(tmp))
    return {
        "batch": batch,
        "peak lr": lr,
        "seed": seed,
        "val acc per epoch": " ".join(f"{100 * r['val_acc']:.2f}%" for r in m["history"]),
        "training s": round(m["train_seconds"], 2),
        "img/s": round(m["images_per_second"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    rows = [
        run(batch, lr, seed)
        for seed in range(args.seeds)
        for batch, lrs in VARIANTS.items()
        for lr in lrs
    ]
    print(f"`+experiment=mnist_fast`, 55,000 training images, the {cpu_kind()}\n")
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
