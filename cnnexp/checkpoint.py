"""Checkpoints that hold everything needed to resume: weights, optimizer, schedule, epoch, RNG."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnexp.files import atomic_save


def rng_states() -> dict[str, Any]:
    """The global random states a training step may draw from (dropout, for one)."""
    states = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states` saved."""
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, **state: Any) -> None:
    """Write the state atomically: a kill mid-write leaves the previous checkpoint intact."""
    atomic_save({**state, "rng": rng_states()}, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (our own files: full unpickling is safe)."""
    return torch.load(path, map_location="cpu", weights_only=False)
