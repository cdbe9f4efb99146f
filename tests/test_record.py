"""The run record and its folder: what a run refuses, resumes and fingerprints, and the data
it trains on (a validation split apart from training, flips as configured)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import pytest
import torch
from conftest import TINY, make_config

from cnnexp import trainer
from cnnexp.checkpoint import save_checkpoint
from cnnexp.data import make_synthetic
from cnnexp.errors import ConfigError
from cnnexp.loader import DeviceLoader
from cnnexp.schema import (
    RECORD_VERSION,
    STATUSES,
    WITHOUT,
    Epoch,
    Run,
    headline_columns,
    read_metrics,
)
from cnnexp.train import _config_hash, _datasets, train

QUICK = [*TINY, "precision=fp32", "tracking.images_every=0", "tracking.graph=false",
         "tracking.monitor_interval=0"]  # fmt: skip


def test_a_folder_holding_another_configs_run_is_refused(tmp_path):
    first = train(make_config(*QUICK, "epochs=1"), tmp_path)
    assert first["record_version"] == RECORD_VERSION and first["status"] in STATUSES
    keys = {f.name for f in fields(Epoch)}
    assert all(set(row) <= keys for row in first["history"])
    optional = {"final_val_acc", "best_val_acc", *(f"final_{k}" for k in WITHOUT.values())}
    assert set(headline_columns()) - optional <= set(first)  # no validation, no eval option
    with pytest.raises(ConfigError, match="different config"):
        train(make_config(*QUICK, "epochs=1", "optimizer.lr=0.2"), tmp_path)
    assert read_metrics(tmp_path) == json.loads(json.dumps(first))  # left as it was


def test_evaluation_only_options_are_measured_inside_the_run(tmp_path):
    """With test-time flips and a weight average, the last epoch is also tested with each of
    them off alone: the pair lands in the history, the headline and TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = train(make_config(*QUICK, "epochs=2", "tta=flip", "ema=0.9"), tmp_path)
    first, last = metrics["history"]
    assert not set(WITHOUT.values()) & set(first)  # only the last epoch pays for the pairs
    for option, key in WITHOUT.items():
        assert 0.0 <= last[key] <= 1.0 and metrics[f"final_{key}"] == last[key], option
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    for option in WITHOUT:
        (point,) = events.Scalars(f"test/acc_without_{option}")
        assert point.step == 2 and point.value == pytest.approx(last[WITHOUT[option]])
    plain = train(make_config(*QUICK, "epochs=1"), tmp_path / "plain")
    assert not set(WITHOUT.values()) & set(plain["history"][-1])


def test_resume_with_weight_averaging_and_augmentation_matches_a_whole_run(tmp_path, monkeypatch):
    """Stopped after its first epoch's checkpoint and started again, a run with an EMA,
    lookahead and random flips and shifts ends exactly as the run that was never stopped."""
    args = [*QUICK, "epochs=3", "ema=0.9", "lookahead=true", "data.augment.translate=2",
            "data.augment.flip=true"]  # fmt: skip
    whole = train(make_config(*args), tmp_path / "whole")

    def stop_after_the_first(path, state):
        save_checkpoint(path, state)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "save_checkpoint", stop_after_the_first)
        with pytest.raises(KeyboardInterrupt):
            train(make_config(*args), tmp_path / "cut")
    stopped = read_metrics(tmp_path / "cut")
    assert stopped["status"] == "interrupted" and len(stopped["history"]) == 1
    resumed = train(make_config(*args), tmp_path / "cut")
    keys = ("train_loss", "train_acc", "test_loss", "test_acc")
    assert [[r[k] for k in keys] for r in resumed["history"]] == [
        [r[k] for k in keys] for r in whole["history"]
    ]


def test_validation_split_is_held_apart_from_training():
    cfg = make_config(*TINY, "data.validation=256")
    train_set, val_set, test_set, _ = _datasets(cfg.data)
    assert len(val_set) == 256 and len(train_set) == cfg.data.synthetic.train_size - 256
    rows = {bytes(image.numpy()) for image in train_set.images}
    assert not any(bytes(image.numpy()) in rows for image in val_set.images)
    assert len(rows) == len(train_set)  # the images are distinct, so the check can see overlap


def test_fingerprint_ignores_tracking_and_progress_but_not_the_recipe():
    base = _config_hash(make_config(*TINY))
    assert _config_hash(make_config(*TINY, "tracking.images_every=0", "progress=true")) == base
    assert _config_hash(make_config(*TINY, "optimizer.lr=0.2")) != base
    assert _config_hash(make_config(*TINY, "data.augment.flip=true")) != base


def test_flip_mirrors_about_half_the_images_and_changes_nothing_else():
    train_set, _ = make_synthetic(channels=1, size=8, classes=2, train_size=512, test_size=8,
                                  noise=1.0)  # fmt: skip
    loader = DeviceLoader(train_set, batch_size=512, device=torch.device("cpu"), mean=[0.0],
                          std=[1.0], train=True, flip=True)  # fmt: skip
    x, _ = next(iter(loader))
    original = train_set.images[loader._indices()].float() * loader.scale + loader.shift
    mirrored = torch.tensor([torch.equal(a, b.flip(-1)) and not torch.equal(a, b)
                             for a, b in zip(x, original, strict=True)])  # fmt: skip
    plain = torch.tensor([torch.equal(a, b) for a, b in zip(x, original, strict=True)])
    assert bool((mirrored | plain).all())
    assert 0.4 < mirrored.float().mean().item() < 0.6


def test_the_confusion_matrix_is_the_last_test_pass_with_its_test_time_augmentation(tmp_path):
    metrics = train(make_config(*QUICK, "epochs=2", "tta=flip"), tmp_path)
    matrix = torch.tensor(metrics["confusion_matrix"])
    assert matrix.sum() == metrics["test_images"]
    assert matrix.trace().item() / matrix.sum().item() == pytest.approx(
        metrics["final_test_acc"], abs=1e-9
    )


def test_a_new_metric_is_one_field_and_the_line_that_computes_it(tmp_path, monkeypatch):
    """A field added to the epoch row, with its tag and heading, lands in metrics.json (every
    epoch and the headline), in TensorBoard under its tag and in the report's table of runs."""
    import pandas as pd
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cnnexp import schema
    from cnnexp.report import main as report_main

    @dataclass(kw_only=True)
    class WithGap(schema.Epoch):
        loss_gap: float | None = schema.metric(
            "test/loss_gap", final=True, heading="loss gap", default=None
        )

        def __post_init__(self):
            self.loss_gap = self.test_loss - self.train_loss  # the line that computes it

    for module in (schema, trainer):  # where the row is defined, and where it is made
        monkeypatch.setattr(module, "Epoch", WithGap)
    metrics = train(make_config(*QUICK, "epochs=2"), tmp_path / "run")
    rows = read_metrics(tmp_path / "run")["history"]
    gaps = [row["test_loss"] - row["train_loss"] for row in rows]
    assert [row["loss_gap"] for row in rows] == pytest.approx(gaps)
    assert metrics["final_loss_gap"] == pytest.approx(gaps[-1])
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    points = events.Scalars("test/loss_gap")
    assert [p.step for p in points] == [1, 2]
    assert [p.value for p in points] == pytest.approx(gaps, rel=1e-5)
    assert report_main([str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 0
    table = pd.read_csv(tmp_path / "report" / "runs.csv")
    assert table["final_loss_gap"].tolist() == pytest.approx([gaps[-1]])
    appendix = (tmp_path / "report" / "report.md").read_text().split("Appendix: every run")[1]
    assert "loss gap" in appendix


def test_records_of_every_version_read_as_typed_data():
    """Version 2 (overrides as strings), 3 and 4 records read back; what a reader does not
    know is kept, and a record written again has the same keys."""
    row = {"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "test_loss": 0.4, "test_acc": 0.85,
           "lr": 0.1, "train_seconds": 2.0, "test_seconds": 0.1, "images_per_second": 500.0,
           "images": 1000}  # fmt: skip
    v2 = {"record_version": 2, "status": "completed",
          "overrides": ["seed=1", "model.widths=[8,16]"],
          "history": [row], "final_test_acc": 0.85, "final_train_loss": 0.5, "epochs_done": 1,
          "train_seconds": 2.0, "images_per_second": 500.0, "wall_seconds": 3.0,
          "a_key_from_elsewhere": [1, 2]}  # fmt: skip
    run = Run.from_json(v2)
    assert run.overrides == {"seed": 1, "model.widths": [8, 16]}
    assert run.history[0].test_acc == 0.85 and run.final("test_acc") == 0.85
    assert run.headline.wall_seconds == 3.0 and run.record_version == 2
    assert run.extra == {"a_key_from_elsewhere": [1, 2]}
    again = run.to_json()
    assert again["a_key_from_elsewhere"] == [1, 2] and again["history"] == [row]
    assert {k: again[k] for k in v2 if k != "overrides"} == {
        k: v for k, v in v2.items() if k != "overrides"
    }
    v4 = {**v2, "record_version": 4, "overrides": {"seed": 1},
          "final_test_acc_without_tta": 0.84}  # fmt: skip
    assert Run.from_json(v4).final("test_acc_without_tta") == 0.84
    assert Run.from_json({}).headline is None and Run.from_json({}).record_version == 1
