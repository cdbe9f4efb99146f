"""Checkpoints that hold everything needed to resume (weights, optimizer, schedule, epoch, RNG),
and the one refusal of a run folder whose saved state is of another config."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnexp.errors import ConfigError, DamagedFileError
from cnnexp.files import atomic_save, read_torch, set_aside


def refuse_other_config(found: str | None, config_hash: str, what: str) -> None:
    """What a run folder holds (`what`: its completed run, a checkpoint) must be of this config:
    resuming another config's state would mix two runs in one record."""
    if found != config_hash:
        raise ConfigError(
            f"{what} is of a different config; start it with the overrides it was started "
            "with, or choose a new hydra.run.dir (or hydra.sweep.dir), or delete that folder"
        )


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


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write the state atomically: a kill mid-write leaves the previous checkpoint intact."""
    atomic_save(state, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (our own files: full unpickling is safe).
    A damaged one cannot be resumed: it is set aside, never deleted, and the run stops; the same
    command again starts the run over."""
    try:
        return read_torch(path, "", weights_only=False)
    except DamagedFileError as err:
        aside = set_aside(path)
        raise DamagedFileError(
            path,
            err.reason,
            f"it is kept as {aside.name} and nothing was trained; run the same command again "
            "to start this run over from epoch 1",
        ) from None
