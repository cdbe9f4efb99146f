"""The data layer: image folders (decoded once, cached outside), torchvision files, synthetic,
our Dataset subclass and the on-device loader."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
import torch
from conftest import REPO, SHARED_DATA, TINY, make_config, run_cli
from PIL import Image

from cnnexp.data import ImageTensorDataset, load_folder, load_torchvision, make_synthetic
from cnnexp.errors import DataError
from cnnexp.loader import DeviceLoader, translate
from cnnexp.report import main as report_main
from cnnexp.train import _datasets, train


def write_folder(root, classes=("cat", "dog"), per_class=3, size=8, splits=("train", "test")):
    """A tiny image folder of PNGs whose pixel value encodes (class, index)."""
    for split in splits:
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                color = (40 * label + i,) * 3
                Image.new("RGB", (size, size), color).save(root / split / name / f"{i:04d}.png")
    return root


def test_folder_is_decoded_once_and_cached_outside(tmp_path):
    folder = write_folder(tmp_path / "pics")
    cache = tmp_path / "cache"
    train_set, test_set = load_folder(str(folder), 3, str(cache))
    assert isinstance(train_set, ImageTensorDataset)
    assert train_set.images.shape == (6, 3, 8, 8) and train_set.images.dtype == torch.uint8
    assert train_set.class_names == ["cat", "dog"]
    assert train_set.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert train_set.images[4, 0, 0, 0] == 41  # dog, image 1
    assert len(list(cache.glob("*.pt"))) == 1
    assert not list(folder.rglob("*.pt"))  # nothing written into the dataset folder
    # The second load comes from the cache, even with the images gone unreadable.
    for png in folder.rglob("*.png"):
        png.chmod(0)
    again, _ = load_folder(str(folder), 3, str(cache))
    assert torch.equal(again.images, train_set.images)
    image, label = again[4]
    assert label == 1 and image.shape == (3, 8, 8)


def test_folder_without_class_folders_is_refused(tmp_path):
    (tmp_path / "flat" / "train").mkdir(parents=True)
    (tmp_path / "flat" / "test").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders"):
        load_folder(str(tmp_path / "flat"), 3, None)


def test_folder_without_test_split_is_refused(tmp_path):
    folder = write_folder(tmp_path / "pics", splits=("train",))
    with pytest.raises(DataError, match=r"test is missing.*train/<class>/<image>"):
        load_folder(str(folder), 3, None)


def test_folder_with_different_classes_is_refused(tmp_path):
    folder = write_folder(tmp_path / "pics")
    (folder / "test" / "dog").rename(folder / "test" / "wolf")
    with pytest.raises(DataError, match="same class folders"):
        load_folder(str(folder), 3, None)


def test_corrupt_image_is_named(tmp_path):
    folder = write_folder(tmp_path / "pics")
    bad = folder / "train" / "cat" / "0001.png"
    bad.write_bytes(bad.read_bytes()[:20])
    with pytest.raises(DataError, match="0001.png is not a readable image"):
        load_folder(str(folder), 3, None)


def write_idx(path, array: torch.Tensor):
    """An IDX file as MNIST ships them (big-endian dims, then uint8 data)."""
    magic = 0x0800 | array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.numpy().tobytes())


def write_mnist(root, n_train=20, n_test=10, truncate=False, folder="MNIST"):
    """MNIST's IDX files as torchvision keeps them (Fashion-MNIST's are the same, in
    FashionMNIST/raw)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            raw / f"{prefix}-images-idx3-ubyte",
            torch.randint(0, 256, (n, 28, 28), generator=gen, dtype=torch.uint8),
        )
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", torch.arange(n, dtype=torch.uint8) % 10)
    if truncate:
        images = raw / "train-images-idx3-ubyte"
        images.write_bytes(images.read_bytes()[:1000])
    return root


def test_torchvision_mnist_files_are_read(tmp_path):
    train_set, test_set = load_torchvision("mnist", str(write_mnist(tmp_path)), download=False)
    assert train_set.images.shape == (20, 1, 28, 28)
    assert test_set.labels.tolist() == list(range(10))


def test_truncated_mnist_is_refused_with_the_path(tmp_path):
    root = write_mnist(tmp_path, truncate=True)
    with pytest.raises(DataError, match=str(root)):
        load_torchvision("mnist", str(root), download=False)


def test_mnist_config_pads_to_lenets_32x32(tmp_path):
    root = write_mnist(tmp_path / "data", n_train=256)
    cfg = make_config(*TINY, "data=mnist", f"data.root={root}", "epochs=1", "eval_batch_size=10")
    metrics = train(cfg, tmp_path / "run")
    assert metrics["status"] == "completed" and metrics["train_images"] == 256
    raw, _ = load_torchvision("mnist", str(root), download=False)
    train_set, _, test_set, _ = _datasets(cfg.data)
    for padded in (train_set, test_set):
        assert padded.images.shape[1:] == (1, 32, 32)
        border = padded.images.clone()
        border[:, :, 2:30, 2:30] = 0
        assert not border.any()  # a 2-pixel frame of zeros around each digit
    assert torch.equal(train_set.images[:, :, 2:30, 2:30], raw.images)


def write_cifar100(root, n_train=20, n_test=10):
    """CIFAR-100's python pickles as torchvision keeps them under cifar-100-python."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test)):
        entry = {
            "data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
            "fine_labels": [i % 100 for i in range(n)],
            "coarse_labels": [i % 20 for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    names = {"fine_label_names": [f"kind{i}" for i in range(100)]}
    (folder / "meta").write_bytes(pickle.dumps(names))
    return root


def test_fashion_mnist_files_are_read_and_a_network_trains_on_them(tmp_path):
    root = write_mnist(tmp_path / "data", n_train=256, folder="FashionMNIST")
    train_set, test_set = load_torchvision("fashion_mnist", str(root), download=False)
    assert train_set.images.shape == (256, 1, 28, 28) and len(test_set) == 10
    assert train_set.class_names[0] == "T-shirt/top"  # torchvision's own names
    cfg = make_config(*TINY, "data=fashion_mnist", f"data.root={root}", "epochs=1")
    assert cfg.data.title == "Fashion-MNIST"
    metrics = train(cfg, tmp_path / "run")
    assert metrics["status"] == "completed" and metrics["train_images"] == 256
    assert metrics["class_names"][0] == "T-shirt/top"


def test_cifar100_files_are_read_and_a_network_trains_on_them(tmp_path, monkeypatch):
    # The pickles written here are not the official ones, so torchvision's checksum of each
    # file (it knows the official MD5s) is the one thing left out of the real path.
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args: True)
    root = write_cifar100(tmp_path / "data", n_train=128)
    train_set, test_set = load_torchvision("cifar100", str(root), download=False)
    assert train_set.images.shape == (128, 3, 32, 32) and len(test_set) == 10
    assert len(train_set.class_names) == 100 and train_set.labels.max() == 99
    quiet = ["tracking.images_every=0", "tracking.confusion=false", "tracking.misclassified=0",
             "tracking.graph=false", "tracking.histograms_every=0"]  # fmt: skip
    cfg = make_config(*TINY, "data=cifar100", f"data.root={root}", "epochs=1", *quiet)
    metrics = train(cfg, tmp_path / "run")
    assert metrics["status"] == "completed" and metrics["train_images"] == 128


def test_a_missing_data_set_says_where_its_files_belong(tmp_path):
    with pytest.raises(DataError, match="cifar-100-python/{train,test}"):
        load_torchvision("cifar100", str(tmp_path), download=False)


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="no shared MNIST copy")
def test_real_mnist_loads_from_shared_data():
    train_set, test_set = load_torchvision("mnist", str(SHARED_DATA), download=False)
    assert train_set.images.shape == (60_000, 1, 28, 28)
    assert len(test_set) == 10_000
    counts = torch.bincount(train_set.labels).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    mean = train_set.images.float().div(255).mean().item()
    assert mean == pytest.approx(0.1307, abs=1e-4)


def test_synthetic_data_is_deterministic_and_label_dependent():
    a, _ = make_synthetic(channels=3, size=16, classes=4, train_size=400, test_size=10, noise=0.5)
    b, _ = make_synthetic(channels=3, size=16, classes=4, train_size=400, test_size=10, noise=0.5)
    assert torch.equal(a.images, b.images)
    means = torch.stack([a.images[a.labels == c].float().mean(0) for c in range(4)])
    assert (means[0] - means[1]).abs().mean() > 10  # the classes look different


def test_loader_shuffles_per_epoch_and_shards_across_ranks():
    data = ImageTensorDataset(
        torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous(),
        torch.arange(10),
        [str(i) for i in range(10)],
    )
    args = dict(
        batch_size=2, device=torch.device("cpu"), mean=[0.0], std=[1 / 255], train=True, seed=3
    )
    seen = [
        torch.cat([y for _, y in DeviceLoader(data, rank=r, world_size=2, **args)]) for r in (0, 1)
    ]
    assert len(seen[0]) == len(seen[1]) == 4
    assert not set(seen[0].tolist()) & set(seen[1].tolist())  # disjoint shards
    loader = DeviceLoader(data, **args)
    epoch0 = torch.cat([y for _, y in loader])
    loader.set_epoch(1)
    epoch1 = torch.cat([y for _, y in loader])
    assert sorted(epoch0.tolist()) == sorted(epoch1.tolist()) == list(range(10))
    assert epoch0.tolist() != epoch1.tolist()
    for x, y in loader:  # normalisation undoes std=1/255: pixels equal their labels
        assert torch.allclose(x[:, 0, 0, 0], y.float())


def test_translate_shifts_each_image_by_its_own_offset():
    images = torch.arange(2 * 16, dtype=torch.uint8).view(2, 1, 4, 4)
    shifts = torch.tensor([[1, 1], [0, 2]])  # (dy, dx) in 0..2*pad; 1 = no shift when pad=1
    out = translate(images, shifts, pad=1)
    assert torch.equal(out[0], images[0])
    assert torch.equal(out[1, 0, 1:, 1:3], images[1, 0, :3, 2:4])  # moved down one, left one
    assert out[1, 0, 0].tolist() == [0, 0, 0, 0]  # zero padding came in at the top


def test_jobs_of_a_sweep_read_a_dataset_once(tmp_path):
    from cnnexp.data import _read_splits, load_splits

    folder = write_folder(tmp_path / "pics")
    data = make_config(*TINY, "data.source=folder", f"data.folder={folder}", "data.cache=null",
                       "data.channels=3", "data.size=8", "data.classes=2").data  # fmt: skip
    first = load_splits(data)
    for png in folder.rglob("*.png"):
        png.unlink()  # a second read from disk would now fail
    assert load_splits(data) is first
    _read_splits.cache_clear()
    with pytest.raises(DataError):
        load_splits(data)  # forgotten: read again, from a folder that is now empty


@pytest.mark.slow  # two runs and a report, 10 s
def test_a_study_runs_end_to_end_on_fashion_mnist_files(tmp_path):
    """The pooling study of LeNet-5 on Fashion-MNIST read from torchvision's files: the data set
    is one choice of the study, and the report names it by its own name."""
    root = write_mnist(tmp_path / "data", n_train=256, n_test=64, folder="FashionMNIST")
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "+experiment=pooling", "study.budget=mnist_cpu", "data=fashion_mnist",
                     f"data.root={root}",
                     "device=cpu", "progress=false", "epochs=1", "batch_size=32", "seed=0",
                     "study.check.seeds=[]", "tracking.images_every=0", "tracking.graph=false",
                     f"hydra.sweep.dir={sweep}", cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert [r["overrides"]["pool"] for r in records] == ["max", "avg"]
    assert {r["class_names"][0] for r in records} == {"T-shirt/top"}
    assert report_main([str(sweep), "--out", str(tmp_path / "report")]) == 0
    assert "## pooling: Fashion-MNIST" in (tmp_path / "report" / "report.md").read_text()
