"""Files on disk. Written atomically: a reader (or a crash) never sees half a file. Read through
one checked reader per kind (JSON, YAML, CSV, text, a torch file, TensorBoard's events): a file
that is cut short, corrupt or not of the form we write raises DamagedFileError, which names the
file, what is wrong and what to do, instead of a library's traceback. Each caller says what to
do, because only it knows whether the work can go on without the file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cnnexp.errors import DamagedFileError


def _atomic(path: Path, write: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside `path`, then rename it into place."""
    _atomic(path, lambda f: torch.save(obj, f))


def atomic_write_json(obj: Any, path: Path) -> None:
    """Write `obj` as indented JSON, atomically."""
    _atomic(path, lambda f: f.write(json.dumps(obj, indent=2, default=str).encode()))


def _checked(path: Path, fix: str, read: Callable[[], Any], form: type | None = None) -> Any:
    """What `read` returns, or DamagedFileError naming `path`; `form`: the type the file must
    hold (a record is a JSON object, not a list)."""
    try:
        found = read()
    except (OSError, UnicodeDecodeError) as err:
        raise DamagedFileError(path, _first_line(err), fix) from err
    except Exception as err:  # each library's own parse error: the file is not what we wrote
        raise DamagedFileError(path, f"cut short or corrupt: {_first_line(err)}", fix) from err
    if form is not None and not isinstance(found, form):
        raise DamagedFileError(path, f"holds a {type(found).__name__}, not a {form.__name__}", fix)
    return found


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def read_json(path: Path, fix: str, form: type | None = dict) -> Any | None:
    """The JSON in `path` (by default an object), or None where there is no such file."""
    path = Path(path)
    if not path.exists():
        return None
    return _checked(path, fix, lambda: json.loads(path.read_text()), form)


def parse_json(text: str, where: str, fix: str, form: type | None = None) -> Any:
    """JSON kept inside another file (a runs table's cell): `where` names that file and cell."""
    return _checked(where, fix, lambda: json.loads(text), form)  # type: ignore[arg-type]


def read_text(path: Path, fix: str) -> str | None:
    """A text file (nvidia-smi's output, say), or None where there is no such file."""
    path = Path(path)
    if not path.exists():
        return None
    text = _checked(path, fix, path.read_text)
    _whole_lines(path, fix)
    return text


def read_yaml(path: Path, fix: str, form: type | None = None) -> Any | None:
    """The YAML in `path` (of type `form`: Hydra's config is a dict, its overrides a list), or
    None where there is no such file."""
    import yaml

    path = Path(path)
    if not path.exists():
        return None
    found = _checked(path, fix, lambda: yaml.safe_load(path.read_text()), form)
    _whole_lines(path, fix)
    return found


def _whole_lines(path: Path, fix: str) -> None:
    """A text file cut short between lines may still parse (YAML, CSV); every writer of ours
    (pandas, csv, OmegaConf, nvidia-smi) ends its last line, so an unfinished one is a cut."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(size - 1, 0))
        if f.read(1) != b"\n":
            unfinished = "empty" if not size else "cut short: its last line is unfinished"
            raise DamagedFileError(path, unfinished, fix)


def read_csv(path: Path, fix: str, needs: tuple[str, ...] = ()) -> Any:
    """A CSV file as a DataFrame; `needs`: columns without which it is not of our form."""
    import pandas as pd

    path = Path(path)
    table = _checked(path, fix, lambda: pd.read_csv(path))
    _whole_lines(path, fix)
    missing = [c for c in needs if c not in table]
    if missing:
        raise DamagedFileError(path, f"it has no {', '.join(map(repr, missing))} column", fix)
    return table


def read_torch(path: Path, fix: str, weights_only: bool = True) -> Any:
    """A torch.save file. `weights_only=False` only for files we wrote ourselves (a
    checkpoint holds random states and the precision): full unpickling runs code."""
    return _checked(
        path, fix, lambda: torch.load(path, map_location="cpu", weights_only=weights_only), dict
    )


def set_aside(path: Path) -> Path:
    """Rename a damaged file to `<name>.damaged` (then .damaged-2, ...) beside it, so that a
    new run can start without deleting it; returns the new path."""
    path = Path(path)
    aside, n = path.with_name(f"{path.name}.damaged"), 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{n}")
    try:
        path.rename(aside)
    except FileNotFoundError:  # another process of the run (a DDP rank) set it aside first
        pass
    return aside


def read_events(folder: Path, fix: str) -> Any:
    """TensorBoard's events in `folder`, loaded (an EventAccumulator that keeps every image).
    TensorBoard skips a record it cannot read without a word; each event file is first read
    record by record here, so that a damaged one is named."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    check_events(folder, fix)
    events = EventAccumulator(str(folder), size_guidance={"images": 0})
    events.Reload()
    return events


def check_events(folder: Path, fix: str) -> None:
    """DamagedFileError for the first event file in `folder` with a record cut short or failing
    its checksum (what TensorBoard itself would skip without a word)."""
    for path in sorted(Path(folder).glob("*tfevents*")):
        _checked(path, fix, lambda path=path: _every_record(path))


def _every_record(path: Path) -> None:
    """Read the event file to its end; DataLossError at a record cut short or failing its CRC."""
    from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow

    reader = pywrap_tensorflow.PyRecordReader_New(str(path))
    try:
        while True:
            reader.GetNext()
    except errors.OutOfRangeError:  # the file's end
        return
