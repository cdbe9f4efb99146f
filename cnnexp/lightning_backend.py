"""`trainer=lightning`: the same run through PyTorch Lightning's Trainer.

The model, data (our device-resident loader), optimizer, schedule, augmentation, weight averaging
and precision are the ones `train()` built; Lightning runs the optimisation loop, mixed
precision, DDP (under torchrun) and checkpoints. After each training epoch our own evaluation
and record (`record_epoch`) run, so metrics.json, the report and the studies read a Lightning run
exactly as a native one. Scalars go to TensorBoard through Lightning's logger, under our tags.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from cnnexp import distributed
from cnnexp.checkpoint import refuse_other_config
from cnnexp.engine import EpochStats, sum_over_ranks
from cnnexp.errors import ConfigError
from cnnexp.loader import DeviceLoader
from cnnexp.lookahead import Lookahead
from cnnexp.precision import Precision
from cnnexp.tracking import SCALAR_TAGS

try:
    import lightning as L
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger
except ImportError as err:  # the optional extra is missing
    raise ConfigError(
        'trainer=lightning needs PyTorch Lightning: pip install -e ".[lightning]" '
        "(or pip install lightning), or use trainer=native"
    ) from err

log = logging.getLogger(__name__)

CHECKPOINT = "lightning.ckpt"  # in the run folder; a run started again resumes from it
PRECISION = {"bf16": "bf16-mixed", "fp16": "16-mixed", "fp32": "32-true"}


def resumable(run_dir: Path) -> bool:
    """True where the run folder holds a Lightning checkpoint to resume from."""
    return (Path(run_dir) / CHECKPOINT).exists()


class Classifier(L.LightningModule):
    """Our network and its training state, as Lightning drives it."""

    def __init__(
        self,
        model: nn.Module,
        loader: DeviceLoader,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        loss_fn: nn.Module,
        ema: torch.optim.swa_utils.AveragedModel | None,
        lookahead: Lookahead | None,
        history: list[dict[str, Any]],
        config_hash: str,
    ):
        super().__init__()
        self.model, self.loader, self.loss_fn = model, loader, loss_fn
        self.optimizer, self.scheduler = optimizer, scheduler
        self.ema, self.lookahead = ema, lookahead
        self.history, self.config_hash = history, config_hash
        self.epoch_lr = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def configure_optimizers(self) -> dict[str, Any]:
        schedule = {"scheduler": self.scheduler, "interval": "step"}  # our schedules are per step
        return {"optimizer": self.optimizer, "lr_scheduler": schedule}

    def on_train_epoch_start(self) -> None:
        self.model.train()  # our evaluation after the last epoch left it in eval mode
        epoch = self.current_epoch
        self.loader.set_epoch(epoch)  # our loader shuffles and augments by (seed, epoch)
        if hasattr(self.model, "set_epoch"):
            self.model.set_epoch(epoch)
        self.epoch_lr = self.optimizer.param_groups[0]["lr"]
        # Sums on the device, as in our engine: no host sync per step.
        self.sums = torch.zeros(2, device=self.device, dtype=torch.float64)
        self.count = 0
        self.started = time.perf_counter()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        self.sums[0] += loss.detach().double() * len(y)
        self.sums[1] += (logits.argmax(1) == y).sum()
        self.count += len(y)
        return loss

    def on_train_batch_end(self, *_: Any) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        if self.lookahead is not None:
            self.lookahead.step()

    def epoch_stats(self) -> EpochStats:
        """The epoch's mean loss and accuracy over every rank's images, and its time."""
        count = torch.tensor(self.count, device=self.device)
        loss_sum, correct, n = sum_over_ranks(self.sums[0], self.sums[1], count)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - self.started
        return EpochStats(loss_sum / max(n, 1), correct / max(n, 1), int(n), seconds)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cnnexp"] = {
            "history": self.history,
            "config_hash": self.config_hash,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "lookahead": self.lookahead.state_dict() if self.lookahead is not None else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ours = checkpoint.get("cnnexp", {})
        refuse_other_config(ours.get("config_hash"), self.config_hash, "the Lightning checkpoint")
        self.history[:] = ours["history"]
        if self.ema is not None:
            self.ema.load_state_dict(ours["ema"])
        if self.lookahead is not None:
            self.lookahead.load_state_dict(ours["lookahead"])


class EpochRecord(Callback):
    """After each training epoch: our evaluation and record (before the checkpoint is saved)."""

    def __init__(self, record_epoch: Callable[[int, EpochStats, float], None]):
        self.record_epoch = record_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, module: Classifier) -> None:
        stats = module.epoch_stats()
        self.record_epoch(trainer.current_epoch, stats, module.epoch_lr)
        row = module.history[-1]
        if trainer.logger is not None:
            scalars = {tag: row[key] for key, tag in SCALAR_TAGS.items() if key in row}
            trainer.logger.log_metrics(scalars, step=row["epoch"])


def _quiet_lightning() -> None:
    """Keep Lightning's banners (accelerator summary, tips) out of the run's output: our own
    log says what the run is doing. Its warnings still show."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # The run folder holds our files beside the checkpoint: that is intended.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def fit(
    cfg: DictConfig,
    *,
    run_dir: Path,
    config_hash: str,
    model: nn.Module,
    train_loader: DeviceLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    precision: Precision,
    ema: torch.optim.swa_utils.AveragedModel | None,
    lookahead: Lookahead | None,
    history: list[dict[str, Any]],
    record_epoch: Callable[[int, EpochStats, float], None],
    progress: bool,
) -> None:
    """Train `cfg.epochs` epochs with Lightning's Trainer, resuming from the run folder."""
    if cfg.compile:
        raise ConfigError(
            "compile=true is not supported with trainer=lightning; use "
            "trainer=native or compile=false"
        )
    _quiet_lightning()
    module = Classifier(
        model, train_loader, optimizer, scheduler, loss_fn, ema, lookahead, history, config_hash
    )
    trainer = _trainer(cfg.epochs, run_dir, train_loader, precision, record_epoch, progress)
    checkpoint = run_dir / CHECKPOINT if resumable(run_dir) else None
    if checkpoint and trainer.is_global_zero:
        log.info("resuming %s from %s", run_dir, checkpoint.name)
    trainer.fit(module, train_dataloaders=train_loader, ckpt_path=checkpoint)


def _trainer(
    epochs: int,
    run_dir: Path,
    train_loader: DeviceLoader,
    precision: Precision,
    record_epoch: Callable[[int, EpochStats, float], None],
    progress: bool,
) -> L.Trainer:
    """Lightning's Trainer on our device, process group, precision, TensorBoard folder and
    checkpoint file, with our record first among its callbacks."""
    device = train_loader.device
    if distributed.active():  # under torchrun: Lightning joins the process group torchrun made
        local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        devices, nodes = local, max(1, distributed.rank_and_world()[1] // local)
    else:
        devices, nodes = ([device.index or 0] if device.type == "cuda" else 1), 1
    return L.Trainer(
        accelerator="gpu" if device.type == "cuda" else device.type,
        devices=devices,
        num_nodes=nodes,
        strategy="ddp" if distributed.active() else "auto",
        precision=PRECISION[precision.name],
        max_epochs=epochs,
        logger=TensorBoardLogger(
            save_dir=str(run_dir), name="tb", version="", default_hp_metric=False
        ),
        callbacks=[
            EpochRecord(record_epoch),  # first: the record, then the checkpoint
            ModelCheckpoint(
                dirpath=run_dir,
                filename=CHECKPOINT.removesuffix(".ckpt"),
                save_on_train_epoch_end=True,
                enable_version_counter=False,
            ),
        ],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,  # our loader shards by rank itself
        log_every_n_steps=max(1, len(train_loader)),
        default_root_dir=str(run_dir),
    )
