"""train(cfg) -> metrics: the one place that reads the config and wires a run together."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import sys
import time
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
from cnnexp.checkpoint import load_checkpoint, save_checkpoint, set_rng_states
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
from cnnexp.environment import environment, nvidia_smi
from cnnexp.errors import CnnexpError, ConfigError, DivergedError
from cnnexp.files import atomic_write_json
from cnnexp.loader import DeviceLoader
from cnnexp.lookahead import Lookahead
from cnnexp.models import count_macs, count_parameters
from cnnexp.monitor import SystemMonitor
from cnnexp.precision import Precision, choose, step_timer
from cnnexp.tracking import Tracker

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
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


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The run's metrics.json, or None where there is none."""
    path = Path(run_dir) / METRICS
    return json.loads(path.read_text()) if path.exists() else None


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
        if rank == 0 and not (previous and previous.get("status") == "completed"):
            failure = {"status": "failed", "error": str(err), **(job or {})}
            atomic_write_json(failure, Path(run_dir) / METRICS)
        raise
    distributed.init(device)
    try:
        return _train(cfg, Path(run_dir), job or {}, device, rank, world_size)
    finally:
        distributed.shutdown()


def _train(
    cfg: DictConfig, run_dir: Path, job: dict[str, Any], device: torch.device, rank: int, world: int
) -> dict[str, Any]:
    run_dir = Path(distributed.broadcast(str(run_dir)))
    is_main = rank == 0
    config_hash = _config_hash(cfg)
    previous = read_metrics(run_dir)
    if previous and previous.get("status") == "completed":
        if previous.get("config_hash") != config_hash:
            raise ConfigError(
                f"{run_dir} holds a completed run of a different config; choose a new "
                "hydra.run.dir (or hydra.sweep.dir), or delete that folder"
            )
        log.info("%s already holds this completed run; nothing to do", run_dir)
        return previous

    start_time = time.perf_counter()
    seed_everything(cfg.seed)
    # Our input shapes are fixed, so cuDNN's one-time search for the fastest kernels pays off.
    torch.backends.cudnn.benchmark = device.type == "cuda"
    channels_last = (
        device.type == "cuda" if cfg.channels_last == "auto" else bool(cfg.channels_last)
    )
    progress = sys.stderr.isatty() if cfg.progress == "auto" else bool(cfg.progress)
    progress = progress and is_main

    metrics, tracker, monitor = _open_record(cfg, run_dir, job, device, world, is_main)

    def save_metrics() -> None:
        if is_main:
            atomic_write_json(metrics, run_dir / METRICS)

    save_metrics()  # a run in progress is on record as running from the start
    try:
        # --- data: uint8 tensors on the device, plus the facts the model is built from
        d = cfg.data
        data = _loaders(cfg, device, rank, world, channels_last)
        train_set, test_set, source = data.train_set, data.test_set, data.source
        train_loader, test_loader, val_loader = data.train, data.test, data.val
        loader_args = data.args
        metrics.update(
            data_source=source,
            train_images=len(train_set),
            test_images=len(test_set),
            class_names=train_set.class_names,
            # for telling a run that did not train from one that learned (the report)
            test_class_counts=torch.bincount(
                test_set.labels, minlength=len(test_set.class_names)
            ).tolist(),
        )

        # --- network, optimizer, schedule
        model = build_model(cfg)
        in_shape = (d.channels, d.size, d.size)
        metrics.update(
            model=type(model).__name__,
            parameters=count_parameters(model),
            macs=count_macs(model, in_shape),
        )
        if is_main:
            log.info(
                "%s: %s parameters, %s multiply-accumulates per image; data: %s (%d train, "
                "%d test); device %s",
                metrics["model"],
                f"{metrics['parameters']:,}",
                f"{metrics['macs']:,}",
                source,
                len(train_set),
                len(test_set),
                device,
            )
        if hasattr(model, "init_from_data"):  # data-dependent initialisation (a whitening stem)
            # 5000 random training images, the same for every seed.
            pick = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))
            model.init_from_data(_normalised(train_loader, pick[:5000]).float().cpu())
        model = model.to(device, memory_format=torch.channels_last if channels_last else None)
        ckpt_path = run_dir / CHECKPOINT
        precision = _choose_precision(cfg, device, model, train_loader, is_main, ckpt_path)
        autocast, scaler = precision.autocast, precision.scaler()
        metrics.update(precision=precision.name, precision_reason=precision.reason)
        optimizer = build_optimizer(cfg.optimizer, model, cfg.norm_bias_lr)
        total_steps = cfg.epochs * len(train_loader)
        lookahead = Lookahead(model, total_steps) if cfg.lookahead else None
        scheduler = build(cfg.schedule)(optimizer, total_steps=total_steps)
        ema = None
        if cfg.ema is not None:
            ema = torch.optim.swa_utils.AveragedModel(
                model,
                multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema),
                use_buffers=True,
            )
        eval_model = ema.module if ema is not None else model
        train_loss = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        test_loss = nn.CrossEntropyLoss()
        lightning = cfg.trainer.name == "lightning"

        def record_epoch(epoch: int, tr: EpochStats, lr: float) -> None:
            """Test the network after a training epoch, then record and log the epoch."""
            if not math.isfinite(tr.loss) or tr.loss > cfg.max_loss:
                raise DivergedError(
                    f"training loss is {tr.loss} in epoch {epoch + 1}: the run diverged. "
                    "Lower optimizer.lr or use a schedule with warm-up"
                )
            # Test-time augmentation multiplies the cost of a test pass (up to 6x): only the
            # last epoch pays for it; earlier epochs' accuracy is the network's own.
            tta = cfg.tta if epoch + 1 == cfg.epochs else "none"
            te = evaluate(eval_model, test_loader, test_loss, autocast, tta=tta)
            row = {"epoch": epoch + 1, "train_loss": tr.loss, "train_acc": tr.acc,
                   "test_loss": te.loss, "test_acc": te.acc, "lr": lr,
                   "train_seconds": tr.seconds, "test_seconds": te.seconds,
                   "images_per_second": tr.images / tr.seconds, "images": tr.images}  # fmt: skip
            if val_loader is not None:
                va = evaluate(eval_model, val_loader, test_loss, autocast, tta=tta)
                row.update(val_loss=va.loss, val_acc=va.acc)
            metrics["history"].append(row)
            tracker.epoch(row, model)
            if is_main:
                log.info("epoch %d/%d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  "
                         "%.1f s  %.0f img/s", epoch + 1, cfg.epochs, tr.loss, tr.acc, te.loss,
                         te.acc, tr.seconds, row["images_per_second"])  # fmt: skip
                _summarise(metrics, time.perf_counter() - start_time)
                save_metrics()

        probe = torch.linspace(0, len(test_set) - 1, max(cfg.tracking.feature_map_images, 1)).long()
        if lightning:
            from cnnexp.lightning_backend import fit, resumable

            resumed = resumable(run_dir)
            tracker.start(model, _normalised(test_loader, probe), fresh=not resumed)
            fit(cfg, run_dir=run_dir, config_hash=config_hash, model=model,
                train_loader=train_loader, optimizer=optimizer, scheduler=scheduler,
                loss_fn=train_loss, precision=precision, ema=ema, lookahead=lookahead,
                history=metrics["history"], record_epoch=record_epoch,
                progress=progress)  # fmt: skip
            metrics["backend"] = distributed.backend()
        else:
            metrics["backend"] = distributed.backend()
            train_model = model
            if distributed.active():  # under torchrun, even as one process
                train_model = nn.parallel.DistributedDataParallel(
                    model, device_ids=[device.index] if device.type == "cuda" else None
                )
            if cfg.compile:
                train_model = torch.compile(train_model)
            start_epoch = 0
            if ckpt_path.exists():
                metrics["history"], start_epoch = _resume(
                    ckpt_path, config_hash, model, optimizer, scheduler, ema, scaler, lookahead
                )
                if is_main:
                    log.info("resuming %s from epoch %d of %d", run_dir, start_epoch + 1,
                             cfg.epochs)  # fmt: skip
            tracker.start(model, _normalised(test_loader, probe), fresh=start_epoch == 0)
            for epoch in range(start_epoch, cfg.epochs):
                train_loader.set_epoch(epoch)
                if hasattr(model, "set_epoch"):  # a network whose training changes by epoch
                    model.set_epoch(epoch)
                lr = optimizer.param_groups[0]["lr"]
                tr = train_one_epoch(train_model, train_loader, optimizer, scheduler, train_loss,
                                     autocast, ema=ema, lookahead=lookahead, scaler=scaler,
                                     progress=progress,
                                     desc=f"epoch {epoch + 1}/{cfg.epochs}")  # fmt: skip
                record_epoch(epoch, tr, lr)
                if is_main:
                    save_checkpoint(
                        ckpt_path,
                        model=model.state_dict(),
                        optimizer=optimizer.state_dict(),
                        scheduler=scheduler.state_dict(),
                        ema=ema.state_dict() if ema is not None else None,
                        precision=precision,
                        scaler=scaler.state_dict() if scaler is not None else None,
                        lookahead=lookahead.state_dict() if lookahead is not None else None,
                        epoch=epoch,
                        history=metrics["history"],
                        config=OmegaConf.to_container(cfg),
                        config_hash=config_hash,
                    )
        _summarise(metrics, time.perf_counter() - start_time)
        if is_main:
            whole_test = DeviceLoader(
                test_set,
                batch_size=cfg.eval_batch_size,
                train=False,
                **{**loader_args, "rank": 0, "world_size": 1},
            )
            tracker.finish(
                metrics,
                predict(eval_model, whole_test, autocast),
                test_set,
                hparam_values(cfg, job),
            )
        if distributed.active():  # DDP keeps the replicas identical; record the proof
            metrics["rank_weight_checksums"] = distributed.gather(weights_checksum(model))
        metrics["status"] = "completed"
    except BaseException as err:
        metrics["status"] = (
            "diverged"
            if isinstance(err, DivergedError)
            else ("interrupted" if isinstance(err, KeyboardInterrupt) else "failed")
        )
        metrics["error"] = (
            f"{type(err).__name__}: {err}" if not isinstance(err, CnnexpError) else str(err)
        )
        raise
    finally:
        if monitor is not None:
            metrics["system"] = monitor.stop()
        _summarise(metrics, time.perf_counter() - start_time)
        save_metrics()
        tracker.close()
    return metrics


def _open_record(
    cfg: DictConfig,
    run_dir: Path,
    job: dict[str, Any],
    device: torch.device,
    world: int,
    is_main: bool,
) -> tuple[dict[str, Any], Tracker, SystemMonitor | None]:
    """The run's record from its first moment: the metrics dict, TensorBoard and, on rank 0,
    env.json, nvidia-smi.txt and the system monitor."""
    env = environment()
    metrics: dict[str, Any] = {
        "status": "running",
        "error": None,
        "device": str(device),
        "world_size": world,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "config_hash": _config_hash(cfg),
        "choices": job.get("choices", {}),
        "overrides": job.get("overrides", []),
        "git_commit": env["git_commit"],
        "torch": env["torch"],
        "cuda": env["cuda"],
        "history": [],
    }
    t = cfg.tracking
    tracker = Tracker(run_dir, enabled=is_main, settings=t, epochs=cfg.epochs)
    monitor = None
    if is_main:
        atomic_write_json(env, run_dir / "env.json")
        smi = nvidia_smi()
        if smi:
            (run_dir / "nvidia-smi.txt").write_text(smi)
        if t.monitor_interval > 0:
            monitor = SystemMonitor(run_dir / "system.csv", t.monitor_interval, tracker.scalar)
            monitor.start()
    return metrics, tracker, monitor


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
    args = dict(device=device, mean=list(d.mean), std=list(d.std), channels_last=channels_last,
                rank=rank, world_size=world)  # fmt: skip
    train = DeviceLoader(train_set, batch_size=cfg.batch_size, train=True,
                         translate=d.augment.translate, flip=d.augment.flip, seed=cfg.seed,
                         **args)  # fmt: skip
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
        id(m.bias) for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None
    }  # fmt: skip
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
    if ckpt.get("config_hash") != config_hash:
        raise ConfigError(
            f"{path.parent} holds a checkpoint of a different config; resume with the "
            "overrides it was started with, or choose a new hydra.run.dir"
        )
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


def _summarise(metrics: dict[str, Any], wall_seconds: float) -> None:
    """Headline numbers from the per-epoch history."""
    history = metrics["history"]
    if not history:
        return
    train_seconds = sum(row["train_seconds"] for row in history)
    metrics.update(
        final_test_acc=history[-1]["test_acc"],
        best_test_acc=max(row["test_acc"] for row in history),
        final_test_loss=history[-1]["test_loss"],
        final_train_loss=history[-1]["train_loss"],
        epochs_done=len(history),
        train_seconds=train_seconds,
        images_per_second=sum(r["images_per_second"] * r["train_seconds"] for r in history)
        / train_seconds,
    )
    if "val_acc" in history[-1]:
        metrics.update(
            final_val_acc=history[-1]["val_acc"],
            best_val_acc=max(row["val_acc"] for row in history),
        )
    metrics["wall_seconds"] = wall_seconds  # of this process; a resumed run counts from resuming


def _normalised(loader: DeviceLoader, indices: torch.Tensor) -> torch.Tensor:
    """The loader's images at `indices`, normalised and un-augmented, on its device."""
    images = loader.images[indices.to(loader.device)].float() * loader.scale + loader.shift
    return images.contiguous(memory_format=loader.memory_format)


def hparam_values(cfg: DictConfig, job: dict[str, Any]) -> dict[str, Any]:
    """What distinguishes this run in a sweep: group choices, overrides, seed and lr."""
    values = {k: v for k, v in job.get("choices", {}).items() if not k.startswith("hydra")}
    for override in job.get("overrides", []):
        key, _, value = override.partition("=")
        values[key.lstrip("+~")] = value
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
