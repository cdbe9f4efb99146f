"""`trainer=lightning`: the same run through PyTorch Lightning's Trainer.

A trainer of the protocol in cnnexp.trainer: the training state (model, optimizer, schedule,
weight averages, precision) and data are the ones `train()` built; Lightning runs the
optimisation loop, mixed precision, DDP (under torchrun) and checkpoints, with our state inside
its checkpoint. After each training epoch the same `EpochEnd` as our own loop's runs, so
metrics.json, the report and the studies read a Lightning run exactly as a native one. Scalars
also go to TensorBoard through Lightning's logger, under the record's tags.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from cnnexp import distributed
from cnnexp.engine import EpochStats, sum_over_ranks
from cnnexp.errors import ConfigError
from cnnexp.loader import DeviceLoader
from cnnexp.precision import Precision
from cnnexp.trainer import EpochEnd, Trainer, TrainingState

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

PRECISION = {"bf16": "bf16-mixed", "fp16": "16-mixed", "fp32": "32-true"}


class Classifier(L.LightningModule):
    """Our network and its training state, as Lightning drives it."""

    def __init__(self, state: TrainingState, loader: DeviceLoader):
        super().__init__()
        self.model, self.state, self.loader = state.model, state, loader
        self.epoch_lr = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def configure_optimizers(self) -> dict[str, Any]:
        schedule = {"scheduler": self.state.scheduler, "interval": "step"}  # ours are per step
        return {"optimizer": self.state.optimizer, "lr_scheduler": schedule}

    def on_train_epoch_start(self) -> None:
        self.model.train()  # our evaluation after the last epoch left it in eval mode
        epoch = self.current_epoch
        self.loader.set_epoch(epoch)  # our loader shuffles and augments by (seed, epoch)
        if hasattr(self.model, "set_epoch"):
            self.model.set_epoch(epoch)
        self.epoch_lr = self.state.optimizer.param_groups[0]["lr"]
        # Sums on the device, as in our engine: no host sync per step.
        self.sums = torch.zeros(2, device=self.device, dtype=torch.float64)
        self.count = 0
        self.started = time.perf_counter()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)
        loss = self.state.loss(logits, y)
        self.sums[0] += loss.detach().double() * len(y)
        self.sums[1] += (logits.argmax(1) == y).sum()
        self.count += len(y)
        return loss

    def on_train_batch_end(self, *_: Any) -> None:
        if self.state.ema is not None:
            self.state.ema.update_parameters(self.model)
        if self.state.lookahead is not None:
            self.state.lookahead.step()

    def epoch_stats(self) -> EpochStats:
        """The epoch's mean loss and accuracy over every rank's images, and its time."""
        count = torch.tensor(self.count, device=self.device)
        loss_sum, correct, n = sum_over_ranks(self.sums[0], self.sums[1], count)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - self.started
        return EpochStats(loss_sum / max(n, 1), correct / max(n, 1), int(n), seconds)

    # Lightning keeps its own loop's state; ours rides along in its checkpoint, whole (Lightning
    # restores the weights and optimizer a second time, to the same values).
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cnnexp"] = self.state.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.state.load(checkpoint.get("cnnexp", {}), "the Lightning checkpoint")


class EpochRecord(Callback):
    """After each training epoch: our evaluation and record (before the checkpoint is saved)."""

    def __init__(self, end: EpochEnd):
        self.end = end

    def on_train_epoch_end(self, trainer: L.Trainer, module: Classifier) -> None:
        row = self.end(trainer.current_epoch, module.epoch_stats(), module.epoch_lr)
        if trainer.logger is not None:
            trainer.logger.log_metrics(row.scalars(), step=row.epoch)


def _quiet_lightning() -> None:
    """Keep Lightning's banners (accelerator summary, tips) out of the run's output: our own
    log says what the run is doing. Its warnings still show."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # The run folder holds our files beside the checkpoint: that is intended.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


@dataclass
class Lightning(Trainer):
    """`trainer=lightning`: Lightning's Trainer trains the state, resuming from the run folder."""

    checkpoint: ClassVar[str] = "lightning.ckpt"

    def __post_init__(self) -> None:
        if self.compile:
            raise ConfigError(
                "compile=true is not supported with trainer=lightning; use "
                "trainer=native or compile=false"
            )

    def fit(self, state: TrainingState, loader: DeviceLoader, end: EpochEnd) -> None:
        _quiet_lightning()
        path = self.path
        resumed = path.exists()
        end.start(fresh=not resumed)
        trainer = _trainer(end.epochs, path, loader, state.precision, end, self.progress)
        if resumed and trainer.is_global_zero:
            log.info("resuming %s from %s", self.run_dir, path.name)
        # Our state rides in the checkpoint (random states, the precision): our own file, so
        # full unpickling is safe, as cnnexp.checkpoint.load_checkpoint says.
        ckpt_path = path if resumed else None
        module = Classifier(state, loader)
        trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=False)


def _trainer(
    epochs: int,
    checkpoint: Path,
    train_loader: DeviceLoader,
    precision: Precision,
    end: EpochEnd,
    progress: bool,
) -> L.Trainer:
    """Lightning's Trainer on our device, process group, precision, TensorBoard folder and
    checkpoint file, with our record first among its callbacks."""
    device, run_dir = train_loader.device, checkpoint.parent
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
            EpochRecord(end),  # first: the record, then the checkpoint
            ModelCheckpoint(
                dirpath=run_dir,
                filename=checkpoint.stem,
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
