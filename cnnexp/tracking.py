"""Rank 0's record of a run in TensorBoard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

# metrics row key -> TensorBoard tag
SCALAR_TAGS = {
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "test_loss": "test/loss",
    "test_acc": "test/acc",
    "lr": "lr",
    "train_seconds": "time/epoch_seconds",
    "images_per_second": "time/images_per_second",
}


class Tracker:
    """Writes TensorBoard events under <run_dir>/tb; does nothing on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.writer = SummaryWriter(str(Path(run_dir) / "tb")) if enabled else None

    def epoch(self, row: dict[str, Any]) -> None:
        """Log one epoch's numbers at step = epoch number."""
        if self.writer is None:
            return
        for key, tag in SCALAR_TAGS.items():
            self.writer.add_scalar(tag, row[key], row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
