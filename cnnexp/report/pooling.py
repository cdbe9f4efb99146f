"""The pooling section (`study.sections: [pooling]`): what differs between max and average
pooling beyond the final accuracy: the first epochs, an epoch's time, and the feature maps of
the same test images around the first pool."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from cnnexp.files import read_events
from cnnexp.report import figures
from cnnexp.report.curves import first_epochs
from cnnexp.report.document import Document
from cnnexp.report.runs import SKIPPED, Study, groups, or_warn
from cnnexp.schema import BEFORE_POOL
from cnnexp.studies import flatten

# What differs between the two, in three lines: what each passes on, its gradients, its maps.
MECHANICS = [
    "What each passes on: max pooling the strongest response in each 2x2 window, average "
    "pooling the window's mean.",
    "Gradients: max pooling sends a window's whole gradient to the one input that won, the "
    "other three get none; average pooling splits it equally among all four.",
    "Feature maps: after max pooling a strong feature survives whole, sharp and a little "
    "thicker, and a small shift of the image changes little; after average pooling it comes "
    "out softer, diluted by its weak neighbours.",
]
# What a feature-map figure shows, by the images' channels (one grey, or colour)
SHOWN = {1: "a stroke or an edge", 3: "an edge or a patch of colour"}  # gray, colour images


def add_pooling(doc: Document, study: Study, tag: str, alpha: float) -> None:
    """What differs between max and average pooling beyond the final accuracy."""
    doc.heading(3, "What differs between max and average pooling")
    doc.bullets(MECHANICS)
    early = first_epochs(study)
    if not early.empty:
        doc.para("The first epochs (means over the usable seeds): how fast each kind learns.")
        doc.table(early)
    add_feature_maps(doc, study, tag)


def add_feature_maps(doc: Document, study: Study, tag: str) -> None:
    """The feature maps of the same test images around the first pool, one row of pictures
    per kind of pooling, from the lowest seed's runs, and how to read them."""
    rows = {}
    for levels, runs in groups(replace(study, factors=["pool"])):
        kind = levels["pool"]
        seeded = sorted((r for r in runs if r.usable and r.seed is not None), key=lambda r: r.seed)
        run = Path(seeded[0].path) if seeded else None
        if run is not None and (run / "tb").is_dir():
            pictures = or_warn(feature_map_images, run) or []
            pair = around_first_pool(pictures)
            names = ("after the activation, before the pool", f"after {kind} pooling")
            rows[f"pool={kind}"] = [
                (f"{name} ({what})", picture)
                for (name, picture), what in zip(pair, names, strict=False)
            ]
    if not rows or not all(rows.values()):
        return
    path = figures.picture_grid(rows, doc.out / "figures" / f"{tag}-feature-maps.png")
    data = flatten(study.runs[0].config)
    what = SHOWN.get(data.get("data.channels"), "a feature")
    doc.image(
        path,
        f"{data.get('data.title', 'the data')}: the same test images' feature maps in the first "
        "stage, after its activation and then after its pool, for each kind of pooling (the "
        "networks of the lowest seed, after the last epoch; one row per image, one tile per "
        f"channel). After max pooling {what} comes out thicker and blockier, each output the "
        "strongest response of its window; after average pooling softer, each output the "
        "window's mean. The channels differ between the kinds: each network learned its own "
        "filters.",
    )


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
