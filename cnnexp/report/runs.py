"""Run folders (or a runs.csv an earlier report wrote) into a Study of typed runs (StudyRun:
each run's schema.Run record, its levels and config); a table of them only where one is drawn
or written (frame).

Reads only what runs wrote (metrics.json, .hydra/, env.json, system.csv); never training code.
Runs that did not train are told apart here (by cnnexp.schema.chance_reason); the budget check's
runs (the arms trained again at twice the epochs, `study.role: budget_check`) are kept apart.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from cnnexp import studies
from cnnexp.config import typed_overrides
from cnnexp.errors import DamagedFileError
from cnnexp.files import parse_json, read_csv, read_json, read_yaml
from cnnexp.schema import (
    COMPLETED,
    DIVERGED,
    ENVIRONMENT,
    FAILED,
    METRICS,
    RUNNING,
    SYSTEM,
    TEST_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    Run,
    chance_reason,
    headline_columns,
    read_record,
)
from cnnexp.studies import BUDGET_CHECK, REPLICATE


def metric_columns() -> list[str]:
    """The columns of runs.csv taken from each run's record (cnnexp.schema defines them)."""
    return [
        "status",
        *headline_columns(),
        "model",
        "parameters",
        "macs",
        "epochs",
        "device",
        "precision",
        "world_size",
        "train_images",
        "test_images",
        "data_source",
        "error",
    ]


USABLE = COMPLETED  # the one status whose runs enter means and verdicts
# Every status a run can have in runs.csv, in the order the tables count them: the record's
# own, and the report's judgements (a completed run at chance did not train; a run still
# running, interrupted or without a record is incomplete).
# A run whose record is damaged or not of our form is unreadable: counted, never in the means.
NOT_TRAINED, INCOMPLETE, UNREADABLE = "did_not_train", "incomplete", "unreadable"
STATUSES = (COMPLETED, NOT_TRAINED, DIVERGED, FAILED, INCOMPLETE, UNREADABLE)
COUNT_COLUMNS = {
    COMPLETED: "usable",
    NOT_TRAINED: "did not train",
    DIVERGED: "diverged",
    FAILED: "failed",
    INCOMPLETE: "incomplete",
    UNREADABLE: "unreadable",
}
# Per-run objects, JSON in runs.csv; `given`: the run's overrides as typed ({key: text}).
OBJECTS = ("history", "system", "config", "choices", "given")
HIDDEN = (*OBJECTS, "study")  # not shown as columns


@dataclass(frozen=True)
class StudyRun:
    """One run as the report reads it: its record, typed, with the status the report judges
    (a completed run at chance did not train; one with no record is incomplete), the levels
    it ran at (its overrides, a list or dict level as its override text), its composed config,
    and its overrides as given ({key: text})."""

    path: str  # its folder, or the run column of the runs table it was read from
    record: Run
    levels: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    given: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def usable(self) -> bool:
        return self.record.status == USABLE

    @property
    def seed(self) -> Any:
        return self.levels.get(REPLICATE, self.record.seed)

    def final(self, column: str = TEST_ACC) -> float:
        """A number of its record (a headline's: final_test_acc, wall_seconds; or the network's
        parameters or macs) as a float; NaN where it has none."""
        value = self._numbers.get(column)
        return float(value) if value is not None else math.nan

    def has(self, column: str) -> bool:
        """Whether its record has that number (StudyRun.final)."""
        return not math.isnan(self.final(column))

    @cached_property
    def _numbers(self) -> dict[str, Any]:
        flat = self.record.to_json()
        return {k: flat.get(k) for k in (*headline_columns(), "parameters", "macs")}

    def at(self, levels: dict[str, Any]) -> bool:
        """Whether it ran at these levels (compared as text, since overrides are typed and a
        baseline is declared as text); a key it was not run with is passed over."""
        return all(str(self.levels[k]) == str(v) for k, v in levels.items() if k in self.levels)

    def row(self) -> dict[str, Any]:
        """Its row of the runs table: its levels, the record's columns, its provenance and its
        per-run objects."""
        flat = self.record.to_json()
        commit = self.record.git_commit or ""
        return {
            "run": self.path,
            **self.levels,
            **{k: flat.get(k) for k in metric_columns()},
            "data_source": portable(self.record.data_source),
            "git_commit": commit.removesuffix("-dirty") or None,
            "uncommitted_changes": commit.endswith("-dirty") if commit else None,
            "history": flat["history"],
            "system": self.record.system or {},
            "config": self.config,
            "choices": self.record.choices,
            "given": self.given,
        }


def numbers(runs: Sequence[StudyRun], column: str = TEST_ACC) -> list[float]:
    """A number (StudyRun.final) of each of these runs that has it."""
    return [r.final(column) for r in runs if r.has(column)]


def mean_of(runs: Sequence[StudyRun], column: str = TEST_ACC) -> float:
    """The mean of a number over the runs that have it; NaN for none."""
    values = numbers(runs, column)
    return sum(values) / len(values) if values else math.nan


def seeds_of(runs: Sequence[StudyRun]) -> set[str]:
    """The seeds these runs were swept over, as text (none where the seed was not swept)."""
    return {str(r.levels[REPLICATE]) for r in runs if REPLICATE in r.levels}


def joined(values: Iterable[Any]) -> str:
    """'4, 8': the distinct values, sorted as text, a whole number without its '.0'."""
    shown = {
        str(int(v)) if isinstance(v, float) and v % 1 == 0 else str(v)
        for v in values
        if v is not None
    }
    return ", ".join(sorted(shown))


def frame(runs: Sequence[StudyRun]) -> pd.DataFrame:
    """Runs as a table, one row each (for a table drawn, a CSV written or a model fitted)."""
    return pd.DataFrame([run.row() for run in runs])


@dataclass
class Study:
    """The runs of one sweep (or a set of single runs) and what the sweep varied."""

    name: str
    root: Path
    runs: tuple[StudyRun, ...]
    factors: list[str]  # override keys whose values differ between runs, seed excluded
    baseline: dict[str, str] = field(default_factory=dict)
    # When the study tunes a key (study.tune): per group, the level chosen on validation and the
    # validation accuracy of each level; `runs` then holds only the chosen level's runs.
    tuning: pd.DataFrame | None = None
    check: tuple[StudyRun, ...] = ()  # the budget check's runs, where the study has them
    note: str = ""  # where the runs were read from, when not from their folders
    # What kind of study the runs were configured as, and its settings (cnnexp.studies).
    kind: studies.Study = field(default_factory=studies.Study)

    def usable(self, levels: dict[str, Any] | None = None) -> list[StudyRun]:
        """Its runs that enter means and verdicts (at these levels, where given)."""
        return [r for r in self.runs if r.usable and r.at(levels or {})]

    @cached_property
    def table(self) -> pd.DataFrame:
        """Its runs as a table (frame)."""
        return frame(self.runs)

    def configs(self) -> list[dict[str, Any]]:
        """Its runs' composed configs, those that have one."""
        return [r.config for r in self.runs if r.config]


# --- reading runs ------------------------------------------------------------------------------


def is_run(path: Path) -> bool:
    """A run folder holds metrics.json or Hydra's .hydra/ record."""
    return (path / METRICS).exists() or (path / ".hydra" / "overrides.yaml").exists()


def find_runs(path: Path) -> list[Path]:
    """`path` itself if it is a run, else the run folders below it (a sweep), in job order."""
    path = Path(path)
    if is_run(path):
        return [path]
    runs = [p.parent for p in path.rglob(".hydra") if p.is_dir() and is_run(p.parent)]
    runs += [p.parent for p in path.rglob(METRICS) if p.parent not in runs]
    return sorted(
        set(runs), key=lambda p: [(0, int(s), "") if s.isdigit() else (1, 0, s) for s in p.parts]
    )


# An absolute path inside a text: the folders before its last name are this machine's, not the
# reader's, so a report shows only that name ("image folder .../cifar10-jpeg").
ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:[^\s/]+/)*([^\s/]+)")


def portable(text: str | None) -> str | None:
    """`text` with each absolute path cut to its last name."""
    return ABSOLUTE_PATH.sub(r".../\1", text) if isinstance(text, str) else text


def shown_path(path: Path) -> str:
    """A folder as the report names it: from the working folder where it lies inside it, else
    by its own name (no absolute path of the machine that made the report)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def read_run(run: Path) -> StudyRun:
    """One run: its record with the status the report judges, its overrides, its config."""
    config = yaml_or_warn(run / ".hydra" / "config.yaml", dict) or {}
    try:
        found = read_record(run)
    except DamagedFileError as err:
        warn(f"{err.path} cannot be read ({err.reason}); the report goes on without that run")
        found = Run(status=UNREADABLE, error=f"{METRICS} cannot be read ({err.reason})")
    record = found or Run()
    if found is None:
        record.status, record.error = INCOMPLETE, "no metrics.json: the job never started"
    elif record.status == RUNNING:
        record.status = INCOMPLETE  # stopped without a word: killed, or still going
    reason = chance_reason(record) if record.status == USABLE else None
    if reason:
        record.status, record.error = NOT_TRAINED, reason
    texts = yaml_or_warn(run / ".hydra" / "overrides.yaml", list) or []
    given = {studies.key_value(text)[0]: text for text in texts}
    return StudyRun(str(run), record, _levels(_overrides(run, record)), config, given)


def _levels(overrides: dict[str, Any]) -> dict[str, Any]:
    """The levels a run ran at: [6,16] as its override text, so that levels compare as text."""
    return {
        k: studies.override_text(v) if isinstance(v, list | dict) else v
        for k, v in overrides.items()
    }


def _overrides(run: Path, record: Run) -> dict[str, Any]:
    """The run's overrides, typed: as its record has them; for a run that never began, read
    from Hydra's overrides.yaml."""
    if record.overrides:
        return record.overrides
    return typed_overrides(yaml_or_warn(run / ".hydra" / "overrides.yaml", list) or [])


def load_studies(path: Path) -> list[Study]:
    """The studies in a run or sweep folder (one), or in a runs.csv (one per study it holds)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".csv":
        return read_table(path)
    return [load_study(path)]


def load_study(path: Path) -> Study:
    """Read every run under `path` and find the factors the sweep varied."""
    path = Path(path)
    runs = [read_run(run) for run in find_runs(path)]
    if not runs:
        raise FileNotFoundError(
            f"{path} holds no runs (folders with metrics.json or .hydra/); "
            "give a run folder or a sweep folder such as multirun/<date>/<time>"
        )
    return make_study(runs, path)


def make_study(runs: Sequence[StudyRun], root: Path, note: str = "") -> Study:
    """A Study of runs: the budget check's runs apart, the factors the rest varied, the
    baseline the study declares, and only the tuned level's runs where it tunes a key."""
    declared = [(r.config.get("study") or {}) for r in runs if r.config]
    kind = studies.of(next((s for s in declared if s.get("role") != BUDGET_CHECK), {}))
    check = tuple(r for r in runs if _role(r) == BUDGET_CHECK)
    runs = tuple(r for r in runs if _role(r) != BUDGET_CHECK)
    keys = dict.fromkeys(k for r in runs for k in r.levels if k != REPLICATE)
    varied = [k for k in keys if len({str(r.levels.get(k)) for r in runs}) > 1]
    factors = kind.arm_keys(varied)
    baseline = {k: v for k, v in kind.reference().items() if k in factors}
    if not baseline and factors and not kind.name:  # a sweep's own: its first arm (as the
        baseline = {f: str(runs[0].levels.get(f)) for f in factors}  # deciding sweep's control)
    if kind.answers_factors():
        baseline = {}  # a design's arms are not compared one by one: its effects answer
    name = kind.name or next((s["name"] for s in declared if s.get("name")), None) or root.name
    study = Study(name, root, runs, factors, baseline, check=check, note=note, kind=kind)
    tuned = kind.tuned_key()
    return select_tuned(study, str(tuned)) if tuned and tuned in factors else study


def _role(run: StudyRun) -> str | None:
    """The study.role its config gives (budget_check for the check's runs)."""
    return (run.config.get("study") or {}).get("role")


def with_check(study: Study, check: Study) -> Study:
    """`study` with the runs of a budget check read from a folder of their own."""
    study.check = study.check + (check.check or check.runs)
    return study


def is_check(study: Study) -> bool:
    """A folder that holds only a budget check's runs."""
    return not study.runs and bool(study.check)


# --- a runs table written by an earlier report ------------------------------------------------


def read_table(path: Path) -> list[Study]:
    """The studies of a runs.csv. A table written before it kept each run's config and history
    (JSON columns) gives only final numbers; each study's declared settings (baseline,
    question, sections) are then those of its experiment config as it is now."""
    table = read_csv(path, TABLE_FIX, needs=("study", "run", "status"))
    for column in [c for c in headline_columns() if c in table]:
        wrong = table[column].notna() & pd.to_numeric(table[column], errors="coerce").isna()
        if wrong.any():
            value = table.loc[wrong, column].iloc[0]
            raise DamagedFileError(
                path, f"column {column} holds {value!r}, not a number", TABLE_FIX
            )
    kept = "config" in table
    # One study per folder it was read from; a table from before that was recorded tells two
    # studies of one name (pooling on MNIST and on CIFAR-10) apart by their experiment.
    by = ["study", "study_root" if "study_root" in table else "experiment"]
    studies = []
    for _, part in table.groupby([c for c in by if c in table], sort=False, dropna=False):
        part = _whole_numbers(part.dropna(axis=1, how="all"))  # another study's factors
        rows = [_table_row(row, kept, path) for row in part.to_dict("records")]
        root = part["study_root"].iloc[0] if "study_root" in part else _common(part["run"])
        studies.append(make_study(runs_of(rows), Path(root), _table_note(path, rows)))
    return studies


def _whole_numbers(part: pd.DataFrame) -> pd.DataFrame:
    """Override columns read back as floats only because another study's rows left them
    empty (stride 1.0) made whole again, so they match the levels the study declares (1)."""
    part = part.copy()
    for column in part.columns.difference([*metric_columns(), *OBJECTS, "run"]):
        values = part[column]
        if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
            part[column] = values.astype("Int64").astype(object).where(values.notna(), None)
    return part


def _table_note(path: Path, rows: list[dict[str, Any]]) -> str:
    note = f"Read from {path}, the runs table of an earlier report"
    if any(row["history"] for row in rows):
        return note + "."
    return note + (
        ": its runs' per-epoch curves, pictures and configs were not kept there, so this "
        "report has their final numbers only; the baseline and question are those the "
        "study's experiment config declared when the table was first read."
    )


def _common(runs: pd.Series) -> str:
    """The folder that holds these runs: the sweep's, or a single run's own."""
    return os.path.commonpath(list(runs)) if len(runs) > 1 else str(runs.iloc[0])


def _table_row(row: dict[str, Any], kept: bool, path: Path) -> dict[str, Any]:
    row = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
    row.pop("study_root", None)
    if kept:
        for key in OBJECTS:
            text, where = row.get(key), f"{path} (column {key} of run {row.get('run')})"
            row[key] = parse_json(text, where, TABLE_FIX) if isinstance(text, str) else {}
        row["history"] = row["history"] or []
    else:
        experiment = row.get("experiment")
        row.update(
            history=[], system={}, choices={}, given={},
            config={"study": declared_study(experiment)},
        )  # fmt: skip
    for key in metric_columns():
        row.setdefault(key, None)
    row["data_source"] = portable(row["data_source"])
    return row


NOT_LEVELS = {"run", *OBJECTS, "study", "study_root", "git_commit", "uncommitted_changes"}


def from_row(row: dict[str, Any]) -> StudyRun:
    """A run from its row of a runs table (StudyRun.row's form; columns it lacks are empty)."""
    numbers = set(metric_columns())
    commit = row.get("git_commit")
    if commit and row.get("uncommitted_changes") in (True, "True", "true"):
        commit += "-dirty"
    record = Run.from_json(
        {
            **{k: v for k, v in row.items() if k in numbers and k != "data_source"},
            "data_source": row.get("data_source"),
            "history": row.get("history") or [],
            "system": row.get("system") or None,
            "choices": row.get("choices") or {},
            "git_commit": commit,
        }
    )
    levels = {k: v for k, v in row.items() if k not in numbers and k not in NOT_LEVELS}
    return StudyRun(str(row.get("run", "")), record, _levels(levels), row.get("config") or {},
                    row.get("given") or {})  # fmt: skip


def runs_of(rows: Sequence[dict[str, Any]]) -> tuple[StudyRun, ...]:
    """Runs from rows of a runs table (from_row)."""
    return tuple(from_row(row) for row in rows)


@cache
def _declared(experiment: str) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from cnnexp import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+experiment={experiment}"])
    return OmegaConf.to_container(cfg.study, resolve=True)


def declared_study(experiment: Any) -> dict[str, Any]:
    """The `study` node of conf/experiment/<experiment>.yaml, composed now; {} for none."""
    if not isinstance(experiment, str) or not experiment:
        return {}
    return copy.deepcopy(_declared(experiment))  # the cached one stays as composed


def table_of_runs(study: Study) -> pd.DataFrame:
    """runs.csv's rows: every run's columns, its per-run objects as JSON, its study's name."""
    runs = frame(study.runs + study.check)
    table = runs.drop(columns=[c for c in HIDDEN if c in runs])
    for key in OBJECTS:
        table[key] = runs[key].map(lambda v: json.dumps(v, default=str))
    return table.assign(study=study.name, study_root=str(study.root))


def select_tuned(study: Study, key: str, metric: str = VAL_ACC) -> Study:
    """Keep, for each combination of the other factors, only the runs of the level of `key`
    (a learning rate, say) with the best mean validation accuracy over its usable seeds: each
    variant is then compared at its own best setting, chosen without looking at the test set."""
    others = [f for f in study.factors if f != key]
    keep, rows = set(), []
    for levels, runs in groups(replace(study, factors=others)):
        usable = [r for r in runs if r.usable]
        if usable and not numbers(usable, metric):
            raise ValueError(
                f"{study.root}: the study tunes {key} on validation accuracy, but its runs "
                "recorded none: hold out a validation split (data.validation=5000)"
            )
        scores = _mean_by_level(usable, key, metric)
        best = max(scores, key=scores.get) if scores else str(runs[0].levels.get(key))
        keep |= {id(r) for r in runs if str(r.levels.get(key)) == best}
        per_level = ", ".join(f"{level}: {100 * score:.2f}" for level, score in scores.items())
        shown = next(r.levels.get(key) for r in runs if str(r.levels.get(key)) == best)
        rows.append(
            {**levels, key: shown, "validation acc % (mean) per level": per_level or "none trained"}
        )
    return replace(
        study,
        runs=tuple(r for r in study.runs if id(r) in keep),
        factors=others,
        baseline={k: v for k, v in study.baseline.items() if k != key},
        tuning=pd.DataFrame(rows),
    )


def _mean_by_level(runs: list[StudyRun], key: str, metric: str) -> dict[str, float]:
    """{level of `key` as text: the mean of `metric` over its runs that have it}, in order."""
    by_level: dict[str, list[StudyRun]] = {}
    for run in runs:
        by_level.setdefault(str(run.levels.get(key)), []).append(run)
    means = {level: mean_of(part, metric) for level, part in by_level.items()}
    return {level: mean for level, mean in means.items() if not math.isnan(mean)}


def experiment_of(study: Study) -> str | None:
    """The conf/experiment/ YAML its runs were made from (+experiment=...), where they name one."""
    names = {str(r.levels["experiment"]) for r in study.runs if r.levels.get("experiment")}
    return names.pop() if len(names) == 1 else None


def as_tuple(levels: object) -> tuple:
    return levels if isinstance(levels, tuple) else (levels,)


def runs_table(study: Study) -> pd.DataFrame:
    """The table of all runs: swept choices and overrides, then the results and provenance."""
    keys = [c for c in study.table.columns if c not in HIDDEN]
    first = ["run", *study.factors, *([REPLICATE] if REPLICATE in keys else [])]
    return study.table[first + [c for c in keys if c not in first]]


def groups(study: Study) -> list[tuple[dict[str, Any], list[StudyRun]]]:
    """(factor levels as text, runs) for every combination of the swept factors, in sweep
    order (levels compare as text: overrides are typed, a baseline is declared as text)."""
    found: dict[tuple[str, ...], tuple[dict[str, Any], list[StudyRun]]] = {}
    for run in study.runs:
        levels = {f: str(run.levels.get(f)) for f in study.factors}
        found.setdefault(tuple(levels.values()), (levels, []))[1].append(run)
    return list(found.values()) if study.factors else [({}, list(study.runs))]


def matching(frame: pd.DataFrame, levels: dict[str, Any]) -> pd.Series:
    """Which rows of a table (a summary's) are at these factor levels (compared as text, since
    overrides are typed and the baseline is declared as text); keys it lacks are passed over."""
    mask = pd.Series(True, index=frame.index)
    for key, value in levels.items():
        if key in frame:
            mask &= frame[key].astype(str) == str(value)
    return mask


def label(study: Study, row: pd.Series | dict[str, Any]) -> str:
    """'arch=stride-2', a row's levels as the report names them; the study's name for none."""
    return ", ".join(f"{f}={row[f]}" for f in study.factors) or study.name


def problems(study: Study) -> pd.DataFrame:
    """Runs that are not in the means: did not train, diverged, failed, incomplete or
    unreadable; blank where a run has no number."""
    bad = frame([r for r in study.runs if not r.usable])
    columns = ["run", *study.factors, "status", TEST_ACC, TRAIN_LOSS, "error"]
    shown = bad[[c for c in columns if c in bad]].astype(object)
    return shown.where(shown.notna(), "")


def data_title(config: dict[str, Any] | None) -> str | None:
    """The data set's own name (data.title: CIFAR-100), or its config name for a run from before
    data configs had a title."""
    data = (config or {}).get("data") or {}
    return data.get("title") or data.get("name")


def environment_of(run: Path) -> dict[str, Any]:
    """env.json of a run, or {}."""
    return or_warn(read_json, Path(run) / ENVIRONMENT, SKIPPED) or {}


def jobs_at_a_time(runs: Sequence[StudyRun]) -> int | None:
    """How many of these runs ran at a time: the cores over each run's threads, from their
    env.json (the most common value); None where no run folder says (a runs table)."""
    envs = [environment_of(Path(run.path)) for run in runs]
    ratios = [e["cpu_cores"] // e["torch_threads"] for e in envs if e.get("torch_threads")]
    return max(set(ratios), key=ratios.count) if ratios else None


def system_log(run: Path) -> pd.DataFrame | None:
    """system.csv of a run, or None."""
    path = Path(run) / SYSTEM
    if not path.exists() or path.stat().st_size == 0:
        return None
    return or_warn(read_csv, path, SKIPPED, ("time_s",))


def yaml_or_warn(path: Path, form: type) -> Any:
    return or_warn(read_yaml, path, SKIPPED, form)


# What a report does about a damaged file: a table it was asked to read stops it; a run's
# other files are left out, each said once.
TABLE_FIX = "give the run or sweep folders it was made from instead, or a runs.csv a report wrote"
SKIPPED = "the report goes on without it"
_warned: set[str] = set()


def or_warn(read: Any, *args: Any) -> Any:
    """What `read(*args)` returns, or None with one warning line where a file is damaged."""
    try:
        return read(*args)
    except DamagedFileError as err:
        warn(str(err))
        return None


def warn(text: str) -> None:
    """One line on stderr, once per text."""
    if text not in _warned:
        _warned.add(text)
        print(f"warning: {text}", file=sys.stderr)
