"""`python -m cnnexp.lab`: the whole lab in one command. It plans (each study's runs and their
minutes on this machine, from a few timed training steps of each network), runs every study as
a sweep through the workers launcher, goes on where it stopped when started again (at the same
commit only), and writes the lab report. The studies and budgets are conf/lab.yaml.

    python -m cnnexp.lab --dry-run                 # the plan only
    python -m cnnexp.lab --budget quick            # about half an hour on two CPU cores
    python -m cnnexp.lab --hours 4                 # the largest budget whose plan fits 4 hours
    python -m cnnexp.lab --budget quick -- data=synthetic   # overrides for every study
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hydra.errors import HydraException
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from cnnexp import CONF_DIR
from cnnexp.environment import cpu_has_bf16, cpu_model, git_commit
from cnnexp.errors import STOPPED, CnnexpError, DamagedFileError
from cnnexp.files import atomic_write_json, read_json
from cnnexp.schema import COMPLETED, read_metrics
from cnnexp.studies import REPLICATE, _last_of_each, key_value, sweep_jobs

BUDGETS = ("quick", "standard", "full")  # from the least to the most
LAB_FILE = "lab.json"  # in the lab's folder: the commit, budget and overrides it runs
PLAN_FILE = "lab-plan.json"  # the plan's estimates, as first printed
TIMES_FILE = "lab-times.json"  # each study's measured sweep time (summed across sittings)
INTERRUPTED = 130  # the exit status of a process Ctrl-C stopped (128 + 2)
STARTUP_SECONDS = 10.0  # a job's start: Python, Hydra, torch, the data from its cache
# Images in each data set's splits, for the plan (a run reads them; the plan must not).
IMAGES = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "cifar10": (50000, 10000),
          "cifar100": (50000, 10000)}  # fmt: skip
TIMING_BATCH = 32  # images per timed step: per image about as fast as larger batches, and quick
EVAL_COST = 1 / 3  # a test image costs about a third of a training image (forward only)
# Jobs side by side on one CPU share its memory and caches: each ran 1.15-1.22x slower than its
# network timed alone, two at a time on two cores (benchmarks/RESULTS.md, the lab's plan).
SIDE_BY_SIDE = 1.15


@dataclass
class Planned:
    """One study of the lab: its sweep's overrides, its jobs and each job's estimated seconds
    (one job alone on its share of the cores)."""

    name: str
    question: str
    overrides: list[str]
    jobs: list[list[str]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def minutes(self, at_a_time: int) -> float:
        """The study's wall minutes as the workers launcher runs its jobs: in order, each on
        the first of `at_a_time` slots to come free. A job left alone at the end keeps its one
        slot's cores, so an odd job out costs a whole job's time, not a share of it."""
        slots = [0.0] * at_a_time
        for seconds in self.seconds:
            heapq.heapreplace(slots, slots[0] + seconds)
        return max(slots) / 60


def lab_config() -> DictConfig:
    return OmegaConf.load(CONF_DIR / "lab.yaml")


def hardware() -> str:
    """gpu, cpu_bf16 (native bf16: AVX512-BF16 or AMX) or cpu_avx2."""
    import torch

    if torch.cuda.is_available():
        return "gpu"
    return "cpu_bf16" if cpu_has_bf16() else "cpu_avx2"


def studies_of(
    lab: DictConfig, budget: str, kind: str, extra: list[str], only: list[str] | None = None
) -> list[Planned]:
    """Each study's overrides: its own, this hardware's, its budget's, the command line's (the
    last value of each key wins)."""
    out = []
    for name, study in lab.studies.items():
        if only and name not in only:
            continue
        texts = [
            *study.overrides,
            *lab.hardware.get(kind, {}).get(name, []),
            *lab.budgets[budget].studies.get(name, []),
            *extra,
        ]
        out.append(Planned(name, str(study.question), _last_of_each(list(texts))))
    return out


def compose(overrides: list[str], hydra: bool = False) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=overrides, return_hydra_config=hydra)


def plan(studies: list[Planned], at_a_time: int) -> list[Planned]:
    """Every study's jobs, and each job's seconds from its network's timed steps."""
    timings: dict[str, tuple[float, float]] = {}
    arms: dict[tuple[str, ...], float] = {}  # a job's seconds do not depend on its seed
    for study in studies:
        study.jobs = sweep_jobs(sweep_config(study.overrides))
        for job in study.jobs:
            arm = tuple(t for t in job_overrides(job) if key_value(t)[0] != REPLICATE)
            if arm not in arms:
                arms[arm] = job_seconds(compose(list(arm)), timings, at_a_time)
            study.seconds.append(arms[arm])
    return studies


def sweep_config(overrides: list[str]) -> DictConfig:
    """The config a sweep of these overrides starts from, as `python -m cnnexp -m` composes
    it: the values swept (seed=0,1,2) left out of the composition, and every override in
    hydra.overrides.task, where the sweeper reads them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    config = compose(fixed, hydra=True)
    with open_dict(config):
        config.hydra.overrides.task = list(overrides)
    return config


def job_overrides(job: list[str]) -> list[str]:
    """A job's overrides without Hydra's own keys (a folder), which a plain compose refuses."""
    return [text for text in job if not key_value(text)[0].startswith("hydra.")]


def job_seconds(cfg: DictConfig, timings: dict[str, tuple[float, float]], at_a_time: int) -> float:
    """A job's start, then per epoch its training images and its test images, at its network's
    timed seconds per image; test-time augmentation's passes at the last epoch."""
    train_images, test_images = images(cfg)
    per_train, per_test = network_seconds(cfg, timings, at_a_time)
    passes = get_class(cfg.tta._target_).passes  # forward passes per test image (conf/tta/)
    epoch = train_images * per_train + test_images * per_test
    compute = cfg.epochs * epoch + (passes - 1) * test_images * per_test
    from cnnexp.train import resolve_device

    on_cpu = resolve_device(cfg.device).type == "cpu"
    shared = SIDE_BY_SIDE if at_a_time > 1 and on_cpu else 1.0
    return STARTUP_SECONDS + shared * compute


def images(cfg: DictConfig) -> tuple[int, int]:
    """(training images, test images) a run of this config reads."""
    data = cfg.data
    if data.name == "synthetic":
        train, test = data.synthetic.train_size, data.synthetic.test_size
    else:
        train, test = IMAGES.get(data.name, IMAGES["cifar10"])
    train -= data.validation or 0
    return min(train, data.subset or train), test


def network_seconds(
    cfg: DictConfig, timings: dict[str, tuple[float, float]], at_a_time: int
) -> tuple[float, float]:
    """Seconds per training image and per test image of this config's network, timed on a few
    steps of random images at its batch size and precision, with this job's share of the
    cores; each network timed once."""
    import torch

    from cnnexp.models import build_model
    from cnnexp.precision import _seconds_per_step, choose
    from cnnexp.train import resolve_device

    key = json.dumps(
        [OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "pool", "activation")]
        + [cfg.precision, str(cfg.channels_last), cfg.data.channels, cfg.data.size],
        sort_keys=True,
    )
    if key in timings:
        return timings[key]
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // at_a_time))
    try:
        device = resolve_device(cfg.device)
        model = build_model(cfg).to(device)
        size = (TIMING_BATCH, cfg.data.channels, cfg.data.size, cfg.data.size)
        example = torch.randn(size, device=device)
        if str(cfg.channels_last).lower() in ("true", "auto"):
            model = model.to(memory_format=torch.channels_last)
            example = example.contiguous(memory_format=torch.channels_last)

        def seconds(name: str) -> float:
            return _seconds_per_step(model, example, name, warmup=1, repeats=3)

        # As the run decides: on a CPU with native bf16, auto times both formats.
        measured = {}
        precision = choose(cfg.precision, device, lambda: measured.update(
            fp32=seconds("fp32"), bf16=seconds("bf16")) or measured)  # fmt: skip
        per_image = (measured.get(precision.name) or seconds(precision.name)) / TIMING_BATCH
    finally:
        torch.set_num_threads(threads)
    timings[key] = (per_image, per_image * EVAL_COST)
    return timings[key]


def choose_budget(lab: DictConfig, args: argparse.Namespace, kind: str) -> tuple[str, list]:
    """The budget asked for, or with --hours the largest whose plan fits."""

    def planned(budget: str) -> list[Planned]:
        return plan(studies_of(lab, budget, kind, args.overrides, args.only), args.at_a_time)

    if args.hours is None:
        return args.budget, planned(args.budget)
    fits = None
    for budget in BUDGETS:
        studies = planned(budget)
        total = sum(s.minutes(args.at_a_time) for s in studies) / 60
        print(f"lab: --budget {budget} would take about {_duration(total * 3600)}")
        if total <= args.hours:
            fits = (budget, studies)
    if fits is None:
        print(f"lab: no budget fits {args.hours} hours; the quick one is the smallest")
        return "quick", planned("quick")
    return fits


def print_plan(budget: str, studies: list[Planned], lab: DictConfig, kind: str, k: int) -> None:
    where = "a GPU" if kind == "gpu" else f"{cpu_model()} ({kind}), {os.cpu_count()} cores"
    print(f"lab plan: --budget {budget} ({lab.budgets[budget].description}) on {where}, "
          f"{k} jobs at a time")  # fmt: skip
    for study in studies:
        print(
            f"  {study.question:>4}  {study.name:<14} {len(study.jobs):>3} runs  "
            f"about {_duration(study.minutes(k) * 60):>9}   {' '.join(study.overrides)}"
        )
    total = sum(s.minutes(k) for s in studies) * 60
    runs = sum(len(s.jobs) for s in studies)
    print(f"  total: {runs} runs, about {_duration(total)}")


def _duration(seconds: float) -> str:
    minutes = math.ceil(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def check_commit(out: Path, budget: str, extra: list[str]) -> str | None:
    """None when `out` is new or holds this commit's lab of this budget (it is then recorded);
    else the one line that refuses to mix."""
    commit = git_commit() or "unknown"
    mine = {"commit": commit, "budget": budget, "overrides": extra}
    path = out / LAB_FILE
    if path.exists():
        theirs = read_json(path, "remove it to start this lab folder over")
        if theirs != mine:
            return (
                f"{out} holds a lab of commit {theirs.get('commit')}, --budget "
                f"{theirs.get('budget')}, overrides {theirs.get('overrides')}; this is commit "
                f"{commit}, --budget {budget}, overrides {extra}. Run it at that commit and "
                "budget to go on, or give another --out"
            )
        return None
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(mine, path)
    return None


def runs_done(folder: Path) -> int:
    """Completed runs under a folder (their records say so)."""
    done = 0
    for path in folder.rglob("metrics.json"):
        try:
            done += (read_metrics(path.parent) or {}).get("status") == COMPLETED
        except DamagedFileError:  # the sweep's report names it; here it is not done
            continue
    return done


def run_studies(studies: list[Planned], out: Path, k: int) -> int:
    """Each study's sweep in turn, a line before each for the whole lab; stops at a signal."""
    total_runs = sum(len(s.jobs) for s in studies)
    started = time.monotonic()
    failed = []
    for i, study in enumerate(studies, 1):
        done = sum(runs_done(out / s.name) for s in studies)
        left = sum(
            s.minutes(k) * 60 * (1 - min(1.0, runs_done(out / s.name) / max(1, len(s.jobs))))
            for s in studies
        )
        print(
            f"lab: study {i} of {len(studies)} ({study.name}, question {study.question}); "
            f"{done} of {total_runs} runs done, about {_duration(left)} left",
            flush=True,
        )
        began = time.monotonic()
        status = sweep(study, out, k)
        note_time(out, study.name, time.monotonic() - began)
        if status in (STOPPED, INTERRUPTED, -signal.SIGTERM, -signal.SIGINT):
            print(
                f"lab: stopped in {study.name} after {_duration(time.monotonic() - started)}; "
                "the same command goes on where it stopped",
                flush=True,
            )
            return INTERRUPTED if status in (INTERRUPTED, -signal.SIGINT) else STOPPED
        if status != 0:
            failed.append(study.name)
    if failed:
        print(f"lab: some runs of {', '.join(failed)} failed; their reports say which and why")
    return 1 if failed else 0


def note_plan(out: Path, studies: list[Planned], k: int) -> None:
    """The plan as first printed for this lab folder (a resumed lab keeps it): per study its
    runs and estimated seconds, for comparing with the measured times (lab-times.json)."""
    path = out / PLAN_FILE
    if not path.exists():
        plan = {s.name: {"runs": len(s.jobs), "seconds": s.minutes(k) * 60} for s in studies}
        atomic_write_json({"cpu": cpu_model(), "at_a_time": k, "studies": plan}, path)


def note_time(out: Path, name: str, seconds: float) -> None:
    """Add a study's sweep time to lab-times.json (its sittings summed across resumes)."""
    path = out / TIMES_FILE
    times = read_json(path, "remove it; the times of later sittings are recorded anew") or {}
    times[name] = times.get(name, 0.0) + seconds
    atomic_write_json(times, path)


def sweep(study: Planned, out: Path, k: int) -> int:
    """One study's sweep in a process of its own; a SIGTERM to the lab is passed on to it (a
    Ctrl-C reaches it from the terminal)."""
    command = [
        sys.executable, "-m", "cnnexp", "-m", "hydra/launcher=workers",
        f"hydra.launcher.per_device={k}", *study.overrides, f"hydra.sweep.dir={out / study.name}",
    ]  # fmt: skip
    child = subprocess.Popen(command)

    def pass_on(signum, _frame):
        child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, pass_on)
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue  # the child got the same Ctrl-C and stops; wait for it
    finally:
        signal.signal(signal.SIGTERM, previous)


def report(names: list[str], out: Path, budget: str) -> int:
    """The lab report of every named study's folder in `out`, with TensorBoard's pages where
    Chromium is (the report says how to install it where it is not)."""
    folders = [str(out / name) for name in names if (out / name).is_dir()]
    if not folders:
        print(f"error: {out} holds no study's runs: run the lab into it first", file=sys.stderr)
        return 2
    title = f"Convolutional networks lab: LeNet-5, our CIFAR-10 network ({budget} budget)"
    caveat = lab_config().budgets[budget].get("caveat")
    command = [sys.executable, "-m", "cnnexp.report", *folders, "--lab", "--tensorboard-shots",
               "--out", str(out / "report"), "--title", title,
               *(["--caveat", caveat] if caveat else [])]  # fmt: skip
    status = subprocess.call(command)
    if status == 0:
        print(f"lab report: {out / 'report' / 'report.html'}")
    return status


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cnnexp.lab",
        description="The whole lab: plan by this machine, run every study, write the lab report.",
    )
    parser.add_argument("--budget", choices=BUDGETS, default="standard")
    parser.add_argument("--hours", type=float, help="the largest budget whose plan fits")
    parser.add_argument("--dry-run", action="store_true", help="print the plan only")
    parser.add_argument("--out", type=Path, help="the lab's folder (default multirun/lab-BUDGET)")
    parser.add_argument("--only", help="these studies of conf/lab.yaml only (comma-separated)")
    parser.add_argument("--at-a-time", type=int, default=2, help="jobs at a time (workers)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the lab report again from the runs in --out (of any commit), training nothing",
    )
    parser.add_argument("overrides", nargs="*", help="after --: overrides for every study")
    args = parser.parse_args(argv)
    args.only = args.only.split(",") if args.only else None
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse(argv))
    except (CnnexpError, HydraException) as err:  # a bad override or key: one line, no traceback
        print(f"error: {err}".splitlines()[0], file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    lab, kind = lab_config(), hardware()
    unknown = [name for name in args.only or [] if name not in lab.studies]
    if unknown:
        print(f"error: --only {','.join(unknown)}: no such study; choose from "
              f"{', '.join(lab.studies)}", file=sys.stderr)  # fmt: skip
        return 2
    if args.report_only:  # this commit's report of the runs already there, whichever made them
        out = args.out or Path("multirun") / f"lab-{args.budget}"
        return report([n for n in lab.studies if n in (args.only or lab.studies)], out, args.budget)
    budget, studies = choose_budget(lab, args, kind)
    out = args.out or Path("multirun") / f"lab-{budget}"
    print_plan(budget, studies, lab, kind, args.at_a_time)
    if args.dry_run:
        return 0
    refused = check_commit(out, budget, args.overrides)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    note_plan(out, studies, args.at_a_time)
    status = run_studies(studies, out, args.at_a_time)
    if status in (STOPPED, INTERRUPTED):
        return status
    return report([s.name for s in studies], out, budget) or status


if __name__ == "__main__":
    sys.exit(main())
