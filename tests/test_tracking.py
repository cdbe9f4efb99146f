"""Every run carries its own evidence: pictures, histograms, hparams, system load, environment."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch
from conftest import TINY, make_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnexp.models import ActivatedMaxPool2d
from cnnexp.monitor import SystemMonitor
from cnnexp.tracking import feature_maps
from cnnexp.train import train

TRACKED = [
    *TINY,
    "model=convnet",
    "model.widths=[8,16]",
    "tracking.histograms_every=5",  # longer than the run: histograms at the last epoch only
    "data.validation=128",
    "tracking.monitor_interval=0.05",
    "data.synthetic.train_size=1024",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    metrics = train(
        make_config(*TRACKED),
        run_dir,
        {"choices": {"model": "convnet"}, "overrides": {"model.widths": [8, 16]}},
    )
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    return run_dir, metrics, events


def test_pictures_of_the_network(run):
    _, _, events = run
    images = set(events.Tags()["images"])
    assert "filters/first_conv" in images
    feature_tags = {t for t in images if t.startswith("features/")}
    # Two stages of two convs and a pool each: 4 conv and 2 pool outputs, and each pool's input.
    assert len(feature_tags) == 8
    assert {"features/features.5:input", "features/features.5"} <= feature_tags
    assert {"test/confusion_matrix", "test/misclassified"} <= images
    # Pictures at the start (step 0) and after each epoch.
    assert [e.step for e in events.Images("filters/first_conv")] == [0, 1, 2]
    first = events.Images("features/features.0")[0]
    assert first.width > 0 and first.height > 0


def test_feature_maps_show_each_stage_before_and_after_its_pool():
    """The pool's input is the stage after its activation (ReLU: no negative value), kept as it
    was although an in-place ReLU overwrites the conv's output."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(inplace=True), torch.nn.MaxPool2d(2)
    )
    images = torch.randn(2, 1, 10, 10)
    maps = feature_maps(model, images)
    assert list(maps) == ["0", "2:input", "2"]
    conv = model[0](images)
    assert (conv < 0).any() and torch.equal(maps["0"], conv.detach())
    assert torch.equal(maps["2:input"], conv.detach().relu())
    assert torch.equal(maps["2"], torch.nn.functional.max_pool2d(conv.detach().relu(), 2))


def test_histograms_of_weights_and_gradients(run):
    _, _, events = run
    histograms = set(events.Tags()["histograms"])
    assert "weights/features.0.weight" in histograms
    assert "grads/features.0.weight" in histograms
    assert [h.step for h in events.Histograms("grads/classifier.5.weight")] == [2]


def test_hparams_and_graph(run):
    _, metrics, events = run
    content = events.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in content
    assert "model.widths" in content["_hparams_/session_start_info"].decode(errors="ignore")
    scalars = set(events.Tags()["scalars"])
    assert {"hparam/final_test_acc", "hparam/final_val_acc", "val/acc", "val/loss"} <= scalars
    assert [e.value for e in events.Scalars("val/acc")] == pytest.approx(
        [row["val_acc"] for row in metrics["history"]], rel=1e-6
    )
    assert events.Scalars("hparam/final_test_acc")[0].value == pytest.approx(
        metrics["final_test_acc"], rel=1e-6
    )
    assert events.Tags()["graph"]


def test_system_monitor_records_load(run):
    run_dir, metrics, events = run
    rows = list(csv.DictReader((run_dir / "system.csv").open()))
    assert len(rows) >= 2
    assert {"cpu_percent", "process_memory_mb"} <= set(rows[0])
    assert float(rows[-1]["process_memory_mb"]) > 50  # torch alone takes more than this
    assert "system/cpu_percent" in events.Tags()["scalars"]
    system = metrics["system"]
    assert system["samples"] == len(rows)
    assert system["process_memory_mb_peak"] >= system["process_memory_mb_mean"] > 0


def test_a_run_shorter_than_the_sampling_interval_still_has_a_reading(tmp_path):
    """The lab report's utilisation figure needs one reading even of a run of a second."""
    monitor = SystemMonitor(tmp_path / "s.csv", 3600).start()
    summary = monitor.stop()
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert summary["samples"] == len(rows) == 1
    assert float(rows[0]["process_memory_mb"]) == pytest.approx(
        summary["process_memory_mb_peak"], abs=0.01
    )


def test_environment_and_confusion_matrix(run):
    run_dir, metrics, _ = run
    env = json.loads((run_dir / "env.json").read_text())
    for key in (
        "python",
        "torch",
        "cuda",
        "cudnn",
        "gpus",
        "driver",
        "cpu",
        "cpu_cores",
        "hostname",
        "git_commit",
    ):
        assert key in env
    matrix = metrics["confusion_matrix"]
    assert sum(map(sum, matrix)) == metrics["test_images"]
    correct = sum(matrix[i][i] for i in range(len(matrix)))
    assert correct / metrics["test_images"] == pytest.approx(metrics["final_test_acc"], abs=1e-9)
    assert (run_dir / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_goes_on_without_nvml(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` now fails
    monitor = SystemMonitor(tmp_path / "s.csv", 0.01).start()
    assert monitor.gpus == []
    row = monitor.sample()
    assert "cpu_percent" in row and not any(k.startswith("gpu") for k in row)
    monitor.stop()
    metrics = train(
        make_config(*TINY, "epochs=1", "tracking.monitor_interval=0.05"), tmp_path / "r"
    )
    assert metrics["status"] == "completed"


def test_a_fused_pool_is_pictured_as_the_textbook_order():
    """Where the pool runs before its activation (ActivatedMaxPool2d), its input is still shown
    after the activation, as the textbook order gives it to the pool."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), ActivatedMaxPool2d(torch.nn.ReLU(), torch.nn.MaxPool2d(2))
    )
    images = torch.randn(2, 1, 10, 10)
    maps = feature_maps(model, images)
    assert list(maps) == ["0", "1:input", "1"]
    conv = model[0](images).detach()
    assert (conv < 0).any()
    assert torch.equal(maps["1:input"], conv.relu())
    assert torch.equal(maps["1"], torch.nn.functional.max_pool2d(conv.relu(), 2))
