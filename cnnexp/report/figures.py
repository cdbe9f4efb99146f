"""The report's pictures as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

import itertools
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from scipy import stats  # noqa: E402

from cnnexp.report.document import PAGE_WIDTH  # noqa: E402
from cnnexp.report.runs import matching  # noqa: E402
from cnnexp.report.verdicts import BETTER, EQUIVALENT, UNCLEAR, WORSE, margin_of  # noqa: E402

COLOURS = plt.get_cmap("tab20").colors[0::2] + plt.get_cmap("tab20").colors[1::2]
LINES = ("-", "--", ":", "-.")
BOUNDED = ("acc",)  # curves of these keys are accuracies: drawn in % and kept in [0, 100]
DPI = 110
WIDTH = (PAGE_WIDTH - 32) / DPI  # inches: a figure as wide as the page's column, less a margin
BASELINE_STYLE = {"color": "black", "ls": "-", "lw": 2.6, "zorder": 5}


def styles() -> itertools.cycle:
    """(colour, line style) pairs, every one of the first 20 in a colour of its own and no two
    alike before 80; black is kept for the baseline."""
    return itertools.cycle([(c, LINES[i % len(LINES)]) for i, c in enumerate(COLOURS)])


def curves_figure(
    curves: pd.DataFrame,
    factors: list[str],
    key: str,
    path: Path,
    baseline: dict[str, str] | None = None,
    marks: pd.DataFrame | None = None,
) -> Path:
    """Mean over seeds of `key` per epoch, one line per group (colour and line style; the
    baseline black and thick), a band of +-1 std where a group has several runs, accuracies in
    %, losses on a log scale, the legend beside the axes rather than over the lines (below
    them, one label a line, where the labels are too long to sit beside). `marks` (the same
    columns as `curves`) are points apart from the lines, a star each: the last epoch measured
    with test-time augmentation, which the lines (every epoch measured alike) do not join."""
    bounded = any(b in key for b in BOUNDED)
    scale = 100.0 if bounded else 1.0
    groups = list(curves.groupby(factors, sort=False)) if factors else [((), curves)]
    labels = [  # keys by their last part (kernel_size=5), as in the other figures
        ", ".join(f"{f.rsplit('.', 1)[-1]}={v}" for f, v in zip(factors, _tuple(name), strict=True))
        for name, _ in groups
    ]
    below = max(map(len, labels)) > LEGEND_BESIDE_CHARS
    fig, ax = plt.subplots(
        figsize=(WIDTH, 4.4 + (LEGEND_LINE * (len(groups) + 1) if below else 0)),
        layout="constrained",
    )
    style = styles()
    for (name, group), label in zip(groups, labels, strict=True):
        levels = dict(zip(factors, _tuple(name), strict=True))
        is_base = bool(baseline) and all(str(levels.get(f)) == v for f, v in baseline.items())
        colour, line = (BASELINE_STYLE["color"], "-") if is_base else next(style)
        _curve(ax, group, key, scale, colour, line, is_base, label)
        if marks is not None and len(marks):
            _mark(ax, marks[matching(marks, levels)] if levels else marks, key, scale, colour)
    _curve_axes(ax, key, bounded)
    if marks is not None and len(marks) and not factors:
        ax.legend(fontsize=8, loc="lower right")
    if factors and below:
        fig.legend(loc="outside lower center", fontsize=7, ncol=1)
    elif factors:
        fig.legend(loc="outside right upper", fontsize=7, ncol=2 if len(groups) > 14 else 1)
    return _save(fig, path)


def _curve(ax, group: pd.DataFrame, key: str, scale: float, colour, line, is_base, label) -> None:
    """One group's mean line over its seeds, with a +-1 std band where it has several runs
    (clipped to 0-100% for accuracies, above zero for the log-scaled losses)."""
    mean_std = (scale * group.groupby("epoch")[key].agg(["mean", "std"])).fillna(0.0)
    ax.plot(
        mean_std.index,
        mean_std["mean"],
        color=colour,
        ls=line,
        lw=BASELINE_STYLE["lw"] if is_base else 1.4,
        zorder=BASELINE_STYLE["zorder"] if is_base else 2,
        marker="o",
        ms=3,
        label=(label + " (baseline)" if is_base else label) or "all runs",
    )
    if group["run"].nunique() > 1:
        bounded = scale == 100.0
        low, high = mean_std["mean"] - mean_std["std"], mean_std["mean"] + mean_std["std"]
        low = low.clip(lower=0.0) if bounded else low.clip(lower=mean_std["mean"].min() / 10)
        high = high.clip(upper=100.0) if bounded else high
        ax.fill_between(mean_std.index, low, high, color=colour, alpha=0.10)


def _curve_axes(ax, key: str, bounded: bool) -> None:
    """Whole epochs, the metric named in words, losses on a log scale."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    name = key.replace("_", " ").replace(" acc", " accuracy")
    if "loss" in key:
        ax.set_yscale("log")
    ax.set_ylabel(name + (" (%)" if bounded else "") + (" (log scale)" if "loss" in key else ""))
    ax.grid(alpha=0.3)


MARK_LABEL = "last epoch with test-time augmentation"


def _mark(ax, marks: pd.DataFrame, key: str, scale: float, colour: str) -> None:
    """A group's points apart from its line (a star each; the legend names them once)."""
    at = scale * marks.groupby("epoch")[key].mean()
    first = MARK_LABEL not in ax.get_legend_handles_labels()[1]
    ax.plot(at.index, at.values, ls="none", marker="*", ms=11, color=colour,
            label=MARK_LABEL if first else None)  # fmt: skip


LEGEND_BESIDE_CHARS = 40  # a longer label goes below the axes, where it has the page's width
LEGEND_LINE = 0.17  # inches a legend line takes at its font size


PANEL_UNITS = 13  # level slots per row of verdict panels: wider studies wrap to more rows


def verdict_panels(summary: pd.DataFrame, factor: str, baseline: str, path: Path) -> Path:
    """One panel per group of levels of `factor` (levels named 'group-value' share a panel),
    wrapped in rows that fit the page: each seed's difference from the baseline mean as a dot,
    and the difference of means with the verdict's simultaneous interval; the baseline's own
    seeds at 0."""
    base = summary[summary[factor].astype(str) == baseline].iloc[0]
    rows = _wrap(_panels(summary, factor, baseline))
    units = max(sum(len(levels) + 1 for _, levels in row) for row in rows)
    width = max(3.6, WIDTH * units / PANEL_UNITS)  # a few levels: a narrow figure, not a strip
    fig = plt.figure(figsize=(width, 0.6 + 3.3 * len(rows)), layout="constrained")
    grid = fig.add_gridspec(len(rows), units)
    first = None
    for r, row_panels in enumerate(rows):
        col = 0
        for title, levels in row_panels:
            width = len(levels) + 1  # room for every level's label and the baseline's
            ax = fig.add_subplot(grid[r, col : col + width], sharey=first)
            first = first or ax
            col += width
            _verdict_panel(ax, summary, factor, baseline, levels, base["mean"])
            ax.set_title(title, fontsize=8, wrap=True)
            if col == width:
                ax.set_ylabel("test acc − baseline mean (points)", fontsize=8)
    decided = "correction" in summary and (summary["correction"] == "sequential").any()
    kind = "its look's interval (decided in rounds)" if decided else "its simultaneous interval"
    fig.suptitle(
        f"dots: seeds; diamonds: difference of means with {kind} "
        f"(baseline {100 * base['mean']:.2f}%)",
        fontsize=8,
        wrap=True,
    )
    return _save(fig, path)


def _wrap(panels: dict[str, list[str]]) -> list[list[tuple[str, list[str]]]]:
    """Panels packed in order into rows of at most PANEL_UNITS level slots."""
    rows: list[list[tuple[str, list[str]]]] = [[]]
    used = 0
    for title, levels in panels.items():
        levels = levels[: PANEL_UNITS - 1]  # a group wider than a row is cut, not squeezed
        if rows[-1] and used + len(levels) + 1 > PANEL_UNITS:
            rows.append([])
            used = 0
        rows[-1].append((title, levels))
        used += len(levels) + 1
    return rows


def _verdict_panel(ax, summary, factor, baseline, levels, base_mean) -> None:
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
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)


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
    if not isinstance(verdict, str):  # the baseline's row: nothing to say
        return
    margin = margin_of(verdict)
    if margin is not None:  # the margin as a band the interval lies inside
        ax.axhspan(-margin, margin, color="tab:blue", alpha=0.08, lw=0)
    if verdict in (BETTER, WORSE) or margin is not None:
        colour = {BETTER: "green", WORSE: "red"}.get(verdict, "tab:blue")
        ax.annotate(
            EQUIVALENT if margin is not None else verdict,
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            ha="center",
            va="bottom",
            fontsize=7,
            color=colour,
        )
    elif verdict != UNCLEAR:
        ax.annotate(
            verdict.split(":")[0].replace(" for a verdict", ""),
            (x, 0.02),
            xycoords=("data", "axes fraction"),
            ha="center",
            fontsize=6,
            color="red",
            rotation=90,
        )


def effects_figure(effects, path: Path) -> Path:
    """Effects (points) with their simultaneous intervals, largest first, zero marked."""
    order = sorted(effects, key=lambda e: abs(e.estimate), reverse=True)
    fig, ax = plt.subplots(figsize=(WIDTH, 0.9 + 0.32 * len(order)), layout="constrained")
    for y, e in enumerate(order):
        colour = ("green" if e.estimate > 0 else "red") if e.differs else "grey"
        ax.errorbar(
            100 * e.estimate,
            y,
            xerr=[[100 * (e.estimate - e.ci_low)], [100 * (e.ci_high - e.estimate)]],
            fmt="D",
            color=colour,
            ms=4,
            capsize=3,
        )
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(order)), [e.name for e in order], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("effect: high level minus low level (points of test accuracy)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


LABEL_CHARS = 48  # a group's label wraps after this many characters


def group_dots(
    summary: pd.DataFrame,
    factors: list[str],
    path: Path,
    pooled: tuple[float, float, tuple] | None = None,
) -> Path:
    """Without a baseline: each group's seeds as dots and its mean with a 95% t interval
    (groups of several runs only: one run is a number, in the table). Where the groups'
    variances pool (`pooled`: the standard deviation, its degrees of freedom and the rows left
    out of the pool), the interval is the pooled one; a row left out has its own."""
    labels = [  # keys by their last part (kernel_size=5), wrapped: room is left for the dots
        textwrap.fill(", ".join(f"{f.rsplit('.', 1)[-1]}={r[f]}" for f in factors), LABEL_CHARS)
        or "all runs"
        for _, r in summary.iterrows()
    ]
    lines = max(label.count("\n") + 1 for label in labels)
    height = 1.0 + (0.2 + 0.14 * lines) * len(labels)
    fig, ax = plt.subplots(figsize=(WIDTH, height), layout="constrained")
    for y, (_, row) in enumerate(summary.iterrows()):
        values = 100 * np.asarray(row["values"], float)
        ax.plot(values, [y] * len(values), "o", color="#4c72b0", alpha=0.7, ms=4)
        if pooled and y not in pooled[2]:
            sd, df = 100 * pooled[0], pooled[1]
        else:
            sd, df = (values.std(ddof=1), len(values) - 1) if len(values) > 1 else (0.0, 0)
        if len(values) > 1 and df > 0:
            half = stats.t.ppf(0.975, df) * sd / math.sqrt(len(values))
            ax.errorbar(values.mean(), y + 0.2, xerr=half, fmt="D", color="black", ms=4, capsize=3)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(right=min(ax.get_xlim()[1], 100))  # an interval past 100% says nothing more
    ax.set_xlabel("final test accuracy (%; the axis does not start at 0)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def system_figure(system: pd.DataFrame, path: Path, title: str) -> Path:
    """GPU utilisation and memory over time where recorded, else the CPU's utilisation."""
    gpu = [c for c in system.columns if c.endswith("_util_percent")]
    memory = [c for c in system.columns if c.startswith("gpu") and "mem" in c]
    columns = gpu or [c for c in ("cpu_percent", "process_cpu_percent") if c in system]
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4), layout="constrained")
    for col in columns:
        ax.plot(system["time_s"], system[col], label=col.replace("_", " "))
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("utilisation (%)" + (" (100% = one core)" if not gpu else ""))
    if memory:
        twin = ax.twinx()
        for col in memory:
            twin.plot(system["time_s"], system[col], ls="--", label=col.replace("_", " "))
        twin.set_ylabel("GPU memory")
        twin.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


TITLE_CHARS_PER_INCH = 11  # characters of a 9-point title that fit an inch


def picture_grid(rows: dict[str, list[tuple[str, object]]], path: Path) -> Path:
    """Pictures (PIL images) in a grid: one row per key, titled by their names."""
    ncols = max(len(v) for v in rows.values())
    first = next(iter(rows.values()))[0][1]
    aspect = first.height / first.width
    chars = int(WIDTH * TITLE_CHARS_PER_INCH / ncols)  # a title wraps within its column
    titles = {
        (label, name): textwrap.fill(f"{label}: {name}", chars)
        for label, pictures in rows.items()
        for name, _ in pictures
    }
    lines = max(t.count("\n") + 1 for t in titles.values())
    size = (WIDTH, (WIDTH / ncols * aspect + 0.2 + 0.2 * lines) * len(rows))
    fig, axes = plt.subplots(len(rows), ncols, figsize=size, squeeze=False)
    for r, (label, pictures) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(pictures):
                name, picture = pictures[c]
                ax.imshow(np.asarray(picture.convert("L")), cmap="gray")
                ax.set_title(titles[label, name], fontsize=9)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _tuple(name: object) -> tuple:
    return name if isinstance(name, tuple) else (name,)
