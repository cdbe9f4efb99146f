"""One epoch of training and one evaluation, with explicit arguments and no host syncs per step."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cnnexp.loader import DeviceLoader
from cnnexp.lookahead import Lookahead


@dataclass
class EpochStats:
    """Means over the images seen (summed over all ranks)."""

    loss: float
    acc: float
    images: int
    seconds: float
    predictions: torch.Tensor | None = None  # this rank's predicted classes, when kept


def sum_over_ranks(*values: torch.Tensor) -> list[float]:
    """Sum tensors over all ranks (a no-op for one process); the single host sync of a pass."""
    stacked = torch.stack([v.double() for v in values])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(stacked)
    return stacked.tolist()


class _Tally:
    """Loss and correct answers summed on the device over one pass: an .item() per step would
    stall a GPU. `stats()` sums them over the ranks, the pass's one host sync."""

    def __init__(self, device: torch.device, keep: bool = False):
        self.device = device
        self.kept: list[torch.Tensor] | None = [] if keep else None
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.count = 0
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        predicted = logits.argmax(1)
        self.loss += loss.detach().float() * len(y)
        self.correct += (predicted == y).sum()
        self.count += len(y)
        if self.kept is not None:
            self.kept.append(predicted)

    def stats(self) -> EpochStats:
        count = torch.tensor(self.count, device=self.device)
        loss, correct, n = sum_over_ranks(self.loss, self.correct, count)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - self.start
        kept = torch.cat(self.kept).cpu() if self.kept else None
        return EpochStats(loss / max(n, 1), correct / max(n, 1), int(n), seconds, kept)


def train_one_epoch(
    model: nn.Module,
    loader: DeviceLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    autocast: Callable[[], AbstractContextManager],
    *,
    ema: torch.optim.swa_utils.AveragedModel | None = None,
    lookahead: Lookahead | None = None,
    scaler: torch.amp.GradScaler | None = None,
    progress: bool = False,
    desc: str = "train",
) -> EpochStats:
    """Train over every batch of `loader` once; the schedule steps every batch.

    With a gradient `scaler` (fp16), the loss is scaled up before the backward pass so that small
    gradients do not underflow, and a step whose gradients overflowed is skipped.
    """
    model.train()
    tally = _Tally(loader.device)
    for x, y in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        with autocast():
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        if lookahead is not None:
            lookahead.step()
        tally.add(loss, logits, y)
    return tally.stats()


class Plain:
    """Test-time augmentation by the config's `tta` group (conf/tta/): each a callable
    (model, images) -> logits. This one, `tta=none`: each test image once."""

    passes = 1  # forward passes per image

    def __call__(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)


class Mirror(Plain):
    """`tta=flip`: logits averaged over each image and its mirror image."""

    passes = 2

    def __call__(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (model(x) + model(x.flip(3)))


class MirrorTranslate(Mirror):
    """`tta=flip_translate`: half the mirror average, half that of the image shifted one pixel
    up-left and down-right (reflect-padded), as airbench94 tests: six forward passes per image."""

    passes = 6

    def __call__(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = [padded[:, :, :h, :w], padded[:, :, 2 : h + 2, 2 : w + 2]]
        mirror = super().__call__
        translated = torch.stack([mirror(model, s) for s in shifted])
        return 0.5 * mirror(model, x) + 0.5 * translated.mean(0)


PLAIN = Plain()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DeviceLoader,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    autocast: Callable[[], AbstractContextManager],
    *,
    tta: Plain = PLAIN,
    keep_predictions: bool = False,
) -> EpochStats:
    """Loss and accuracy over the whole split (all ranks' shards together); with
    `keep_predictions`, also this rank's predicted classes in the loader's order."""
    model.eval()
    tally = _Tally(loader.device, keep=keep_predictions)
    for x, y in loader:
        with autocast():
            logits = tta(model, x)
        tally.add(loss_fn(logits.float(), y), logits, y)
    return tally.stats()


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DeviceLoader,
    autocast: Callable[[], AbstractContextManager],
    tta: Plain = PLAIN,
) -> torch.Tensor:
    """Predicted class of every image of `loader`, in order, on the CPU (this process only)."""
    model.eval()
    with autocast():
        return torch.cat([tta(model, x).argmax(1) for x, _ in loader]).cpu()
