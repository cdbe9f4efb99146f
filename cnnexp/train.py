"""train(cfg) -> metrics: the one place that reads the config and wires a run together."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim import Optimizer

from cnnexp import distributed
from cnnexp.checkpoint import (
    load_checkpoint,
    refuse_other_config,
    save_checkpoint,
    set_rng_states,
)
from cnnexp.config import validate
from cnnexp.data import (
    ImageTensorDataset,
    check_facts,
    load_splits,
    pad_images,
    split_off,
    take_subset,
)
from cnnexp.engine import EpochStats, evaluate, predict, train_one_epoch
from cnnexp.errors import STOP_SIGNALS, CnnexpError, ConfigError, DivergedError, StopSignal
from cnnexp.files import atomic_write_json
from cnnexp.loader import DeviceLoader
from cnnexp.lookahead import Lookahead
from cnnexp.models import count_macs, count_parameters
from cnnexp.precision import Precision, choose, step_timer
from cnnexp.record import METRICS, RunRecord, read_metrics
from cnnexp.schema import COMPLETED, FAILED, RECORD_VERSION, WITHOUT

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
PROBE_BATCH = 128  # images per step when precision=auto times bf16 against fp32 on a CPU


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device for `device=auto|cpu|cuda|mps`, refusing one this machine lacks."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                "device=cuda but PyTorch sees no CUDA GPU here; use device=auto or cpu"
            )
        return torch.device("cuda", local_rank)
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "device=mps but Apple's MPS backend is not available; use device=auto or cpu"
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed every generator a run draws from."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: DictConfig, run_dir: Path, job: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and test the configured network; write results into `run_dir`; return the metrics.

    A run folder that already holds a completed run is left as it is; one that holds a checkpoint
    is resumed from it.
    """
    rank, world_size, local_rank = distributed.rank_and_world()
    try:
        validate(cfg)
        device = resolve_device(cfg.device, local_rank)
    except ConfigError as err:  # on record in the run folder, so a sweep's report lists it
        previous = read_metrics(run_dir)
        if rank == 0 and not (previous and previous.get("status") == COMPLETED):
            failure = {
                "record_version": RECORD_VERSION,
                "status": FAILED,
                "error": str(err),
                **(job or {}),
            }
            atomic_write_json(failure, Path(run_dir) / METRICS)
        raise
    distributed.init(device)
    try:
        with stop_on_signals():
            return _train(cfg, Path(run_dir), job or {}, device, rank, world_size)
    finally:
        distributed.shutdown()


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the run trains, a stop signal raises StopSignal: the run record then says
    `interrupted` with the signal's name, and the checkpoint of the last finished epoch stays
    for the resume. Whoever listened for that signal before the run (submitit, which requeues
    the job) hears it once the run is on record. Handlers can only be set from the main
    thread; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def stop(number: int, frame: Any) -> None:
        caught.append(number)
        for other in STOP_SIGNALS:  # one stop: a second signal must not cut the record short
            signal.signal(other, signal.SIG_IGN)
        raise StopSignal(f"stopped by {signal.Signals(number).name}; start it again to resume")

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if caught and callable(previous[caught[0]]):
            name = signal.Signals(caught[0]).name
            log.warning(
                "stopped by %s; the run is on record, and the signal goes on to the "
                "handler that was there before it (submitit's requeues the job)",
                name,
            )
            previous[caught[0]](caught[0], None)


def _train(
    cfg: DictConfig, run_dir: Path, job: dict[str, Any], device: torch.device, rank: int, world: int
) -> dict[str, Any]:
    """The run as a story: skip it if done, open its record, then data, model, precision,
    optimization, the fit, and the end-of-run pictures."""
    run_dir = Path(distributed.broadcast(str(run_dir)))
    config_hash = _config_hash(cfg)
    done = _completed_run(run_dir, config_hash)
    if done is not None:
        return done
    is_main = rank == 0
    with RunRecord(cfg, run_dir, job, device, world, is_main, config_hash) as record:
        seed_everything(cfg.seed)
        # Our input shapes are fixed, so cuDNN's one-time search for the fastest kernels pays.
        torch.backends.cudnn.benchmark = device.type == "cuda"
        channels_last = device.type == "cuda" if cfg.channels_last == "auto" else cfg.channels_last
        data = _loaders(cfg, device, rank, world, bool(channels_last))
        _note_data(record, data)
        model = _model(cfg, data, device, bool(channels_last), record)
        precision = _choose_precision(cfg, device, model, data.train, is_main, run_dir / CHECKPOINT)
        record.metrics.update(precision=precision.name, precision_reason=precision.reason)
        parts = _optimization(cfg, model, precision, len(data.train))
        fit = Fit(
            cfg,
            run_dir,
            config_hash,
            model,
            data,
            parts,
            precision,
            record,
            progress=_progress(cfg, is_main),
        )
        if cfg.trainer.name == "lightning":
            fit.lightning()
        else:
            fit.native()
        record.metrics["backend"] = distributed.backend()  # Lightning may have set one up
        fit.finish(job)
    return record.metrics


def _completed_run(run_dir: Path, config_hash: str) -> dict[str, Any] | None:
    """The metrics of a completed run of this config in `run_dir` (nothing to do), or None;
    a completed run of another config is refused."""
    previous = read_metrics(run_dir)
    if not (previous and previous.get("status") == COMPLETED):
        return None
    refuse_other_config(previous.get("config_hash"), config_hash, f"the completed run in {run_dir}")
    log.info("%s already holds this completed run; nothing to do", run_dir)
    return previous


def _progress(cfg: DictConfig, is_main: bool) -> bool:
    """Progress bars: on a terminal by default, on rank 0 only."""
    return is_main and (sys.stderr.isatty() if cfg.progress == "auto" else bool(cfg.progress))


def _note_data(record: RunRecord, data: Loaders) -> None:
    test_set = data.test_set
    record.metrics.update(
        data_source=data.source,
        train_images=len(data.train_set),
        test_images=len(test_set),
        class_names=data.train_set.class_names,
        # for telling a run that did not train from one that learned (the report)
        test_class_counts=torch.bincount(
            test_set.labels, minlength=len(test_set.class_names)
        ).tolist(),
    )


def _model(
    cfg: DictConfig, data: Loaders, device: torch.device, channels_last: bool, record: RunRecord
) -> nn.Module:
    """The configured network, its size on record, initialised from data where it asks to be
    (a whitening stem), on the device."""
    model = build_model(cfg)
    d = cfg.data
    record.metrics.update(
        model=type(model).__name__,
        parameters=count_parameters(model),
        macs=count_macs(model, (d.channels, d.size, d.size)),
    )
    m = record.metrics
    if record.is_main:
        log.info(
            "%s: %s parameters, %s multiply-accumulates per image; data: %s (%d train, "
            "%d test); device %s",
            m["model"],
            f"{m['parameters']:,}",
            f"{m['macs']:,}",
            data.source,
            m["train_images"],
            m["test_images"],
            device,
        )
    if hasattr(model, "init_from_data"):  # data-dependent initialisation (a whitening stem)
        # 5000 random training images, the same for every seed.
        pick = torch.randperm(len(data.train_set), generator=torch.Generator().manual_seed(0))
        model.init_from_data(_normalised(data.train, pick[:5000]).float().cpu())
    return model.to(device, memory_format=torch.channels_last if channels_last else None)


@dataclass
class Optimization:
    """What changes the weights: optimizer and per-step schedule, and the optional weight
    averages (EMA, lookahead) and fp16 gradient scaler."""

    optimizer: Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: torch.optim.swa_utils.AveragedModel | None
    lookahead: Lookahead | None
    scaler: torch.amp.GradScaler | None
    eval_model: nn.Module  # the EMA's copy where there is one, else the model itself


def _optimization(
    cfg: DictConfig, model: nn.Module, precision: Precision, steps_per_epoch: int
) -> Optimization:
    optimizer = build_optimizer(cfg.optimizer, model, cfg.norm_bias_lr)
    total_steps = cfg.epochs * steps_per_epoch
    ema = None
    if cfg.ema is not None:
        ema = torch.optim.swa_utils.AveragedModel(
            model,
            multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema),
            use_buffers=True,
        )
    return Optimization(
        optimizer=optimizer,
        scheduler=build(cfg.schedule)(optimizer, total_steps=total_steps),
        ema=ema,
        lookahead=Lookahead(model, total_steps) if cfg.lookahead else None,
        scaler=precision.scaler(),
        eval_model=ema.module if ema is not None else model,
    )


@dataclass
class Fit:
    """The epoch loop, by our own trainer or by Lightning's, and what each epoch records."""

    cfg: DictConfig
    run_dir: Path
    config_hash: str
    model: nn.Module
    data: Loaders
    parts: Optimization
    precision: Precision
    record: RunRecord
    progress: bool

    def __post_init__(self) -> None:
        self.train_loss = nn.CrossEntropyLoss(label_smoothing=self.cfg.label_smoothing)
        self.test_loss = nn.CrossEntropyLoss()
        self.predictions: torch.Tensor | None = None  # the last epoch's, on this rank

    def record_epoch(self, epoch: int, trained: EpochStats, lr: float) -> None:
        """Test the network after a training epoch, then record and log the epoch."""
        cfg = self.cfg
        if not math.isfinite(trained.loss) or trained.loss > cfg.max_loss:
            raise DivergedError(
                f"training loss is {trained.loss} in epoch {epoch + 1}: the run diverged. "
                "Lower optimizer.lr or use a schedule with warm-up"
            )
        # Test-time augmentation multiplies the cost of a test pass (up to 6x): only the last
        # epoch pays for it; earlier epochs' accuracy is the network's own.
        last = epoch + 1 == cfg.epochs
        tta = cfg.tta if last else "none"
        model, autocast = self.parts.eval_model, self.precision.autocast
        # The last test pass keeps its predictions for the end-of-run pictures (finish).
        tested = evaluate(
            model, self.data.test, self.test_loss, autocast, tta=tta, keep_predictions=last
        )
        row = {
            "epoch": epoch + 1,
            "train_loss": trained.loss,
            "train_acc": trained.acc,
            "test_loss": tested.loss,
            "test_acc": tested.acc,
            "lr": lr,
            "train_seconds": trained.seconds,
            "test_seconds": tested.seconds,
            "images_per_second": trained.images / trained.seconds,
            "images": trained.images,
        }
        if last:
            self.predictions = tested.predictions
            row.update(self.without_eval_only())
        if self.data.val is not None:
            validated = evaluate(model, self.data.val, self.test_loss, autocast, tta=tta)
            row.update(val_loss=validated.loss, val_acc=validated.acc)
        self.record.metrics["history"].append(row)
        self.record.tracker.epoch(row, self.model)
        if self.record.is_main:
            log.info(
                "epoch %d/%d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  %.1f s  "
                "%.0f img/s",
                epoch + 1,
                cfg.epochs,
                trained.loss,
                trained.acc,
                tested.loss,
                tested.acc,
                trained.seconds,
                row["images_per_second"],
            )
            self.record.save()

    def without_eval_only(self) -> dict[str, float]:
        """The last epoch's test accuracy with each evaluation-only option that is on turned
        off alone (cnnexp.schema.EVAL_ONLY): the same trained network evaluated both ways, so
        the report measures the option in pairs rather than by training it again."""
        cfg, parts = self.cfg, self.parts
        variants = {}  # option -> (the network to test, its test-time augmentation)
        if cfg.tta != "none":
            variants["tta"] = (parts.eval_model, "none")
        if parts.ema is not None:
            variants["ema"] = (self.model, cfg.tta)
        return {
            WITHOUT[option]: evaluate(
                model, self.data.test, self.test_loss, self.precision.autocast, tta=tta
            ).acc
            for option, (model, tta) in variants.items()
        }

    def probe(self) -> torch.Tensor:
        """The fixed test images whose feature maps TensorBoard shows."""
        count = max(self.cfg.tracking.feature_map_images, 1)
        indices = torch.linspace(0, len(self.data.test_set) - 1, count).long()
        return _normalised(self.data.test, indices)

    def lightning(self) -> None:
        from cnnexp.lightning_backend import fit, resumable

        self.record.tracker.start(self.model, self.probe(), fresh=not resumable(self.run_dir))
        parts = self.parts
        fit(
            self.cfg,
            run_dir=self.run_dir,
            config_hash=self.config_hash,
            model=self.model,
            train_loader=self.data.train,
            optimizer=parts.optimizer,
            scheduler=parts.scheduler,
            loss_fn=self.train_loss,
            precision=self.precision,
            ema=parts.ema,
            lookahead=parts.lookahead,
            history=self.record.metrics["history"],
            record_epoch=self.record_epoch,
            progress=self.progress,
        )

    def native(self) -> None:
        """Our loop: DDP under torchrun, optional compile, resume from the run folder, then an
        epoch at a time with a checkpoint after each."""
        cfg, parts, model = self.cfg, self.parts, self.model
        train_model = model
        if distributed.active():  # under torchrun, even as one process
            device = next(model.parameters()).device
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        if cfg.compile:
            train_model = torch.compile(train_model)
        start = self.resume()
        self.record.tracker.start(model, self.probe(), fresh=start == 0)
        for epoch in range(start, cfg.epochs):
            self.data.train.set_epoch(epoch)
            if hasattr(model, "set_epoch"):  # a network whose training changes by epoch
                model.set_epoch(epoch)
            lr = parts.optimizer.param_groups[0]["lr"]
            trained = train_one_epoch(
                train_model,
                self.data.train,
                parts.optimizer,
                parts.scheduler,
                self.train_loss,
                self.precision.autocast,
                ema=parts.ema,
                lookahead=parts.lookahead,
                scaler=parts.scaler,
                progress=self.progress,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
            )
            self.record_epoch(epoch, trained, lr)
            if self.record.is_main:
                self.checkpoint(epoch)

    def resume(self) -> int:
        """Load the run folder's checkpoint, if any; returns the epoch to start from."""
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return 0
        parts = self.parts
        history, start = _resume(
            path,
            self.config_hash,
            self.model,
            parts.optimizer,
            parts.scheduler,
            parts.ema,
            parts.scaler,
            parts.lookahead,
        )
        self.record.metrics["history"] = history
        if self.record.is_main:
            log.info("resuming %s from epoch %d of %d", self.run_dir, start + 1, self.cfg.epochs)
        return start

    def finish(self, job: dict[str, Any]) -> None:
        """The end-of-run pictures (confusion matrix, misclassified images, hparams) from the
        last epoch's test predictions, and the replicas' checksums under DDP."""
        record = self.record
        record.save()
        predictions = self.test_predictions()
        if record.is_main:
            record.tracker.finish(
                record.metrics, predictions, self.data.test_set, hparam_values(self.cfg, job)
            )
        if distributed.active():  # DDP keeps the replicas identical; record the proof
            record.metrics["rank_weight_checksums"] = distributed.gather(
                weights_checksum(self.model)
            )

    def test_predictions(self) -> torch.Tensor:
        """The predicted class of every test image, in order, as the last epoch tested them:
        its kept predictions (each rank's shard interleaved back under DDP: rank r tested
        images r, r + world, ...), or a pass of its own when the last epoch ran in an earlier
        process."""
        if self.predictions is None:
            alone = {**self.data.args, "rank": 0, "world_size": 1}
            whole = DeviceLoader(
                self.data.test_set, batch_size=self.cfg.eval_batch_size, train=False, **alone
            )
            return predict(self.parts.eval_model, whole, self.precision.autocast, self.cfg.tta)
        shards = distributed.gather(self.predictions)
        predictions = torch.empty(len(self.data.test_set), dtype=torch.long)
        for rank, shard in enumerate(shards):
            predictions[rank :: len(shards)] = shard
        return predictions

    def checkpoint(self, epoch: int) -> None:
        parts = self.parts

        def state(part: Any) -> Any:
            return part.state_dict() if part is not None else None

        save_checkpoint(
            self.run_dir / CHECKPOINT,
            model=self.model.state_dict(),
            optimizer=state(parts.optimizer),
            scheduler=state(parts.scheduler),
            ema=state(parts.ema),
            precision=self.precision,
            scaler=state(parts.scaler),
            lookahead=state(parts.lookahead),
            epoch=epoch,
            history=self.record.metrics["history"],
            config=OmegaConf.to_container(self.cfg),
            config_hash=self.config_hash,
        )


@dataclass
class Loaders:
    """The run's data on the device: a loader per split, the splits and their source."""

    train: DeviceLoader
    test: DeviceLoader
    val: DeviceLoader | None
    train_set: ImageTensorDataset
    test_set: ImageTensorDataset
    source: str
    args: dict[str, Any]  # what every loader of this run shares (device, normalisation, rank)


def _loaders(
    cfg: DictConfig, device: torch.device, rank: int, world: int, channels_last: bool
) -> Loaders:
    """Read the configured splits and put each on the device as a loader."""
    d = cfg.data
    train_set, val_set, test_set, source = _datasets(d)
    if len(train_set) // world < cfg.batch_size:
        raise ConfigError(
            f"batch_size={cfg.batch_size} is larger than the {len(train_set) // world} "
            "training images each process gets; use a smaller batch_size"
        )
    args = dict(
        device=device,
        mean=list(d.mean),
        std=list(d.std),
        channels_last=channels_last,
        rank=rank,
        world_size=world,
    )
    train = DeviceLoader(
        train_set,
        batch_size=cfg.batch_size,
        train=True,
        translate=d.augment.translate,
        flip=d.augment.flip,
        seed=cfg.seed,
        **args,
    )
    test = DeviceLoader(test_set, batch_size=cfg.eval_batch_size, train=False, **args)
    val = None
    if val_set is not None:  # held out from training, for choosing hyperparameters
        val = DeviceLoader(val_set, batch_size=cfg.eval_batch_size, train=False, **args)
    return Loaders(train, test, val, train_set, test_set, source, args)


def _choose_precision(
    cfg: DictConfig,
    device: torch.device,
    model: nn.Module,
    loader: DeviceLoader,
    is_main: bool,
    checkpoint: Path,
) -> Precision:
    """`cfg.precision` resolved for this device and model; under DDP rank 0 decides for all. A
    resumed run keeps the precision it started with (a new timing could choose differently)."""
    precision = None
    if is_main and checkpoint.exists():
        precision = load_checkpoint(checkpoint).get("precision")
    if is_main and precision is None:
        probe_batch = torch.arange(min(cfg.batch_size, PROBE_BATCH, len(loader.labels)))
        measure = step_timer(model, _normalised(loader, probe_batch), cache_dir=cfg.data.cache)
        precision = choose(cfg.precision, device, measure)
    if is_main:
        log.info("precision %s (%s)", precision.name, precision.reason)
    return distributed.broadcast(precision)


def build_optimizer(node: DictConfig, model: nn.Module, norm_bias_lr: float) -> Optimizer:
    """The configured optimizer over the trainable parameters. Batch-norm biases get a learning
    rate `norm_bias_lr` times the rest (airbench94 uses 64) with the same decay per step (SGD
    decays by lr x weight_decay, so their weight_decay is divided by as much)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    norm_biases = {
        id(m.bias)
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None
    }
    groups = [
        {"params": [p for p in trainable if id(p) not in norm_biases]},
        {"params": [p for p in trainable if id(p) in norm_biases]},
    ]
    optimizer = build(node)([g for g in groups if g["params"]])
    if norm_bias_lr != 1.0 and len(optimizer.param_groups) == 2:
        biases = optimizer.param_groups[1]
        biases["lr"] *= norm_bias_lr
        biases["weight_decay"] = biases.get("weight_decay", 0.0) / norm_bias_lr
    return optimizer


def build_model(cfg: DictConfig) -> nn.Module:
    """The configured network with its pool and activation: the one place a model is made
    (training, tests and benchmarks alike)."""
    return build(cfg.model, pool=build(cfg.pool), activation=build(cfg.activation))


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`instantiate`, with a config mistake (or a misfit network) reported as our own error."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, CnnexpError):
            raise err.__cause__ from None
        raise ConfigError(
            f"{err}\nCheck the keys of that config group against its YAML file"
        ) from err


def _datasets(
    d: DictConfig,
) -> tuple[ImageTensorDataset, ImageTensorDataset | None, ImageTensorDataset, str]:
    """(train, validation or None, test, where they came from) as the data config describes."""
    train_set, test_set, source = load_splits(d)
    train_set = pad_images(take_subset(train_set, d.subset), d.pad)
    train_set, val_set = split_off(train_set, d.validation)
    test_set = pad_images(test_set, d.pad)
    for split, where in ((train_set, "train"), (test_set, "test")):
        check_facts(
            split,
            channels=d.channels,
            size=d.size,
            classes=d.classes,
            pad=d.pad,
            where=f"{source} ({where})",
        )
    return train_set, val_set, test_set, source


def _resume(
    path: Path,
    config_hash: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: torch.optim.swa_utils.AveragedModel | None,
    scaler: torch.amp.GradScaler | None,
    lookahead: Lookahead | None,
) -> tuple[list[dict[str, Any]], int]:
    """Load a checkpoint into the run's objects; returns (history so far, next epoch)."""
    ckpt = load_checkpoint(path)
    refuse_other_config(ckpt.get("config_hash"), config_hash, f"the checkpoint in {path.parent}")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if ema is not None:
        ema.load_state_dict(ckpt["ema"])
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    if lookahead is not None:
        lookahead.load_state_dict(ckpt["lookahead"])
    set_rng_states(ckpt["rng"])
    return ckpt["history"], ckpt["epoch"] + 1


def _normalised(loader: DeviceLoader, indices: torch.Tensor) -> torch.Tensor:
    """The loader's images at `indices`, normalised and un-augmented, on its device."""
    images = loader.images[indices.to(loader.device)].float() * loader.scale + loader.shift
    return images.contiguous(memory_format=loader.memory_format)


def hparam_values(cfg: DictConfig, job: dict[str, Any]) -> dict[str, Any]:
    """What distinguishes this run in a sweep: group choices, overrides, seed and lr."""
    values = {k: v for k, v in job.get("choices", {}).items() if not k.startswith("hydra")}
    values.update(job.get("overrides", {}))
    values.update(seed=cfg.seed, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.optimizer.lr)
    return values


def weights_checksum(model: nn.Module) -> str:
    """A hash of every weight and buffer, to compare replicas across processes."""
    digest = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _config_hash(cfg: DictConfig) -> str:
    """A fingerprint of everything that shapes the results (not progress bars or pictures):
    a run folder is resumed or skipped only for the same fingerprint."""
    config = OmegaConf.to_container(cfg)  # unresolved: the same on every machine
    shaping = {k: v for k, v in config.items() if k not in ("progress", "device", "tracking")}
    return hashlib.sha1(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]
