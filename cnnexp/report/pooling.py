"""The pooling section (`study.sections: [pooling]`): what differs between max and average
pooling beyond the final accuracy: the first epochs, an epoch's time, and the feature maps of
the same test images around the first pool."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from cnnexp.files import read_events
from cnnexp.report import figures
from cnnexp.report.curves import first_epochs
from cnnexp.report.document import Document
from cnnexp.report.runs import REPLICATE, SKIPPED, USABLE, Study, or_warn
from cnnexp.schema import BEFORE_POOL

POOLING_EXPLAINED = (
    "Max pooling passes on the strongest response in each window, and in back-propagation its "
    "gradient reaches only that one input: it keeps sharp, sparse features and gives a little "
    "invariance to small shifts. Average pooling passes on the mean of the window and spreads "
    "the gradient evenly over it: it smooths, and dilutes a strong local feature with its weak "
    "neighbours. Which is better is an empirical question, answered below with the numbers."
)
FEATURE_MAPS_READ = (
    "Each row is one test image, each tile one channel. Both pools halve the map. After max "
    "pooling a stroke comes out thicker and blockier, since each output takes the strongest "
    "response of its window; after average pooling it comes out softer, since each output is "
    "the window's mean. The channels differ between the two rows of pictures: each network "
    "learned its own filters, from the same seed's initial weights and order of images."
)


def add_pooling(doc: Document, study: Study, tag: str, alpha: float) -> None:
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
        if run is not None and (run / "tb").is_dir():
            pictures = or_warn(feature_map_images, run) or []
            pair = around_first_pool(pictures)
            names = ("after the activation, before the pool", f"after {kind} pooling")
            rows[f"pool={kind}"] = [
                (f"{name} ({what})", picture)
                for (name, picture), what in zip(pair, names, strict=False)
            ]
    if rows and all(rows.values()):
        path = figures.picture_grid(rows, doc.out / "figures" / f"{tag}-feature-maps.png")
        doc.image(
            path,
            "feature maps of the same test images after the last epoch, from the networks of "
            "the same seed (the lowest) for each kind of pooling: the first stage after its "
            "activation, then the same stage after its pool (one row per image, one tile per "
            "channel, each tile scaled to its own range)",
        )
        doc.para(FEATURE_MAPS_READ)


def feature_map_images(run: Path) -> list[tuple[str, Any]]:
    """The feature-map pictures a run recorded in TensorBoard at its last picture step, in the
    network's order: [(layer name, PIL image), ...], one row of tiles per probe image."""
    from PIL import Image

    events = read_events(Path(run) / "tb", SKIPPED)
    tags = [t for t in events.Tags().get("images", []) if t.startswith("features/")]
    order = sorted(tags, key=module_order)
    out = []
    for tag in order:
        picture = Image.open(io.BytesIO(events.Images(tag)[-1].encoded_image_string))
        out.append((tag.removeprefix("features/"), picture))
    return out


def module_order(tag: str) -> list[tuple[int, int, str]]:
    """A sort key that puts `features.10` after `features.9` and a pool's input beside it."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.:]", tag)]


def around_first_pool(pictures: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The first pool's input (the stage after its activation) and that pool's output."""
    named = dict(pictures)
    for name, picture in pictures:
        if name.endswith(BEFORE_POOL):
            pool = name.removesuffix(BEFORE_POOL)
            return [(pool + " input", picture), (pool, named[pool])]
    return []
