"""The pooling section (`study.sections: [pooling]`): what differs between max and average
pooling beyond the final accuracy: the first epochs, an epoch's time, and the feature maps of
the same test images around the first pool."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from cnnexp.report import figures
from cnnexp.report.curves import first_epochs
from cnnexp.report.document import Document
from cnnexp.report.runs import REPLICATE, USABLE, Study, flatten

POOLING_EXPLAINED = (
    "Max pooling passes on the strongest response in each window, and in back-propagation its "
    "gradient reaches only that one input: it keeps sharp, sparse features and gives a little "
    "invariance to small shifts. Average pooling passes on the mean of the window and spreads "
    "the gradient evenly over it: it smooths, and dilutes a strong local feature with its weak "
    "neighbours. Which is better is an empirical question, answered below with the numbers."
)


def add_pooling(doc: Document, study: Study, tag: str) -> None:
    """What differs between max and average pooling beyond the final accuracy."""
    doc.heading(3, "What differs between max and average pooling")
    doc.para(POOLING_EXPLAINED)
    early = first_epochs(study)
    if not early.empty:
        doc.para("The first epochs (means over the usable seeds): how fast each kind learns.")
        doc.table(early)
    rows = {}
    for kind, runs in study.runs[study.runs["status"] == USABLE].groupby("pool", sort=False):
        run = Path(runs.sort_values(REPLICATE)["run"].iloc[0]) if REPLICATE in runs else None
        probes = int(flatten(runs["config"].iloc[0]).get("tracking.feature_map_images", 0))
        if run is not None and probes and (run / "tb").is_dir():
            pair = around_first_pool(feature_map_images(run), probes)
            names = ("the conv's output", f"after {kind} pooling")
            rows[f"pool={kind}"] = [
                (f"{name} ({what})", picture)
                for (name, picture), what in zip(pair, names, strict=False)
            ]
    if rows and all(rows.values()):
        path = figures.picture_grid(rows, doc.out / "figures" / f"{tag}-feature-maps.png")
        doc.image(
            path,
            "feature maps of the same test images after the last epoch (seed "
            "0 of each kind; one row per image, one tile per channel, each tile scaled "
            "to its own range): the layer before the first pool, then the pool's "
            "output",
        )


def feature_map_images(run: Path) -> list[tuple[str, Any]]:
    """The feature-map pictures a run recorded in TensorBoard at its last picture step, in the
    network's order: [(layer name, PIL image), ...]. Each picture has one row of tiles per probe
    image, so its height says the layer's map size (map_size)."""
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(run) / "tb"), size_guidance={"images": 0})
    events.Reload()
    tags = [t for t in events.Tags().get("images", []) if t.startswith("features/")]
    order = sorted(tags, key=lambda t: [int(p) if p.isdigit() else p for p in t.split(".")])
    out = []
    for tag in order:
        picture = Image.open(io.BytesIO(events.Images(tag)[-1].encoded_image_string))
        out.append((tag.removeprefix("features/"), picture))
    return out


def map_size(picture: Any, rows: int) -> int:
    """The side of one tile of a feature-map picture (make_grid pads each tile by 1 pixel)."""
    return (picture.height - 1) // rows - 1


def around_first_pool(pictures: list[tuple[str, Any]], rows: int) -> list[tuple[str, Any]]:
    """The layer before the first downsampling (the first pool in an unstrided network: its
    map is half its input's) and that pool's own output."""
    sizes = [map_size(p, rows) for _, p in pictures]
    for i in range(1, len(pictures)):
        if sizes[i] == sizes[i - 1] // 2:
            return pictures[i - 1 : i + 1]
    return []
