"""The lab report's main body beside each answer: the networks of questions 1 and 2 in words
with one table of their seeds and one figure of their curves, the mechanics and the feature
maps of 3.1, and the lab's bonuses with their evidence. Everything else a study measured is
folded into the report's appendix (cnnexp.report.lab.add_evidence)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cnnexp import stats
from cnnexp.models import count_macs
from cnnexp.report.curves import NO_TTA, add_curves
from cnnexp.report.document import Document
from cnnexp.report.network import build_from_config, counts_sentence
from cnnexp.report.recipe import in_words
from cnnexp.report.runs import Study, StudyRun, or_warn
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
    usable = study.usable()
    if not usable:
        return
    config, choices = usable[0].config, usable[0].record.choices
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


def seeds_table(usable: list[StudyRun]) -> pd.DataFrame:
    """One row a seed, then their mean and spread: test accuracy, without test-time
    augmentation where it was used, and training seconds."""
    runs = sorted(usable, key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0))
    columns = {TEST_ACC: "test acc %"}
    if all(r.has(NO_TTA) for r in runs):
        columns[NO_TTA] = "without test-time augmentation %"
    rows = [
        {
            "seed": str(run.seed if run.seed is not None else ""),
            **{name: f"{100 * run.final(key):.2f}" for key, name in columns.items()},
            "training s": f"{run.final('train_seconds'):.0f}",
        }
        for run in runs
    ]
    if len(runs) > 1:
        spread = {
            name: f"{100 * np.mean(v):.2f} ± {100 * np.std(v, ddof=1):.2f}"
            for key, name in columns.items()
            for v in [[r.final(key) for r in runs]]
        }
        seconds = f"{np.mean([r.final('train_seconds') for r in runs]):.0f}"
        rows.append({"seed": "mean ± std", **spread, "training s": seconds})
    return pd.DataFrame(rows)


def tta_sentence(usable: list[StudyRun]) -> str | None:
    """What test-time augmentation adds, tested seed by seed on the same networks."""
    if len(usable) < 2 or not all(r.has(NO_TTA) for r in usable):
        return None
    test = stats.paired([r.final(TEST_ACC) for r in usable], [r.final(NO_TTA) for r in usable])
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
    runs = [run for s in studies for run in s.runs]
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


def ddp_line(runs: list[StudyRun]) -> str:
    """DDP: the runs of several processes among these, or the command that makes one."""
    several = [r for r in runs if _processes(r) > 1]
    if several:
        run = several[0]
        world = _processes(run)
        record = or_warn(read_record, Path(run.path))
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


def lightning_line(runs: list[StudyRun]) -> str:
    """PyTorch Lightning: the runs trained through it, or the option that does."""
    lightning = [r for r in runs if _trainer(r) == "lightning"]
    if lightning:
        return (
            f"PyTorch Lightning: {_runs(len(lightning))} here trained through it "
            "(`trainer=lightning`), with the same network, data, recipe and seed as our own "
            "loop (the table below)."
        )
    return (
        "PyTorch Lightning: `trainer=lightning` trains the same network, data and recipe "
        "through Lightning instead of our own loop; none of this report's runs used it."
    )


def bonus_table(runs: list[StudyRun]) -> pd.DataFrame:
    """The runs of several processes or through Lightning beside the plain run of the same
    network, data and seed: how each trained, its accuracy and its time."""
    usable = [r for r in runs if r.usable]
    plain = [r for r in usable if _processes(r) == 1 and _trainer(r) == "native"]
    rows = []
    for run in (r for r in usable if _processes(r) > 1 or _trainer(r) == "lightning"):
        twins = [r for r in plain if _twin(r) == _twin(run)]
        rows += [_bonus_row(run)]
        rows += [_bonus_row(twins[0])] if twins else []
    return pd.DataFrame(rows).drop_duplicates()


def _processes(run: StudyRun) -> int:
    return int(run.record.world_size or 1)


def _trainer(run: StudyRun) -> str:
    return (run.record.choices or {}).get("trainer", "native")


def _twin(run: StudyRun) -> tuple:
    """What a plain run shares with a DDP or Lightning run it is set beside."""
    record = run.record
    return (
        record.model,
        run.seed,
        record.train_images,
        record.headline and record.headline.epochs_done,
    )


def _bonus_row(run: StudyRun) -> dict[str, str]:
    processes, trainer = _processes(run), _trainer(run)
    how = "our loop" if trainer == "native" else "PyTorch Lightning"
    return {
        "trained by": how + (" under DDP" if processes > 1 else ""),
        "processes": str(processes),
        "network": str(run.record.model),
        "seed": str(run.seed if run.seed is not None else ""),
        "epochs": str(int(run.final("epochs_done"))),
        "test acc %": f"{100 * run.final(TEST_ACC):.2f}",
        "training s": f"{run.final('train_seconds'):.0f}",
    }


def _runs(count: int) -> str:
    return f"{count} run{'s' if count != 1 else ''}"
