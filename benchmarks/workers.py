"""How many jobs at a time: one real sweep of a study, timed whole, at each K of
hydra/launcher=workers (K jobs at a time per GPU, or on the CPU, the cores split between them).

    python benchmarks/workers.py --ks 1 2 --seeds 2 -- +experiment=factorial epochs=1
    python benchmarks/workers.py --ks 1 4 8 --seeds 4 -- +experiment=pooling \
        study.budget=cifar10_gpu 'study.check.seeds=[]' epochs=2

Everything after `--` is the sweep's overrides (its study decides the jobs; `--seeds N` sets
seed=0..N-1). Prints a markdown table: the sweep's wall time, jobs per minute, and each K's
completed jobs, mean test accuracy and images per second per job. On two CPU cores this says
whether two one-thread jobs beat one two-thread job; on a GPU, the best K for a study network.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Runs here measure speed and accuracy: no pictures, graph or histograms in TensorBoard.
QUIET = ["progress=false", "tracking.images_every=0", "tracking.histograms_every=0",
         "tracking.graph=false", "tracking.misclassified=0",
         "tracking.confusion=false"]  # fmt: skip


def sweep_throughput(
    say: Callable[[str], None], workdir: Path, ks: list[int], seeds: int, overrides: list[str]
) -> list[str]:
    """The same sweep at each K; says a markdown table; returns the Ks whose sweep failed."""
    from cnnexp.schema import read_metrics

    say(f"`{' '.join(overrides)}`, seed=0..{seeds - 1}, on `hydra/launcher=workers`\n")
    say("| K | sweep wall time (s) | jobs per minute | completed | mean test acc | img/s per job |")
    say("|--:|--:|--:|--:|--:|--:|")
    failed = []
    for k in ks:
        sweep = workdir / f"workers-{k}"
        command = [sys.executable, "-m", "cnnexp", "-m", *overrides, *QUIET,
                   f"seed={','.join(map(str, range(seeds)))}", "hydra/launcher=workers",
                   f"hydra.launcher.per_device={k}", f"hydra.sweep.dir={sweep}"]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        took = time.perf_counter() - started
        jobs = [job for job in sorted(sweep.iterdir()) if job.name.isdigit()]  # not .cnnexp-jobs
        records = [read_metrics(job) or {} for job in jobs]
        completed = [r for r in records if r.get("status") == "completed"]
        if done.returncode != 0 or len(completed) < len(records) or not records:
            failed.append(k)
            print((done.stderr or done.stdout)[-2000:], file=sys.stderr)
        accs = [r["final_test_acc"] for r in completed]
        rates = [r["images_per_second"] for r in completed]
        acc = statistics.mean(accs) if accs else float("nan")
        rate = statistics.mean(rates) if rates else 0
        say(
            f"| {k} | {took:.0f} | {60 * len(completed) / took:.2f} | "
            f"{len(completed)}/{len(records)} | {acc:.4f} | {rate:,.0f} |"
        )
    say("")
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2], help="jobs at a time")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per configuration")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the sweeps here")
    parser.add_argument("overrides", nargs="+", help="the sweep's overrides, after --")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cnnexp-workers-"))
    from cnnexp.environment import environment

    env = environment()
    print(f"### Jobs at a time — {time.strftime('%Y-%m-%d')}, git {env['git_commit']}\n")
    print(f"CPU {env['cpu']} ({env['cpu_cores']} cores), GPUs {env['gpus'] or 'none'}, "
          f"torch {env['torch']}\n")  # fmt: skip
    failed = sweep_throughput(print, workdir, args.ks, args.seeds, args.overrides)
    print(f"(sweeps in {workdir})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
