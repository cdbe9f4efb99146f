"""One definition of the run record, metrics.json: typed data with one owner.

`Run` is the record, `Epoch` one row of its per-epoch history and `Headline` the numbers
summarised from that history. Training fills them (cnnexp.record, cnnexp.train), tracking logs
their scalars to TensorBoard, and cnnexp.report.runs reads them back with `Run.from_json`. A
field's metadata (`metric`) carries what else it needs: its TensorBoard tag, whether its last
epoch's value is a headline number, and that number's heading in the report's table of runs. A
new metric is one field here plus the line that computes it.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from cnnexp.errors import DamagedFileError
from cnnexp.files import read_json

METRICS = "metrics.json"
# The other files of a run folder that more than one module reads or writes.
ENVIRONMENT = "env.json"  # the machine and software (cnnexp.environment)
SYSTEM = "system.csv"  # GPU and CPU load, about once a second (cnnexp.monitor)
NVIDIA_SMI = "nvidia-smi.txt"  # where nvidia-smi exists
DECIDE_FILE = "decide.json"  # a deciding sweep's folder: each arm's standing (cnnexp.deciding)
# 1: the first layout; 2: record_version, validation headline numbers, precision_reason,
# test_class_counts; 3: overrides as {key: typed value} (cnnexp.config.typed_overrides), no
# longer a list of strings; 4: test_acc_without_<option> for the evaluation-only options (the
# last epoch only) and their final_ headline numbers; 5: written from these dataclasses (the
# same keys; keys a reader does not know are kept in `Run.extra`). Readers treat a record
# without the field as version 1.
RECORD_VERSION = 5
# What a run's status can be while and after it runs. "did_not_train" is the report's own
# judgement of a completed run (cnnexp.report.runs), never written by training.
STATUSES = ("running", "completed", "diverged", "interrupted", "failed")
RUNNING, COMPLETED, DIVERGED, INTERRUPTED, FAILED = STATUSES
# Options that change only how a trained network is evaluated, never how it trains. A run with
# one of them on also tests its last epoch with that option alone turned off (the history's
# test_acc_without_<option>), so the report measures each in pairs on the very same networks.
EVAL_ONLY = ("tta", "ema")
WITHOUT = {option: f"test_acc_without_{option}" for option in EVAL_ONLY}
FINAL = "final_"  # the headline's name for a metric's last-epoch value: final_test_acc
BEFORE_POOL = ":input"  # the tag suffix of a pool's input: the stage's activation, before pooling
CHANCE_MARGIN = 0.02  # test accuracy this close to the most frequent class's share is chance
LOSS_MARGIN = 0.05  # a final training loss within this many nats of ln(classes) is chance


def metric(
    tag: str | None = None,
    *,
    final: bool = False,
    heading: str | None = None,
    hparam: bool = False,
    default: Any = MISSING,
) -> Any:
    """A record field and what it needs elsewhere: `tag`, its TensorBoard scalar; `final`, its
    last epoch's value is a headline number (final_<name>); `heading`, that number's (or a
    headline field's) column in the report's table of runs (an accuracy shown in percent);
    `hparam`, logged to TensorBoard's HParams view."""
    meta = {"tag": tag, "final": final, "heading": heading, "hparam": hparam}
    return field(default=default, metadata=meta)


def _optional(tag: str | None = None, **meta: Any) -> Any:
    return metric(tag, default=None, **meta)


@dataclass(kw_only=True)
class Epoch:
    """One row of the per-epoch history. A run's test result is its last epoch's: the best
    epoch on the test set would be a choice made by looking at the test set. The report's
    table of runs shows the headings in this order."""

    epoch: int
    test_acc: float = metric("test/acc", final=True, heading="test acc %", hparam=True)
    # the last epoch's test accuracy with one evaluation-only option off (WITHOUT)
    test_acc_without_tta: float | None = _optional(
        "test/acc_without_tta", final=True, heading="without tta %"
    )
    test_acc_without_ema: float | None = _optional(
        "test/acc_without_ema", final=True, heading="without ema %"
    )
    # where a validation split is held out
    val_acc: float | None = _optional("val/acc", final=True, heading="val acc %", hparam=True)
    val_loss: float | None = _optional("val/loss")
    test_loss: float = metric("test/loss", final=True, hparam=True)
    train_loss: float = metric("train/loss", final=True, heading="train loss")
    train_acc: float = metric("train/acc")
    lr: float = metric("lr")
    train_seconds: float = metric("time/epoch_seconds")
    test_seconds: float = metric()
    images_per_second: float = metric("time/images_per_second")
    images: int = metric()

    def to_json(self) -> dict[str, Any]:
        """The row as metrics.json holds it: the fields that have a value."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Epoch:
        return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in row})

    def scalars(self) -> dict[str, float]:
        """{TensorBoard tag: value} of the fields that have both."""
        return {
            f.metadata["tag"]: getattr(self, f.name)
            for f in fields(self)
            if f.metadata.get("tag") and getattr(self, f.name) is not None
        }


@dataclass(kw_only=True)
class Headline:
    """The numbers a run is judged by, summarised from its history: each `final` metric's last
    value, the best validation accuracy, and the run's length and speed."""

    final: dict[str, float]  # Epoch field -> its last epoch's value (written as final_<field>)
    epochs_done: int = metric(heading="epochs")
    train_seconds: float = metric(heading="train s")
    images_per_second: float = metric(heading="img/s")
    wall_seconds: float = metric()  # of this process; a resumed run counts from resuming
    best_val_acc: float | None = _optional()

    @classmethod
    def of(cls, history: list[Epoch], wall_seconds: float) -> Headline | None:
        """The headline of a history so far, or None for an empty one."""
        if not history:
            return None
        last = history[-1]
        train_seconds = sum(row.train_seconds for row in history)
        final = {
            f.name: getattr(last, f.name)
            for f in fields(last)
            if f.metadata.get("final") and getattr(last, f.name) is not None
        }
        return cls(
            final=final,
            epochs_done=len(history),
            train_seconds=train_seconds,
            images_per_second=sum(r.images_per_second * r.train_seconds for r in history)
            / train_seconds,
            wall_seconds=wall_seconds,
            best_val_acc=max(r.val_acc for r in history) if last.val_acc is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        flat = {FINAL + name: value for name, value in self.final.items()}
        for f in fields(self):
            if f.name != "final" and getattr(self, f.name) is not None:
                flat[f.name] = getattr(self, f.name)
        return flat

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Headline | None:
        final = {k.removeprefix(FINAL): v for k, v in record.items() if k.startswith(FINAL)}
        if not final and "epochs_done" not in record:
            return None
        own = {f.name: record.get(f.name) for f in fields(cls) if f.name != "final"}
        return cls(final=final, **own)


@dataclass
class Run:
    """A run's record: what ran (config, job, software), on what (device, data, network), how
    it went (status, history, headline) and the end-of-run results. Written as metrics.json
    from the run's first moment (status running) to its last."""

    status: str = RUNNING
    error: str | None = None
    # the job: its config fingerprint, Hydra's group choices and typed overrides
    seed: int | None = None
    epochs: int | None = None
    config_hash: str | None = None
    choices: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    # the software and the device
    git_commit: str | None = None
    torch: str | None = None
    cuda: str | None = None
    device: str | None = None
    world_size: int | None = None
    backend: str | None = None  # the process group's, under DDP
    precision: str | None = None
    precision_reason: str | None = None
    # the data
    data_source: str | None = None
    train_images: int | None = None
    test_images: int | None = None
    class_names: list[str] | None = None
    # for telling a run that did not train from one that learned (the report)
    test_class_counts: list[int] | None = None
    # the network
    model: str | None = None
    parameters: int | None = None
    macs: int | None = None
    # how it went
    history: list[Epoch] = field(default_factory=list)
    headline: Headline | None = None
    # at the end
    confusion_matrix: list[list[int]] | None = None
    system: dict[str, Any] | None = None  # the system monitor's summary
    rank_weight_checksums: list[str] | None = None  # one per DDP replica: equal if in step
    record_version: int = RECORD_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    def to_json(self) -> dict[str, Any]:
        """metrics.json: every field, the history's rows and the headline numbers flat."""
        record = {}
        for f in fields(self):
            if f.name not in ("history", "headline", "extra"):
                record[f.name] = getattr(self, f.name)
        record["history"] = [row.to_json() for row in self.history]
        if self.headline is not None:
            record.update(self.headline.to_json())
        return {**self.extra, **record}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Run:
        """A record of any version (1 to RECORD_VERSION) as typed data."""
        own = {f.name for f in fields(cls)} - {"history", "headline", "extra", "record_version"}
        headline = Headline.from_json(record)
        summarised = set(headline.to_json()) if headline else set()
        run = cls(
            **{k: v for k, v in record.items() if k in own},
            history=[Epoch.from_json(row) for row in record.get("history") or []],
            headline=headline,
            record_version=record.get("record_version", 1),
            extra={
                k: v
                for k, v in record.items()
                if k not in own | summarised | {"history", "record_version"}
            },
        )
        if isinstance(run.overrides, list):  # before version 3: ["key=value", ...]
            from cnnexp.config import typed_overrides

            run.overrides = typed_overrides(run.overrides)
        return run

    def not_a_number(self) -> str | None:
        """The first value of the record that its schema says is a number and is not (a
        damaged or foreign record), as 'key is value'; else None."""
        found = _numbers(self, "")
        for i, row in enumerate(self.history, 1):
            found += _numbers(row, f"history[{i}].")
        if self.headline is not None:
            found += _numbers(self.headline, "") + [
                (FINAL + k, v) for k, v in self.headline.final.items()
            ]
        for key, value in found:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                return f"{key} is {value!r:.40}"
        return None

    def final(self, name: str) -> Any:
        """A metric's last-epoch value from the headline (final_<name>), or None."""
        return self.headline.final.get(name) if self.headline else None


NUMBER = {"int", "float", "int | None", "float | None"}  # a field's type, as written above


def _numbers(record: Any, prefix: str) -> list[tuple[str, Any]]:
    """(key, value) of the fields of a record's dataclass that are typed as numbers."""
    return [(prefix + f.name, getattr(record, f.name)) for f in fields(record) if f.type in NUMBER]


def headline_columns() -> list[str]:
    """The headline's keys in metrics.json (and runs.csv), in the order the report shows them."""
    finals = [FINAL + f.name for f in fields(Epoch) if f.metadata.get("final")]
    return [*finals, *(f.name for f in fields(Headline) if f.name != "final")]


def headings() -> dict[str, str]:
    """{metrics.json key: the report's heading} of the headline numbers that have one."""
    finals = {
        FINAL + f.name: f.metadata["heading"] for f in fields(Epoch) if f.metadata.get("heading")
    }
    own = {f.name: f.metadata["heading"] for f in fields(Headline) if f.metadata.get("heading")}
    return {**finals, **own}


# The per-epoch metrics read by name (Epoch's fields, in each epoch of a run's history), and
# the headline numbers the report decides on, by their metrics.json keys (final_<Epoch field>).
ACC, LOSS = "test_acc", "train_loss"
TEST_ACC, TRAIN_LOSS, VAL_ACC = "final_test_acc", "final_train_loss", "final_val_acc"
assert {ACC, LOSS} <= {f.name for f in fields(Epoch)}, "an epoch's metric was renamed"
assert (TEST_ACC, TRAIN_LOSS) == (FINAL + ACC, FINAL + LOSS), "the headline names its epoch's"
assert {TEST_ACC, TRAIN_LOSS, VAL_ACC} <= set(headline_columns()), "a headline key was renamed"


def without_key(option: str) -> str:
    """The headline key of the test accuracy of a run's last epoch with `option` turned off."""
    return FINAL + WITHOUT[option]


def hparam_metrics() -> list[str]:
    """The headline numbers logged to TensorBoard's HParams view."""
    return [FINAL + f.name for f in fields(Epoch) if f.metadata.get("hparam")]


# --- reading a record, and the one rule of a run that did not train ---------------------------


# What to do about a damaged record, where the one reading it cannot go on without it.
RECORD_FIX = "move it out of the run folder (the run then starts over there), or delete that folder"


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The run's metrics.json as JSON, or None where there is none; DamagedFileError where it
    cannot be read."""
    return read_json(Path(run_dir) / METRICS, RECORD_FIX)


def read_record(run_dir: Path) -> Run | None:
    """The run's metrics.json as a Run, or None where there is none; DamagedFileError where it
    cannot be read or is not a run record."""
    found = read_metrics(run_dir)
    if found is None:
        return None
    path = Path(run_dir) / METRICS
    try:
        run = Run.from_json(found)
    except (TypeError, AttributeError, ValueError) as err:
        raise DamagedFileError(path, f"not a run record: {err}", RECORD_FIX) from None
    if run.status not in STATUSES:
        raise DamagedFileError(path, f"not a run record: status {run.status!r}", RECORD_FIX)
    if wrong := run.not_a_number():
        raise DamagedFileError(path, f"not a run record: {wrong}, not a number", RECORD_FIX)
    return run


def chance_reason(record: Run | dict[str, Any]) -> str | None:
    """Why a completed run counts as not having trained, or None if it learned something:
    test accuracy no better than always answering the most frequent test class, or a final
    training loss near ln(classes), the loss of a network that outputs the same for all."""
    run = record if isinstance(record, Run) else Run.from_json(record)
    acc, loss = run.final(ACC), run.final(LOSS)
    counts = run.test_class_counts or [sum(row) for row in run.confusion_matrix or []]
    classes = len(counts) or len(run.class_names or []) or None
    if acc is None or not classes:
        return None
    majority = max(counts) / sum(counts) if counts else 1 / classes
    if acc <= majority + CHANCE_MARGIN:
        return (
            f"test accuracy {100 * acc:.2f}% is chance: always answering the most frequent "
            f"class scores {100 * majority:.2f}%"
        )
    if loss is not None and loss >= math.log(classes) - LOSS_MARGIN:
        return (
            f"final training loss {loss:.3f} is ln({classes}) = {math.log(classes):.3f}, "
            "the loss of a network that gives every image the same answer"
        )
    return None
