"""`python -m cnnexp.report [RUN_OR_SWEEP ...]`: tables, figures and answers from run folders.

With no argument it reports on the newest sweep under multirun/. Several folders (single runs
and sweeps) make one lab report: environment, what was run, curves, GPU utilisation, test
accuracies and the answers. Writes runs.csv, summary.csv, report.md, a self-contained
report.html and figures/*.png.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
import time
from pathlib import Path

import pandas as pd

from cnnexp import figures
from cnnexp.results import (
    Study,
    answers,
    curves,
    environment_of,
    load_study,
    problems,
    runs_table,
    summarise,
    system_log,
)

POOLING_EXPLAINED = (
    "Max pooling passes on the strongest response in each window, and in back-propagation its "
    "gradient reaches only that one input: it keeps sharp, sparse features and gives a little "
    "invariance to small shifts. Average pooling passes on the mean of the window and spreads "
    "the gradient evenly over it: it smooths, and dilutes a strong local feature with its weak "
    "neighbours. Which is better is an empirical question, answered below with the numbers."
)
ENV_KEYS = ["gpus", "driver", "cuda", "cudnn", "torch", "python", "cpu", "cpu_cores",
            "torch_threads", "hostname", "platform", "git_commit"]  # fmt: skip
# summary.csv column -> the report's heading; accuracies are shown in percent
SUMMARY_HEADINGS = {
    "mean": "test acc %", "std": "± std", "n": "seeds", "diff": "vs baseline (points)",
    "diff_se": "± se", "best_test_acc_mean": "best acc %", "train_seconds_mean": "train s",
    "images_per_second_mean": "img/s", "parameters_mean": "parameters", "macs_mean": "MACs",
}  # fmt: skip
PERCENT = ("mean", "std", "diff", "diff_se", "best_test_acc_mean")


class Document:
    """Blocks of a report, rendered both as markdown and as self-contained HTML."""

    def __init__(self, out: Path):
        self.out = out
        self.blocks: list[tuple] = []

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", items))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(("table", _tidy(frame)))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("img", path, caption))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def markdown(self) -> str:
        parts = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                parts.append("#" * block[1] + " " + block[2])
            elif kind == "p":
                parts.append(block[1])
            elif kind == "ul":
                parts.append("\n".join(f"- {item}" for item in block[1]))
            elif kind == "table":
                parts.append(block[1].to_markdown(index=False, floatfmt=".4g"))
            elif kind == "img":
                parts.append(f"![{block[2]}]({block[1].relative_to(self.out).as_posix()})")
            elif kind == "code":
                parts.append("```\n" + block[1].rstrip() + "\n```")
        return "\n\n".join(parts) + "\n"

    def html(self, title: str) -> str:
        parts = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif kind == "p":
                parts.append(f"<p>{html.escape(block[1])}</p>")
            elif kind == "ul":
                items = "".join(f"<li>{html.escape(i)}</li>" for i in block[1])
                parts.append(f"<ul>{items}</ul>")
            elif kind == "table":
                parts.append(
                    block[1].to_html(
                        index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="t"
                    )
                )
            elif kind == "img":
                data = base64.b64encode(block[1].read_bytes()).decode()
                parts.append(
                    f'<figure><img src="data:image/png;base64,{data}" '
                    f'alt="{html.escape(block[2])}"><figcaption>'
                    f"{html.escape(block[2])}</figcaption></figure>"
                )
            elif kind == "code":
                parts.append(f"<pre>{html.escape(block[1])}</pre>")
        style = (
            "body{font-family:sans-serif;max-width:960px;margin:2em auto;padding:0 1em}"
            "table.t{border-collapse:collapse;font-size:12px}"
            "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px}"
            "img{max-width:100%}pre{background:#f4f4f4;padding:8px;overflow:auto}"
        )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
        )


def display_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as the report shows it: factors first, accuracies in percent."""
    shown = summary.copy()
    for col in PERCENT:
        shown[col] = (100 * shown[col]).round(2)
    factors = [c for c in shown.columns if c not in SUMMARY_HEADINGS and c != "study"]
    columns = [c for c in SUMMARY_HEADINGS if shown[c].notna().any()]  # no baseline: no diff
    return shown[factors + columns].rename(columns=SUMMARY_HEADINGS)


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Whole numbers (parameters, counts) shown as integers rather than in e-notation."""
    frame = frame.copy()
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_float_dtype(values) and values.notna().any():
            if (values.dropna() % 1 == 0).all() and values.abs().max() >= 1:
                frame[col] = values.astype("Int64")
    return frame


def newest_sweep(root: Path = Path("multirun")) -> Path:
    """The sweep folder (it holds Hydra's multirun.yaml) written last under `root`."""
    sweeps = sorted(root.rglob("multirun.yaml"), key=lambda p: p.stat().st_mtime)
    if not sweeps:
        raise FileNotFoundError(
            f"no sweep under {root.resolve()}: run one first (python -m cnnexp -m pool=max,avg) "
            "or name run or sweep folders: python -m cnnexp.report outputs/DATE/TIME"
        )
    return sweeps[-1].parent


def describe(study: Study) -> str:
    """What was run, in a sentence."""
    runs = study.runs
    seeds = runs["seed"].nunique() if "seed" in runs else 1
    levels = "; ".join(
        f"{f}: {', '.join(map(str, runs[f].dropna().unique()))}" for f in study.factors
    )
    text = f"{len(runs)} run{'s' if len(runs) != 1 else ''} in {study.root}"
    if levels:
        text += f", varying {levels}"
    if seeds > 1:
        text += f", {seeds} seeds each" if study.factors else f", {seeds} seeds"
    if study.baseline:
        text += "; differences are measured from " + ", ".join(
            f"{k}={v}" for k, v in study.baseline.items()
        )
    return text + "."


def add_study(doc: Document, study: Study, index: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The section of one sweep or run; returns its runs and summary tables."""
    fig_dir = doc.out / "figures"
    tag = f"{index}-{study.name}".replace("/", "_")
    doc.heading(2, f"{study.name}")
    doc.para(describe(study))
    summary = summarise(study)
    if study.name == "pooling":
        doc.heading(3, "What differs between max and average pooling")
        doc.para(POOLING_EXPLAINED)
    found = answers(study, summary)
    if found:
        doc.heading(3, "Answers")
        doc.bullets(found)
    if not summary.empty:
        doc.heading(3, "Test accuracy")
        doc.table(display_summary(summary))
        if study.factors:
            doc.image(
                figures.bars_figure(summary, study.factors, fig_dir / f"{tag}-bars.png"),
                "final test accuracy, mean ± std over seeds",
            )
    for key, caption in (
        ("test_acc", "test accuracy per epoch"),
        ("train_loss", "training loss per epoch"),
        ("test_loss", "test loss per epoch"),
    ):
        frame = curves(study, key)
        if not frame.empty:
            path = figures.curves_figure(frame, study.factors, key, fig_dir / f"{tag}-{key}.png")
            doc.image(path, f"{caption} (mean ± std over seeds)")
    first = Path(study.runs["run"].iloc[0])
    system = system_log(first)
    if system is not None and len(system):
        gpu = any(c.endswith("_util_percent") for c in system.columns)
        what = "GPU utilisation" if gpu else "CPU utilisation (no GPU was recorded)"
        doc.image(
            figures.system_figure(system, fig_dir / f"{tag}-system.png", f"{what}: {first}"), what
        )
        stats = study.runs["system"].iloc[0]
        if stats:
            doc.para(
                ", ".join(
                    f"{k.replace('_', ' ')} {v}"
                    for k, v in stats.items()
                    if k.endswith(("_mean", "_peak"))
                )
            )
    bad = problems(study)
    doc.heading(3, "Runs that did not complete")
    if bad.empty:
        doc.para("None: every run completed.")
    else:
        doc.table(bad)
    table = runs_table(study)
    doc.heading(3, "All runs")
    doc.table(table.drop(columns=["run", "error"], errors="ignore"))
    return table.assign(study=study.name), summary.assign(study=study.name)


def build_report(paths: list[Path], out: Path, title: str) -> Path:
    """Write the report for `paths` into `out`; returns the markdown file."""
    studies = [load_study(p) for p in paths]
    (out / "figures").mkdir(parents=True, exist_ok=True)
    doc = Document(out)
    doc.heading(1, title)
    doc.para(
        f"Made {time.strftime('%Y-%m-%d %H:%M')} by `python -m cnnexp.report` from "
        + ", ".join(str(p) for p in paths)
        + "."
    )
    first_run = Path(studies[0].runs["run"].iloc[0])
    env = environment_of(first_run)
    if env:
        doc.heading(2, "Environment")
        doc.table(pd.DataFrame([{"what": k, "value": str(env.get(k))} for k in ENV_KEYS]))
        smi = first_run / "nvidia-smi.txt"
        if smi.exists():
            doc.code(smi.read_text())
    all_runs, all_summaries = [], []
    for i, study in enumerate(studies):
        runs, summary = add_study(doc, study, i)
        all_runs.append(runs)
        all_summaries.append(summary)
    pd.concat(all_runs).to_csv(out / "runs.csv", index=False)
    pd.concat(all_summaries).to_csv(out / "summary.csv", index=False)
    (out / "report.md").write_text(doc.markdown())
    (out / "report.html").write_text(doc.html(title))
    return out / "report.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnnexp.report", description=__doc__)
    parser.add_argument("paths", nargs="*", type=Path, help="run or sweep folders")
    parser.add_argument("--out", type=Path, help="where to write (default: beside the input)")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    try:
        paths = args.paths or [newest_sweep()]
        for path in paths:
            if not path.is_dir():
                raise FileNotFoundError(f"{path} is not a folder")
        out = args.out or (
            paths[0] / "report"
            if len(paths) == 1
            else Path("reports") / time.strftime("%Y-%m-%d_%H-%M-%S")
        )
        title = args.title or ("cnnexp report" if len(paths) == 1 else "cnnexp lab report")
        report = build_report(paths, out, title)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {report} and {report.with_suffix('.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
