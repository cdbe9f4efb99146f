"""Short real training runs on synthetic data: they learn, and they leave their results."""

from __future__ import annotations

import json

from conftest import TINY, make_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnexp.train import train


def test_synthetic_run_learns_and_writes_results(tmp_path):
    metrics = train(make_config(*TINY, "epochs=3"), tmp_path)
    assert metrics["status"] == "completed"
    assert metrics["final_test_acc"] > 0.6  # chance is 0.1
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "completed"
    assert saved["final_test_acc"] == metrics["final_test_acc"]
    assert "best_test_acc" not in saved  # choosing an epoch by the test set is not a result
    assert len(saved["history"]) == 3
    assert saved["parameters"] == 61_706
    for key in (
        "train_seconds",
        "images_per_second",
        "device",
        "seed",
        "torch",
        "git_commit",
        "choices",
        "overrides",
        "macs",
    ):
        assert key in saved
    assert (tmp_path / "checkpoint.pt").exists()

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {
        "train/loss",
        "train/acc",
        "test/loss",
        "test/acc",
        "lr",
        "time/epoch_seconds",
        "time/images_per_second",
    }
    assert expected <= tags
    test_acc = [e.value for e in events.Scalars("test/acc")]
    assert test_acc == [
        __import__("pytest").approx(row["test_acc"], rel=1e-6) for row in saved["history"]
    ]


def test_completed_run_is_not_trained_again(tmp_path, monkeypatch):
    first = train(make_config(*TINY, "epochs=1"), tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("a completed run was trained again")

    monkeypatch.setattr("cnnexp.trainer.train_one_epoch", no_training)
    monkeypatch.setattr("cnnexp.train.build_model", no_training)
    again = train(make_config(*TINY, "epochs=1"), tmp_path)
    assert again == json.loads((tmp_path / "metrics.json").read_text())
    assert again["history"] == first["history"]
