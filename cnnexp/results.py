"""Run folders into pandas tables: one row per run, summaries over seeds, plain-language answers.

Reads only what runs wrote (metrics.json, .hydra/, env.json, system.csv); never training code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

METRIC_COLUMNS = [
    "status", "final_test_acc", "best_test_acc", "final_test_loss", "final_train_loss",
    "parameters", "macs", "epochs_done", "epochs", "train_seconds", "wall_seconds",
    "images_per_second", "device", "precision", "error",
]  # fmt: skip
REPLICATE = "seed"  # the factor that repeats a configuration; summaries average over it


@dataclass
class Study:
    """The runs of one sweep (or a set of single runs) and what the sweep varied."""

    name: str
    root: Path
    runs: pd.DataFrame  # one row per run
    factors: list[str]  # override keys whose values differ between runs, seed excluded
    baseline: dict[str, str] = field(default_factory=dict)


def is_run(path: Path) -> bool:
    """A run folder holds metrics.json or Hydra's .hydra/ record."""
    return (path / "metrics.json").exists() or (path / ".hydra" / "overrides.yaml").exists()


def find_runs(path: Path) -> list[Path]:
    """`path` itself if it is a run, else the run folders below it (a sweep), in job order."""
    path = Path(path)
    if is_run(path):
        return [path]
    runs = [p.parent for p in path.rglob(".hydra") if p.is_dir() and is_run(p.parent)]
    runs += [p.parent for p in path.rglob("metrics.json") if p.parent not in runs]
    return sorted(set(runs), key=lambda p: [int(s) if s.isdigit() else s for s in p.parts])


def read_run(run: Path) -> dict[str, Any]:
    """One row: the run's overrides as columns, its metrics, its history and config."""
    overrides = _yaml(run / ".hydra" / "overrides.yaml") or []
    config = _yaml(run / ".hydra" / "config.yaml") or {}
    metrics_path = run / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if not metrics:
        metrics = {"status": "incomplete", "error": "no metrics.json: the job never started"}
    elif metrics.get("status") == "running":
        metrics["status"] = "incomplete"  # stopped without a word: killed, or still going
    row: dict[str, Any] = {"run": str(run)}
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if not key.startswith("hydra."):
            row[key] = value
    row.update({k: metrics.get(k) for k in METRIC_COLUMNS})
    row["history"] = metrics.get("history", [])
    row["system"] = metrics.get("system", {})
    row["study"] = (config.get("study") or {}).get("name")
    row["baseline"] = (config.get("study") or {}).get("baseline") or {}
    return row


def load_study(path: Path) -> Study:
    """Read every run under `path` and find the factors the sweep varied."""
    path = Path(path)
    rows = [read_run(run) for run in find_runs(path)]
    if not rows:
        raise FileNotFoundError(
            f"{path} holds no runs (folders with metrics.json or .hydra/); "
            "give a run folder or a sweep folder such as multirun/<date>/<time>"
        )
    runs = pd.DataFrame(rows)
    fixed = {"run", "history", "system", "study", "baseline", REPLICATE, *METRIC_COLUMNS}
    factors = [c for c in runs.columns if c not in fixed and runs[c].astype(str).nunique() > 1]
    baseline = next((r["baseline"] for r in rows if r["baseline"]), {})
    baseline = {k: str(v) for k, v in baseline.items() if k in factors}
    name = next((r["study"] for r in rows if r["study"]), None) or path.name
    return Study(name=name, root=path, runs=runs, factors=factors, baseline=baseline)


def runs_table(study: Study) -> pd.DataFrame:
    """The table of all runs: swept choices and overrides, then the results."""
    keys = [c for c in study.runs.columns if c not in ("history", "system", "study", "baseline")]
    first = ["run", *study.factors, *([REPLICATE] if REPLICATE in keys else [])]
    return study.runs[first + [c for c in keys if c not in first]]


def summarise(study: Study, metric: str = "final_test_acc") -> pd.DataFrame:
    """Mean, std and n over seeds of completed runs, per combination of the swept factors, and
    the difference from the baseline level (with its standard error)."""
    done = study.runs[study.runs["status"] == "completed"].copy()
    if done.empty:
        return pd.DataFrame(columns=[*study.factors, "mean", "std", "n"])
    # Nothing swept (one run, or seeds only): one group of all runs.
    grouped = done.groupby(study.factors or (lambda _: study.name), sort=False)
    summary = grouped[metric].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    summary["std"] = summary["std"].fillna(0.0)
    for extra in ("best_test_acc", "train_seconds", "images_per_second", "parameters", "macs"):
        summary[f"{extra}_mean"] = grouped[extra].mean()
    summary = summary.reset_index(drop=not study.factors)
    summary["diff"] = math.nan
    summary["diff_se"] = math.nan
    if study.baseline:
        for i, row in summary.iterrows():
            ref = summary
            for factor in study.factors:
                level = study.baseline.get(factor, row[factor])
                ref = ref[ref[factor].astype(str) == str(level)]
            if len(ref) == 1:
                r = ref.iloc[0]
                summary.loc[i, "diff"] = row["mean"] - r["mean"]
                summary.loc[i, "diff_se"] = math.sqrt(
                    row["std"] ** 2 / row["n"] + r["std"] ** 2 / r["n"]
                )
    return summary


def answers(study: Study, summary: pd.DataFrame) -> list[str]:
    """One sentence per compared level: the gap from the baseline in points, or 'no clear
    difference' when the gap is within two standard errors over the seeds."""
    lines = []
    if not study.baseline:
        return lines
    context = [f for f in study.factors if f not in study.baseline]
    for _, row in summary.iterrows():
        if math.isnan(row["diff"]):
            continue
        changed = [f for f in study.baseline if str(row[f]) != study.baseline[f]]
        if not changed:
            continue
        what = ", ".join(f"{f}={row[f]}" for f in changed)
        base = ", ".join(f"{f}={study.baseline[f]}" for f in changed)
        where = " on " + ", ".join(f"{f}={row[f]}" for f in context) if context else ""
        points, se = 100 * row["diff"], 100 * row["diff_se"]
        n = int(row["n"])
        accuracies = f"{100 * row['mean']:.2f}% vs {100 * (row['mean'] - row['diff']):.2f}%"
        seeds = f"{n} seed{'s' if n != 1 else ''}"
        if abs(points) <= 2 * se:
            verdict = (
                f"no clear difference from {base} ({points:+.2f} ± {se:.2f} points, "
                f"{accuracies}, {seeds})"
            )
        else:
            side = "above" if points > 0 else "below"
            verdict = f"{abs(points):.2f} ± {se:.2f} points {side} {base} ({accuracies}, {seeds})"
        lines.append(f"{what}{where}: {verdict}.")
    return lines


def problems(study: Study) -> pd.DataFrame:
    """Runs that did not complete: incomplete, failed or diverged, with their errors."""
    bad = study.runs[study.runs["status"] != "completed"]
    return bad[["run", *study.factors, "status", "error"]]


def curves(study: Study, key: str) -> pd.DataFrame:
    """Per-epoch `key` (e.g. test_acc) of every run: columns run, factors..., epoch, value."""
    rows = []
    for _, run in study.runs.iterrows():
        for h in run["history"]:
            rows.append(
                {
                    "run": run["run"],
                    **{f: run[f] for f in study.factors},
                    "epoch": h["epoch"],
                    key: h[key],
                }
            )
    return pd.DataFrame(rows)


def environment_of(run: Path) -> dict[str, Any]:
    """env.json of a run, or {}."""
    path = Path(run) / "env.json"
    return json.loads(path.read_text()) if path.exists() else {}


def system_log(run: Path) -> pd.DataFrame | None:
    """system.csv of a run, or None."""
    path = Path(run) / "system.csv"
    if not path.exists() or path.stat().st_size == 0:
        return None
    return pd.read_csv(path)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.exists() else None
