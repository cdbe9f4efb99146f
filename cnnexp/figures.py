"""The report's pictures as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def _label(row: pd.Series, factors: list[str]) -> str:
    return ", ".join(f"{f}={row[f]}" for f in factors) or "all runs"


def curves_figure(curves: pd.DataFrame, factors: list[str], key: str, path: Path) -> Path:
    """Mean over seeds of `key` per epoch, one line per group, with a band of +-1 std."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    groups = curves.groupby(factors, sort=False) if factors else [((), curves)]
    for name, group in groups:
        stats = group.groupby("epoch")[key].agg(["mean", "std"]).fillna(0.0)
        label = ", ".join(f"{f}={v}" for f, v in zip(factors, _tuple(name), strict=True))
        line = ax.plot(stats.index, stats["mean"], marker="o", ms=3, label=label or "all runs")
        ax.fill_between(
            stats.index,
            stats["mean"] - stats["std"],
            stats["mean"] + stats["std"],
            color=line[0].get_color(),
            alpha=0.15,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(key.replace("_", " "))
    ax.grid(alpha=0.3)
    if factors:
        ax.legend(fontsize=7, ncol=2 if len(curves.groupby(factors)) > 6 else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bars_figure(summary: pd.DataFrame, factors: list[str], path: Path) -> Path:
    """Final test accuracy per group: mean with error bars of one std over seeds."""
    labels = [_label(row, factors) for _, row in summary.iterrows()]
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.32 * len(labels)))
    ax.barh(
        range(len(labels)),
        100 * summary["mean"],
        xerr=100 * summary["std"],
        color="#4c72b0",
        ecolor="black",
        capsize=3,
    )
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    low = 100 * (summary["mean"] - summary["std"]).min()
    high = 100 * (summary["mean"] + summary["std"]).max()
    margin = max(0.5, 0.1 * (high - low))
    ax.set_xlim(max(0.0, low - margin), min(100.0, high + margin))
    ax.set_xlabel("final test accuracy (%), mean ± std over seeds")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def system_figure(system: pd.DataFrame, path: Path, title: str) -> Path:
    """GPU utilisation (and memory) over time where recorded, else CPU utilisation."""
    gpu_cols = [c for c in system.columns if c.endswith("_util_percent")]
    columns = gpu_cols or ["cpu_percent", "process_cpu_percent"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for col in columns:
        if col in system:
            ax.plot(system["time_s"], system[col], label=col.replace("_", " "))
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("%")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _tuple(name: object) -> tuple:
    return name if isinstance(name, tuple) else (name,)
