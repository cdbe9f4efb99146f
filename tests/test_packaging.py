"""A wheel (`pip install .`, not editable) carries conf/ inside the package and runs anywhere."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("setuptools") is None, reason="building a wheel needs setuptools"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # Built from a copy: setuptools leaves build/ behind, and stale files there would ship.
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("cnnexp", "conf", "hydra_plugins"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(out)],
                   check=True, capture_output=True)  # fmt: skip
    return next(out.glob("cnnexp-*.whl"))


def test_the_wheel_holds_every_config(wheel):
    configs = {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n.removeprefix("cnnexp/conf/") for n in archive.namelist()
                   if n.startswith("cnnexp/conf/")}  # fmt: skip
    assert "config.yaml" in configs
    assert configs <= shipped, configs - shipped
    # The study sweeper, where Hydra looks for plugins.
    with zipfile.ZipFile(wheel) as archive:
        assert "hydra_plugins/cnnexp_study/__init__.py" in archive.namelist()


@pytest.mark.slow
def test_an_installed_wheel_runs_from_another_folder(wheel, tmp_path):
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(wheel)], check=True)  # fmt: skip
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "cnnexp", "data=synthetic", "epochs=1", "progress=false",
         "precision=fp32", "tracking.images_every=0"],
        cwd=elsewhere, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(elsewhere.glob("outputs/*/*/metrics.json"))
    assert "run folder: " in result.stdout
