"""Rank 0's record of a run in TensorBoard: curves, pictures of the network, hparams."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from torchvision.utils import make_grid

from cnnexp.data import ImageTensorDataset
from cnnexp.schema import BEFORE_POOL, Epoch, Run, hparam_metrics

log = logging.getLogger(__name__)

MAX_CHANNELS = 16  # feature-map channels shown per image


class Tracker:
    """Writes TensorBoard events under <run_dir>/tb; does nothing on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool, settings: Any, epochs: int):
        """`settings`: the config's `tracking` node (conf/config.yaml says what each key does);
        `epochs`: the run's length, whose last epoch always gets its histograms."""
        self.run_dir = Path(run_dir)
        self.writer = SummaryWriter(str(self.run_dir / "tb")) if enabled else None
        self.images_every = settings.images_every
        self.histograms_every = settings.histograms_every
        self.graph = settings.graph
        self.feature_map_images = settings.feature_map_images
        self.misclassified = settings.misclassified
        self.hparams = settings.hparams
        self.confusion = settings.confusion
        self.last_epoch = epochs
        self.probe: torch.Tensor | None = None  # fixed test images for the feature maps

    def start(self, model: nn.Module, probe: torch.Tensor, fresh: bool = True) -> None:
        """Keep the images whose feature maps are shown; on a fresh run, log the model graph
        and the pictures of the untrained network (a resumed run has them already)."""
        if self.writer is None:
            return
        self.probe = probe[: self.feature_map_images]
        if not fresh:
            return
        if self.graph:
            try:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # TensorBoard's graph needs the jit tracer
                    self.writer.add_graph(_EvalMode(model), probe[:1])
            except Exception as err:  # tracing is best effort: some layers cannot be traced
                log.warning("could not log the model graph: %s", err)
        self._pictures(model, step=0)

    def epoch(self, row: Epoch, model: nn.Module) -> None:
        """Log one epoch's numbers under their tags (cnnexp.schema; step = epoch number), and
        pictures every few epochs."""
        if self.writer is None:
            return
        step = row.epoch
        for tag, value in row.scalars().items():
            self.writer.add_scalar(tag, value, step)
        if self.histograms_every and (step % self.histograms_every == 0 or step == self.last_epoch):
            for name, p in model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", p.detach().float().cpu(), step)
                if p.grad is not None:
                    self.writer.add_histogram(f"grads/{name}", p.grad.float().cpu(), step)
        if self.images_every and step % self.images_every == 0:
            self._pictures(model, step)
        self.writer.flush()

    def finish(
        self,
        run: Run,
        predictions: torch.Tensor,
        test_set: ImageTensorDataset,
        choices: dict[str, Any],
    ) -> list[list[int]] | None:
        """Confusion matrix, misclassified test images and the hparams entry, at the end;
        returns the confusion matrix for the record (where it is drawn)."""
        if self.writer is None:
            return None
        labels = test_set.labels
        names = test_set.class_names
        step = len(run.history)
        matrix = None
        if self.confusion:
            matrix = confusion_matrix(labels, predictions, len(names))
            figure = plot_confusion(matrix, names)
            figure.savefig(self.run_dir / "confusion.png", dpi=100)
            self.writer.add_figure("test/confusion_matrix", figure, step)
        if self.misclassified:
            wrong = (predictions != labels).nonzero().flatten()[: self.misclassified]
            if len(wrong):
                figure = plot_misclassified(test_set, wrong, predictions)
                self.writer.add_figure("test/misclassified", figure, step)
        if self.hparams:
            headline = run.to_json()
            results = {k: headline[k] for k in hparam_metrics() if k in headline}
            self.log_hparams(choices, results)
        self.writer.flush()
        return matrix.tolist() if matrix is not None else None

    def log_hparams(self, choices: dict[str, Any], results: dict[str, float]) -> None:
        """One HParams entry in this run's own event file, so a sweep compares its runs."""
        values = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in choices.items()
        }
        tagged = {f"hparam/{k}": v for k, v in results.items()}
        for summary in hparams(values, tagged):
            self.writer.file_writer.add_summary(summary)
        for tag, value in tagged.items():
            self.writer.add_scalar(tag, value)

    def _pictures(self, model: nn.Module, step: int) -> None:
        if not self.images_every:
            return
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is not None:
            self.writer.add_image("filters/first_conv", filter_grid(first.weight), step)
        if self.probe is not None and len(self.probe):
            for name, maps in feature_maps(model, self.probe).items():
                self.writer.add_image(f"features/{name}", feature_grid(maps), step)

    def scalar(self, tag: str, value: float, step: int, walltime: float | None = None) -> None:
        """Log a scalar from outside the epoch loop (the system monitor)."""
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step, walltime=walltime)

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()


class _EvalMode(nn.Module):
    """Traces a model in eval mode without changing its batch-norm statistics."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model(x)
        finally:
            self.model.train(was_training)


def filter_grid(weight: torch.Tensor) -> torch.Tensor:
    """First-layer kernels (out, in, k, k) as one image: RGB where in=3, else one tile per input."""
    w = weight.detach().float().cpu()
    if w.shape[1] != 3:
        w = w.reshape(-1, 1, *w.shape[2:])
    return make_grid(w, nrow=8, normalize=True, scale_each=True, padding=1, pad_value=1.0)


POOLS = (nn.MaxPool2d, nn.AvgPool2d)


@torch.no_grad()
def feature_maps(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Output (B, C, H, W) of every conv and pool layer for `images`, in eval mode, and each
    pool's input (`name:input`, after the stage's activation) so that the same stage can be
    seen before and after pooling. Copies, since an in-place activation overwrites its input."""
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str, pool: bool):
        def hook(module, inputs, out):
            if pool:
                before = getattr(module, "pool_input", lambda x: x)(inputs[0])
                outputs[name + BEFORE_POOL] = before.detach().float().cpu().clone()
            outputs[name] = out.detach().float().cpu().clone()

        return hook

    hooks = [
        module.register_forward_hook(keep(name, isinstance(module, POOLS)))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, *POOLS))
    ]
    was_training = model.training
    model.eval()
    try:
        model(images)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return outputs


def feature_grid(maps: torch.Tensor) -> torch.Tensor:
    """One row per image, one tile per channel (the first 16), each tile scaled to 0-1."""
    b, c, h, w = maps.shape
    tiles = maps[:, :MAX_CHANNELS].reshape(-1, 1, h, w)
    return make_grid(
        tiles, nrow=min(c, MAX_CHANNELS), normalize=True, scale_each=True, padding=1, pad_value=1.0
    )


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, classes: int) -> torch.Tensor:
    """(true, predicted) counts."""
    return torch.bincount(labels * classes + predictions, minlength=classes * classes).view(
        classes, classes
    )


def plot_confusion(matrix: torch.Tensor, names: list[str]):
    """The confusion matrix as a matplotlib figure with counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    ax.imshow(matrix.numpy(), cmap="Blues")
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = matrix.max().item()
    for i in range(n):
        for j in range(n):
            value = matrix[i, j].item()
            ax.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                fontsize=6,
                color="white" if value > peak / 2 else "black",
            )
    fig.tight_layout()
    return fig


def plot_misclassified(
    dataset: ImageTensorDataset, indices: torch.Tensor, predictions: torch.Tensor
):
    """A grid of misclassified images titled 'true -> predicted'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 8
    rows = -(-len(indices) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5), squeeze=False)
    names = dataset.class_names
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices.tolist(), strict=False):
        image = dataset.images[i].permute(1, 2, 0).numpy()
        ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray")
        ax.set_title(f"{names[dataset.labels[i]]}\n-> {names[predictions[i]]}", fontsize=7)
    fig.tight_layout()
    return fig
