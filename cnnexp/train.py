"""train(cfg) -> metrics: the one place that reads the config and wires a run together: the
record, the data, the network, the precision, the training state and the end-of-epoch step,
handed to the configured trainer (cnnexp.trainer)."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
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
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim import Optimizer

from cnnexp import distributed
from cnnexp.checkpoint import load_checkpoint, refuse_other_config
from cnnexp.config import build, validate
from cnnexp.data import (
    ImageTensorDataset,
    check_facts,
    load_splits,
    pad_images,
    split_off,
    take_subset,
)
from cnnexp.engine import predict
from cnnexp.errors import STOP_SIGNALS, CnnexpError, ConfigError, DamagedFileError, StopSignal
from cnnexp.files import atomic_write_json, set_aside
from cnnexp.loader import DeviceLoader
from cnnexp.lookahead import Lookahead
from cnnexp.models import build_model, count_macs, count_parameters
from cnnexp.precision import Precision, choose, step_timer
from cnnexp.record import RunRecord, describe
from cnnexp.schema import COMPLETED, FAILED, METRICS, Run, read_metrics
from cnnexp.trainer import EpochEnd, TrainingState

log = logging.getLogger(__name__)

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
        previous = previous_record(run_dir)
        if rank == 0 and not (previous and previous.get("status") == COMPLETED):
            failure = Run(status=FAILED, error=describe(err), **(job or {}))
            atomic_write_json(failure.to_json(), Path(run_dir) / METRICS)
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
    """The run as a story: skip it if done, open its record, then data, model, precision, the
    training state, the configured trainer's fit, and the end-of-run pictures."""
    run_dir = Path(distributed.broadcast(str(run_dir)))
    config_hash = _config_hash(cfg)
    done = _completed_run(run_dir, config_hash)
    if done is not None:
        return done
    is_main = rank == 0
    # Read before the record is opened: a damaged checkpoint stops the run with its old record.
    kept = _kept_precision(cfg, run_dir) if is_main else None
    run = Run(
        device=str(device),
        world_size=world,
        seed=cfg.seed,
        epochs=cfg.epochs,
        config_hash=config_hash,
        choices=job.get("choices", {}),
        overrides=job.get("overrides", {}),
    )
    with RunRecord(run, run_dir, cfg.tracking, is_main) as record:
        trainer = build(
            cfg.trainer, compile=cfg.compile, run_dir=str(run_dir), progress=_progress(cfg, is_main)
        )
        seed_everything(cfg.seed)
        # Our input shapes are fixed, so cuDNN's one-time search for the fastest kernels pays.
        torch.backends.cudnn.benchmark = device.type == "cuda"
        channels_last = use_channels_last(cfg.channels_last, device)
        data = _loaders(cfg, device, rank, world, channels_last)
        _note_data(record.run, data)
        model = _model(cfg, data, device, channels_last, record)
        precision = _choose_precision(cfg, device, model, data.train, is_main, kept)
        record.run.precision, record.run.precision_reason = precision.name, precision.reason
        state = _training_state(cfg, model, precision, len(data.train), config_hash)
        state.history = record.run.history  # one list: what the state resumes, the record shows
        end = EpochEnd(
            state,
            record,
            test=data.test,
            val=data.val,
            epochs=cfg.epochs,
            tta=build(cfg.tta),
            max_loss=cfg.max_loss,
            probe=_probe(data, cfg.tracking.feature_map_images),
        )
        trainer.fit(state, data.train, end)
        record.run.backend = distributed.backend()  # Lightning may have set one up
        _finish(cfg, job, state, end, data, record)
    return record.run.to_json()


def _kept_precision(cfg: DictConfig, run_dir: Path) -> Precision | None:
    """The precision in the configured trainer's checkpoint in `run_dir` (a run to resume), or
    None: no checkpoint, or a trainer class that cannot be loaded (Lightning not installed:
    building it in the run's record says why)."""
    module, _, name = cfg.trainer._target_.rpartition(".")
    try:
        checkpoint = run_dir / getattr(importlib.import_module(module), name).checkpoint
    except (ImportError, CnnexpError):
        return None
    return load_checkpoint(checkpoint).get("precision") if checkpoint.exists() else None


def previous_record(run_dir: Path) -> dict[str, Any] | None:
    """The record a run folder holds from before, or None. A damaged one is set aside (never
    deleted) with a warning: the run about to start writes its own record in its place."""
    try:
        return read_metrics(run_dir)
    except DamagedFileError as err:
        aside = set_aside(err.path)
        log.warning("%s cannot be read (%s); kept as %s", err.path, err.reason, aside.name)
        return None


def _completed_run(run_dir: Path, config_hash: str) -> dict[str, Any] | None:
    """The metrics of a completed run of this config in `run_dir` (nothing to do), or None;
    a completed run of another config is refused."""
    previous = previous_record(run_dir)
    if not (previous and previous.get("status") == COMPLETED):
        return None
    refuse_other_config(previous.get("config_hash"), config_hash, f"the completed run in {run_dir}")
    log.info("%s already holds this completed run; nothing to do", run_dir)
    return previous


def _progress(cfg: DictConfig, is_main: bool) -> bool:
    """Progress bars: on a terminal by default, on rank 0 only."""
    return is_main and (sys.stderr.isatty() if cfg.progress == "auto" else bool(cfg.progress))


def _note_data(run: Run, data: Loaders) -> None:
    test_set = data.test_set
    run.data_source = data.source
    run.train_images, run.test_images = len(data.train_set), len(test_set)
    run.class_names = data.train_set.class_names
    counts = torch.bincount(test_set.labels, minlength=len(test_set.class_names))
    run.test_class_counts = counts.tolist()


def use_channels_last(setting: bool | str, device: torch.device) -> bool:
    """`channels_last: auto` is the NHWC layout where the conv kernels prefer it: cuDNN's (CUDA)
    and oneDNN's (CPU; LeNet-5 trains 1.3x faster in it, benchmarks/RESULTS.md)."""
    return device.type in ("cuda", "cpu") if setting == "auto" else bool(setting)


def _model(
    cfg: DictConfig, data: Loaders, device: torch.device, channels_last: bool, record: RunRecord
) -> nn.Module:
    """The configured network, its size on record, initialised from data where it asks to be
    (a whitening stem), on the device."""
    model = build_model(cfg)
    d, run = cfg.data, record.run
    run.model = type(model).__name__
    run.parameters = count_parameters(model)
    run.macs = count_macs(model, (d.channels, d.size, d.size))
    if record.is_main:
        log.info(
            "%s: %s parameters, %s multiply-accumulates per image; data: %s (%d train, "
            "%d test); device %s",
            *(run.model, f"{run.parameters:,}", f"{run.macs:,}"),
            *(data.source, run.train_images, run.test_images, device),
        )
    if hasattr(model, "init_from_data"):  # data-dependent initialisation (a whitening stem)
        # 5000 random training images, the same for every seed.
        pick = torch.randperm(len(data.train_set), generator=torch.Generator().manual_seed(0))
        model.init_from_data(_normalised(data.train, pick[:5000]).float().cpu())
    return model.to(device, memory_format=torch.channels_last if channels_last else None)


def _training_state(
    cfg: DictConfig, model: nn.Module, precision: Precision, steps_per_epoch: int, config_hash: str
) -> TrainingState:
    """The state a run trains: the optimizer and per-step schedule over the model, the optional
    weight averages (EMA, lookahead) and the fp16 gradient scaler."""
    optimizer = build_optimizer(cfg.optimizer, model, cfg.norm_bias_lr)
    total_steps = cfg.epochs * steps_per_epoch
    ema = None
    if cfg.ema is not None:
        ema = torch.optim.swa_utils.AveragedModel(
            model,
            multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema),
            use_buffers=True,
        )
    return TrainingState(
        model=model,
        optimizer=optimizer,
        scheduler=build(cfg.schedule)(optimizer, total_steps=total_steps),
        loss=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        precision=precision,
        config_hash=config_hash,
        ema=ema,
        lookahead=Lookahead(model, total_steps) if cfg.lookahead else None,
        scaler=precision.scaler(),
        config=OmegaConf.to_container(cfg),
    )


def _probe(data: Loaders, count: int) -> torch.Tensor:
    """The fixed test images whose feature maps TensorBoard shows."""
    indices = torch.linspace(0, len(data.test_set) - 1, max(count, 1)).long()
    return _normalised(data.test, indices)


def _finish(
    cfg: DictConfig,
    job: dict[str, Any],
    state: TrainingState,
    end: EpochEnd,
    data: Loaders,
    record: RunRecord,
) -> None:
    """The end-of-run pictures (confusion matrix, misclassified images, hparams) from the last
    epoch's test predictions, and the replicas' checksums under DDP."""
    record.save()
    predictions = _test_predictions(cfg, state, end, data)
    if record.is_main:
        matrix = record.tracker.finish(
            record.run, predictions, data.test_set, hparam_values(cfg, job)
        )
        record.run.confusion_matrix = matrix
    if distributed.active():  # DDP keeps the replicas identical; record the proof
        record.run.rank_weight_checksums = distributed.gather(weights_checksum(state.model))


def _test_predictions(
    cfg: DictConfig, state: TrainingState, end: EpochEnd, data: Loaders
) -> torch.Tensor:
    """The predicted class of every test image, in order, as the last epoch tested them: its
    kept predictions (each rank's shard interleaved back under DDP: rank r tested images r,
    r + world, ...), or a pass of its own when the last epoch ran in an earlier process."""
    if end.predictions is None:
        alone = {**data.args, "rank": 0, "world_size": 1}
        whole = DeviceLoader(data.test_set, batch_size=cfg.eval_batch_size, train=False, **alone)
        return predict(state.eval_model, whole, state.precision.autocast, end.tta)
    shards = distributed.gather(end.predictions)
    predictions = torch.empty(len(data.test_set), dtype=torch.long)
    for rank, shard in enumerate(shards):
        predictions[rank :: len(shards)] = shard
    return predictions


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
    kept: Precision | None,
) -> Precision:
    """`cfg.precision` resolved for this device and model; under DDP rank 0 decides for all. A
    resumed run keeps the precision it started with (`kept`: a new timing could choose
    differently)."""
    precision = kept
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
