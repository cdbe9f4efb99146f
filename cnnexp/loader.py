"""The fast loader: a whole split on the device as uint8, batches sliced from a randperm,
augmented and normalised a whole batch at a time (no per-image Python in the training loop)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from cnnexp.config import FLIPS
from cnnexp.data import ImageTensorDataset


class DeviceLoader:
    """Yields (images float (B, C, H, W) normalised, labels (B,)) for one split on `device`.

    Training loaders reshuffle every epoch from (seed, epoch), so a resumed run sees the same
    batches as an uninterrupted one. With `world_size` > 1 each rank takes its own equal shard
    of every epoch, as torch's DistributedSampler does.
    """

    def __init__(
        self,
        dataset: ImageTensorDataset,
        *,
        batch_size: int,
        device: torch.device,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        translate: int = 0,
        flip: bool | str = False,
        seed: int = 0,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        # It's faster to move uint8 once and convert per batch than to keep floats.
        self.images = dataset.images.to(device)
        self.labels = dataset.labels.to(device)
        self.batch_size = batch_size
        self.device = device
        # x_norm = (x / 255 - mean) / std = x * scale + shift, one fused multiply-add per batch.
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -mean_t / std_t
        self.train = train
        self.translate = translate
        if flip not in FLIPS:
            raise ValueError(f"flip must be true, false or alternate, not {flip!r}")
        self.flip = flip
        self.seed = seed
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose shuffle and augmentation the next iteration uses."""
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.labels)
        if not self.train:
            return torch.arange(self.rank, n, self.world_size)
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(n, generator=gen)
        per_rank = n // self.world_size
        return perm[self.rank :: self.world_size][:per_rank]

    def __len__(self) -> int:
        n = len(self.labels)
        if self.train:  # training drops the last partial batch: a batch of one breaks batch norm
            return n // self.world_size // self.batch_size
        return -(-len(range(self.rank, n, self.world_size)) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = self._indices()
        n = len(indices)
        if self.train:
            n -= n % self.batch_size
            # One draw per epoch for all augmentation, moved to the device once.
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 7)
            shifts = torch.randint(0, 2 * self.translate + 1, (n, 2), generator=gen).to(self.device)
            flips = (torch.rand(n, generator=gen) < 0.5).to(self.device)
            if (
                self.flip == "alternate"
            ):  # each image flipped every other epoch, from a random start
                origin = torch.Generator().manual_seed(self.seed * 100_003 + 13)
                first = torch.rand(len(self.labels), generator=origin) < 0.5
                flips = (first[indices[:n]] ^ bool(self.epoch % 2)).to(self.device)
        indices = indices.to(self.device)
        for start in range(0, n, self.batch_size):
            idx = indices[start : start + self.batch_size]
            x = self.images[idx]
            if self.train and self.translate:
                x = translate(x, shifts[start : start + self.batch_size], self.translate)
            x = x.float().mul_(self.scale).add_(self.shift)
            if self.train and self.flip:
                x = torch.where(
                    flips[start : start + self.batch_size].view(-1, 1, 1, 1), x.flip(3), x
                )
            yield x.contiguous(memory_format=self.memory_format), self.labels[idx]


def translate(images: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image by its own (dy, dx) in 0..2*pad: a random crop of the zero-padded batch."""
    b, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = (shifts[:, 0:1] + torch.arange(h, device=images.device)).view(b, 1, h, 1)
    cols = (shifts[:, 1:2] + torch.arange(w, device=images.device)).view(b, 1, 1, w)
    batch = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    chans = torch.arange(c, device=images.device).view(1, c, 1, 1)
    return padded[batch, chans, rows, cols]  # (B, C, H, W)
