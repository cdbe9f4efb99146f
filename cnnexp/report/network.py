"""A network as a table of its layers (layer, output shape, parameters, multiply-accumulates),
measured by torchinfo on the model its run's saved config builds: never typed by hand."""

from __future__ import annotations

from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from cnnexp.report.document import Document


def build_from_config(config: dict[str, Any]):
    """The untrained network a run's saved config describes (as training builds it)."""
    from cnnexp.models import build_model

    return build_model(OmegaConf.create(config))


def layer_table(model, input_shape: tuple[int, ...]) -> pd.DataFrame:
    """One row per layer that computes or holds parameters, for one input of `input_shape`
    (C, H, W), and a total row; parameters sum to `sum(p.numel() for p in model.parameters())`."""
    import torchinfo

    info = torchinfo.summary(model, input_size=(1, *input_shape), depth=99, verbose=0)
    rows = []
    for layer in info.summary_list[1:]:  # the first is the whole model
        own = sum(p.numel() for p in layer.module.parameters(recurse=False))
        if not (layer.is_leaf_layer or own):
            continue
        rows.append(
            {
                "layer": _path(layer),
                "type": layer.class_name,
                "output shape": " × ".join(map(str, layer.output_size[1:])),
                "parameters": own,
                "multiply-accumulates": layer.macs if layer.is_leaf_layer else 0,
            }
        )
    table = pd.DataFrame(rows)
    total = {
        "layer": "total",
        "type": "",
        "output shape": "",
        "parameters": sum(p.numel() for p in model.parameters()),
        "multiply-accumulates": int(table["multiply-accumulates"].sum()),
    }
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def _path(layer) -> str:
    """The layer's dotted name in the model (features.0), from torchinfo's chain of parents."""
    names = []
    while layer is not None and layer.depth > 0:
        names.append(layer.var_name)
        layer = layer.parent_info
    return ".".join(reversed(names))


def add_network(doc: Document, config: dict[str, Any], level: int = 3) -> None:
    """The network of a run: its class, its layer table and its totals in words."""
    model = build_from_config(config)
    data = config["data"]
    shape = (int(data["channels"]), int(data["size"]), int(data["size"]))
    table = layer_table(model, shape)
    total = table.iloc[-1]
    doc.heading(level, f"The network: {type(model).__name__}")
    doc.para(counts_sentence(model, config, shape, int(total["multiply-accumulates"])))
    doc.table(table)


def counts_sentence(model, config: dict[str, Any], shape: tuple[int, ...], table_macs: int) -> str:
    """Its size as the run's record counts it (trainable parameters; multiply-accumulates of
    its convs and linear layers), what is frozen, and how the table's torchinfo total differs."""
    from cnnexp.models import count_macs, count_parameters

    trainable = count_parameters(model)
    frozen = sum(p.numel() for p in model.parameters()) - trainable
    macs = count_macs(model, shape)
    held = f" (and {frozen:,} frozen, set from the data before training)" if frozen else ""
    extra = table_macs - macs
    table = (
        f"; the table's torchinfo total, {table_macs:,}, also counts each bias and "
        "normalisation output"
        if extra
        else ""
    )
    return (
        f"{type(model).__name__} ({config['model']['_target_']}) on {shape[0]} × {shape[1]} × "
        f"{shape[2]} inputs: {trainable:,} trainable parameters{held} and {macs:,} "
        f"multiply-accumulates per image in its convolutions and linear layers, the counts its "
        f"run records{table}."
    )
