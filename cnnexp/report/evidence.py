"""The lab report's main body beside each answer: the networks of questions 1 and 2 in words
with one table of their seeds and one figure of their curves, the mechanics and the feature
maps of 3.1, and the lab's bonuses with their evidence. Everything else a study measured is
folded into the report's appendix (cnnexp.report.lab.add_evidence)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cnnexp import stats
from cnnexp.models import count_macs
from cnnexp.report.curves import NO_TTA, add_curves
from cnnexp.report.document import Document
from cnnexp.report.network import build_from_config, counts_sentence
from cnnexp.report.recipe import in_words
from cnnexp.report.runs import REPLICATE, USABLE, Study, or_warn
from cnnexp.report.shots import INSTALL, browser
from cnnexp.schema import ACC, TEST_ACC, read_record

SCALARS, IMAGES = "TensorBoard's Scalars page", "TensorBoard's Images page"  # shots' captions
HOW_SURE = (
    "How sure: each interval is a 95% confidence interval that holds for all of its study's "
    "comparisons together (family-wise, see the glossary); a verdict says better or worse only "
    "when its interval excludes zero. Differences are always the changed network minus the one "
    "it is compared with."
)
FROM_SCRATCH = (
    "Trained from scratch: every network starts from random weights drawn from its seed; the "
    "code loads no pretrained weights (the only checkpoint a run reads is its own, to resume)."
)


def add_network_answer(
    doc: Document, study: Study, tag: str, shots: list[tuple[Path, str]]
) -> None:
    """Question 1 or 2: the network in words and its size, how it was trained, its accuracy
    seed by seed (with and without test-time augmentation, paired), its test accuracy over the
    epochs and TensorBoard's curves."""
    usable = study.runs[study.runs["status"] == USABLE]
    if usable.empty:
        return
    config = usable["config"].iloc[0]
    choices = usable["choices"].iloc[0] if "choices" in usable else None
    model = build_from_config(config)
    if words := getattr(type(model), "IN_WORDS", None):
        doc.para(words)
    data = config["data"]
    shape = (int(data["channels"]), int(data["size"]), int(data["size"]))
    doc.para(counts_sentence(model, config, shape, count_macs(model, shape)))
    doc.para("How it was trained. " + in_words(config, choices))
    doc.table(seeds_table(usable), as_text=True)
    if said := tta_sentence(usable):
        doc.para(said)
    add_curves(doc, study, f"{tag}-main", keys=(ACC,))
    for path, caption in shots:
        if caption.startswith(SCALARS):
            doc.image(path, caption)


def seeds_table(usable: pd.DataFrame) -> pd.DataFrame:
    """One row a seed, then their mean and spread: test accuracy, without test-time
    augmentation where it was used, and training seconds."""
    runs = usable.sort_values(REPLICATE) if REPLICATE in usable else usable
    columns = {TEST_ACC: "test acc %"}
    if NO_TTA in runs and runs[NO_TTA].notna().all():
        columns[NO_TTA] = "without test-time augmentation %"
    rows = [
        {
            "seed": str(run.get(REPLICATE, "")),
            **{name: f"{100 * float(run[key]):.2f}" for key, name in columns.items()},
            "training s": f"{float(run['train_seconds']):.0f}",
        }
        for _, run in runs.iterrows()
    ]
    if len(runs) > 1:
        spread = {
            name: f"{100 * runs[key].astype(float).mean():.2f} ± "
            f"{100 * runs[key].astype(float).std():.2f}"
            for key, name in columns.items()
        }
        seconds = f"{runs['train_seconds'].astype(float).mean():.0f}"
        rows.append({"seed": "mean ± std", **spread, "training s": seconds})
    return pd.DataFrame(rows)


def tta_sentence(usable: pd.DataFrame) -> str | None:
    """What test-time augmentation adds, tested seed by seed on the same networks."""
    if NO_TTA not in usable or not usable[NO_TTA].notna().all() or len(usable) < 2:
        return None
    test = stats.paired(usable[TEST_ACC].astype(float), usable[NO_TTA].astype(float))
    if pd.isna(test.ci_low):
        return (
            f"Test-time augmentation adds {100 * test.diff:+.2f} points on every seed alike "
            "(the same networks scored both ways)."
        )
    decided = test.ci_low > 0 or test.ci_high < 0
    return (
        f"Test-time augmentation adds {100 * test.diff:+.2f} points (95% interval "
        f"{100 * test.ci_low:+.2f} to {100 * test.ci_high:+.2f}, the same networks scored both "
        f"ways, compared seed by seed: paired t); "
        + ("a real gain." if decided else "not told apart from zero with these seeds.")
    )


def add_bonuses(
    doc: Document, studies: list[Study], shots: dict[str, list], asked: bool = True
) -> None:
    """The lab's extras, each with its evidence or the command that makes it, and the
    compliance line; `asked`: whether TensorBoard's pages were to be taken."""
    doc.heading(2, "Bonuses and compliance")
    runs = pd.concat([s.runs for s in studies], ignore_index=True)
    doc.bullets(
        [
            "Custom `Dataset`: `ImageTensorDataset` (cnnexp/data.py) holds a data set's images "
            "as one tensor read once from its files (MNIST's IDX files, CIFAR-10's images), "
            "with `__len__` and `__getitem__`; every run in this report reads through it.",
            ddp_line(runs),
            lightning_line(runs),
            FROM_SCRATCH,
        ]
    )
    side = bonus_table(runs)
    if not side.empty:
        doc.table(side, as_text=True)
    images = [(p, c) for taken in shots.values() for p, c in taken if c.startswith(IMAGES)]
    for path, caption in images[:1]:  # intermediate layers in TensorBoard: one network's page
        doc.image(path, caption)
    if not images:
        doc.para(
            "Intermediate layers in TensorBoard: every run writes its feature maps to its "
            "events (the Images page); this report has no screenshot of the page: "
            f"{why_no_shots(asked)}."
        )


def why_no_shots(asked: bool) -> str:
    """Why a report has no picture of TensorBoard's pages, and what takes them."""
    if not asked:
        return "it was made without `--tensorboard-shots`, which takes them"
    if browser() is None:
        return f"no Chromium was found when it was made ({INSTALL})"
    return "taking them failed when it was made (the warning it printed says why)"


def ddp_line(runs: pd.DataFrame) -> str:
    """DDP: the runs of several processes among these, or the command that makes one."""
    world = pd.to_numeric(runs.get("world_size", pd.Series(dtype=float)), errors="coerce")
    several = runs[world > 1]
    if len(several):
        run = several.iloc[0]
        world = int(run["world_size"])
        record = or_warn(read_record, Path(run["run"]))
        sums = set(record.rank_weight_checksums or []) if record else set()
        step = {
            1: "the replicas' weights identical at the end (one checksum per process, equal)",
            0: "no checksums of the replicas' weights recorded",
        }.get(len(sums), "the replicas' weights NOT identical at the end: they drifted apart")
        return (
            f"DDP: {_runs(len(several))} here trained in {world} processes launched by "
            f"torchrun, {step}. "
            f"Each process trains on its own 1/{world} of the images every epoch and the "
            "replicas average their gradients at every step, so an epoch takes fewer, larger "
            "steps than one process does: its accuracy differs for that reason."
        )
    return (
        "DDP: built (`torchrun --nproc_per_node 2 -m cnnexp trainer.devices=2`, gloo on the "
        "CPU, NCCL on GPUs) and tested with two real processes, but none of this report's runs "
        "used it."
    )


def lightning_line(runs: pd.DataFrame) -> str:
    """PyTorch Lightning: the runs trained through it, or the option that does."""
    chosen = runs.get("choices", pd.Series(dtype=object))
    lightning = runs[[(c or {}).get("trainer") == "lightning" for c in chosen]]
    if len(lightning):
        return (
            f"PyTorch Lightning: {_runs(len(lightning))} here trained through it "
            "(`trainer=lightning`), with the same network, data, recipe and seed as our own "
            "loop (the table below)."
        )
    return (
        "PyTorch Lightning: `trainer=lightning` trains the same network, data and recipe "
        "through Lightning instead of our own loop; none of this report's runs used it."
    )


def bonus_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of several processes or through Lightning beside the plain run of the same
    network, data and seed: how each trained, its accuracy and its time."""
    usable = runs[runs["status"] == USABLE]
    world = pd.to_numeric(usable.get("world_size", 1), errors="coerce").fillna(1)
    trainer = pd.Series([(c or {}).get("trainer", "native") for c in usable["choices"]],
                        index=usable.index) if "choices" in usable else "native"  # fmt: skip
    extra = usable[(world > 1) | (trainer == "lightning")]
    if extra.empty:
        return pd.DataFrame()
    rows = []
    for _, run in extra.iterrows():
        same_seed = usable[REPLICATE] == run[REPLICATE] if REPLICATE in usable else True
        twins = usable[
            (usable["model"] == run["model"])
            & same_seed
            & (usable["train_images"] == run["train_images"])
            & (usable["epochs_done"] == run["epochs_done"])
            & (world == 1)
            & (trainer == "native")
        ]
        rows += [_bonus_row(run, int(world[run.name]), trainer[run.name])]
        rows += [_bonus_row(twins.iloc[0], 1, "native")] if len(twins) else []
    return pd.DataFrame(rows).drop_duplicates()


def _bonus_row(run: pd.Series, processes: int, trainer: str) -> dict[str, str]:
    how = "our loop" if trainer == "native" else "PyTorch Lightning"
    return {
        "trained by": how + (" under DDP" if processes > 1 else ""),
        "processes": str(processes),
        "network": str(run["model"]),
        "seed": str(run.get(REPLICATE, "")),
        "epochs": str(int(run["epochs_done"])),
        "test acc %": f"{100 * float(run[TEST_ACC]):.2f}",
        "training s": f"{float(run['train_seconds']):.0f}",
    }


def _runs(count: int) -> str:
    return f"{count} run{'s' if count != 1 else ''}"
