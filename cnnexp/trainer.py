"""The trainer protocol: one training state, one end-of-epoch step, and our own trainer.

`train()` builds the `TrainingState` (everything a resumed run must get back) and the `EpochEnd`
(test, validate, record, track) from explicit values, and hands both to the configured trainer
(`conf/trainer/*.yaml`'s `_target_`): `Native` here, `cnnexp.lightning_backend.Lightning`. Each
is a `fit` over that state; each checkpoints it with `state_dict()` and resumes it with `load()`.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from cnnexp import distributed
from cnnexp.checkpoint import (
    load_checkpoint,
    refuse_other_config,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from cnnexp.engine import PLAIN, EpochStats, Plain, evaluate, train_one_epoch
from cnnexp.errors import ConfigError, DivergedError
from cnnexp.loader import DeviceLoader
from cnnexp.lookahead import Lookahead
from cnnexp.precision import Precision
from cnnexp.record import RunRecord
from cnnexp.schema import WITHOUT, Epoch

log = logging.getLogger(__name__)


SAVED = ("model", "optimizer", "scheduler", "epoch", "history", "rng")  # in every state_dict


def _state(part: Any) -> Any:
    return part.state_dict() if part is not None else None


@dataclass
class TrainingState:
    """What changes as a run trains, and so what a resumed run must get back: the network, the
    optimizer and its per-step schedule, the optional weight averages (EMA, lookahead) and fp16
    gradient scaler, the epochs done and their history, and the random states."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss: nn.Module  # the training loss (made by the config, so not saved)
    precision: Precision
    config_hash: str
    ema: torch.optim.swa_utils.AveragedModel | None = None
    lookahead: Lookahead | None = None
    scaler: torch.amp.GradScaler | None = None
    history: list[Epoch] = field(default_factory=list)  # the run record's, one row per epoch
    # the composed config, so that a checkpoint read alone can build its network again
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    @property
    def eval_model(self) -> nn.Module:
        """The network a test pass evaluates: the EMA's copy where there is one."""
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        """Everything `load` needs, as a checkpoint holds it."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": _state(self.ema),
            "lookahead": _state(self.lookahead),
            "scaler": _state(self.scaler),
            "precision": self.precision,
            "epoch": self.epochs_done - 1,  # the last finished epoch, counted from 0
            "history": [row.to_json() for row in self.history],
            "config_hash": self.config_hash,
            "config": self.config,
            "rng": rng_states(),
        }

    def load(self, saved: dict[str, Any], where: str) -> None:
        """Take back what `state_dict` saved (`where`: the checkpoint, for the refusal of one
        saved by another config)."""
        refuse_other_config(saved.get("config_hash"), self.config_hash, where)
        missing = sorted(set(SAVED) - set(saved))
        if missing:  # a Lightning checkpoint of before this layout kept only part of it
            raise ConfigError(
                f"{where} lacks {', '.join(missing)}: an older cnnexp wrote it. Delete it to "
                "train the run afresh"
            )
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(saved["ema"])
        if self.lookahead is not None:
            self.lookahead.load_state_dict(saved["lookahead"])
        if self.scaler is not None and saved.get("scaler") is not None:
            self.scaler.load_state_dict(saved["scaler"])
        set_rng_states(saved["rng"])
        # In place: the run record holds the same list.
        self.history[:] = [Epoch.from_json(row) for row in saved["history"]]
        if len(self.history) != saved["epoch"] + 1:
            raise ConfigError(f"{where} is inconsistent (history and epoch differ); delete it")


@dataclass
class EpochEnd:
    """After each training epoch: check the loss, test (and validate) the network, and put the
    epoch on record, in the log and in TensorBoard. Both trainers call it."""

    state: TrainingState
    record: RunRecord
    test: DeviceLoader
    val: DeviceLoader | None
    epochs: int
    tta: Plain  # the last epoch's test-time augmentation (conf/tta/)
    max_loss: float
    probe: torch.Tensor  # the fixed test images whose feature maps TensorBoard shows
    test_loss: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    predictions: torch.Tensor | None = None  # the last epoch's, on this rank

    def start(self, fresh: bool) -> None:
        """Before the first epoch this process trains (`fresh`: of a run not resumed)."""
        self.record.tracker.start(self.state.model, self.probe, fresh=fresh)

    def __call__(self, epoch: int, trained: EpochStats, lr: float) -> Epoch:
        """Test the network after training epoch `epoch` (from 0), then record and log it."""
        if not math.isfinite(trained.loss) or trained.loss > self.max_loss:
            raise DivergedError(
                f"training loss is {trained.loss} in epoch {epoch + 1}: the run diverged. "
                "Lower optimizer.lr or use a schedule with warm-up"
            )
        # Test-time augmentation multiplies the cost of a test pass (up to 6x): only the last
        # epoch pays for it; earlier epochs' accuracy is the network's own.
        last = epoch + 1 == self.epochs
        tta = self.tta if last else PLAIN
        # The last test pass keeps its predictions for the end-of-run pictures.
        tested = self._evaluate(self.state.eval_model, self.test, tta, keep=last)
        validated = self._evaluate(self.state.eval_model, self.val, tta) if self.val else None
        row = Epoch(
            epoch=epoch + 1,
            train_loss=trained.loss,
            train_acc=trained.acc,
            test_loss=tested.loss,
            test_acc=tested.acc,
            lr=lr,
            train_seconds=trained.seconds,
            test_seconds=tested.seconds,
            images_per_second=trained.images / trained.seconds,
            images=trained.images,
            **(self.without_eval_only() if last else {}),
            **({"val_loss": validated.loss, "val_acc": validated.acc} if validated else {}),
        )
        if last:
            self.predictions = tested.predictions
        self.state.history.append(row)
        self.record.tracker.epoch(row, self.state.model)
        if self.record.is_main:
            log.info(
                "epoch %d/%d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  %.1f s  "
                "%.0f img/s",
                *(row.epoch, self.epochs, row.train_loss, row.train_acc),
                *(row.test_loss, row.test_acc, row.train_seconds, row.images_per_second),
            )
            self.record.save()
        return row

    def _evaluate(
        self, model: nn.Module, loader: DeviceLoader, tta: Plain, keep: bool = False
    ) -> EpochStats:
        autocast = self.state.precision.autocast
        return evaluate(model, loader, self.test_loss, autocast, tta=tta, keep_predictions=keep)

    def without_eval_only(self) -> dict[str, float]:
        """The last epoch's test accuracy with each evaluation-only option that is on turned
        off alone (cnnexp.schema.EVAL_ONLY): the same trained network evaluated both ways, so
        the report measures the option in pairs rather than by training it again."""
        state = self.state
        variants = {}  # option -> (the network to test, its test-time augmentation)
        if self.tta.passes > 1:
            variants["tta"] = (state.eval_model, PLAIN)
        if state.ema is not None:
            variants["ema"] = (state.model, self.tta)
        return {
            WITHOUT[option]: self._evaluate(model, self.test, tta).acc
            for option, (model, tta) in variants.items()
        }


@dataclass
class Trainer(ABC):
    """A training loop, made from `conf/trainer/<name>.yaml` with the run's folder and whether
    to show progress: `fit` trains `state` to the run's last epoch, calling `end` after each
    epoch, and checkpoints `state` into `path` so that a run started again resumes."""

    devices: int = 1  # processes on this machine (cnnexp.__main__ starts torchrun for N > 1)
    compile: bool = False
    run_dir: str = "."
    progress: bool = False
    checkpoint: ClassVar[str]  # the file in the run folder that holds the state

    @property
    def path(self) -> Path:
        return Path(self.run_dir) / self.checkpoint

    @abstractmethod
    def fit(self, state: TrainingState, loader: DeviceLoader, end: EpochEnd) -> None:
        """Train `state` to `end.epochs`, resuming from `path` where it exists."""


@dataclass
class Native(Trainer):
    """`trainer=native`: our own loop. DDP under torchrun, optional compile, resume from the run
    folder, then an epoch at a time with a checkpoint after each."""

    checkpoint: ClassVar[str] = "checkpoint.pt"

    def fit(self, state: TrainingState, loader: DeviceLoader, end: EpochEnd) -> None:
        model = state.model
        train_model = model
        if distributed.active():  # under torchrun, even as one process
            device = next(model.parameters()).device
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        if self.compile:
            train_model = torch.compile(train_model)
        path = self.path
        if path.exists():
            state.load(load_checkpoint(path), f"the checkpoint in {self.run_dir}")
            if end.record.is_main:
                log.info(
                    "resuming %s from epoch %d of %d",
                    self.run_dir,
                    state.epochs_done + 1,
                    end.epochs,
                )
        end.start(fresh=state.epochs_done == 0)
        for epoch in range(state.epochs_done, end.epochs):
            loader.set_epoch(epoch)
            if hasattr(model, "set_epoch"):  # a network whose training changes by epoch
                model.set_epoch(epoch)
            lr = state.optimizer.param_groups[0]["lr"]
            trained = train_one_epoch(
                train_model,
                loader,
                state.optimizer,
                state.scheduler,
                state.loss,
                state.precision.autocast,
                ema=state.ema,
                lookahead=state.lookahead,
                scaler=state.scaler,
                progress=self.progress,
                desc=f"epoch {epoch + 1}/{end.epochs}",
            )
            end(epoch, trained, lr)
            if end.record.is_main:
                save_checkpoint(path, state.state_dict())
