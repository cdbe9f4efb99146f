"""The recipe and budget a study's runs were trained under, read from their saved configs and
records, and anything that varied between runs of the same arm by mistake."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from cnnexp.report.document import Document
from cnnexp.report.runs import (
    INCOMPLETE,
    Study,
    StudyRun,
    data_title,
    experiment_of,
    groups,
    jobs_at_a_time,
    joined,
    label,
    numbers,
    portable,
    seeds_of,
    shown_path,
)
from cnnexp.studies import flatten

RECIPE = {  # the report's name -> where it is in a run's config
    "data set": "data.name",
    "training images (subset)": "data.subset",
    "held out for validation": "data.validation",
    "input size (px, after padding)": "data.size",
    "zero padding (px)": "data.pad",
    "normalised by mean": "data.mean",
    "and std": "data.std",
    "epochs": "epochs",
    "batch size": "batch_size",
    "optimizer": "optimizer._target_",
    "learning rate": "optimizer.lr",
    "momentum": "optimizer.momentum",
    "weight decay": "optimizer.weight_decay",
    "schedule": "schedule._target_",
    "warm-up": "schedule.warmup",
    "translate (px)": "data.augment.translate",
    "flip": "data.augment.flip",
    "label smoothing": "label_smoothing",
    "batch norm": "model.batch_norm",
    "weight averaging (ema)": "ema",
    "test-time augmentation": "tta._target_",
    "model": "model._target_",
    "channels per stage, at width 1": "model.widths",
    "width multiplier": "model.width_mult",
    "training loop": "trainer._target_",
}
OFF_WHEN_NULL = {"ema": "off", "data.subset": "all"}  # what a null means where it means something
IGNORED_KEYS = ("tracking.", "progress", "seed", "hydra.", "device", "study.")  # not a recipe
BUDGET_MINUTES = {"cpu": 30}  # what a budget allows the whole study, budget check included
BUDGETS = {  # by a budget name's last part: cifar10_cpu -> cpu
    "cpu": "sized for two CPU cores, at most 30 minutes for the whole study; networks, "
    "images or epochs are cut to fit, so the answers are about this short training",
    "gpu": "the full-length study, for a GPU",
}


def add_recipe(doc: Document, study: Study) -> None:
    """The recipe and budget the runs were trained under, and anything that varied by mistake."""
    doc.heading(3, "Recipe and budget")
    doc.para(budget_line(study))
    if study.note:
        doc.para(study.note)
    if study.tuning is not None:
        key = study.kind.tuned_key()
        doc.para(
            f"{key} was chosen for each variant from the grid below by the mean accuracy "
            "on the validation split (held out of the training images; the test set was "
            "not looked at). Only the chosen level's runs are in the tables and verdicts "
            "that follow."
        )
        doc.table(study.tuning)
    elif study.kind.budget and "learning rate" in set(recipe(study)["what"]):
        doc.para(
            "One learning rate is shared by every level (not tuned per level): a level "
            "that needs another one is at a disadvantage here."
        )
    table = recipe(study)
    if not table.empty:
        doc.table(table)
    doc.para(provenance(study))
    _precisions(doc, study)
    varying = varying_keys(study)
    if not varying.empty:
        doc.para(
            "Beyond the swept factors, these settings differ between runs of the same "
            "levels (flagged: the comparison may not be fair):"
        )
        doc.table(varying)


def _precisions(doc: Document, study: Study) -> None:
    precisions: dict[str, set[str]] = {}
    for run in study.runs:
        if run.record.precision is not None:
            precisions.setdefault(run.record.precision, set()).add(label(study, run.levels))
    if len(precisions) > 1:
        chosen = "; ".join(
            f"{name}: " + ", ".join(sorted(levels)) for name, levels in sorted(precisions.items())
        )
        doc.para(
            "The runs trained in different number formats (precision=auto chooses per network "
            f"by speed on this machine) — {chosen}. Differences between these levels include "
            "the format; set precision=fp32 for one format throughout."
        )


def recipe(study: Study) -> pd.DataFrame:
    """What the study's runs were trained with, read from their saved configs and metrics:
    one row per recipe item, the value (or the values, where the swept factors change it)."""
    configs = [flatten(c) for c in study.configs()]
    items = []
    for name, key in RECIPE.items():
        values = {_short(c[key]) for c in configs if key in c} - {None}
        if key in OFF_WHEN_NULL and any(c.get(key, 0) is None for c in configs):
            values.add(OFF_WHEN_NULL[key])
        if values:
            items.append({"what": name, "value": ", ".join(sorted(map(str, values)))})
    done = [r.record for r in study.runs if r.status != INCOMPLETE]
    configured = {item["what"] for item in items}
    extra = {
        "epochs": joined(r.epochs for r in done) if "epochs" not in configured else "",
        "training images used": joined(r.train_images for r in done),
        "images read from": joined(portable(r.data_source) for r in done),
        "optimizer steps": _optimizer_steps(study),
        "precision": joined(r.precision for r in done),
        "device": joined(r.device for r in done),
        "seeds": str(len(seeds_of(study.runs)) or 1),
        "training time per run (s)": _seconds(
            [r.headline.train_seconds for r in done if r.headline]
        ),
    }
    items += [{"what": k, "value": v} for k, v in extra.items() if v]
    return pd.DataFrame(items, columns=["what", "value"])


def _seconds(values: list[float]) -> str:
    """'77' for one run, '70-81 (mean 75)' for several."""
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.0f}"
    return f"{min(values):.0f}-{max(values):.0f} (mean {sum(values) / len(values):.0f})"


def _optimizer_steps(study: Study) -> str:
    """Optimizer steps of each run: epochs x (images per epoch // global batch)."""
    steps = set()
    for run in study.runs:
        record, batch = run.record, flatten(run.config).get("batch_size")
        if record.history and batch and record.epochs:
            per_epoch = int(record.history[0].images) // (batch * int(record.world_size or 1))
            steps.add(int(record.epochs) * per_epoch)
    return ", ".join(f"{s:,}" for s in sorted(steps))


def varying_keys(study: Study) -> pd.DataFrame:
    """Config keys whose values differ between runs of the same factor levels (beyond the seed):
    something changed that the sweep did not mean to change."""
    rows = []
    for levels, runs in groups(study):
        configs = [flatten(r.config) for r in runs if r.config]
        keys = set().union(*configs) if configs else set()
        for key in sorted(keys):
            if key.startswith(IGNORED_KEYS):
                continue
            values = {json.dumps(c.get(key), default=str) for c in configs}
            if len(values) > 1:
                rows.append({**levels, "key": key, "values": ", ".join(sorted(values))})
    return pd.DataFrame(rows)


def provenance(study: Study) -> str:
    """Which commits the runs ran at, and whether any had uncommitted changes."""
    commits = [r.record.git_commit for r in study.runs]
    if not any(commits):
        return "The runs did not record a git commit."
    parts = []
    for commit, count in sorted(Counter(commits).items(), key=lambda item: str(item[0])):
        dirty = " with uncommitted changes" if str(commit).endswith("-dirty") else ""
        name = str(commit).removesuffix("-dirty")[:10]
        parts.append(f"{name}{dirty} ({count} run{'s' if count != 1 else ''})")
    warning = ""
    if len(parts) > 1 or any(str(c).endswith("-dirty") for c in commits):
        warning = " Not one clean commit: compare these runs with care."
    return "Code: " + "; ".join(parts) + "." + warning


def budget_line(study: Study) -> str:
    """Which budget the study ran under, as its experiment config names it."""
    name = study.kind.budget
    if name is None:
        return "Budget: not named (a sweep of its own, not one of the studies in conf/experiment/)."
    kind = str(name).rsplit("_", 1)[-1]
    said = f"{name}: {BUDGETS[kind]}" if kind in BUDGETS else str(name)
    return f"Budget: {said}. {time_taken(study, kind)}"


def time_taken(study: Study, budget: str) -> str:
    """What the study's runs took (its budget check's too), against what the budget allows.
    Runs that ran several at a time (one thread each, from their env.json) share the cores:
    the study's time is then about the sum over that many."""
    runs = study.runs + study.check
    seconds = numbers(runs, "wall_seconds")
    if not seconds:
        return ""
    jobs = jobs_at_a_time(runs) or 1
    total = sum(seconds) / 60
    text = f"The {len(seconds)} runs' times add up to {total:.1f} min"
    if jobs > 1:
        total /= jobs
        text += f"; {jobs} at a time, about {total:.1f} min for the study"
    allowed = BUDGET_MINUTES.get(budget)
    if allowed and total > allowed:
        text += f", over the {allowed} minutes by {total - allowed:.1f}"
    return text + " (without the launcher's start-up)."


def budget_phrase(study: Study) -> str:
    """The budget in a phrase: data, images, epochs, steps, learning rate."""
    table = recipe(study)
    items = dict(zip(table["what"], table["value"], strict=True))
    epochs = items.get("epochs", "?")
    unit = "epoch" if str(epochs) == "1" else "epochs"
    text = f"{items.get('training images used', '?')} training images, {epochs} {unit}"
    if "data set" in items:
        text = f"{items['data set']}, {text}"
    if "optimizer steps" in items:
        text += f" ({items['optimizer steps']} steps)"
    if "learning rate" in items:
        text += f", learning rate {items['learning rate']}"
    return text


def describe(study: Study) -> str:
    """What was run, in a sentence."""
    runs = study.runs
    seeds = len(seeds_of(runs)) or 1
    levels = "; ".join(f"{f}: {_levels(runs, f)}" for f in study.factors)
    text = f"{len(runs)} run{'s' if len(runs) != 1 else ''} in {shown_path(study.root)}"
    if levels:
        text += f", varying {levels}"
    if seeds > 1:
        text += f", {seeds} seeds each" if study.factors else f", {seeds} seeds"
    if study.baseline:
        text += "; differences are measured from " + ", ".join(
            f"{k}={v}" for k, v in study.baseline.items()
        )
    if study.check:
        text += f"; {len(study.check)} more runs check the budget: {_checked_arms(study)} again"
        text += f" at {joined(r.record.epochs for r in study.check)} epochs"
    return text + "."


def _checked_arms(study: Study) -> str:
    """The arms the budget check trained again, as their levels ('pool=max, pool=avg'); a
    design's, its reference configuration."""
    if study.kind.answers_factors():
        return "the reference configuration"
    if not study.factors:
        return "the study's configuration"
    between = ", " if len(study.factors) == 1 else "; "
    return between.join(dict.fromkeys(label(study, r.levels) for r in study.check))


def _levels(runs: Sequence[StudyRun], key: str) -> str:
    """'max, avg': the levels of `key` these runs ran at, in order."""
    found = (str(r.levels[key]) for r in runs if r.levels.get(key) is not None)
    return ", ".join(dict.fromkeys(found))


def heading(study: Study) -> str:
    """The study's name, with its data set where the runs name one."""
    data = {str(data_title(c)) for c in study.configs()}
    if len(data) == 1 and "None" not in data:
        return f"{study.name}: {data.pop()}"
    experiment = experiment_of(study)
    return f"{study.name} (+experiment={experiment})" if experiment else study.name


def _short(value: Any) -> Any:
    """A class path shortened to its name (torch.optim.SGD -> SGD); a list as text."""
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(map(str, value)) + ")"
    return value.rsplit(".", 1)[-1] if isinstance(value, str) and "." in value else value


def in_words(config: dict[str, Any], choices: dict[str, str] | None) -> str:
    """How a run was trained, in a few sentences from its saved config: the data pipeline, the
    loss, the optimizer and the schedule (what a lab report's procedure describes)."""
    c, chose = flatten(config), choices or {}
    return " ".join(
        (_data_words(c), _loss_words(c), _optimizer_words(c, chose), _schedule_words(c, chose))
    )


def _data_words(c: dict[str, Any]) -> str:
    subset = c.get("data.subset")
    images = f"{subset:,} of the training images" if subset else "all the training images"
    shifts = []
    if c.get("data.augment.flip"):
        shifts.append("mirrored at random")
    if c.get("data.augment.translate"):
        shifts.append(f"shifted by up to {c['data.augment.translate']} pixels at random")
    augmented = f"; every epoch each image is {' and '.join(shifts)}" if shifts else ""
    return (
        f"Data: {images} of {c.get('data.title', c.get('data.name'))}, read once into one "
        "tensor by our own Dataset (`ImageTensorDataset`, cnnexp/data.py), normalised per "
        f"channel and shuffled into batches of {c.get('batch_size')}{augmented}."
    )


def _loss_words(c: dict[str, Any]) -> str:
    smoothing = c.get("label_smoothing") or 0
    if not smoothing:
        return "Loss: cross-entropy."
    return (
        f"Loss: cross-entropy with label smoothing {smoothing} (the target gives the right class "
        f"{1 - smoothing + smoothing / c.get('data.classes', 10):.2f}, not 1, which keeps the "
        "network from growing over-confident)."
    )


def _optimizer_words(c: dict[str, Any], chose: dict[str, str]) -> str:
    name = chose.get("optimizer") or str(c.get("optimizer._target_", "")).rsplit(".", 1)[-1]
    decay = (
        f", weight decay {c['optimizer.weight_decay']:g}" if c.get("optimizer.weight_decay") else ""
    )
    if name.lower() == "muon":
        return (
            "Optimizer: Muon for the conv filters (each update orthogonalised, so every "
            f"direction of a layer learns at the same pace; step {c.get('optimizer.filter_lr')} "
            "of the filter's size) and Nesterov SGD for the biases, batch norm and head "
            f"(learning rate {c.get('optimizer.lr')}{decay})."
        )
    momentum = c.get("optimizer.momentum")
    nesterov = "Nesterov " if c.get("optimizer.nesterov") else ""
    with_momentum = f" with {nesterov}momentum {momentum}" if momentum else ""
    name = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}.get(name, name)
    return f"Optimizer: {name}{with_momentum}, peak learning rate {c.get('optimizer.lr')}{decay}."


def _schedule_words(c: dict[str, Any], chose: dict[str, str]) -> str:
    epochs = f"{c.get('epochs')} epochs"
    warmup = c.get("schedule.warmup")
    if chose.get("schedule") == "onecycle":
        final = c.get("schedule.final") or 0
        return (
            f"Schedule: {epochs}; the learning rate rises linearly from 0 over the first "
            f"{100 * warmup:.0f}% of the steps, then falls linearly to "
            + (f"{final:g} of its peak." if final else "0.")
        )
    if chose.get("schedule") == "cosine":
        return (
            f"Schedule: {epochs}; the learning rate rises linearly over the first "
            f"{100 * warmup:.0f}% of the steps, then falls along a cosine to 0."
        )
    return f"Schedule: {epochs} at a {chose.get('schedule', 'constant')} learning rate."
