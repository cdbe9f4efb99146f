"""Run folders into pandas tables: one row per run, summaries over seeds, verdicts, the recipe.

Reads only what runs wrote (metrics.json, .hydra/, env.json, system.csv); never training code.
A verdict is Welch's t-test of each level against the study's baseline, Holm-corrected over the
study's comparisons (cnnexp.stats); runs that did not train, diverged, failed or never finished
are counted per group and kept out of the means.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cnnexp import stats
from cnnexp.config import typed_overrides
from cnnexp.schema import HEADLINE

# The columns of runs.csv taken from each run's record (cnnexp.schema defines them).
METRIC_COLUMNS = ["status", *HEADLINE, "parameters", "macs", "epochs", "device", "precision",
                  "world_size", "train_images", "error"]  # fmt: skip
REPLICATE = "seed"  # the factor that repeats a configuration; summaries average over it
USABLE = "completed"  # the one status whose runs enter means and verdicts
# Every status a run can have in runs.csv, in the order the tables count them.
STATUSES = ("completed", "did_not_train", "diverged", "failed", "incomplete")
COUNT_COLUMNS = {"completed": "usable", "did_not_train": "did not train", "diverged": "diverged",
                 "failed": "failed", "incomplete": "incomplete"}  # fmt: skip
CHANCE_MARGIN = 0.02  # test accuracy this close to the most frequent class's share is chance
LOSS_MARGIN = 0.05  # a final training loss within this many nats of ln(classes) is chance
TOO_FEW = "too few seeds for a verdict"


@dataclass
class Study:
    """The runs of one sweep (or a set of single runs) and what the sweep varied."""

    name: str
    root: Path
    runs: pd.DataFrame  # one row per run
    factors: list[str]  # override keys whose values differ between runs, seed excluded
    baseline: dict[str, str] = field(default_factory=dict)
    # When the study tunes a key (study.tune): per group, the level chosen on validation and the
    # validation accuracy of each level; `runs` then holds only the chosen level's runs.
    tuning: pd.DataFrame | None = None

    def setting(self, key: str) -> Any:
        """A key of the `study` node its runs were configured with (budget, tune, ...)."""
        values = [(c.get("study") or {}).get(key) for c in self.runs["config"] if c]
        return next((v for v in values if v is not None), None)


# --- reading runs ------------------------------------------------------------------------------


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


def chance_reason(metrics: dict[str, Any]) -> str | None:
    """Why a completed run counts as not having trained, or None if it learned something:
    test accuracy no better than always answering the most frequent test class, or a final
    training loss near ln(classes), the loss of a network that outputs the same for all."""
    acc, loss = metrics.get("final_test_acc"), metrics.get("final_train_loss")
    counts = metrics.get("test_class_counts") or [
        sum(row) for row in metrics.get("confusion_matrix") or []
    ]
    classes = len(counts) or len(metrics.get("class_names") or []) or None
    if acc is None or not classes:
        return None
    majority = max(counts) / sum(counts) if counts else 1 / classes
    if acc <= majority + CHANCE_MARGIN:
        return (f"test accuracy {100 * acc:.2f}% is chance: always answering the most frequent "
                f"class scores {100 * majority:.2f}%")  # fmt: skip
    if loss is not None and loss >= math.log(classes) - LOSS_MARGIN:
        return (f"final training loss {loss:.3f} is ln({classes}) = {math.log(classes):.3f}, "
                "the loss of a network that gives every image the same answer")  # fmt: skip
    return None


def read_run(run: Path) -> dict[str, Any]:
    """One row: the run's overrides as columns, its metrics, history, config and provenance."""
    config = _yaml(run / ".hydra" / "config.yaml") or {}
    metrics_path = run / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if not metrics:
        metrics = {"status": "incomplete", "error": "no metrics.json: the job never started"}
    elif metrics.get("status") == "running":
        metrics["status"] = "incomplete"  # stopped without a word: killed, or still going
    row: dict[str, Any] = {"run": str(run), **_overrides(run, metrics)}
    row.update({k: metrics.get(k) for k in METRIC_COLUMNS})
    reason = chance_reason(metrics) if metrics.get("status") == USABLE else None
    if reason:
        row["status"], row["error"] = "did_not_train", reason
    commit = metrics.get("git_commit") or ""
    row["git_commit"] = commit.removesuffix("-dirty") or None
    row["uncommitted_changes"] = commit.endswith("-dirty") if commit else None
    row["history"] = metrics.get("history", [])
    row["system"] = metrics.get("system", {})
    row["config"] = config
    row["study"] = (config.get("study") or {}).get("name")
    row["baseline"] = (config.get("study") or {}).get("baseline") or {}
    return row


def _overrides(run: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """The run's overrides, typed: as its metrics.json records them; for a run that never began
    (or one recorded before record version 3 typed them), read from Hydra's overrides.yaml."""
    recorded = metrics.get("overrides")
    if isinstance(recorded, dict):
        return recorded
    return typed_overrides(_yaml(run / ".hydra" / "overrides.yaml") or [])


HIDDEN = ("history", "system", "config", "study", "baseline")  # per-run objects, not columns


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
    fixed = {"run", *HIDDEN, REPLICATE, "git_commit", "uncommitted_changes", *METRIC_COLUMNS}
    factors = [c for c in runs.columns if c not in fixed and runs[c].astype(str).nunique() > 1]
    baseline = next((r["baseline"] for r in rows if r["baseline"]), {})
    baseline = {k: str(v) for k, v in flatten(baseline).items() if k in factors}
    name = next((r["study"] for r in rows if r["study"]), None) or path.name
    study = Study(name=name, root=path, runs=runs, factors=factors, baseline=baseline)
    tuned = study.setting("tune")
    return select_tuned(study, str(tuned)) if tuned and tuned in factors else study


def select_tuned(study: Study, key: str, metric: str = "final_val_acc") -> Study:
    """Keep, for each combination of the other factors, only the runs of the level of `key`
    (a learning rate, say) with the best mean validation accuracy over its usable seeds: each
    variant is then compared at its own best setting, chosen without looking at the test set."""
    others = [f for f in study.factors if f != key]
    keep, rows = [], []
    groups = study.runs.groupby(others, sort=False) if others else [((), study.runs)]
    for levels, runs in groups:
        usable = runs[runs["status"] == USABLE]
        if len(usable) and usable[metric].isna().all():
            raise ValueError(
                f"{study.root}: the study tunes {key} on validation accuracy, but its runs "
                "recorded none: hold out a validation split (data.validation=5000)"
            )
        scores = usable.groupby(key, sort=False)[metric].mean()
        best = scores.idxmax() if len(scores) else runs[key].iloc[0]
        keep.append(runs[runs[key] == best])
        per_level = ", ".join(f"{level}: {100 * score:.2f}" for level, score in scores.items())
        rows.append({**dict(zip(others, _as_tuple(levels), strict=True)), key: best,
                     "validation acc % (mean) per level": per_level or "none trained"})  # fmt: skip
    runs = pd.concat(keep).sort_index()
    return Study(name=study.name, root=study.root, runs=runs, factors=others,
                 baseline={k: v for k, v in study.baseline.items() if k != key},
                 tuning=pd.DataFrame(rows))  # fmt: skip


def _as_tuple(levels: object) -> tuple:
    return levels if isinstance(levels, tuple) else (levels,)


def runs_table(study: Study) -> pd.DataFrame:
    """The table of all runs: swept choices and overrides, then the results and provenance."""
    keys = [c for c in study.runs.columns if c not in HIDDEN]
    first = ["run", *study.factors, *([REPLICATE] if REPLICATE in keys else [])]
    return study.runs[first + [c for c in keys if c not in first]]


# --- summaries and verdicts ----------------------------------------------------------------------


def _groups(study: Study) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """(factor levels, runs) for every combination of the swept factors, in sweep order."""
    if not study.factors:
        return [({}, study.runs)]
    keys = study.runs[study.factors].astype(str)
    out = []
    by = study.factors if len(study.factors) > 1 else study.factors[0]  # scalar keys for one
    for levels, index in keys.groupby(by, sort=False).groups.items():
        levels = levels if isinstance(levels, tuple) else (levels,)
        out.append((dict(zip(study.factors, levels, strict=True)), study.runs.loc[index]))
    return out


def summarise(
    study: Study,
    metric: str = "final_test_acc",
    alpha: float = 0.05,
    correction: str = "holm",
) -> pd.DataFrame:
    """Per combination of the swept factors: how many runs of each status, and over the usable
    runs the mean, median, std and every seed's value; then, against the baseline, the Welch
    test, its confidence interval, the corrected p-value, the smallest detectable difference
    and the verdict."""
    rows = []
    for levels, runs in _groups(study):
        usable = runs[runs["status"] == USABLE]
        values = usable[metric].astype(float).tolist()
        seeds = usable[REPLICATE].tolist() if REPLICATE in usable else list(range(len(values)))
        counts = {COUNT_COLUMNS[s]: int((runs["status"] == s).sum()) for s in STATUSES}
        rows.append({
            **levels, **counts, "runs": len(runs), "n": len(values),
            "mean": np.mean(values) if values else math.nan,
            "median": np.median(values) if values else math.nan,
            "std": np.std(values, ddof=1) if len(values) > 1 else math.nan,
            "values": values, "value_seeds": seeds,
            **{f"{k}_mean": pd.to_numeric(usable[k], errors="coerce").mean() for k in
               ("train_seconds", "images_per_second", "parameters", "macs")},
        })  # fmt: skip
    summary = pd.DataFrame(rows)
    return compare(study, summary, alpha, correction)


def _baseline_row(study: Study, summary: pd.DataFrame, row: pd.Series) -> pd.Series | None:
    """The summary row this row is compared with: the same levels, the baseline's levels on
    the baseline factors."""
    ref = summary
    for factor in study.factors:
        level = study.baseline.get(factor, row[factor])
        ref = ref[ref[factor].astype(str) == str(level)]
    return ref.iloc[0] if len(ref) == 1 else None


def compare(study: Study, summary: pd.DataFrame, alpha: float, correction: str) -> pd.DataFrame:
    """Welch's t-test of each non-baseline row against its baseline row, Holm-corrected over
    the study; adds diff, ci_low, ci_high, t, df, p, p_adjusted, detectable and verdict."""
    new = ["diff", "se", "ci_low", "ci_high", "t", "df", "p", "p_adjusted", "detectable"]
    summary = summary.assign(**{c: math.nan for c in new}, verdict=None, compared_with=None)
    if not study.baseline or summary.empty:
        return summary
    for i, row in summary.iterrows():
        ref = _baseline_row(study, summary, row)
        if ref is None or ref.name == i:
            continue
        summary.at[i, "compared_with"] = ", ".join(f"{k}={v}" for k, v in study.baseline.items())
        summary.at[i, "verdict"] = _precheck(row, ref)
        if summary.at[i, "verdict"] is None:
            test = stats.welch(row["values"], ref["values"], alpha)
            for key in ("diff", "se", "ci_low", "ci_high", "t", "df", "p"):
                summary.at[i, key] = getattr(test, key)
    tested = summary["p"].notna()
    summary["p_adjusted"] = stats.adjust(summary["p"].tolist(), correction)
    level = stats.per_test_level(alpha, int(tested.sum()), correction)
    for i, row in summary[tested].iterrows():
        summary.at[i, "detectable"] = stats.detectable(row["se"], row["df"], level)
        if row["p_adjusted"] < alpha:
            summary.at[i, "verdict"] = "better" if row["diff"] > 0 else "worse"
        else:
            summary.at[i, "verdict"] = "no clear difference"
    return summary


def _precheck(row: pd.Series, ref: pd.Series) -> str | None:
    """A verdict that needs no test: a level that did not train, or too few seeds."""
    if row["n"] == 0 and row["did not train"] > 0:
        return "did not train"
    if row["n"] < 2 or ref["n"] < 2:
        return TOO_FEW
    if row["std"] == 0 and ref["std"] == 0:
        return "no verdict: every seed gave the same accuracy, so the noise is unknown"
    return None


def _levels(study: Study, row: pd.Series) -> tuple[str, str, str]:
    """(what changed, the baseline it is compared with, the context) of a summary row."""
    changed = [f for f in study.baseline if str(row[f]) != study.baseline[f]]
    what = ", ".join(f"{f}={row[f]}" for f in changed)
    base = ", ".join(f"{f}={study.baseline[f]}" for f in changed)
    context = [f for f in study.factors if f not in study.baseline]
    where = " on " + ", ".join(f"{f}={row[f]}" for f in context) if context else ""
    return what, base, where


def counted(row: pd.Series) -> str:
    """'3 seeds', or '2 of 3 runs (1 diverged)' when some runs are not in the mean."""
    n, total = int(row["n"]), int(row["runs"])
    if n == total:
        return f"{n} seed{'s' if n != 1 else ''}"
    left_out = [f"{int(row[c])} {c}" for c in list(COUNT_COLUMNS.values())[1:] if row[c]]
    return f"mean of {n} of {total} runs ({', '.join(left_out)})"


def answers(study: Study, summary: pd.DataFrame, runs: pd.DataFrame | None = None) -> list[str]:
    """One sentence per compared level with its numbers: better, worse, no clear difference
    (with the smallest difference the seeds could have shown), did not train, or too few."""
    runs = study.runs if runs is None else runs
    lines = []
    for _, row in summary[summary["verdict"].notna()].iterrows():
        what, base, where = _levels(study, row)
        ref = _baseline_row(study, summary, row)
        verdict = row["verdict"]
        if verdict == "did not train":
            lines.append(f"{what}{where}: did not train under this recipe "
                         f"({_not_trained(study, runs, row)}). This is a failed training run, "
                         "not evidence that the architecture is worse; a different learning "
                         "rate, batch norm or more epochs usually fixes it.")  # fmt: skip
            continue
        means = f"{_pct(row['mean'])} vs {_pct(ref['mean'])}"
        if verdict in ("better", "worse"):
            side = "above" if verdict == "better" else "below"
            gap = f"{abs(100 * row['diff']):.2f} points {side} {base}"
            lines.append(f"{what}{where}: {verdict} — {gap} ({means}; {_interval(row)}; "
                         f"{counted(row)}).")  # fmt: skip
        elif verdict == "no clear difference":
            lines.append(f"{what}{where}: no clear difference from {base} ({means}; "
                         f"{_interval(row)}; {counted(row)}); these seeds could only have "
                         f"detected a difference of about {100 * row['detectable']:.2f} points "
                         "(80% power).")  # fmt: skip
        else:
            lines.append(f"{what}{where}: {verdict} ({counted(row)} against {int(ref['n'])} "
                         f"for {base}; means {means}).")  # fmt: skip
    return lines


def _interval(row: pd.Series) -> str:
    return (f"difference {100 * row['diff']:+.2f} points, 95% CI {100 * row['ci_low']:+.2f} to "
            f"{100 * row['ci_high']:+.2f}, Welch t = {row['t']:.2f} with {row['df']:.1f} df, "
            f"p = {row['p']:.3g}, corrected p = {row['p_adjusted']:.3g}")  # fmt: skip


def _not_trained(study: Study, runs: pd.DataFrame, row: pd.Series) -> str:
    """The numbers of a group's runs that did not train: their losses and accuracies."""
    mask = runs["status"] == "did_not_train"
    for factor in study.factors:
        mask &= runs[factor].astype(str) == str(row[factor])
    bad = runs[mask]
    losses = ", ".join(f"{v:.3f}" for v in bad["final_train_loss"].astype(float))
    accs = ", ".join(_pct(v) for v in bad["final_test_acc"].astype(float))
    return (f"{len(bad)} of {int(row['runs'])} runs: final training loss {losses}, test accuracy "
            f"{accs}; {bad['error'].iloc[0]}")  # fmt: skip


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def problems(study: Study) -> pd.DataFrame:
    """Runs that are not in the means: did not train, diverged, failed or incomplete."""
    bad = study.runs[study.runs["status"] != USABLE]
    return bad[["run", *study.factors, "status", "final_test_acc", "final_train_loss", "error"]]


# --- the recipe and budget of a study -----------------------------------------------------------

RECIPE = {  # the report's name -> where it is in a run's config
    "data set": "data.name", "training images (subset)": "data.subset",
    "held out for validation": "data.validation", "epochs": "epochs",
    "batch size": "batch_size", "optimizer": "optimizer._target_", "learning rate": "optimizer.lr",
    "momentum": "optimizer.momentum", "weight decay": "optimizer.weight_decay",
    "schedule": "schedule._target_", "warm-up": "schedule.warmup",
    "translate (px)": "data.augment.translate", "flip": "data.augment.flip",
    "label smoothing": "label_smoothing", "batch norm": "model.batch_norm",
    "weight averaging (ema)": "ema", "test-time augmentation": "tta", "model": "model._target_",
    "training loop": "trainer.name",
}  # fmt: skip
IGNORED = ("tracking.", "progress", "seed", "hydra.", "device", "study.")  # not part of a recipe


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a.b': value} for every leaf of a nested config."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def recipe(study: Study) -> pd.DataFrame:
    """What the study's runs were trained with, read from their saved configs and metrics:
    one row per recipe item, the value (or the values, where the swept factors change it)."""
    configs = [flatten(c) for c in study.runs["config"] if c]
    items = []
    for name, key in RECIPE.items():
        values = {_short(c[key]) for c in configs if key in c}
        if values:
            items.append({"what": name, "value": ", ".join(sorted(map(str, values)))})
    done = study.runs[study.runs["status"] != "incomplete"]
    steps = _optimizer_steps(study)
    extra = {
        "training images used": _joined(done["train_images"].dropna().astype(int)),
        "optimizer steps": steps,
        "precision": _joined(done["precision"]),
        "device": _joined(done["device"]),
        "seeds": str(study.runs[REPLICATE].nunique()) if REPLICATE in study.runs else "1",
    }
    items += [{"what": k, "value": v} for k, v in extra.items() if v]
    return pd.DataFrame(items)


def _optimizer_steps(study: Study) -> str:
    """Optimizer steps of each run: epochs x (images per epoch // global batch)."""
    steps = set()
    for _, run in study.runs.iterrows():
        history, batch = run["history"] or [], flatten(run["config"] or {}).get("batch_size")
        if history and batch and run["epochs"]:
            per_epoch = int(history[0]["images"]) // (batch * int(run["world_size"] or 1))
            steps.add(int(run["epochs"]) * per_epoch)
    return ", ".join(f"{s:,}" for s in sorted(steps))


def varying_keys(study: Study) -> pd.DataFrame:
    """Config keys whose values differ between runs of the same factor levels (beyond the seed):
    something changed that the sweep did not mean to change."""
    rows = []
    for levels, runs in _groups(study):
        configs = [flatten(c) for c in runs["config"] if c]
        keys = set().union(*configs) if configs else set()
        for key in sorted(keys):
            if key.startswith(IGNORED):
                continue
            values = {json.dumps(c.get(key), default=str) for c in configs}
            if len(values) > 1:
                rows.append({**levels, "key": key, "values": ", ".join(sorted(values))})
    return pd.DataFrame(rows)


def provenance(study: Study) -> str:
    """Which commits the runs ran at, and whether any had uncommitted changes."""
    runs = study.runs
    if runs["git_commit"].isna().all():
        return "The runs did not record a git commit."
    parts = []
    for (commit, dirty), group in runs.groupby(["git_commit", "uncommitted_changes"], dropna=False):
        label = f"{str(commit)[:10]}{' with uncommitted changes' if dirty else ''}"
        parts.append(f"{label} ({len(group)} run{'s' if len(group) != 1 else ''})")
    warning = ""
    if len(parts) > 1 or runs["uncommitted_changes"].fillna(False).any():
        warning = " Not one clean commit: compare these runs with care."
    return "Code: " + "; ".join(parts) + "." + warning


def _short(value: Any) -> Any:
    """A class path shortened to its name (torch.optim.SGD -> SGD)."""
    return value.rsplit(".", 1)[-1] if isinstance(value, str) and "." in value else value


def _joined(column: pd.Series | None) -> str:
    if column is None:
        return ""
    return ", ".join(sorted({str(v) for v in column.dropna()}))


# --- curves and logs ---------------------------------------------------------------------------


def curves(study: Study, key: str) -> pd.DataFrame:
    """Per-epoch `key` (e.g. test_acc) of every usable run: run, factors..., epoch, value."""
    rows = []
    for _, run in study.runs[study.runs["status"] == USABLE].iterrows():
        for h in run["history"]:
            if key in h:
                rows.append({"run": run["run"], **{f: run[f] for f in study.factors},
                             "epoch": h["epoch"], key: h[key]})  # fmt: skip
    return pd.DataFrame(rows)


def time_to(history: list[dict[str, Any]], target: float) -> float | None:
    """Training seconds until the first epoch whose test accuracy reached `target`."""
    seconds = 0.0
    for row in history:
        seconds += row["train_seconds"]
        if row["test_acc"] >= target:
            return seconds
    return None


def feature_map_images(run: Path) -> list[tuple[str, Any]]:
    """The feature-map pictures a run recorded in TensorBoard at its last picture step, in the
    network's order: [(layer name, PIL image), ...]. Each picture has one row of tiles per probe
    image, so its height says the layer's map size (map_size)."""
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(run) / "tb"), size_guidance={"images": 0})
    events.Reload()
    tags = [t for t in events.Tags().get("images", []) if t.startswith("features/")]
    order = sorted(tags, key=lambda t: [int(p) if p.isdigit() else p for p in t.split(".")])
    out = []
    for tag in order:
        picture = Image.open(io.BytesIO(events.Images(tag)[-1].encoded_image_string))
        out.append((tag.removeprefix("features/"), picture))
    return out


def map_size(picture: Any, rows: int) -> int:
    """The side of one tile of a feature-map picture (make_grid pads each tile by 1 pixel)."""
    return (picture.height - 1) // rows - 1


def around_first_pool(pictures: list[tuple[str, Any]], rows: int) -> list[tuple[str, Any]]:
    """The layer before the first downsampling (the first pool in an unstrided network: its
    map is half its input's) and that pool's own output."""
    sizes = [map_size(p, rows) for _, p in pictures]
    for i in range(1, len(pictures)):
        if sizes[i] == sizes[i - 1] // 2:
            return pictures[i - 1 : i + 1]
    return []


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
