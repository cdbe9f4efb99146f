"""The GPU kit: check and measure, on one GPU, everything that only a GPU can show.

    python benchmarks/gpu.py --out gpu.md        # on a GPU machine, under 8 minutes on an H200
    python benchmarks/gpu.py --smoke             # the same code paths on a CPU, in seconds

Checks: bf16 and fp16 autocast (fp16 with a gradient scaler), channels_last, torch.compile, a
one-process nccl DDP run under torchrun, the NVML sampler recording GPU utilisation,
nvidia-smi.txt in the run folder. Measures: `cifar10_fast` against airbench94 (the PyPI
`airbench` package, `pip install -e ".[bench]"`) on the same decoded CIFAR-10 tensors, several
seeds each; LeNet-5 `mnist_fast` time to 99%; each preset in bf16 and in fp32 at the same epochs.
Prints a markdown section for benchmarks/RESULTS.md as it goes (and writes it to --out).

Needs the real datasets under $CNNEXP_DATA (e.g. ../shared/data, or the unpacked gpu-pack made by
benchmarks/pack_data.sh); --smoke uses synthetic data and needs nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from workers import QUIET, sweep_throughput  # benchmarks/workers.py, beside this script

from cnnexp import CONF_DIR
from cnnexp.environment import environment, nvidia_smi
from cnnexp.report.curves import time_to
from cnnexp.schema import NVIDIA_SMI, SYSTEM, read_metrics
from cnnexp.train import train

REPO = Path(__file__).resolve().parent.parent

TRAINED = 0.2  # test accuracy that shows a 10-class network learned (chance is 0.1)


@dataclass
class Kit:
    """Where the kit runs, how big its runs are, and the markdown it has written so far."""

    smoke: bool
    device: str
    seeds: int
    out: Path | None
    workdir: Path
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def data(self, preset: str) -> list[str]:
        """Overrides that shrink `preset` to synthetic data in smoke mode."""
        if not self.smoke:
            return []
        # An easy synthetic task (little noise), so that every format visibly learns in 2 epochs.
        data = ("data=synthetic data.synthetic.train_size=512 data.synthetic.test_size=256 "
                "data.synthetic.noise=0.5 batch_size=64 eval_batch_size=256 "
                "epochs=2").split()  # fmt: skip
        return data + (["model.width_mult=0.125"] if preset.startswith("cifar10") else [])

    def say(self, text: str = "") -> None:
        """Print a markdown line and keep the file up to date, so a cut-short run keeps it."""
        print(text, flush=True)
        self.lines.append(text)
        if self.out:
            self.out.write_text("\n".join(self.lines) + "\n")

    def check(self, name: str, ok: bool, detail: str) -> None:
        """One line of the checks table; a failed check makes the kit exit non-zero."""
        if not ok:
            self.failures.append(name)
        self.say(f"| {name} | {'ok' if ok else '**FAILED**'} | {detail} |")

    def run(self, preset: str, *overrides: str, name: str) -> dict:
        """Train `+experiment=preset` with `overrides` in its own folder; return its metrics."""
        every = [f"+experiment={preset}", f"device={self.device}", *QUIET]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[*every, *overrides, *self.data(preset)])
        run_dir = self.workdir / name
        started = time.perf_counter()
        try:
            metrics = train(cfg, run_dir)
        except Exception as err:  # a check that crashes is a failed check, not the end of the kit
            metrics = read_metrics(run_dir) or {"status": "failed"}
            metrics["error"] = f"{type(err).__name__}: {err}"
        metrics["command_seconds"] = time.perf_counter() - started
        metrics["run_dir"] = str(run_dir)
        return metrics


def mean_std(values: list[float]) -> str:
    """'mean ± std (n=N)' of `values`."""
    if not values:
        return "none"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f} (n={len(values)})"


def machine(kit: Kit) -> None:
    env = environment()
    kit.say(f"## GPU kit — {time.strftime('%Y-%m-%d')}, git {env['git_commit']}\n")
    kit.say(
        f"Device `{kit.device}`: GPUs {env['gpus'] or 'none'}, driver {env['driver']}, "
        f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}; "
        f"CPU {env['cpu']} ({env['cpu_cores']} cores), Python {env['python']}"
        + (
            " — **smoke mode: synthetic data, tiny runs; no figure here means anything**"
            if kit.smoke
            else ""
        )  # fmt: skip
        + "\n"
    )
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        kit.say(f"Compute capability {major}.{minor}\n")


def precision_and_layout(kit: Kit, epochs: int) -> dict[str, dict]:
    """cifar10_fast for a few epochs in each number format and memory layout."""
    kit.say(f"### Precision and memory layout (`cifar10_fast epochs={epochs}`, seed 0)\n")
    kit.say("| precision | channels_last | chose | final test acc | img/s (last epoch) |")
    kit.say("|--|--|--|--:|--:|")
    variants = [("auto", "true"), ("bf16", "true"), ("fp16", "true"), ("fp32", "true"),
                ("bf16", "false")]  # fmt: skip
    results = {}
    for precision, layout in variants:
        name = f"layout-{precision}-{layout}"
        m = kit.run("cifar10_fast", f"epochs={epochs}", f"precision={precision}",
                    f"channels_last={layout}", name=name)  # fmt: skip
        results[name] = m
        last = m["history"][-1] if m.get("history") else {}
        kit.say(
            f"| {precision} | {layout} | {m.get('precision', '-')} | "
            f"{last.get('test_acc', float('nan')):.4f} | {last.get('images_per_second', 0):,.0f} |"
        )
    kit.say()
    return results


def compiled(kit: Kit, epochs: int, eager: dict) -> dict:
    """cifar10_fast under torch.compile against the same run in eager mode."""
    m = kit.run("cifar10_fast", f"epochs={epochs}", "compile=true", name="compile")
    history = m.get("history", [])
    eager_rate = eager["history"][-1]["images_per_second"] if eager.get("history") else None
    if history and eager_rate:
        kit.say(
            f"torch.compile: first epoch {history[0]['train_seconds']:.1f} s (compiling), last "
            f"epoch {history[-1]['images_per_second']:,.0f} img/s against {eager_rate:,.0f} "
            f"eager ({history[-1]['images_per_second'] / eager_rate:.2f}x), test acc "
            f"{history[-1]['test_acc']:.4f}\n"
        )
    return m


def ddp_one_process(kit: Kit) -> dict:
    """`torchrun --nproc_per_node=1 -m cnnexp`: the real launcher, nccl on a GPU."""
    run_dir = kit.workdir / "torchrun"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    overrides = ["+experiment=mnist_fast", "epochs=1", f"device={kit.device}", *QUIET,
                 *kit.data("mnist_fast"), f"hydra.run.dir={run_dir}"]  # fmt: skip
    result = subprocess.run(
        [torchrun, "--nproc_per_node=1", "--standalone", "-m", "cnnexp", *overrides],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    metrics = read_metrics(run_dir) or {"status": "failed"}
    if result.returncode != 0:
        metrics["error"] = (result.stderr or result.stdout)[-2000:]
    return metrics


def nvml_utilisation(run_dir: str) -> tuple[bool, str]:
    """Whether the run's system.csv holds GPU utilisation samples, and what they say."""
    path = Path(run_dir) / SYSTEM
    if not path.exists():
        return False, f"no {path.name}"
    rows = list(csv.DictReader(path.open()))
    column = "gpu0_util_percent"
    if not rows or column not in rows[0]:
        return False, f"{len(rows)} samples, no {column} column (NVML not found)"
    util = [float(r[column]) for r in rows]
    return max(util) > 0, (
        f"{len(util)} samples, GPU utilisation mean {statistics.mean(util):.0f}%, "
        f"peak {max(util):.0f}%"
    )


def checks(kit: Kit, layout: dict, compile_run: dict, ddp: dict, head_to_head: dict) -> None:
    """The table of what only a GPU shows: each line ok or FAILED, with its evidence."""
    kit.say("### Checks\n")
    kit.say("| check | result | evidence |")
    kit.say("|--|--|--|")
    cuda = kit.device == "cuda"
    auto = layout["layout-auto-true"]
    expect_auto = "bf16" if not cuda or torch.cuda.get_device_capability() >= (8, 0) else "fp16"
    if not cuda:
        expect_auto = auto.get("precision")  # on a CPU auto is measured, any answer is right
    kit.check("precision=auto", auto.get("precision") == expect_auto,
              f"chose {auto.get('precision')} ({auto.get('precision_reason')})")  # fmt: skip
    for precision in ("bf16", "fp16", "fp32"):
        m = layout[f"layout-{precision}-true"]
        ok = m.get("status") == "completed" and m.get("precision") == precision
        label = "fp32 trains" if precision == "fp32" else f"{precision} autocast trains"
        kit.check(label, ok and m["final_test_acc"] > TRAINED,
                  f"{m.get('status')}, test acc {m.get('final_test_acc', 0):.4f} "
                  f"{m.get('error') or ''}")  # fmt: skip
    plain = layout["layout-bf16-false"]
    kit.check("channels_last off and on", plain.get("status") == "completed",
              f"off: {plain.get('final_test_acc', 0):.4f}, on: "
              f"{layout['layout-bf16-true'].get('final_test_acc', 0):.4f}")  # fmt: skip
    kit.check("torch.compile", compile_run.get("status") == "completed",
              f"{compile_run.get('status')} {compile_run.get('error') or ''}")  # fmt: skip
    backend = "nccl" if cuda else "gloo"
    kit.check(f"torchrun, one process, {backend}",
              ddp.get("status") == "completed" and ddp.get("backend") == backend,
              f"{ddp.get('status')}, backend {ddp.get('backend')}, world size "
              f"{ddp.get('world_size')} {str(ddp.get('error') or '')[-300:]}")  # fmt: skip
    run_dir = next(iter(head_to_head.values()))["run_dir"] if head_to_head else auto["run_dir"]
    ok, detail = nvml_utilisation(run_dir)
    kit.check("NVML sampler", ok or not cuda, detail + ("" if cuda else " (no GPU: expected)"))
    smi = Path(run_dir) / NVIDIA_SMI
    kit.check("nvidia-smi.txt", smi.exists() or (not cuda and nvidia_smi() is None),
              f"{smi.stat().st_size} bytes" if smi.exists() else "absent")  # fmt: skip
    kit.say()


def ours_against_airbench(kit: Kit) -> dict[str, dict]:
    """cifar10_fast, several seeds, then airbench94 the same number of times on the same data."""
    kit.say(f"### CIFAR-10: `cifar10_fast` against airbench94, {kit.seeds} seeds each\n")
    ours = {
        f"fast-{seed}": kit.run(
            "cifar10_fast", f"seed={seed}", "tracking.monitor_interval=0.2", name=f"fast-{seed}"
        )  # fmt: skip
        for seed in range(kit.seeds)
    }
    done = [m for m in ours.values() if m.get("status") == "completed"]
    acc = [m["final_test_acc"] for m in done]
    train_s = [m["train_seconds"] for m in done]
    wall = [m["command_seconds"] for m in done]
    epochs = done[0]["epochs"] if done else "?"
    kit.say("| method | epochs | test acc (mean ± std) | training s | whole run s |")
    kit.say("|--|--:|--:|--:|--:|")
    kit.say(f"| cnnexp cifar10_fast ({done[0]['precision'] if done else '?'}) | {epochs} | "
            f"{mean_std(acc)} | {mean_std(train_s)} | {mean_std(wall)} |")  # fmt: skip
    airbench = run_airbench(kit)
    if airbench:
        kit.say(f"| airbench94 (PyPI airbench 0.1.8, fp16) | 9.9 | {mean_std(airbench['acc'])} | "
                f"{mean_std(airbench['seconds'])} | - |")  # fmt: skip
    kit.say()
    kit.say(
        "Training s: ours is the sum of the epochs' training time (the per-epoch test pass "
        "excluded); airbench's is its own training timer plus whitening init and final "
        "test-time augmentation. Whole run s: our `train()` call with data on the device.\n"
    )
    return ours


def run_airbench(kit: Kit) -> dict[str, list[float]] | None:
    """airbench94 trained `kit.seeds` times on our decoded CIFAR-10 tensors; None if it can't."""
    if kit.smoke or kit.device != "cuda":
        kit.say("| airbench94 | - | skipped: it runs on CUDA only | - | - |")
        return None
    try:
        import airbench
    except ImportError:
        kit.say("| airbench94 | - | skipped: `pip install airbench==0.1.8` | - | - |")
        return None
    folder = kit.workdir / "airbench" / "cifar10"
    write_airbench_tensors(folder)
    cwd = os.getcwd()
    os.chdir(folder.parent)  # airbench reads ./cifar10/{train,test}.pt
    try:
        loader = airbench.CifarLoader("cifar10", train=True, batch_size=1024,
                                      aug={"flip": True, "translate": 2}, altflip=True)  # fmt: skip
        test = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
        airbench.warmup94(train_loader=loader, verbose=False)
        acc, seconds = [], []
        for run in range(kit.seeds):
            torch.cuda.synchronize()
            start = time.perf_counter()
            model = airbench.train94(train_loader=loader, run=run, verbose=False)
            acc.append(airbench.evaluate(model, test, tta_level=2))
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
    finally:
        os.chdir(cwd)
    return {"acc": acc, "seconds": seconds}


def write_airbench_tensors(folder: Path) -> None:
    """Our decoded CIFAR-10 splits in airbench's file format: uint8 (N, H, W, C), labels."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        d = compose(config_name="config", overrides=["data=cifar10"]).data
    from cnnexp.data import load_splits

    train_set, test_set, _ = load_splits(d)
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in ((train_set, "train"), (test_set, "test")):
        torch.save({"images": split.images.permute(0, 2, 3, 1).contiguous(),
                    "labels": split.labels, "classes": split.class_names},
                   folder / f"{name}.pt")  # fmt: skip


def mnist_time_to_99(kit: Kit) -> dict[str, dict]:
    """LeNet-5 `mnist_fast`, three seeds: training seconds to 99.0% test accuracy."""
    runs = {f"mnist-{s}": kit.run("mnist_fast", f"seed={s}", name=f"mnist-{s}") for s in range(3)}
    kit.say("### LeNet-5 on MNIST: `mnist_fast` time to 99.0%\n")
    kit.say("| seed | precision | final test acc | training s to 99.0% | img/s |")
    kit.say("|--:|--|--:|--:|--:|")
    for seed, m in enumerate(runs.values()):
        reached = time_to(m.get("history", []), 0.99)
        kit.say(f"| {seed} | {m.get('precision')} | {m.get('final_test_acc', 0):.4f} | "
                f"{f'{reached:.2f}' if reached else 'not reached'} | "
                f"{m.get('images_per_second', 0):,.0f} |")  # fmt: skip
    kit.say()
    return runs


def precision_side_by_side(kit: Kit, fast: dict[str, dict], mnist: dict[str, dict]) -> None:
    """Each preset's seed 0 again in fp32, beside the auto-precision run at the same epochs."""
    kit.say("### Each preset in its auto precision and in fp32 (seed 0, same epochs)\n")
    kit.say("| preset | epochs | auto: precision, test acc, training s | fp32: test acc, "
            "training s |")  # fmt: skip
    kit.say("|--|--:|--|--|")
    for preset, auto in (("cifar10_fast", fast.get("fast-0")), ("mnist_fast", mnist["mnist-0"])):
        if not auto or auto.get("status") != "completed":
            continue
        fp32 = kit.run(preset, "precision=fp32", name=f"{preset}-fp32")
        kit.say(f"| {preset} | {auto['epochs']} | {auto['precision']}, "
                f"{auto['final_test_acc']:.4f}, {auto['train_seconds']:.1f} | "
                f"{fp32.get('final_test_acc', 0):.4f}, "
                f"{fp32.get('train_seconds', 0):.1f} |")  # fmt: skip
    kit.say()


# What made airbench94 (and airbench94_muon) fast per epoch, each added alone to cifar10_fast at
# the CPU preset's epochs, then the cifar10_cpu preset, which takes those that helped on the CPU.
# Name -> overrides.
INGREDIENTS = {
    "cifar10_fast (tta=flip)": [],
    "+ mirror-and-translate at test time": ["tta=flip_translate"],
    "+ flip every other epoch": ["data.augment.flip=alternate"],
    "+ identity-initialised convs": ["model.identity_init=true"],
    "+ whitening bias frozen after 3 epochs": ["model.whiten_bias_epochs=3"],
    "+ batch-norm bias lr x64": ["norm_bias_lr=64"],
    "+ lookahead": ["lookahead=true"],
    "+ 2-pixel translations instead of 4": ["data.augment.translate=2"],
    "+ weight decay x3 (1.5e-3)": ["optimizer.weight_decay=1.5e-3"],
    "+ Muon for the filters": ["optimizer=muon", "optimizer.lr=0.4", "optimizer.filter_lr=0.08"],
}


def ingredients(kit: Kit, epochs: int, seeds: int) -> None:
    """Each ingredient (airbench94's, airbench94_muon's) added alone to cifar10_fast, then the
    cifar10_cpu preset, which combines those that helped on the CPU."""
    kit.say(f"### airbench94's ingredients, one at a time ({epochs} epochs, {seeds} seeds)\n")
    kit.say("| recipe | test acc (mean ± std) | difference | training s |")
    kit.say("|--|--:|--:|--:|")
    variants = {name: ("cifar10_fast", extra) for name, extra in INGREDIENTS.items()}
    variants["the cifar10_cpu preset"] = ("cifar10_cpu", [])
    base = None
    for i, (name, (preset, extra)) in enumerate(variants.items()):
        runs = [kit.run(preset, f"epochs={epochs}", f"seed={s}", *extra, name=f"ingr-{i}-{s}")
                for s in range(seeds)]  # fmt: skip
        acc = [m["final_test_acc"] for m in runs if m.get("status") == "completed"]
        seconds = [m["train_seconds"] for m in runs if m.get("status") == "completed"]
        base = statistics.mean(acc) if base is None and acc else base
        gap = f"{100 * (statistics.mean(acc) - base):+.2f} points" if acc and base else "-"
        kit.say(f"| {name} | {mean_std(acc)} | {gap} | {mean_std(seconds)} |")
    kit.say()


def workers_throughput(kit: Kit, ks: list[int], seeds: int, epochs: int) -> None:
    """The best K of hydra/launcher=workers for a study network (benchmarks/workers.py): the
    pooling study's GPU network, max and avg x `seeds`, the same sweep at each K."""
    kit.say("### Jobs at a time per GPU\n")
    overrides = ["+experiment=pooling", "study.budget=cifar10_gpu", "study.check.seeds=[]",
                 f"epochs={epochs}", f"device={kit.device}"]  # fmt: skip
    failed = sweep_throughput(kit.say, kit.workdir, ks, seeds, overrides + kit.data("cifar10"))
    kit.failures += [f"workers K={k}" for k in failed]


PARTS = ("kit", "workers")  # what --parts can run


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny CPU runs on synthetic data")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per CIFAR-10 method (5)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run folders here")
    what = "what to run: the kit's checks and presets, the launcher's best K"
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help=what)
    return parser.parse_args()


def main() -> int:
    args = parse()
    if not args.smoke and not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA GPU; on a CPU run it with --smoke", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cnnexp-gpu-kit-"))
    kit = Kit(smoke=args.smoke, device="cpu" if args.smoke else "cuda",
              seeds=args.seeds or (2 if args.smoke else 5), out=args.out,
              workdir=workdir)  # fmt: skip
    started = time.perf_counter()
    machine(kit)
    if "workers" in args.parts:  # first: the sweeps of the lab's studies depend on it
        ks = [1, 2] if args.smoke else [1, 4, 8]
        workers_throughput(kit, ks, seeds=1 if args.smoke else 4, epochs=1 if args.smoke else 2)
    if "kit" in args.parts:
        the_kit(kit, args.smoke)
    kit.say(f"(the kit took {time.perf_counter() - started:.0f} s; run folders in {workdir})")
    if kit.failures:
        print(f"FAILED checks: {', '.join(kit.failures)}", file=sys.stderr)
        return 1
    return 0


def the_kit(kit: Kit, smoke: bool) -> None:
    """The checks, our presets against airbench94, and each preset's precision."""
    layout = precision_and_layout(kit, epochs=1 if smoke else 2)
    compile_run = compiled(kit, 1 if smoke else 2, layout["layout-bf16-true"])
    ddp = ddp_one_process(kit)
    mnist = mnist_time_to_99(kit)
    ingredients(kit, epochs=2 if smoke else 8, seeds=1 if smoke else 3)
    fast = ours_against_airbench(kit)
    checks(kit, layout, compile_run, ddp, fast)
    precision_side_by_side(kit, fast, mnist)


if __name__ == "__main__":
    sys.exit(main())
