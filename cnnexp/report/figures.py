"""The report's pictures as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from scipy import stats  # noqa: E402

COLOURS = plt.get_cmap("tab10").colors
LINES = ("-", "--", ":", "-.")
BOUNDED = ("acc",)  # curves of these keys live in [0, 1]


def styles() -> itertools.cycle:
    """Colour and line style pairs: 40 distinguishable curves before any repeats."""
    return itertools.cycle([(c, ls) for ls in LINES for c in COLOURS])


def curves_figure(curves: pd.DataFrame, factors: list[str], key: str, path: Path) -> Path:
    """Mean over seeds of `key` per epoch, one line per group (colour and line style), with a
    band of +-1 std clipped to the valid range; losses on a log scale."""
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    groups = list(curves.groupby(factors, sort=False)) if factors else [((), curves)]
    bounded = any(b in key for b in BOUNDED)
    for (name, group), (colour, line) in zip(groups, styles(), strict=False):  # styles: endless
        mean_std = group.groupby("epoch")[key].agg(["mean", "std"]).fillna(0.0)
        label = ", ".join(f"{f}={v}" for f, v in zip(factors, _tuple(name), strict=True))
        ax.plot(
            mean_std.index,
            mean_std["mean"],
            color=colour,
            ls=line,
            marker="o",
            ms=3,
            label=label or "all runs",
        )
        low, high = mean_std["mean"] - mean_std["std"], mean_std["mean"] + mean_std["std"]
        low = low.clip(lower=0.0) if bounded else low.clip(lower=mean_std["mean"].min() / 10)
        ax.fill_between(
            mean_std.index, low, high.clip(upper=1.0) if bounded else high, color=colour, alpha=0.12
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    if "loss" in key:
        ax.set_yscale("log")
    ax.set_ylabel(key.replace("_", " ") + (" (log scale)" if "loss" in key else ""))
    ax.grid(alpha=0.3)
    if factors:
        ax.legend(fontsize=7, ncol=2 if len(groups) > 8 else 1)
    return _save(fig, path)


def verdict_panels(summary: pd.DataFrame, factor: str, baseline: str, path: Path) -> Path:
    """One panel per group of levels of `factor` (levels named 'group-value' share a panel):
    each seed's difference from the baseline mean as a dot, and the difference of means with
    the verdict's simultaneous interval; the baseline's own seeds at 0."""
    base = summary[summary[factor].astype(str) == baseline].iloc[0]
    panels = _panels(summary, factor, baseline)
    widths = [len(levels) + 1 for levels in panels.values()]  # room for every level's label
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(1.5 + 0.6 * sum(widths), 3.9),
        sharey=True,
        squeeze=False,
        gridspec_kw={"width_ratios": widths},
    )
    base_mean = base["mean"]
    for ax, (title, levels) in zip(axes[0], panels.items(), strict=True):
        for x, level in enumerate([baseline, *levels]):
            row = summary[summary[factor].astype(str) == level].iloc[0]
            _seed_dots(ax, x, row, base_mean)
            if level != baseline and not math.isnan(row["diff"]):
                ax.errorbar(
                    x + 0.15,
                    100 * row["diff"],
                    fmt="D",
                    color="black",
                    ms=4,
                    yerr=[
                        [100 * (row["diff"] - row["ci_low"])],
                        [100 * (row["ci_high"] - row["diff"])],
                    ],
                    capsize=3,
                )
            _verdict_mark(ax, x, row)
        ax.axhline(0, color="grey", lw=1, ls="--")
        ax.set_xticks(
            range(len(levels) + 1),
            ["baseline", *[_value(v) for v in levels]],
            rotation=45,
            ha="right",
            fontsize=7,
        )
        ax.set_title(title, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("test accuracy − baseline mean (points)")
    fig.suptitle(
        f"dots: seeds; diamonds: difference of means with its simultaneous interval "
        f"(baseline {100 * base_mean:.2f}%)",
        fontsize=8,
    )
    return _save(fig, path)


def _panels(summary: pd.DataFrame, factor: str, baseline: str) -> dict[str, list[str]]:
    """{panel title: levels}: levels 'kernel_size-3' and 'kernel_size-7' share 'kernel_size'."""
    panels: dict[str, list[str]] = {}
    for level in summary[factor].astype(str):
        if level != baseline:
            panels.setdefault(level.rsplit("-", 1)[0] if "-" in level else factor, []).append(level)
    return panels


def _value(level: str) -> str:
    return level.rsplit("-", 1)[-1]


def _seed_dots(ax: plt.Axes, x: int, row: pd.Series, base_mean: float) -> None:
    values = 100 * (np.asarray(row["values"], float) - base_mean)
    jitter = np.linspace(-0.08, 0.08, len(values)) if len(values) > 1 else np.zeros(len(values))
    ax.plot(x - 0.1 + jitter, values, "o", color="#4c72b0", ms=4, alpha=0.8)


def _verdict_mark(ax: plt.Axes, x: int, row: pd.Series) -> None:
    """A short word under levels that could not be judged (did not train, too few seeds)."""
    verdict = row.get("verdict")
    if verdict in ("better", "worse"):
        colour = "green" if verdict == "better" else "red"
        ax.annotate(
            verdict,
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            ha="center",
            va="bottom",
            fontsize=7,
            color=colour,
        )
    elif verdict and verdict != "no clear difference":
        ax.annotate(
            verdict.split(":")[0].replace(" for a verdict", ""),
            (x, 0.02),
            xycoords=("data", "axes fraction"),
            ha="center",
            fontsize=6,
            color="red",
            rotation=90,
        )


def group_dots(summary: pd.DataFrame, factors: list[str], path: Path) -> Path:
    """Without a baseline: each group's seeds as dots and its mean with a 95% t interval."""
    labels = [
        ", ".join(f"{f}={r[f]}" for f in factors) or "all runs" for _, r in summary.iterrows()
    ]
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.34 * len(labels)))
    for y, (_, row) in enumerate(summary.iterrows()):
        values = 100 * np.asarray(row["values"], float)
        ax.plot(values, [y] * len(values), "o", color="#4c72b0", alpha=0.7, ms=4)
        if len(values) > 1:
            half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
            ax.errorbar(values.mean(), y + 0.2, xerr=half, fmt="D", color="black", ms=4, capsize=3)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(
        "final test accuracy (%): dots are seeds, diamonds the mean with its 95% CI "
        "(the axis does not start at 0)",
        fontsize=8,
    )
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


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
    return _save(fig, path)


def picture_grid(rows: dict[str, list[tuple[str, object]]], path: Path) -> Path:
    """Pictures (PIL images) in a grid: one row per key, titled by their names."""
    ncols = max(len(v) for v in rows.values())
    first = next(iter(rows.values()))[0][1]
    aspect = first.height / first.width
    size = (5.5 * ncols, (5.5 * aspect + 0.4) * len(rows))
    fig, axes = plt.subplots(len(rows), ncols, figsize=size, squeeze=False)
    for r, (label, pictures) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(pictures):
                name, picture = pictures[c]
                ax.imshow(np.asarray(picture.convert("L")), cmap="gray")
                ax.set_title(f"{label}: {name}", fontsize=9)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _tuple(name: object) -> tuple:
    return name if isinstance(name, tuple) else (name,)
