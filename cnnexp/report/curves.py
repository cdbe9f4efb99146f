"""The training process: per-epoch curves of a study's arms, the first epochs in numbers, and
the GPU (else CPU) load over a run's time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cnnexp.files import read_text
from cnnexp.report import figures
from cnnexp.report.document import Document
from cnnexp.report.runs import (
    REPLICATE,
    SKIPPED,
    Study,
    as_tuple,
    label,
    matching,
    or_warn,
    system_log,
)
from cnnexp.schema import ACC, LOSS, NVIDIA_SMI, without_key

NO_TTA = without_key("tta")  # a run's last test accuracy without test-time augmentation


def curves(study: Study, key: str) -> pd.DataFrame:
    """Per-epoch `key` (e.g. test_acc) of every usable run: run, factors..., epoch, value."""
    rows = []
    for run in study.usable():
        levels = {f: run.levels.get(f) for f in study.factors}
        for epoch in run.record.history:
            value = getattr(epoch, key, None)
            if value is not None:
                rows.append({"run": run.path, **levels, "epoch": epoch.epoch, key: value})
    return pd.DataFrame(rows)


def time_to(history: list[dict[str, Any]], target: float) -> float | None:
    """Training seconds until the first epoch whose test accuracy reached `target`."""
    seconds = 0.0
    for row in history:
        seconds += row["train_seconds"]
        if row[ACC] >= target:
            return seconds
    return None


def first_epochs(study: Study, epochs: int = 3) -> pd.DataFrame:
    """Per level: mean test accuracy and training loss after each of the first epochs, and
    the mean training seconds of an epoch."""
    acc, loss = curves(study, ACC), curves(study, LOSS)
    seconds = curves(study, "train_seconds")
    if acc.empty or not study.factors:
        return pd.DataFrame()
    rows = []
    for level, part in acc.groupby(study.factors, sort=False):
        levels = dict(zip(study.factors, as_tuple(level), strict=True))
        row, mask = dict(levels), matching(loss, levels)
        for e in range(1, epochs + 1):
            mean_acc = part[part.epoch == e][ACC].mean()
            row[f"test acc % after epoch {e}"] = round(100 * mean_acc, 2)
            mean_loss = loss[mask & (loss.epoch == e)][LOSS].mean()
            row[f"train loss after epoch {e}"] = round(mean_loss, 4)
        row["train s / epoch"] = round(seconds[matching(seconds, levels)].train_seconds.mean(), 2)
        rows.append(row)
    return pd.DataFrame(rows)


CURVES = {
    ACC: "test accuracy per epoch",
    LOSS: "training loss per epoch",
    "test_loss": "test loss per epoch",
}


def add_curves(doc: Document, study: Study, tag: str, keys: tuple[str, ...] = tuple(CURVES)):
    """A figure of each per-epoch `keys` over the study's usable runs."""
    for key in keys:
        frame = curves(study, key)
        if frame.empty:
            continue
        marks = None
        if key == ACC:
            frame, marks = tta_apart(study, frame)
        path = doc.out / "figures" / f"{tag}-{key}.png"
        figures.curves_figure(frame, study.factors, key, path, study.baseline, marks)
        by = frame.groupby(study.factors) if study.factors else frame.groupby(lambda _: 0)
        several = by["run"].nunique().max() > 1  # as curves_figure draws a band
        how = "mean over the usable seeds, band ± 1 std" if several else "one run per line"
        apart = (
            "; every epoch without test-time augmentation, the last one also with it (a star)"
            if marks is not None and len(marks)
            else ""
        )
        doc.image(path, f"{CURVES[key]} ({how}{apart})")


def tta_apart(study: Study, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The test accuracy of the last epoch is measured with test-time augmentation where a run
    has it: the curve takes that epoch's accuracy without it (measured in the same run), so
    that every point is measured alike, and the one with it becomes a mark apart."""
    without = {r.path: r.final(NO_TTA) for r in study.runs if r.has(NO_TTA)}
    if not without:
        return frame, None
    last = frame.groupby("run")["epoch"].transform("max") == frame["epoch"]
    replaced = frame["run"].map(without)
    apart = last & replaced.notna()
    if not apart.any():
        return frame, None
    marks = frame[apart].copy()
    frame = frame.copy()
    frame.loc[apart, ACC] = replaced[apart]
    return frame, marks


def add_system(doc: Document, study: Study, tag: str) -> None:
    """GPU utilisation and memory over the first run's time, or the CPU's where no GPU ran."""
    first = Path(study.runs[0].path)
    system = system_log(first)
    if system is None or not len(system):
        return
    gpu = any(c.endswith("_util_percent") for c in system.columns)
    what = "GPU utilisation and memory" if gpu else "CPU utilisation"
    run = study.runs[0]
    seed = f", seed {run.levels[REPLICATE]}" if run.levels.get(REPLICATE) is not None else ""
    levels = label(study, run.levels) if study.factors else study.name
    which = f"{study.name}'s first run ({levels}{seed})" if study.factors else f"{levels}{seed}"
    path = doc.out / "figures" / f"{tag}-system.png"
    figures.system_figure(system, path, f"{what}: {which}")
    where = "" if gpu else " (100% is one core; the machine's line is every core together)"
    doc.image(path, f"{what} over the training of {which}, sampled every second{where}")
    load = run.record.system
    if load:
        doc.para(
            ", ".join(
                f"{k.replace('_', ' ')} {v}"
                for k, v in load.items()
                if k.endswith(("_mean", "_peak"))
            )
        )
    smi = or_warn(read_text, first / NVIDIA_SMI, SKIPPED)
    if smi:
        doc.code(smi)
