"""cnnexp: Hydra-configured CNN experiments that answer a deep-learning lab's questions."""

from pathlib import Path

__version__ = "0.1.0"

# conf/ sits beside the package at the top of the repository.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
