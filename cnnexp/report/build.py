"""The report of one or more studies: the environment, each study's section (recipe, baseline
check, its declared extra sections, answers, tables, figures, curves, load), the conclusions and
the references; written as report.md, a self-contained report.html, runs.csv, summary.csv and
figures/*.png."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cnnexp import stats
from cnnexp.errors import CnnexpError
from cnnexp.report import lab, shots
from cnnexp.report.agreement import agreements, sentence
from cnnexp.report.answers import conclusions, one_seed_sentence, plain_verdicts
from cnnexp.report.budget import plain_check
from cnnexp.report.document import Document
from cnnexp.report.glossary import add_glossary
from cnnexp.report.runs import (
    REPLICATE,
    Study,
    StudyRun,
    environment_of,
    experiment_of,
    is_check,
    load_studies,
    or_warn,
    runs_table,
    shown_path,
    table_of_runs,
    warn,
    with_check,
    yaml_or_warn,
)
from cnnexp.report.section import add_study
from cnnexp.report.verdicts import Verdicts, summarise
from cnnexp.schema import headings
from cnnexp.studies import flatten

ENV_KEYS = [
    "gpus",
    "driver",
    "cuda",
    "cudnn",
    "torch",
    "python",
    "cpu",
    "cpu_cores",
    "torch_threads",
    "cpu_bf16",
    "cpu_flags",
    "isa_caps",  # the instruction sets the runs were limited to (cnnexp.environment)
    "hostname",
    "platform",
    "git_commit",
]
# The works a report cites, each with what in the runs makes it cited (key=value or key>number
# of any run's config, alternatives joined by |; "" for every report): only what the report
# contains is referenced.
REFERENCES = [
    ("model._target_=cnnexp.models.lenet.LeNet5|data.name=mnist",
     "Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to document "
     "recognition. Proc. IEEE 86(11), 1998: LeNet-5 (question 1) and the MNIST data set."),
    ("data.name=cifar10",
     "A. Krizhevsky. Learning multiple layers of features from tiny images. Technical report, "
     "University of Toronto, 2009: the CIFAR-10 data set (questions 2 and 3)."),
    ("model.batch_norm=True",
     "S. Ioffe, C. Szegedy. Batch normalization: accelerating deep network training by reducing "
     "internal covariate shift. ICML 2015: the batch norm of the convnets and its ablation."),
    ("model.residual=True",
     "K. He, X. Zhang, S. Ren, J. Sun. Deep residual learning for image recognition. CVPR 2016: "
     "the residual convs of our CIFAR-10 network."),
    ("label_smoothing>0",
     "C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna. Rethinking the Inception "
     "architecture for computer vision. CVPR 2016: label smoothing."),
    ("lookahead=True",
     "M. R. Zhang, J. Lucas, G. Hinton, J. Ba. Lookahead optimizer: k steps forward, 1 step back. "
     "NeurIPS 2019: the lookahead weight averaging of the CIFAR-10 recipe."),
    ("optimizer._target_=cnnexp.muon.Muon",
     "K. Jordan et al. Muon: an optimizer for hidden layers in neural networks. 2024, "
     "kellerjordan.github.io/posts/muon: the Muon optimizer of the CPU CIFAR-10 recipe."),
    ("model._target_=cnnexp.models.whitened_resnet.WhitenedResNet",
     "K. Jordan. 94% on CIFAR-10 in 3.29 seconds on a single GPU. arXiv:2404.00498, 2024, and "
     "github.com/KellerJordan/cifar10-airbench: the whitening stem, scaled head, batch-norm "
     "bias learning rate, and mirror-and-translate test-time augmentation."),
    ("model._target_=cnnexp.models.whitened_resnet.WhitenedResNet",
     "D. Page. How to train your ResNet. Myrtle.ai blog, 2018: the fast CIFAR-10 recipe our "
     "network starts from."),
    ("",
     "A. Paszke et al. PyTorch: an imperative style, high-performance deep learning library. "
     "NeurIPS 2019: the framework every network here is written and trained in (torchvision "
     "reads the data sets)."),
    ("",
     "O. Yadan. Hydra: a framework for elegantly configuring complex applications. 2019, "
     "github.com/facebookresearch/hydra: the configs and the multirun sweeps of every study."),
    ("",
     "TensorBoard, github.com/tensorflow/tensorboard: the event files every run writes, and "
     "the curves and feature-map pages shown in this report."),
    ("trainer._target_=cnnexp.lightning_backend.Lightning",
     "W. Falcon and the PyTorch Lightning team. PyTorch Lightning. 2019, "
     "github.com/Lightning-AI/pytorch-lightning: the second training loop (trainer=lightning)."),
    ("",
     "A. Lyzhov et al. torchinfo, github.com/TylerYep/torchinfo: the layer tables (output "
     "shapes, parameters, multiply-accumulates)."),
    ("",
     "B. L. Welch. The generalization of 'Student's' problem when several different population "
     "variances are involved. Biometrika 34, 1947: the test behind every verdict."),
    ("",
     "M. S. Bartlett. Properties of sufficiency and statistical tests. Proc. R. Soc. A 160, "
     "1937: the test of equal variances that describes the seeds' noise."),
    ("",
     "D. W. Zimmerman. A note on preliminary tests of equality of variances. Br. J. Math. "
     "Stat. Psychol. 57, 2004: why Welch's test is used unconditionally, not after a test of "
     "equal variances."),
    ("",
     "C. E. Bonferroni. Teoria statistica delle classi e calcolo delle probabilità. 1936, and "
     "S. Holm. A simple sequentially rejective multiple test procedure. Scand. J. Statist. 6, "
     "1979: the corrections over a study's comparisons."),
    ("",
     "P. Virtanen et al. SciPy 1.0. Nature Methods 17, 2020, and S. Seabold, J. Perktold. "
     "statsmodels. Proc. SciPy 2010: the tests, the pooled model and the power calculations."),
]  # fmt: skip


def references(studies: list[Study]) -> list[str]:
    """The works cited for what these studies' runs contain."""
    used: dict[str, set[str]] = {}
    for study in studies:
        for config in study.configs():
            for key, value in flatten(config).items():
                used.setdefault(key, set()).add(str(value))
    return [text for when, text in REFERENCES if _cited(when, used)]


def _cited(when: str, used: dict[str, set[str]]) -> bool:
    if not when:
        return True
    if "|" in when:  # any of them
        return any(_cited(part, used) for part in when.split("|"))
    if ">" in when:  # a number above a threshold
        key, _, low = when.partition(">")
        return any(_number(v) > float(low) for v in used.get(key, ()))
    key, _, value = when.partition("=")
    return value in used.get(key, set())


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


# The per-run appendix: what a reader needs of each run, in this order where present: the
# headline numbers the record's schema gives headings (cnnexp.schema), then provenance.
def appendix_columns() -> dict[str, str]:
    """{runs.csv column: its heading} of the table of every run."""
    provenance = {"precision": "precision", "device": "device", "git_commit": "commit"}
    return {"status": "status", **headings(), **provenance}


def add_environments(doc: Document, studies: list[Study]) -> None:
    """The environment once: what every study shares as one list, then only the keys that
    differ, one column per study."""
    envs = {s.name: environment_of(Path(s.runs[0].path)) for s in studies}
    envs = {name: env for name, env in envs.items() if env}
    doc.heading(2, "Environment")
    if not envs:
        doc.para(
            "Not recorded here: these runs were read from a runs.csv, which keeps no env.json; "
            "each run's folder holds its own."
        )
        return
    values = {k: {name: _env_value(env.get(k)) for name, env in envs.items()} for k in ENV_KEYS}
    same = {k: next(iter(v.values())) for k, v in values.items() if len(set(v.values())) == 1}
    shown = {k: v for k, v in same.items() if v != "none" or k == "gpus"}  # no GPU is a fact
    doc.bullets([f"{k.replace('_', ' ')}: {v}" for k, v in shown.items()])
    differ = [k for k in ENV_KEYS if k not in same]
    if differ:
        doc.para("Differs between studies:")
        table = pd.DataFrame({name: [values[k][name] for k in differ] for name in envs})
        table.insert(0, "what", differ)
        doc.table(table)


def _env_value(value) -> str:
    """A key of env.json as text: lists joined, a mapping as KEY=value, nothing as 'none'."""
    if value is None or value == [] or value == "" or value == {}:
        return "none"
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def add_appendix(doc: Document, studies: list[Study]) -> None:
    """Every run of every study, folded away: its levels and the numbers a reader checks."""
    doc.heading(2, "Appendix: every run")
    for study in studies:
        table = runs_table(study)
        first = [*study.factors, *([REPLICATE] if REPLICATE in table else [])]
        columns = appendix_columns()
        table = table[first + [c for c in columns if c in table]].copy()
        table = table.loc[:, [table[c].notna().any() for c in table]]  # no empty column
        for col in [c for c in table if "_acc" in c]:
            table[col] = [f"{100 * v:.2f}" if pd.notna(v) else "" for v in table[col]]
        if "git_commit" in table:
            table["git_commit"] = table["git_commit"].map(lambda c: str(c)[:10] if c else c)
        table = table.rename(columns=columns)
        table = table.astype(object).where(table.notna(), "")
        doc.details(f"{study.name}: {len(table)} run{'s' if len(table) != 1 else ''}", table)


def gather(paths: list[Path]) -> list[Study]:
    """The studies of `paths`; a folder of budget-check runs joins the study of its name and
    data set (two studies may share a name: the pooling studies of MNIST and CIFAR-10)."""
    loaded = [study for path in paths for study in load_studies(path)]
    studies = [s for s in loaded if not is_check(s)]
    for check in (s for s in loaded if is_check(s)):
        named = [s for s in studies if s.name == check.name]
        same_data = [s for s in named if data_sets(s.runs) == data_sets(check.check)]
        home = next(iter(same_data or named), None)
        if home is None:
            raise FileNotFoundError(
                f"{check.root} holds the budget check of study {check.name!r}, but no folder "
                "of that study's runs was named: name both"
            )
        with_check(home, check)
    return studies


def data_sets(runs: Sequence[StudyRun]) -> set[str]:
    """The data sets these runs trained on, from their configs."""
    return {flatten(r.config).get("data.name") for r in runs} - {None}


PROCEDURE = [
    "Every run trains on the training images and tests on all the test images after each "
    "epoch; the accuracy reported is the last epoch's, never the best epoch's (picking the "
    "best epoch on the test set would be a choice made on the test set).",
    "Every run writes its saved config, metrics.json (the per-epoch history and the headline "
    "numbers), TensorBoard events (curves, filters, feature maps, confusion matrix), "
    "system.csv (the machine's load every second) and a checkpoint it resumes from.",
    "A study is a Hydra multirun over its arms and seeds. Each arm is compared with the "
    "baseline by Welch's test (each arm with its own seeds' variance), all of a study's "
    "comparisons as one family with Bonferroni's correction, so the intervals hold together "
    "(simultaneous). An arm is better or worse exactly when its interval excludes zero; "
    "otherwise 'no clear difference', with the difference its runs could have detected. A run "
    "out of line with its own arm's seeds is named, with the verdicts without it.",
    "A factorial design's effects come from one least-squares fit of all its runs, with "
    "Šidák's simultaneous intervals; a configuration's predicted gain is the range its "
    "aliased interactions allow. Where two studies estimate the same comparison, a test of "
    "the difference of their two estimates says whether they agree.",
    "A run that diverged, failed, did not finish or ended at chance accuracy ('did not "
    "train') is reported and kept out of the means and verdicts.",
    "A budget check trains the baseline again at twice the epochs: where it gains, the "
    "study's budget stopped the network short and its answers hold for that budget only.",
]


def build_report(
    paths: list[Path],
    out: Path,
    title: str,
    alpha: float = stats.ALPHA,
    method: str = stats.METHOD,
    lab_order: bool = False,
    tensorboard: bool = False,
    caveat: str | None = None,
) -> Path:
    """Write the report for `paths` into `out`; returns the markdown file. `lab_order` orders
    it by the lab's questions; `tensorboard` adds screenshots of TensorBoard's pages of each
    single run (needs Chromium); `caveat` opens every answer of the lab's questions."""
    studies = gather(paths)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    doc = Document(out)
    doc.heading(1, title)
    verdicts = [summarise(study, alpha=alpha, method=method) for study in studies]
    doc.para(made_line(paths, verdicts, alpha, method))
    taken = take_shots(studies, out / "figures") if tensorboard else None  # None: not asked
    evidence = []
    if lab_order:
        evidence = lab.add_questions(doc, studies, verdicts, taken, caveat)
        add_environments(doc, studies)
        doc.heading(2, "Procedure")
        doc.bullets(PROCEDURE)
        with doc.folded("The command of each study, from the overrides its runs saved"):
            doc.bullets(commands(studies))
    else:
        doc.heading(2, "Findings")  # what was found first; the evidence after it
        tested = [sentence(a) for a in agreements(studies, verdicts, alpha)]
        plain, full = findings(studies, verdicts)
        doc.bullets(plain + tested)
        if full:
            with doc.folded("Each verdict in full: its interval, its test, its budget check"):
                doc.bullets(full)
        for i, (study, decided) in enumerate(zip(studies, verdicts, strict=True)):
            tag = f"{i}-{study.name}".replace("/", "_")
            add_study(doc, study, decided, tag, shots=(taken or {}).get(study.name, []))
        add_environments(doc, studies)
    doc.heading(2, "References")
    doc.bullets(references(studies))
    if evidence:
        lab.add_evidence(doc, evidence)
    add_appendix(doc, studies)
    add_glossary(doc)
    write_tables(studies, verdicts, out)
    (out / "report.md").write_text(doc.markdown())
    (out / "report.html").write_text(doc.html(title))
    return out / "report.md"


def findings(studies: list[Study], verdicts: list[Verdicts]) -> tuple[list[str], list[str]]:
    """What each study found, in sentences, and the same verdicts in full (folded under them):
    a ladder's steps and a factorial design's main effects as the lab report says them; any
    other study's verdicts in plain words with whether they hold with more training, where
    they can be said shorter than in full (and, with one seed per arm, the command that would
    decide)."""
    pairs = list(zip(studies, verdicts, strict=True))
    plain, full = [], []
    for study, decided in pairs:
        if study.kind.climbs() or study.kind.answers_factors():
            plain.append(lab.change_answer(study, decided, pairs))
            continue
        if study.kind.answers_lab() == "3.1":
            said = [lab.plain(s) for s in lab.pooling_verdicts(study, decided)]
        else:
            said = [s for s in [plain_verdicts(study, decided, lab.network_name(study))] if s]
        detail = conclusions(studies, verdicts, only=study)
        # what one seed per arm cannot say stays in sight, with the command that would decide
        hint = [s for s in [one_seed_sentence(study, decided)] if s]
        if said:
            plain += [*said, plain_check(study, decided), *hint]
            full += detail
        else:  # nothing shorter to say than the verdicts themselves
            plain += [*detail, *hint]
    return plain, full


def take_shots(studies: list[Study], fig_dir: Path) -> dict[str, list[tuple[Path, str]]]:
    """TensorBoard's Scalars and Images pages of every study of one arm (a single run, or one
    network at several seeds: its first run) with events; none, said once, without Chromium."""
    taken = {}
    if not shots.browser():
        warn(f"the report has no TensorBoard screenshots: {shots.INSTALL}")
        return taken
    for study in studies:
        run = Path(study.runs[0].path)
        if not study.factors and (run / "tb").is_dir():
            name = study.name.replace("/", "_")
            taken[study.name] = or_warn(shots.tensorboard_shots, run, fig_dir, name) or []
    return taken


def commands(studies: list[Study]) -> list[str]:
    """The command that made each study's runs, from what its folder recorded: a sweep's own
    overrides (Hydra's multirun.yaml), a single run's (.hydra/overrides.yaml); from the
    experiment its runs name where neither is kept (a runs.csv)."""
    said = []
    for study in studies:
        said.append(f"{study.name}: `{command_of(study)}`")
    return said


def command_of(study: Study) -> str:
    recorded = yaml_or_warn(study.root / "multirun.yaml", dict)
    if recorded:
        hydra = recorded.get("hydra", {}).get("overrides", {})
        launcher = [o for o in hydra.get("hydra", []) if o.startswith("hydra/launcher=")]
        words = ["python -m cnnexp -m", *launcher, *hydra.get("task", [])]
        return " ".join(shlex.quote(w) if w != words[0] else w for w in words)
    single = yaml_or_warn(study.root / ".hydra" / "overrides.yaml", list)
    if single is not None and len(study.runs) == 1:
        return " ".join(["python -m cnnexp", *map(shlex.quote, single)])
    name = experiment_of(study)
    words = ["python -m cnnexp"]
    words += ["-m"] if len(study.runs) > 1 else []
    words += [f"+experiment={name}"] if name else []
    return " ".join(words)


def newest_sweep(root: Path = Path("multirun")) -> Path:
    """The sweep folder (it holds Hydra's multirun.yaml) written last under `root`."""
    sweeps = sorted(root.rglob("multirun.yaml"), key=lambda p: p.stat().st_mtime)
    if not sweeps:
        raise FileNotFoundError(
            f"no sweep under {root.resolve()}: run one first (python -m cnnexp -m pool=max,avg) "
            "or name run or sweep folders: python -m cnnexp.report outputs/DATE/TIME"
        )
    return sweeps[-1].parent


def _parser() -> argparse.ArgumentParser:
    """The report's command line."""
    doc = sys.modules["cnnexp.report"].__doc__
    parser = argparse.ArgumentParser(prog="python -m cnnexp.report", description=doc)
    parser.add_argument(
        "paths", nargs="*", type=Path, help="run or sweep folders, or a runs.csv a report wrote"
    )
    parser.add_argument("--out", type=Path, help="where to write (default: beside the input)")
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--alpha",
        type=float,
        default=stats.ALPHA,
        help=f"family-wise level of a study's verdicts (default {stats.ALPHA})",
    )
    parser.add_argument(
        "--method",
        choices=stats.METHODS,
        default=stats.METHOD,
        help="the family's correction over each study's comparisons (Welch's tests): "
        "bonferroni (simultaneous intervals, the default), holm (Holm's step-down), none "
        "(each test alone, uncorrected)",
    )
    parser.add_argument(
        "--lab",
        action="store_true",
        help="order the report by the lab's questions (1, 2, 3.1, 3.2), each opening with its "
        "answer",
    )
    parser.add_argument(
        "--tensorboard-shots",
        action="store_true",
        help="start TensorBoard on each single run and save screenshots of its Scalars and "
        "Images pages into the report (needs Chromium)",
    )
    parser.add_argument(
        "--caveat",
        help="with --lab: a sentence that opens every answer (the lab's quick budget says its "
        "networks are starved)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0 < args.alpha < 1:
        parser.error(f"--alpha {args.alpha} is not a level: use a number between 0 and 1")
    try:
        paths = args.paths or [newest_sweep()]
        for path in paths:
            if not (path.is_dir() or (path.is_file() and path.suffix == ".csv")):
                raise FileNotFoundError(f"{path} is neither a folder nor a runs.csv")
        out = args.out or (
            (paths[0] if paths[0].is_dir() else paths[0].parent) / "report"
            if len(paths) == 1
            else Path("reports") / time.strftime("%Y-%m-%d_%H-%M-%S")
        )
        title = args.title or ("cnnexp report" if len(paths) == 1 else "cnnexp lab report")
        report = build_report(
            paths, out, title, args.alpha, args.method, args.lab, args.tensorboard_shots,
            args.caveat,
        )  # fmt: skip
    except (CnnexpError, FileNotFoundError, ValueError, RuntimeError, TimeoutError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {report} and {report.with_suffix('.html')}")
    return 0


def made_line(paths: list[Path], verdicts: list[Verdicts], alpha: float, method: str) -> str:
    """When and from which folders the report was made, and the level its verdicts hold at."""
    how = (
        "in rounds, the level spent over the looks"
        if all(v.decided for v in verdicts)
        else f"{method.capitalize()}'s correction"
    )
    return (
        f"Made {time.strftime('%Y-%m-%d %H:%M')} by `python -m cnnexp.report` from "
        + ", ".join(map(shown_path, paths))
        + f". Each verdict holds at {100 * (1 - alpha):.0f}% confidence for all of its "
        f"study's comparisons together ({how}; see family-wise in the glossary)."
    )


def write_tables(studies: list[Study], verdicts: list[Verdicts], out: Path) -> None:
    """runs.csv (every run, with its config and curves) and summary.csv (every arm's verdict),
    the tables a later `--tables` report is made from."""
    pd.concat([table_of_runs(s) for s in studies]).to_csv(out / "runs.csv", index=False)
    summary = pd.concat(
        [v.table.assign(study=s.name) for v, s in zip(verdicts, studies, strict=True)]
    )
    summary["values"] = summary["values"].map(lambda v: " ".join(f"{x:.6g}" for x in v))
    summary.to_csv(out / "summary.csv", index=False)
