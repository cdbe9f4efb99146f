"""Shared helpers: compose the real config with overrides, and run the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from cnnexp import CONF_DIR

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CNNEXP_DATA", REPO.parent / "shared" / "data"))

# A small, fast run on synthetic data on the CPU.
TINY = ["data=synthetic", "device=cpu", "epochs=2", "batch_size=64", "progress=false"]


def make_config(*overrides: str) -> DictConfig:
    """The real config composed as `python -m cnnexp OVERRIDES` would compose it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def budget_settings(study: str, budget: str) -> tuple[list[str], dict[str, str]]:
    """What a study's budget changes, as (fixed overrides, {swept key: its values}): the
    overrides its sweep gives every job (cnnexp.studies.budget_overrides)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from cnnexp.studies import budget_overrides

    base = make_config(f"+experiment={study}", f"study.budget={budget}")
    fixed, swept = [f"study.budget={budget}"], {}
    for text in budget_overrides(base.study):
        (override,) = OverridesParser.create().parse_overrides([text])
        if override.is_sweep_override():
            swept[override.key_or_group] = text.partition("=")[2]
        else:
            fixed.append(text)
    return fixed, swept


def study_config(study: str, budget: str, *overrides: str) -> DictConfig:
    """A study's config as a job of its sweep at `budget` gets it (swept keys as `overrides` or
    the YAML set them)."""
    return make_config(f"+experiment={study}", *budget_settings(study, budget)[0], *overrides)


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None):
    """Run `python -m cnnexp ARGS` in `cwd`; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "cnnexp", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def stop_when(path: Path, *args: str, stop: int = signal.SIGTERM, settle: float = 0.0) -> int:
    """Start `python -m cnnexp ARGS`, send it `stop` once `path` exists (its first checkpoint,
    say; `settle` seconds later), and return its exit status."""
    proc = subprocess.Popen([sys.executable, "-m", "cnnexp", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(settle)
    os.kill(proc.pid, stop)
    return proc.wait(timeout=120)


@pytest.fixture
def config():
    return make_config
