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
    REPLICATE,
    USABLE,
    Study,
    answers,
    around_first_pool,
    counted,
    curves,
    environment_of,
    feature_map_images,
    flatten,
    load_study,
    problems,
    provenance,
    recipe,
    runs_table,
    summarise,
    system_log,
    varying_keys,
)
from cnnexp.stats import CORRECTIONS

POOLING_EXPLAINED = (
    "Max pooling passes on the strongest response in each window, and in back-propagation its "
    "gradient reaches only that one input: it keeps sharp, sparse features and gives a little "
    "invariance to small shifts. Average pooling passes on the mean of the window and spreads "
    "the gradient evenly over it: it smooths, and dilutes a strong local feature with its weak "
    "neighbours. Which is better is an empirical question, answered below with the numbers."
)
ENV_KEYS = ["gpus", "driver", "cuda", "cudnn", "torch", "python", "cpu", "cpu_cores",
            "torch_threads", "cpu_bf16", "hostname", "platform", "git_commit"]  # fmt: skip
# summary.csv column -> the report's heading; accuracies are shown in percent
SUMMARY_HEADINGS = {
    "runs": "runs", "usable": "usable", "did not train": "did not train",
    "diverged": "diverged", "failed": "failed", "incomplete": "incomplete",
    "mean": "test acc % (mean)", "median": "median", "std": "± std", "seed_values": "each seed",
    "diff": "vs baseline (points)", "ci": "95% CI", "p_adjusted": "corrected p",
    "detectable": "detectable (points)", "verdict": "verdict",
    "train_seconds_mean": "train s", "images_per_second_mean": "img/s",
    "parameters_mean": "parameters", "macs_mean": "MACs",
}  # fmt: skip
PERCENT = ("mean", "median", "std", "diff", "detectable")
REFERENCES = [
    "Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to document "
    "recognition. Proc. IEEE 86(11), 1998 (LeNet-5).",
    "K. He, X. Zhang, S. Ren, J. Sun. Deep residual learning for image recognition. CVPR 2016 "
    "(the residual convs of the CIFAR-10 network).",
    "K. Jordan. 94% on CIFAR-10 in 3.29 seconds on a single GPU. arXiv:2404.00498, 2024, and "
    "github.com/KellerJordan/cifar10-airbench (the whitening stem, scaled head, batch-norm bias "
    "learning rate, lookahead, mirror-and-translate at test time).",
    "D. Page. How to train your ResNet. Myrtle.ai blog, 2018 (the fast CIFAR-10 recipe).",
    "B. L. Welch. The generalization of 'Student's' problem when several different population "
    "variances are involved. Biometrika 34, 1947 (the test behind every verdict).",
    "S. Holm. A simple sequentially rejective multiple test procedure. Scand. J. Statist. 6, "
    "1979 (the correction over a study's comparisons).",
]


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
    """The summary as the report shows it: factors, run counts, accuracies in percent with every
    seed's value, then the comparison with the baseline."""
    shown = summary.copy()
    for col in PERCENT:  # blank, not "nan", where there is nothing to show (the baseline's gap)
        shown[col] = [f"{100 * v:.2f}" if pd.notna(v) else "" for v in shown[col]]
    shown["seed_values"] = [", ".join(f"{100 * v:.2f}" for v in values)
                            for values in shown["values"]]  # fmt: skip
    shown["ci"] = [
        f"{100 * lo:+.2f} to {100 * hi:+.2f}" if pd.notna(lo) else ""
        for lo, hi in zip(shown["ci_low"], shown["ci_high"], strict=True)
    ]
    shown["p_adjusted"] = shown["p_adjusted"].map(lambda p: f"{p:.3g}" if pd.notna(p) else "")
    factors = [c for c in shown.columns if c not in SUMMARY_HEADINGS and c not in HIDDEN_COLUMNS]
    columns = [c for c in SUMMARY_HEADINGS if c in shown and _shown(shown[c])]
    return shown[factors + columns].rename(columns=SUMMARY_HEADINGS)


HIDDEN_COLUMNS = {"values", "value_seeds", "n", "se", "t", "df", "p", "ci_low", "ci_high",
                  "compared_with", "study"}  # fmt: skip


def _shown(column: pd.Series) -> bool:
    """A column worth a place in the table: not empty, and counts that are not all zero."""
    filled = column.replace("", pd.NA).dropna()
    return not filled.empty and not (filled.astype(str) == "0").all()


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Whole numbers (parameters, counts) and large rates shown as integers, not e-notation."""
    frame = frame.copy()
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_float_dtype(values) and values.notna().any():
            whole = (values.dropna() % 1 == 0).all() and values.abs().max() >= 1
            if whole or values.abs().max() >= 1000:  # counts, or rates where decimals are noise
                frame[col] = values.round().astype("Int64")
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


def verdict_rule(alpha: float, correction: str, tests: int) -> str:
    """How the answers below were decided, in a sentence."""
    corrected = {
        "holm": f"corrected with Holm's method over the study's {_comparisons(tests)}",
        "bonferroni": f"corrected with Bonferroni's method over the study's {_comparisons(tests)}",
        "none": "not corrected for the number of comparisons",
    }[correction]
    return (
        f"Each level is compared with the baseline by Welch's t-test over its seeds, p-values "
        f"{corrected}; a level is called better or worse only when the corrected p < {alpha}, "
        "otherwise 'no clear difference', with the smallest difference the seeds could have "
        "detected (80% power). Runs that did not train, diverged, failed or did not finish are "
        "counted but kept out of the means and tests."
    )


def _comparisons(tests: int) -> str:
    return f"{tests} comparison{'s' if tests != 1 else ''}"


def add_study(
    doc: Document, study: Study, index: int, alpha: float, correction: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The section of one sweep or run; returns its runs and summary tables."""
    tag = f"{index}-{study.name}".replace("/", "_")
    doc.heading(2, heading(study))
    doc.para(describe(study))
    add_recipe(doc, study)
    summary = summarise(study, alpha=alpha, correction=correction)
    add_baseline_check(doc, study, summary)
    if study.name == "pooling":
        add_pooling(doc, study, tag)
    found = answers(study, summary)
    if found:
        doc.heading(3, "Answers")
        doc.para(verdict_rule(alpha, correction, int(summary["p"].notna().sum())))
        doc.bullets(found)
    if not summary.empty and summary["n"].sum():
        doc.heading(3, "Test accuracy")
        doc.table(display_summary(summary))
        for path, caption in accuracy_figures(study, summary, doc.out / "figures", tag):
            doc.image(path, caption)
    add_curves(doc, study, tag)
    add_system(doc, study, tag)
    bad = problems(study)
    doc.heading(3, "Runs not in the means")
    if bad.empty:
        doc.para("None: every run completed and trained.")
    else:
        doc.table(bad)
    table = runs_table(study)
    doc.heading(3, "All runs")
    doc.table(table.drop(columns=["run", "error"], errors="ignore"))
    return table.assign(study=study.name), summary.assign(study=study.name)


def heading(study: Study) -> str:
    """The study's name, with its data set where the runs name one."""
    data = {str(flatten(c).get("data.name")) for c in study.runs["config"] if c}
    return f"{study.name}: {data.pop()}" if len(data) == 1 else study.name


def add_pooling(doc: Document, study: Study, tag: str) -> None:
    """What differs between max and average pooling beyond the final accuracy: the first
    epochs, the time an epoch takes, and the feature maps after the first pool."""
    doc.heading(3, "What differs between max and average pooling")
    doc.para(POOLING_EXPLAINED)
    early = first_epochs(study)
    if not early.empty:
        doc.para("The first epochs (means over the usable seeds): how fast each kind learns.")
        doc.table(early)
    rows = {}
    for kind, runs in study.runs[study.runs["status"] == USABLE].groupby("pool", sort=False):
        run = Path(runs.sort_values(REPLICATE)["run"].iloc[0]) if REPLICATE in runs else None
        probes = int(flatten(runs["config"].iloc[0]).get("tracking.feature_map_images", 0))
        if run is not None and probes and (run / "tb").is_dir():
            pair = around_first_pool(feature_map_images(run), probes)
            names = ("the conv's output", f"after {kind} pooling")
            rows[f"pool={kind}"] = [
                (f"{name} ({what})", picture)
                for (name, picture), what in zip(pair, names, strict=False)
            ]
    if rows and all(rows.values()):
        path = figures.picture_grid(rows, doc.out / "figures" / f"{tag}-feature-maps.png")
        doc.image(path, "feature maps of the same test images after the last epoch (seed "
                  "0 of each kind; one row per image, one tile per channel, each tile scaled "
                  "to its own range): the layer before the first pool, then the pool's "
                  "output")  # fmt: skip


def first_epochs(study: Study, epochs: int = 3) -> pd.DataFrame:
    """Per level: mean test accuracy and training loss after each of the first epochs, and
    the mean training seconds of an epoch."""
    acc, loss = curves(study, "test_acc"), curves(study, "train_loss")
    seconds = curves(study, "train_seconds")
    if acc.empty or not study.factors:
        return pd.DataFrame()
    rows = []
    for level, part in acc.groupby(study.factors, sort=False):
        levels = dict(zip(study.factors, _tuple(level), strict=True))
        row, mask = dict(levels), _matching(loss, levels)
        for e in range(1, epochs + 1):
            row[f"test acc % after epoch {e}"] = round(
                100 * part[part.epoch == e].test_acc.mean(), 2
            )
            row[f"train loss after epoch {e}"] = round(
                loss[mask & (loss.epoch == e)].train_loss.mean(), 4
            )
        row["train s / epoch"] = round(seconds[_matching(seconds, levels)].train_seconds.mean(), 2)
        rows.append(row)
    return pd.DataFrame(rows)


def _matching(frame: pd.DataFrame, levels: dict) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for key, value in levels.items():
        if key in frame:
            mask &= frame[key].astype(str) == str(value)
    return mask


def add_recipe(doc: Document, study: Study) -> None:
    """The recipe and budget the runs were trained under, and anything that varied by mistake."""
    doc.heading(3, "Recipe and budget")
    doc.para(budget_line(study))
    if study.tuning is not None:
        key = study.setting("tune")
        doc.para(f"{key} was chosen for each variant from the grid below by the mean accuracy "
                 "on the validation split (held out of the training images; the test set was "
                 "not looked at). Only the chosen level's runs are in the tables and verdicts "
                 "that follow.")  # fmt: skip
        doc.table(study.tuning)
    elif study.setting("budget") and "learning rate" in set(recipe(study)["what"]):
        doc.para("One learning rate is shared by every level (not tuned per level): a level "
                 "that needs another one is at a disadvantage here.")  # fmt: skip
    table = recipe(study)
    if not table.empty:
        doc.table(table)
    doc.para(provenance(study))
    precisions = study.runs.groupby("precision", dropna=True)
    if len(precisions) > 1:
        chosen = "; ".join(
            f"{name}: " + ", ".join(sorted({_label(study, r) for _, r in group.iterrows()}))
            for name, group in precisions
        )
        doc.para(
            "The runs trained in different number formats (precision=auto chooses per network "
            f"by speed on this machine) — {chosen}. Differences between these levels include "
            "the format; set precision=fp32 for one format throughout."
        )
    varying = varying_keys(study)
    if not varying.empty:
        doc.para("Beyond the swept factors, these settings differ between runs of the same "
                 "levels (flagged: the comparison may not be fair):")  # fmt: skip
        doc.table(varying)


CONVERGED = 0.003  # a baseline whose accuracy rose less than this over its last epochs


def add_baseline_check(doc: Document, study: Study, summary: pd.DataFrame) -> None:
    """Whether the baseline reached the accuracy its config states, and whether it was still
    improving at the end (not converged: longer training may change the answers)."""
    if not study.baseline or summary.empty:
        return
    is_base = pd.Series(True, index=summary.index)
    for factor, level in study.baseline.items():
        is_base &= summary[factor].astype(str) == level
    stated = study.setting("baseline_reaches")
    lines = []
    for _, row in summary[is_base & (summary["n"] > 0)].iterrows():
        text = (
            f"The baseline ({_label(study, row)}) reached {100 * row['mean']:.2f}% ({_seeds(row)})"
        )
        if stated is not None:
            met = "met" if row["mean"] >= float(stated) else "NOT met"
            text += f"; its study states at least {100 * float(stated):.1f}%: {met}"
        lines.append(text + ". " + convergence(study, row))
    if lines:
        doc.heading(3, "Baseline check")
        doc.bullets(lines)


def convergence(study: Study, row: pd.Series) -> str:
    """How much the baseline's mean test accuracy rose over the last quarter of its epochs."""
    frame = curves(study, "test_acc")
    for factor in study.factors:
        frame = frame[frame[factor].astype(str) == str(row[factor])] if len(frame) else frame
    if frame.empty or frame["epoch"].max() < 4:
        return "Too few epochs to tell whether it converged."
    last = int(frame["epoch"].max())
    since = last - max(1, last // 4)
    mean = frame.groupby("epoch")["test_acc"].mean()
    rise = mean[last] - mean[since]
    verdict = ("converged at this budget" if rise < CONVERGED
               else "still rising: not converged at this budget")  # fmt: skip
    return (
        f"Its test accuracy rose {100 * rise:+.2f} points from epoch {since} to {last}: {verdict}."
    )


BUDGETS = {
    "cpu": "cpu: sized for two CPU cores, at most 30 minutes for the whole study; networks, "
    "images or epochs are cut to fit, so the answers are about this short training",
    "gpu": "gpu: the full-length study, for a GPU",
}


def budget_line(study: Study) -> str:
    """Which budget the study ran under, as its experiment config names it."""
    name = study.setting("budget")
    if name is None:
        return "Budget: not named (a sweep of its own, not one of the studies in conf/experiment/)."
    return f"Budget: {BUDGETS.get(str(name), str(name))}."


def accuracy_figures(
    study: Study, summary: pd.DataFrame, fig_dir: Path, tag: str
) -> list[tuple[Path, str]]:
    """Verdict panels per context where there is one baseline factor, else dots per group."""
    if len(study.baseline) != 1:
        return [(figures.group_dots(summary[summary["n"] > 0], study.factors,
                                    fig_dir / f"{tag}-accuracy.png"),
                 "final test accuracy of each seed, and the mean with its 95% CI")]  # fmt: skip
    ((factor, level),) = study.baseline.items()
    context = [f for f in study.factors if f != factor]
    out = []
    groups = summary.groupby(context, sort=False) if context else [((), summary)]
    for i, (name, part) in enumerate(groups):
        where = ", ".join(f"{f}={v}" for f, v in zip(context, _tuple(name), strict=True))
        if (part[factor].astype(str) == level).sum() != 1 or not part["n"].any():
            continue
        path = figures.verdict_panels(part, factor, level, fig_dir / f"{tag}-verdicts{i}.png")
        out.append((path, f"each level against {factor}={level}{' on ' + where if where else ''}"))
    return out


def add_curves(doc: Document, study: Study, tag: str) -> None:
    for key, caption in (
        ("test_acc", "test accuracy per epoch"),
        ("train_loss", "training loss per epoch"),
        ("test_loss", "test loss per epoch"),
    ):
        frame = curves(study, key)
        if not frame.empty:
            path = figures.curves_figure(frame, study.factors, key,
                                         doc.out / "figures" / f"{tag}-{key}.png")  # fmt: skip
            doc.image(path, f"{caption} (mean ± std over the usable seeds)")


def add_system(doc: Document, study: Study, tag: str) -> None:
    """GPU (else CPU) utilisation over the first run's time."""
    first = Path(study.runs["run"].iloc[0])
    system = system_log(first)
    if system is None or not len(system):
        return
    gpu = any(c.endswith("_util_percent") for c in system.columns)
    what = "GPU utilisation" if gpu else "CPU utilisation (no GPU was recorded)"
    path = figures.system_figure(system, doc.out / "figures" / f"{tag}-system.png",
                                 f"{what}: {first}")  # fmt: skip
    doc.image(path, what)
    stats = study.runs["system"].iloc[0]
    if stats:
        doc.para(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats.items()
                           if k.endswith(("_mean", "_peak"))))  # fmt: skip


def add_environments(doc: Document, studies: list[Study]) -> None:
    """The environment of each study (its first run), and what differs between studies."""
    envs = {s.name: environment_of(Path(s.runs["run"].iloc[0])) for s in studies}
    envs = {name: env for name, env in envs.items() if env}
    if not envs:
        return
    doc.heading(2, "Environment")
    table = pd.DataFrame({name: [str(env.get(k)) for k in ENV_KEYS] for name, env in envs.items()})
    table.insert(0, "what", ENV_KEYS)
    doc.table(table)
    differ = [k for i, k in enumerate(ENV_KEYS) if table.iloc[i, 1:].nunique() > 1]
    if len(envs) > 1 and differ:
        doc.para("Differs between studies: " + ", ".join(differ) + ".")
    first_run = Path(studies[0].runs["run"].iloc[0])
    smi = first_run / "nvidia-smi.txt"
    if smi.exists():
        doc.code(smi.read_text())


# The lab's questions that a study of this name answers (conf/experiment/).
LAB_QUESTIONS = {
    "pooling": "Max or average pooling, which is better?",
    "architecture": "Which changes to the network (kernel, stride, layers, activation, width) "
    "improve it, and by how much?",
    "ablation": "Which strategies improved our own network, and by how much? (each ingredient "
    "removed from the recipe, one at a time; a negative difference is what it was worth)",
}


def conclusions(studies: list[Study], summaries: list[pd.DataFrame]) -> list[str]:
    """Two or three generated sentences per study: what was better, worse, unclear or failed to
    train, under which budget."""
    lines = []
    for study, summary in zip(studies, summaries, strict=True):
        if not study.baseline or summary["verdict"].isna().all():
            lines += _accuracy_sentences(study, summary)
        else:
            lines.append(_verdict_sentences(study, summary))
    return lines


def _accuracy_sentences(study: Study, summary: pd.DataFrame) -> list[str]:
    """'name: 99.29% test accuracy (one run) — budget.' for a study without a baseline."""
    lines = []
    for _, row in summary[summary["n"] > 0].iterrows():
        label = _label(study, row)
        name = f"{study.name}, {label}" if label != study.name else study.name
        lines.append(f"{name}: {100 * row['mean']:.2f}% test accuracy ({_seeds(row)}) — "
                     f"{_budget(study)}.")  # fmt: skip
    return lines


def _verdict_sentences(study: Study, summary: pd.DataFrame) -> str:
    """The verdicts of a study against its baseline, grouped, with the budget caveat."""
    by = {v: summary[summary["verdict"] == v] for v in summary["verdict"].dropna().unique()}
    base = ", ".join(f"{k}={v}" for k, v in study.baseline.items())
    question = LAB_QUESTIONS.get(study.name, "")
    said = [f"{study.name}{': ' + question if question else ''} Against {base}, under "
            f"{_budget(study)}:"]  # fmt: skip
    for verdict in ("better", "worse"):
        if verdict in by:
            items = ", ".join(f"{_label(study, r)} ({100 * r['diff']:+.2f} points)"
                              for _, r in by[verdict].iterrows())  # fmt: skip
            said.append(f"{verdict}: {items}.")
    if "no clear difference" in by:
        unclear = by["no clear difference"]
        low, high = 100 * unclear["detectable"].min(), 100 * unclear["detectable"].max()
        size = f"{low:.2f}" if round(low, 2) == round(high, 2) else f"{low:.2f} to {high:.2f}"
        names = ", ".join(_label(study, r) for _, r in unclear.iterrows())
        said.append(f"No clear difference: {names}; these seeds could not have seen a "
                    f"difference smaller than about {size} points.")  # fmt: skip
    if "did not train" in by:
        failed = ", ".join(_label(study, r) for _, r in by["did not train"].iterrows())
        said.append("Did not train under this recipe (a failed run, not evidence against the "
                    f"architecture): {failed}.")  # fmt: skip
    undecided = summary[summary["verdict"].astype(str).str.startswith(("too few", "no verdict"))]
    if not undecided.empty:
        names = ", ".join(f"{_label(study, r)} ({counted(r)})" for _, r in undecided.iterrows())
        said.append(f"No verdict possible: {names}.")
    said.append("Another budget (more epochs, all images, each level at its own best learning "
                "rate) may change these answers.")  # fmt: skip
    return " ".join(said)


def _label(study: Study, row: pd.Series) -> str:
    return ", ".join(f"{f}={row[f]}" for f in study.factors) or study.name


def _seeds(row: pd.Series) -> str:
    n = int(row["n"])
    return f"mean of {n} seeds" if n > 1 else "one run"


def _budget(study: Study) -> str:
    """The budget in a phrase: data, images, epochs, steps, learning rate."""
    items = dict(zip(recipe(study)["what"], recipe(study)["value"], strict=True))
    return (f"{items.get('data set', '?')}, {items.get('training images used', '?')} training "
            f"images, {items.get('epochs', '?')} epochs ({items.get('optimizer steps', '?')} "
            f"steps), learning rate {items.get('learning rate', '?')}")  # fmt: skip


def build_report(
    paths: list[Path], out: Path, title: str, alpha: float = 0.05, correction: str = "holm"
) -> Path:
    """Write the report for `paths` into `out`; returns the markdown file."""
    studies = [load_study(p) for p in paths]
    (out / "figures").mkdir(parents=True, exist_ok=True)
    doc = Document(out)
    doc.heading(1, title)
    doc.para(
        f"Made {time.strftime('%Y-%m-%d %H:%M')} by `python -m cnnexp.report` from "
        + ", ".join(str(p) for p in paths)
        + f" (level {alpha}, correction {correction})."
    )
    add_environments(doc, studies)
    all_runs, all_summaries = [], []
    for i, study in enumerate(studies):
        runs, summary = add_study(doc, study, i, alpha, correction)
        all_runs.append(runs)
        all_summaries.append(summary)
    doc.heading(2, "Conclusions")
    doc.bullets(conclusions(studies, all_summaries))
    doc.heading(2, "References")
    doc.bullets(REFERENCES)
    pd.concat(all_runs).to_csv(out / "runs.csv", index=False)
    summaries = pd.concat(all_summaries)
    summaries["values"] = summaries["values"].map(lambda v: " ".join(f"{x:.6g}" for x in v))
    summaries.to_csv(out / "summary.csv", index=False)
    (out / "report.md").write_text(doc.markdown())
    (out / "report.html").write_text(doc.html(title))
    return out / "report.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnnexp.report", description=__doc__)
    parser.add_argument("paths", nargs="*", type=Path, help="run or sweep folders")
    parser.add_argument("--out", type=Path, help="where to write (default: beside the input)")
    parser.add_argument("--title", default=None)
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="significance level of a verdict (default 0.05)")  # fmt: skip
    parser.add_argument("--correction", choices=CORRECTIONS, default="holm",
                        help="for many comparisons in one study (default holm)")  # fmt: skip
    args = parser.parse_args(argv)
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha {args.alpha} is not a level: use a number between 0 and 1")
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
        report = build_report(paths, out, title, args.alpha, args.correction)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {report} and {report.with_suffix('.html')}")
    return 0


def _tuple(name: object) -> tuple:
    return name if isinstance(name, tuple) else (name,)


if __name__ == "__main__":
    sys.exit(main())
