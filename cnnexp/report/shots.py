"""Screenshots of the real TensorBoard on a run's event files: its Scalars page (the loss and
accuracy curves) and its Images page (the feature maps), taken by headless Chromium, as the
lab asks for them."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from cnnexp.files import check_events, parse_json
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
CHROMIUM_FIX = "use another Chromium (CHROME=path), or update it"
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
        # from the run's folder, so that the page names its events "tb", not a path of this
        # machine
        [sys.executable, "-m", "tensorboard.main", "--logdir", "tb"]
        + ["--host", "127.0.0.1", "--port", str(port)],
        cwd=Path(run),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/", server)
        shots = []
        for page, (fragment, caption) in PAGES.items():
            path = Path(out) / f"tensorboard-{name}-{page}.png"
            screenshot(chrome, f"http://127.0.0.1:{port}/?darkMode=false#{fragment}", path)
            shots.append((path, f"{caption} (study {name}, job {Path(run).name})"))
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


# What TensorBoard keeps in the browser's storage, set before a page is drawn: every point on
# the axes ("Ignore outliers in chart scaling" off, which otherwise hides epoch 1 and the top of
# an accuracy curve) and no smoothing.
STORAGE = {"_ignoreYOutliers": "false", "_smoothingWeight": "0"}
TALLEST = """(() => {  // the page's full height: its own, or its tallest scrolled box's
  let tallest = document.documentElement.scrollHeight;
  const walk = (root) => {
    for (const e of root.querySelectorAll("*")) {
      if (e.scrollHeight > e.clientHeight + 1)
        tallest = Math.max(tallest, e.getBoundingClientRect().top + e.scrollHeight);
      if (e.shadowRoot) walk(e.shadowRoot);
    }
  };
  walk(document);
  return Math.ceil(tallest);
})()"""
FIRST_PANE = """(() => {  // the bottom of the first group of charts: the tags the filter matched
  const walk = (root) => {
    for (const e of root.querySelectorAll("*")) {
      if (e.localName === "tf-category-paginated-view") return e;
      const inner = e.shadowRoot && walk(e.shadowRoot);
      if (inner) return inner;
    }
    return null;
  };
  const pane = walk(document);
  return pane ? Math.ceil(pane.getBoundingClientRect().bottom) + 8 : 0;
})()"""
MAX_HEIGHT = 8000  # px: a page taller than this is cut


def screenshot(chrome: str, url: str, path: Path, width: int = PAGE_WIDTH) -> None:
    """A page as wide as the report's and as tall as its content (every image of a grid),
    with TensorBoard's `STORAGE` settings in place before it is drawn, after its scripts have
    fetched and drawn everything (virtual time)."""
    with tempfile.TemporaryDirectory() as profile, DevTools(chrome, profile) as tools:
        page = tools.open(width, 1200)
        tools.load(page, url)  # the page's origin first: its storage is per origin
        setting = "".join(f"localStorage.setItem({k!r}, {v!r});" for k, v in STORAGE.items())
        tools.call("Runtime.evaluate", {"expression": setting}, page)
        tools.load(page)  # again, reading them (the same address: a reload, not a jump)
        height = tools.call(
            "Runtime.evaluate", {"expression": TALLEST, "returnByValue": True}, page
        )
        tall = min(int(height["result"]["value"]), MAX_HEIGHT)
        tools.call("Emulation.setDeviceMetricsOverride", _metrics(width, tall), page)
        tools.settle(page, 2000)  # drawn again at its full height
        bottom = tools.call(
            "Runtime.evaluate", {"expression": FIRST_PANE, "returnByValue": True}, page
        )
        clip = {"x": 0, "y": 0, "width": width, "height": bottom["result"]["value"] or tall}
        shot = tools.call(
            "Page.captureScreenshot", {"format": "png", "clip": {**clip, "scale": 1}}, page
        )
    path.write_bytes(base64.b64decode(shot["data"]))
    if path.stat().st_size < 5_000:
        raise RuntimeError(f"Chromium drew nothing of {url} into {path}")


def _metrics(width: int, height: int) -> dict:
    return {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}


class DevTools:
    """Chromium driven through its DevTools protocol over a pipe (`--remote-debugging-pipe`:
    JSON messages ended by a NUL byte, commands on its fd 3, answers on its fd 4), so that a
    page can be prepared (its storage set, its size measured) before it is captured."""

    def __init__(self, chrome: str, profile: str):
        self.chrome, self.profile, self.next_id = chrome, profile, 0
        self.pending = b""

    def __enter__(self) -> DevTools:
        to_chrome, self.commands = os.pipe()
        self.answers, from_chrome = os.pipe()

        def as_fds_3_and_4():  # in the child: where Chromium looks for the pipe's two ends
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome, from_chrome)]
            for fd, wanted in zip(high, (3, 4), strict=True):
                os.dup2(fd, wanted)  # inheritable; every other descriptor closes at exec

        self.process = subprocess.Popen(
            [self.chrome, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe"],
            close_fds=False,  # Python's own descriptors are not inheritable (PEP 446)
            preexec_fn=as_fds_3_and_4,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.commands)
        os.close(self.answers)
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def open(self, width: int, height: int) -> str:
        """A new blank tab of this size; returns its session."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = attached["sessionId"]
        self.call("Page.enable", {}, page)
        self.call("Emulation.setDeviceMetricsOverride", _metrics(width, height), page)
        return page

    def load(self, page: str, url: str | None = None) -> None:
        """Open `url` (or reload the page) and wait until its scripts are idle: no fetch
        pending for 20 s of virtual time (TensorBoard fetches its runs, their data, draws)."""
        if url:
            self.call("Page.navigate", {"url": url}, page)
        else:
            self.call("Page.reload", {}, page)
        self.settle(page, 20000)

    def settle(self, page: str, budget_ms: int) -> None:
        policy = {"policy": "pauseIfNetworkFetchesPending", "budget": budget_ms}
        self.call("Emulation.setVirtualTimePolicy", policy, page)
        self.wait_for("Emulation.virtualTimeBudgetExpired", page)

    def call(self, method: str, params: dict, page: str | None = None) -> dict:
        """Send a command and return its result (events that arrive first are passed over)."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if page:
            message["sessionId"] = page
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        answer = self._until(lambda m: m.get("id") == self.next_id)
        if "error" in answer:
            raise RuntimeError(f"Chromium refused {method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    def wait_for(self, event: str, page: str) -> None:
        self._until(lambda m: m.get("method") == event and m.get("sessionId") == page)

    def _until(self, wanted) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            while b"\0" in self.pending:
                raw, self.pending = self.pending.split(b"\0", 1)
                message = parse_json(raw, "Chromium's DevTools pipe", CHROMIUM_FIX, dict)
                if wanted(message):
                    return message
            ready, _, _ = select.select([self.answers], [], [], 1.0)
            if ready:
                chunk = os.read(self.answers, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self.pending += chunk
        raise TimeoutError(f"Chromium did not answer in {TIMEOUT} s")
