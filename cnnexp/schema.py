"""One definition of the run record, metrics.json: its file name, version, statuses and keys.

Training writes it (cnnexp.record), tracking logs its headline numbers to TensorBoard, and
cnnexp.report.runs reads it back for the report; all take the names from here.
"""

from __future__ import annotations

METRICS = "metrics.json"
# The other files of a run folder that more than one module reads or writes.
ENVIRONMENT = "env.json"  # the machine and software (cnnexp.environment)
SYSTEM = "system.csv"  # GPU and CPU load, about once a second (cnnexp.monitor)
NVIDIA_SMI = "nvidia-smi.txt"  # where nvidia-smi exists
# 1: the first layout; 2: record_version, validation headline numbers, precision_reason,
# test_class_counts; 3: overrides as {key: typed value} (cnnexp.config.typed_overrides), no
# longer a list of strings; 4: test_acc_without_<option> for the evaluation-only options (the
# last epoch only) and their final_ headline numbers. Readers treat a record without the field
# as version 1.
RECORD_VERSION = 4
# What a run's status can be while and after it runs. "did_not_train" is the report's own
# judgement of a completed run (cnnexp.report.runs), never written by training.
STATUSES = ("running", "completed", "diverged", "interrupted", "failed")
RUNNING, COMPLETED, DIVERGED, INTERRUPTED, FAILED = STATUSES
# Options that change only how a trained network is evaluated, never how it trains. A run with
# one of them on also tests its last epoch with that option alone turned off (the history's
# test_acc_without_<option>), so the report measures each in pairs on the very same networks.
EVAL_ONLY = ("tta", "ema")
WITHOUT = {option: f"test_acc_without_{option}" for option in EVAL_ONLY}
# Headline numbers, summarised from the per-epoch history. A run's test result is its last
# epoch's: the best epoch on the test set would be a choice made by looking at the test set.
HEADLINE = (
    "final_val_acc",
    "best_val_acc",
    "final_test_acc",
    "final_test_loss",
    "final_train_loss",
    *(f"final_{key}" for key in WITHOUT.values()),
    "epochs_done",
    "train_seconds",
    "images_per_second",
    "wall_seconds",
)
# One row of the per-epoch history (val_* only where a validation split is held out).
EPOCH_KEYS = (
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "val_loss",
    "val_acc",
    "lr",
    "train_seconds",
    "test_seconds",
    "images_per_second",
    "images",
    *WITHOUT.values(),
)
# The headline numbers logged to TensorBoard's HParams view, validation first.
HPARAM_METRICS = ("final_val_acc", "final_test_acc", "final_test_loss")
