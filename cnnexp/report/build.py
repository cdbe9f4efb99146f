"""The report of one or more studies: the environment, each study's section (recipe, baseline
check, its declared extra sections, answers, tables, figures, curves, load), the conclusions and
the references; written as report.md, a self-contained report.html, runs.csv, summary.csv and
figures/*.png."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from cnnexp import stats
from cnnexp.report import figures
from cnnexp.report.answers import add_answers, conclusions
from cnnexp.report.budget import add_baseline_check
from cnnexp.report.curves import add_curves, add_system
from cnnexp.report.document import Document, display_summary
from cnnexp.report.pooling import add_pooling
from cnnexp.report.recipe import add_recipe, describe, heading
from cnnexp.report.runs import (
    Study,
    as_tuple,
    environment_of,
    is_check,
    load_studies,
    problems,
    runs_table,
    table_of_runs,
    with_check,
)
from cnnexp.report.verdicts import summarise

# The extra sections a study can ask for in its experiment config (study.sections).
SECTIONS = {"pooling": add_pooling}
ENV_KEYS = [
    "gpus",
    "driver",
    "cuda",
    "cudnn",
    "torch",
    "python",
    "cpu",
    "cpu_cores",
    "torch_threads",
    "cpu_bf16",
    "hostname",
    "platform",
    "git_commit",
]
REFERENCES = [
    "Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to document "
    "recognition. Proc. IEEE 86(11), 1998 (LeNet-5).",
    "K. He, X. Zhang, S. Ren, J. Sun. Deep residual learning for image recognition. CVPR 2016 "
    "(the residual convs of the CIFAR-10 network).",
    "K. Jordan. 94% on CIFAR-10 in 3.29 seconds on a single GPU. arXiv:2404.00498, 2024, and "
    "github.com/KellerJordan/cifar10-airbench (the whitening stem, scaled head, batch-norm bias "
    "learning rate, lookahead, mirror-and-translate at test time).",
    "D. Page. How to train your ResNet. Myrtle.ai blog, 2018 (the fast CIFAR-10 recipe).",
    "C. W. Dunnett. A multiple comparison procedure for comparing several treatments with a "
    "control. J. Amer. Statist. Assoc. 50, 1955 (the many-to-one test and simultaneous "
    "intervals behind every verdict).",
    "M. S. Bartlett. Properties of sufficiency and statistical tests. Proc. R. Soc. A 160, 1937 "
    "(the test of equal variances that decides whether the arms' variance is pooled).",
    "B. L. Welch. The generalization of 'Student's' problem when several different population "
    "variances are involved. Biometrika 34, 1947 (arms whose variance is out of line).",
    "S. Holm. A simple sequentially rejective multiple test procedure. Scand. J. Statist. 6, "
    "1979 (the correction over Welch's tests).",
]


def add_study(doc: Document, study: Study, index: int, alpha: float, method: str) -> pd.DataFrame:
    """The section of one sweep or run; returns its summary table."""
    tag = f"{index}-{study.name}".replace("/", "_")
    doc.heading(2, heading(study))
    doc.para(describe(study))
    add_recipe(doc, study)
    summary = summarise(study, alpha=alpha, method=method)
    add_baseline_check(doc, study, summary, alpha)
    for section in study.setting("sections") or []:
        SECTIONS[section](doc, study, tag)
    add_answers(doc, study, summary, alpha)
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
    doc.heading(3, "All runs")
    doc.table(runs_table(study).drop(columns=["run", "error"], errors="ignore"))
    return summary.assign(study=study.name)


def accuracy_figures(
    study: Study, summary: pd.DataFrame, fig_dir: Path, tag: str
) -> list[tuple[Path, str]]:
    """Verdict panels per context where there is one baseline factor, else dots per group."""
    if len(study.baseline) != 1:
        path = figures.group_dots(
            summary[summary["n"] > 0], study.factors, fig_dir / f"{tag}-accuracy.png"
        )
        return [(path, "final test accuracy of each seed, and the mean with its 95% CI")]
    ((factor, level),) = study.baseline.items()
    context = [f for f in study.factors if f != factor]
    out = []
    parts = summary.groupby(context, sort=False) if context else [((), summary)]
    for i, (name, part) in enumerate(parts):
        where = ", ".join(f"{f}={v}" for f, v in zip(context, as_tuple(name), strict=True))
        if (part[factor].astype(str) == level).sum() != 1 or not part["n"].any():
            continue
        path = figures.verdict_panels(part, factor, level, fig_dir / f"{tag}-verdicts{i}.png")
        out.append((path, f"each level against {factor}={level}{' on ' + where if where else ''}"))
    return out


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
    smi = Path(studies[0].runs["run"].iloc[0]) / "nvidia-smi.txt"
    if smi.exists():
        doc.code(smi.read_text())


def gather(paths: list[Path]) -> list[Study]:
    """The studies of `paths`; a folder of budget-check runs joins the study of its name."""
    loaded = [study for path in paths for study in load_studies(path)]
    studies = [s for s in loaded if not is_check(s)]
    for check in (s for s in loaded if is_check(s)):
        home = next((s for s in studies if s.name == check.name), None)
        if home is None:
            raise FileNotFoundError(
                f"{check.root} holds the budget check of study {check.name!r}, but no folder "
                "of that study's runs was named: name both"
            )
        with_check(home, check)
    return studies


def build_report(
    paths: list[Path],
    out: Path,
    title: str,
    alpha: float = stats.ALPHA,
    method: str = stats.METHOD,
) -> Path:
    """Write the report for `paths` into `out`; returns the markdown file."""
    studies = gather(paths)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    doc = Document(out)
    doc.heading(1, title)
    doc.para(
        f"Made {time.strftime('%Y-%m-%d %H:%M')} by `python -m cnnexp.report` from "
        + ", ".join(str(p) for p in paths)
        + f" (family-wise level {alpha}, method {method})."
    )
    add_environments(doc, studies)
    summaries = [add_study(doc, study, i, alpha, method) for i, study in enumerate(studies)]
    doc.heading(2, "Conclusions")
    doc.bullets(conclusions(studies, summaries))
    doc.heading(2, "References")
    doc.bullets(REFERENCES)
    pd.concat([table_of_runs(s) for s in studies]).to_csv(out / "runs.csv", index=False)
    summary = pd.concat(summaries)
    summary["values"] = summary["values"].map(lambda v: " ".join(f"{x:.6g}" for x in v))
    summary.to_csv(out / "summary.csv", index=False)
    (out / "report.md").write_text(doc.markdown())
    (out / "report.html").write_text(doc.html(title))
    return out / "report.md"


def newest_sweep(root: Path = Path("multirun")) -> Path:
    """The sweep folder (it holds Hydra's multirun.yaml) written last under `root`."""
    sweeps = sorted(root.rglob("multirun.yaml"), key=lambda p: p.stat().st_mtime)
    if not sweeps:
        raise FileNotFoundError(
            f"no sweep under {root.resolve()}: run one first (python -m cnnexp -m pool=max,avg) "
            "or name run or sweep folders: python -m cnnexp.report outputs/DATE/TIME"
        )
    return sweeps[-1].parent


def main(argv: list[str] | None = None) -> int:
    doc = sys.modules["cnnexp.report"].__doc__
    parser = argparse.ArgumentParser(prog="python -m cnnexp.report", description=doc)
    parser.add_argument(
        "paths", nargs="*", type=Path, help="run or sweep folders, or a runs.csv a report wrote"
    )
    parser.add_argument("--out", type=Path, help="where to write (default: beside the input)")
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--alpha",
        type=float,
        default=stats.ALPHA,
        help=f"family-wise level of a study's verdicts (default {stats.ALPHA})",
    )
    parser.add_argument(
        "--method",
        choices=stats.METHODS,
        default=stats.METHOD,
        help="many-to-one comparisons: dunnett (pooled variance, the default), holm (Holm's "
        "step-down), none (each test alone)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha {args.alpha} is not a level: use a number between 0 and 1")
    try:
        paths = args.paths or [newest_sweep()]
        for path in paths:
            if not (path.is_dir() or (path.is_file() and path.suffix == ".csv")):
                raise FileNotFoundError(f"{path} is neither a folder nor a runs.csv")
        out = args.out or (
            (paths[0] if paths[0].is_dir() else paths[0].parent) / "report"
            if len(paths) == 1
            else Path("reports") / time.strftime("%Y-%m-%d_%H-%M-%S")
        )
        title = args.title or ("cnnexp report" if len(paths) == 1 else "cnnexp lab report")
        report = build_report(paths, out, title, args.alpha, args.method)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {report} and {report.with_suffix('.html')}")
    return 0
