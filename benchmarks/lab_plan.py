"""The lab's plan against its measured times: per study of a lab folder, the runs and minutes
`python -m cnnexp.lab` estimated when it first planned it (lab-plan.json) beside the minutes
its sweeps took (lab-times.json, every sitting summed), and their ratio.

    python benchmarks/lab_plan.py multirun/lab-quick
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tabulate import tabulate

from cnnexp.lab import LAB_FILE, PLAN_FILE, TIMES_FILE


def rows(folder: Path) -> list[list]:
    plan = json.loads((folder / PLAN_FILE).read_text())["studies"]
    times = json.loads((folder / TIMES_FILE).read_text())
    out = []
    for name, planned in plan.items():
        measured = times.get(name)
        out.append([
            name, planned["runs"], planned["seconds"] / 60,
            measured / 60 if measured is not None else None,
            measured / planned["seconds"] if measured else None,
        ])  # fmt: skip
    estimated = sum(p["seconds"] for p in plan.values())
    measured = sum(times.get(name, 0.0) for name in plan)
    out.append(["total", sum(p["runs"] for p in plan.values()), estimated / 60, measured / 60,
                measured / estimated])  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a lab folder (multirun/lab-<budget>)")
    folder = parser.parse_args().folder
    lab = json.loads((folder / LAB_FILE).read_text())
    plan = json.loads((folder / PLAN_FILE).read_text())
    print(f"lab folder {folder.name}: commit {lab['commit'][:10]}, --budget {lab['budget']}, "
          f"{plan['cpu']}, {plan['at_a_time']} jobs at a time")  # fmt: skip
    headers = ["study", "runs", "estimated min", "measured min", "measured / estimated"]
    print(tabulate(rows(folder), headers=headers, floatfmt=".2f", tablefmt="github"))


if __name__ == "__main__":
    main()
