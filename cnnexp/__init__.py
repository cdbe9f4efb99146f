"""cnnexp: Hydra-configured CNN experiments that answer a deep-learning lab's questions."""

from pathlib import Path

__version__ = "0.1.0"

# conf/ sits beside the package at the top of the repository; an installed wheel carries it
# inside the package (pyproject.toml maps it to cnnexp/conf).
_INSTALLED = Path(__file__).resolve().parent / "conf"
CONF_DIR = _INSTALLED if _INSTALLED.is_dir() else Path(__file__).resolve().parent.parent / "conf"

# The config schemas must be in Hydra's ConfigStore before any config is composed.
from cnnexp.config import register  # noqa: E402

register()
