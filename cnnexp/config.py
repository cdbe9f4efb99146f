"""Checks of config values that Hydra's own composition cannot catch."""

from __future__ import annotations

from omegaconf import DictConfig

from cnnexp.errors import ConfigError

CHOICES = {
    "device": ("auto", "cpu", "cuda", "mps"),
    "precision": ("auto", "bf16", "fp16", "fp32"),
    "channels_last": ("auto", True, False),
    "progress": ("auto", True, False),
    "tta": ("none", "flip", "flip_translate"),
    "lookahead": (True, False),
    "compile": (True, False),
    # What a search maximises: never a test metric, so the test set decides nothing.
    "objective": ("final_val_acc", "best_val_acc"),
}
# Whole numbers of the network's shape, where the chosen model has them.
MODEL_COUNTS = ("kernel_size", "stride", "convs_per_stage", "fc_layers", "fc_width")


def _whole(value: object, low: int = 1) -> bool:
    """A whole number (not a bool) >= low."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key, its value and what would be valid."""
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if not _whole(cfg[key]):
            raise ConfigError(f"{key}={cfg[key]!r} is not valid: it must be a whole number >= 1")
    if not _whole(cfg.seed, 0) or cfg.seed >= 2**32:
        raise ConfigError(f"seed={cfg.seed!r} is not valid: it must be a whole number from 0 to "
                          "2**32 - 1")  # fmt: skip
    if not _whole(cfg.data.augment.translate, 0):
        raise ConfigError(f"data.augment.translate={cfg.data.augment.translate!r} is not valid: "
                          "it must be a whole number of pixels >= 0 (0 = off)")  # fmt: skip
    _validate_model(cfg.model)
    lr = cfg.optimizer.get("lr")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr <= 0:
        raise ConfigError(f"optimizer.lr={lr!r} is not valid: it must be a number > 0, e.g. 0.01")
    for key, valid in CHOICES.items():
        if cfg[key] not in valid:
            raise ConfigError(
                f"{key}={cfg[key]!r} is not valid; choose one of {', '.join(map(str, valid))}"
            )
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing={cfg.label_smoothing} is not valid: use 0 <= value < 1")
    if not isinstance(cfg.norm_bias_lr, (int, float)) or cfg.norm_bias_lr <= 0:
        raise ConfigError(f"norm_bias_lr={cfg.norm_bias_lr!r} is not valid: use a number > 0")
    if cfg.data.augment.flip not in (True, False, "alternate"):
        raise ConfigError(
            f"data.augment.flip={cfg.data.augment.flip!r} is not valid; choose true, false or "
            "alternate"
        )
    devices = cfg.trainer.get("devices", 1)
    if not _whole(devices):
        raise ConfigError(
            f"trainer.devices={devices!r} is not valid: it must be a whole number >= 1"
        )
    if cfg.ema is not None and (not isinstance(cfg.ema, float) or not 0.0 < cfg.ema < 1.0):
        raise ConfigError(f"ema={cfg.ema} is not valid: use a decay in (0, 1), e.g. 0.99, or null")


def _validate_model(model: DictConfig) -> None:
    """The shape keys of the chosen network: whole numbers, widths and a positive multiplier."""
    for key in MODEL_COUNTS:
        if key in model and not _whole(model[key]):
            raise ConfigError(f"model.{key}={model[key]!r} is not valid: it must be a whole "
                              "number >= 1")  # fmt: skip
    widths = model.get("widths")
    if widths is not None and not (len(widths) and all(_whole(w) for w in widths)):
        raise ConfigError(f"model.widths={list(widths)!r} is not valid: it must be a list of "
                          "whole numbers >= 1, e.g. [32,64,128]")  # fmt: skip
    mult = model.get("width_mult")
    if mult is not None and (isinstance(mult, bool) or not isinstance(mult, (int, float))
                             or mult <= 0):  # fmt: skip
        raise ConfigError(f"model.width_mult={mult!r} is not valid: it must be a number > 0")
