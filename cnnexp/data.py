"""Datasets as decoded uint8 tensors: torchvision's official files, an image folder, synthetic."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cnnexp.errors import DamagedFileError, DataError
from cnnexp.files import atomic_save, read_torch

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

log = logging.getLogger(__name__)


class ImageTensorDataset(Dataset):
    """One split held as decoded uint8 images (N, C, H, W) and int64 labels (N,)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, class_names: list[str]):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}"
            )
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.long()
        self.class_names = list(class_names)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


def load_splits(data: Any) -> tuple[ImageTensorDataset, ImageTensorDataset, str]:
    """Load (train, test) as the config's `data` node describes (conf/data/), and a line saying
    where they came from."""
    synthetic = data.get("synthetic")
    return _read_splits(
        data.source,
        data.name,
        data.root,
        data.folder,
        data.download,
        data.cache,
        data.channels,
        data.size,
        data.classes,
        tuple(sorted(dict(synthetic).items())) if synthetic else (),
    )


# The jobs of a sweep run in one process: each dataset is read once and kept for the next job
# (the last two read, not every one). `_read_splits.cache_clear()` forgets them.
@functools.lru_cache(maxsize=2)
def _read_splits(source, name, root, folder, download, cache, channels, size, classes, synthetic):
    if source == "auto":
        source = "folder" if folder and Path(folder).is_dir() else "torchvision"
    if source == "torchvision":
        return (*load_torchvision(name, root, download), f"torchvision {name} at {root}")
    if source == "folder":
        if not folder:
            raise DataError("data.source=folder needs data.folder=<path with train/ and test/>")
        return (*load_folder(folder, channels, cache), f"image folder {folder}")
    if source == "synthetic":
        splits = make_synthetic(channels=channels, size=size, classes=classes, **dict(synthetic))
        return (*splits, "synthetic")
    raise DataError(
        f"data.source={source!r} is not a source; choose auto, torchvision, folder or synthetic"
    )


def pad_images(dataset: ImageTensorDataset, pad: int) -> ImageTensorDataset:
    """Zero-pad every image by `pad` pixels on each side, once, before training."""
    if pad == 0:
        return dataset
    images = F.pad(dataset.images, (pad, pad, pad, pad))
    return ImageTensorDataset(images, dataset.labels, dataset.class_names)


def check_facts(
    dataset: ImageTensorDataset, *, channels: int, size: int, classes: int, pad: int, where: str
) -> None:
    """Refuse data that disagrees with the data config that the model is built from."""
    _, c, h, w = dataset.images.shape
    if (c, h, w) != (channels, size, size):
        raise DataError(
            f"{where}: images are {c}x{h}x{w} (channels x height x width, after data.pad={pad}) "
            f"but the data config says data.channels={channels}, data.size={size}; "
            "set those keys to match the images"
        )
    if len(dataset.class_names) != classes:
        raise DataError(
            f"{where}: {len(dataset.class_names)} classes found but data.classes={classes}; "
            "set data.classes to match"
        )
    if len(dataset) and (dataset.labels.min() < 0 or dataset.labels.max() >= classes):
        raise DataError(f"{where}: labels outside 0..{classes - 1}")


# --- torchvision's official files -------------------------------------------------------------

# Where each dataset's files lie under root, for the error message.
_TORCHVISION = {
    "mnist": ("MNIST", "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw/..."),
    "cifar10": ("CIFAR10", "cifar-10-batches-py/{data_batch_1..5,test_batch}"),
    "cifar100": ("CIFAR100", "cifar-100-python/{train,test}"),
}


def load_torchvision(
    name: str, root: str | None, download: bool
) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """Read the official files through torchvision (which checks checksums when it downloads)."""
    import torchvision

    if name not in _TORCHVISION:
        raise DataError(
            f"data.name={name!r} has no torchvision loader; choose one of {sorted(_TORCHVISION)} "
            "or use data.source=folder"
        )
    class_name, layout = _TORCHVISION[name]
    root = root or "data"
    splits = []
    for train in (True, False):
        try:
            ds = getattr(torchvision.datasets, class_name)(root, train=train, download=download)
            images = torch.as_tensor(ds.data)
            labels = torch.as_tensor(ds.targets)
        except Exception as err:  # torchvision raises RuntimeError, URLError, ValueError, ...
            raise DataError(
                f"{name}: could not read the {'train' if train else 'test'} split under "
                f"{Path(root).resolve()} (expected {layout}): {err}. Fix: point CNNEXP_DATA or "
                "data.root at a folder that holds the files (e.g. CNNEXP_DATA=../shared/data), "
                "or delete corrupt files and allow data.download=true on a machine with a network"
            ) from err
        # MNIST is (N, H, W); CIFAR is (N, H, W, C).
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        splits.append(ImageTensorDataset(images.contiguous(), labels, ds.classes))
    return splits[0], splits[1]


# --- an image folder, decoded once and cached -------------------------------------------------


def load_folder(
    folder: str, channels: int, cache: str | None
) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """Read <folder>/{train,test}/<class>/<image>, decoding once into a cache outside the folder."""
    root = Path(folder)
    listing = {split: _list_split(root, split) for split in ("train", "test")}
    train_classes = sorted(listing["train"])
    test_classes = sorted(listing["test"])
    if train_classes != test_classes:
        raise DataError(
            f"{root}: train/ has classes {train_classes} but test/ has {test_classes}; "
            "both need the same class folders"
        )
    cache_file = None
    if cache:
        cache_file = Path(cache) / f"{root.name}-{channels}ch-{_fingerprint(root, listing)}.pt"
        if cache_file.exists():
            try:  # a damaged cache is decoded again from the images, never trusted
                saved = read_torch(cache_file, "it is decoded again from the images")
                return (
                    ImageTensorDataset(saved["train_images"], saved["train_labels"], train_classes),
                    ImageTensorDataset(saved["test_images"], saved["test_labels"], train_classes),
                )
            except DamagedFileError as err:
                log.warning("%s", err)
    splits = [
        _decode_split(listing[s], train_classes, channels, root / s) for s in ("train", "test")
    ]
    if cache_file is not None:
        saved = {
            "train_images": splits[0].images,
            "train_labels": splits[0].labels,
            "test_images": splits[1].images,
            "test_labels": splits[1].labels,
        }
        atomic_save(saved, cache_file)
    return splits[0], splits[1]


def _list_split(root: Path, split: str) -> dict[str, list[str]]:
    """Map each class folder of root/split to its sorted image file names."""
    where = root / split
    if not where.is_dir():
        raise DataError(
            f"{where} is missing: an image folder needs {root}/train/<class>/<image> and "
            f"{root}/test/<class>/<image>. Point data.folder (or CNNEXP_DATA) at such a folder"
        )
    classes = {}
    for entry in sorted(os.scandir(where), key=lambda e: e.name):
        if entry.is_dir():
            names = sorted(
                f.name
                for f in os.scandir(entry.path)
                if Path(f.name).suffix.lower() in IMAGE_SUFFIXES
            )
            if not names:
                raise DataError(
                    f"{entry.path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            classes[entry.name] = names
    if not classes:
        raise DataError(
            f"{where} has no class folders: expected {where}/<class>/<image>, one folder per class"
        )
    return classes


def _fingerprint(root: Path, listing: dict[str, dict[str, list[str]]]) -> str:
    """A hash of the folder's path, file names, sizes and times: any change makes a new cache."""
    digest = hashlib.sha1(str(root.resolve()).encode())
    for split, classes in listing.items():
        for cls, names in classes.items():
            for name in names:
                st = os.stat(root / split / cls / name)
                digest.update(f"{split}/{cls}/{name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def _decode_split(
    classes: dict[str, list[str]], class_names: list[str], channels: int, where: Path
) -> ImageTensorDataset:
    from PIL import Image
    from tqdm import tqdm

    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(
            f"data.channels={channels}: image folders hold 1 (gray) or 3 (RGB) channels"
        )
    files = [
        (where / cls / name, label)
        for label, cls in enumerate(class_names)
        for name in classes[cls]
    ]
    images, labels = [], []
    for path, label in tqdm(files, desc=f"decoding {where}", unit="img", disable=None, leave=False):
        try:
            with Image.open(path) as img:
                image = (
                    torch.from_numpy(np.array(img.convert(mode)))
                    .view(img.height, img.width, channels)
                    .permute(2, 0, 1)
                )  # (C, H, W)
        except Exception as err:
            raise DataError(
                f"{path} is not a readable image ({err}); remove or replace it"
            ) from err
        if images and image.shape != images[0].shape:
            raise DataError(
                f"{path} is {tuple(image.shape)} (C, H, W) but {files[0][0]} is "
                f"{tuple(images[0].shape)}: all images of a folder dataset need one size"
            )
        images.append(image)
        labels.append(label)
    return ImageTensorDataset(torch.stack(images), torch.tensor(labels), class_names)


# --- synthetic ---------------------------------------------------------------------------------


def make_synthetic(
    *,
    channels: int,
    size: int,
    classes: int,
    train_size: int,
    test_size: int,
    noise: float,
    seed: int = 0,
) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """Each class is a fixed smooth random pattern; each image is its pattern plus noise."""
    gen = torch.Generator().manual_seed(seed)
    # Smooth patterns (upsampled 8x8 noise) survive pooling, so small networks can learn them.
    coarse = torch.randn(classes, channels, 8, 8, generator=gen)
    patterns = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    patterns = patterns / patterns.std()
    names = [f"c{i}" for i in range(classes)]

    def split(n: int) -> ImageTensorDataset:
        labels = torch.randint(classes, (n,), generator=gen)
        x = patterns[labels] + noise * torch.randn(n, channels, size, size, generator=gen)
        images = (x * 48 + 128).clamp(0, 255).to(torch.uint8)  # about +-2.6 std fits 0..255
        return ImageTensorDataset(images, labels, names)

    return split(train_size), split(test_size)


def take_subset(dataset: ImageTensorDataset, size: int | None) -> ImageTensorDataset:
    """A fixed random `size` images of `dataset` (the same for every seed), or all of it."""
    if size is None or size >= len(dataset):
        return dataset
    if size < 1:
        raise DataError(
            f"data.subset={size} is not valid: use a whole number >= 1, or null for all"
        )
    keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:size]
    return ImageTensorDataset(dataset.images[keep], dataset.labels[keep], dataset.class_names)


def split_off(
    dataset: ImageTensorDataset, size: int | None
) -> tuple[ImageTensorDataset, ImageTensorDataset | None]:
    """Hold out a fixed random `size` images (a validation split): (the rest, the held out)."""
    if not size:
        return dataset, None
    if not 0 < size < len(dataset):
        raise DataError(
            f"data.validation={size} is not valid: hold out between 1 and {len(dataset) - 1} "
            "of the training images, or 0 for none"
        )
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(1))
    keep, held = order[size:], order[:size]
    names = dataset.class_names
    return (
        ImageTensorDataset(dataset.images[keep], dataset.labels[keep], names),
        ImageTensorDataset(dataset.images[held], dataset.labels[held], names),
    )
