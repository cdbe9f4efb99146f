"""A background sampler of GPU and CPU load: TensorBoard `system/...`, a CSV, mean and peak."""

from __future__ import annotations

import csv
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


def _nvml_handles() -> list:
    """NVML device handles, or [] where there is no NVIDIA driver or no nvidia-ml-py."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...
        return []


class SystemMonitor:
    """Samples every `interval` seconds on a daemon thread until `stop()`, and at `stop()` if it
    has no reading yet."""

    def __init__(
        self,
        csv_path: Path,
        interval: float,
        log_scalar: Callable[[str, float, int, float], None] | None = None,
    ):
        self.csv_path = Path(csv_path)
        self.interval = interval
        self.log_scalar = log_scalar
        self.process = psutil.Process(os.getpid())
        self.gpus = _nvml_handles()
        self.samples: list[dict[str, float]] = []
        self.cost_seconds = 0.0  # time spent sampling, to measure the monitor's own overhead
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="system-monitor", daemon=True)
        self._t0 = time.time()

    def start(self) -> SystemMonitor:
        """Begin sampling."""
        psutil.cpu_percent()  # the first call only sets the baseline
        self.process.cpu_percent()
        self._thread.start()
        return self

    def sample(self) -> dict[str, float]:
        """One reading of every figure."""
        row = {
            "time_s": round(time.time() - self._t0, 3),
            "cpu_percent": psutil.cpu_percent(),
            "process_cpu_percent": self.process.cpu_percent(),
            "process_memory_mb": self.process.memory_info().rss / 2**20,
        }
        if self.gpus:
            import pynvml

            for i, handle in enumerate(self.gpus):
                util = pynvml.nvmlDeviceGetUtilizationRates(handle)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                row[f"gpu{i}_util_percent"] = util.gpu
                row[f"gpu{i}_memory_mb"] = memory.used / 2**20
                try:
                    row[f"gpu{i}_power_w"] = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000
                except pynvml.NVMLError:  # some boards do not report power
                    pass
        return row

    def _run(self) -> None:
        with self.csv_path.open("w", newline="") as f:
            writer = None
            step = 0
            while not self._stop.wait(self.interval) or not self.samples:
                # A run shorter than the interval gets one reading at stop(), over its whole
                # time; a longer one none there, as a short last interval would read as noise
                # in the mean and peak.
                began = time.perf_counter()
                try:
                    row = self.sample()
                except Exception as err:  # a monitor must never stop the training
                    log.warning("system monitor stopped: %s", err)
                    return
                if writer is None:
                    writer = csv.DictWriter(f, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
                f.flush()
                self.samples.append(row)
                if self.log_scalar is not None:
                    for key, value in row.items():
                        if key != "time_s":
                            self.log_scalar(f"system/{key}", value, step, self._t0 + row["time_s"])
                step += 1
                self.cost_seconds += time.perf_counter() - began

    def stop(self) -> dict[str, float]:
        """Stop sampling; return the mean and peak of each figure, and the monitor's cost."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        summary: dict[str, float] = {
            "samples": len(self.samples),
            "cost_seconds": round(self.cost_seconds, 4),
        }
        for key in self.samples[0] if self.samples else []:
            if key == "time_s":
                continue
            values = [row[key] for row in self.samples if key in row]
            summary[f"{key}_mean"] = round(sum(values) / len(values), 2)
            summary[f"{key}_peak"] = round(max(values), 2)
        return summary
