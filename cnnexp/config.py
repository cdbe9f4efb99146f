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
}


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key, its value and what would be valid."""
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if not _positive_int(cfg[key]):
            raise ConfigError(f"{key}={cfg[key]!r} is not valid: it must be a whole number >= 1")
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
    if not _positive_int(devices):
        raise ConfigError(
            f"trainer.devices={devices!r} is not valid: it must be a whole number >= 1"
        )
    if cfg.ema is not None and not 0.0 < cfg.ema < 1.0:
        raise ConfigError(f"ema={cfg.ema} is not valid: use a decay in (0, 1), e.g. 0.99, or null")
