"""Screenshots of the real TensorBoard on a run's event files: its Scalars page (the loss and
accuracy curves) and its Images page (the feature maps), taken by headless Chromium, as the
lab asks for them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from cnnexp.files import check_events
from cnnexp.report.document import PAGE_WIDTH

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL = (
    "install Chromium to take them (Debian/Ubuntu: sudo apt-get install chromium; macOS: "
    "brew install --cask chromium), or put its path in CHROME"
)
# The flags a closed machine needs: no sandbox as root, and no network of Chromium's own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
PAGES = {  # file name -> (TensorBoard page and its filter, what it shows)
    "scalars": (
        "scalars&tagFilter="
        + urllib.parse.quote("^(train|test)/(loss|acc)$", safe="")
        + "&_smoothingWeight=0",
        "TensorBoard's Scalars page: training and test loss and accuracy per epoch, unsmoothed",
    ),
    "images": (
        "images&tagFilter=features",
        "TensorBoard's Images page: feature maps of fixed test images after the last epoch",
    ),
}
TIMEOUT = 90  # seconds for TensorBoard to answer and for a page to be drawn


def browser() -> str | None:
    """The Chromium to drive: $CHROME, else the first on the PATH."""
    named = os.environ.get("CHROME")
    if named:
        return named if shutil.which(named) else None
    return next((found for b in BROWSERS if (found := shutil.which(b))), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tensorboard_shots(run: Path, out: Path, name: str) -> list[tuple[Path, str]]:
    """Start TensorBoard on `run`/tb, screenshot its Scalars and Images pages into
    out/tensorboard-{name}-{page}.png; returns (path, caption) of each page taken."""
    chrome = browser()
    if chrome is None:
        raise FileNotFoundError(f"no Chromium for the TensorBoard screenshots: {INSTALL}")
    check_events(Path(run) / "tb", "its pages are not taken")  # TensorBoard skips a damaged one
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(Path(run) / "tb")]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/", server)
        shots = []
        for page, (fragment, caption) in PAGES.items():
            path = Path(out) / f"tensorboard-{name}-{page}.png"
            screenshot(chrome, f"http://127.0.0.1:{port}/?darkMode=false#{fragment}", path)
            shots.append((path, f"{caption} ({Path(run).name})"))
        return shots
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_for(url: str, server: subprocess.Popen) -> None:
    """Until TensorBoard answers (it reads the event files first)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"TensorBoard exited with {server.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"TensorBoard did not answer at {url} in {TIMEOUT} s")


def screenshot(chrome: str, url: str, path: Path, size: str = f"{PAGE_WIDTH},1200") -> None:
    """A page after its scripts have run (virtual time lets TensorBoard fetch and draw), as
    wide as the report's page so that it is shown at its own size."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chrome, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}"]
            + ["--virtual-time-budget=20000", f"--screenshot={path}", url],
            capture_output=True,
            timeout=TIMEOUT,
            check=True,
        )
    if not path.exists() or path.stat().st_size < 5_000:
        raise RuntimeError(f"Chromium wrote no screenshot of {url} to {path}")
