"""The kinds of study, one class each: what a study's sweep runs (its jobs and its budget
check's), what its differences are measured from, and which report sections and lab question
are its own. A study's YAML (conf/experiment/) chooses its kind from conf/study/ (`study:
factorial`) and fills in the fields below; the sweeper (hydra_plugins/cnnexp_study), the sweep's
progress line and the report all ask the study object, never its kind's name.

A new study of an existing kind is one YAML; a new kind is one subclass of `Study` (with its
`_target_` in a YAML of conf/study/ or in the study's own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from cnnexp import design
from cnnexp.errors import ConfigError
from cnnexp.sequential import RHO, Rounds

REPLICATE = "seed"  # the key that repeats a configuration; an arm is a job without it
BUDGET_CHECK = "budget_check"  # study.role of the check's runs
CHECK_FOLDER = "check"  # the check's jobs, inside the study's sweep folder
STEP = "study.step"  # the key that names a ladder job's step


@dataclass
class Check:
    """The budget check: the arms the study decides trained again at `times` its epochs."""

    times: int = 2
    seeds: list[int] = field(default_factory=list)  # none: no check
    # Arms to train again besides the baseline, as overrides ("pool=avg"); empty: every arm of
    # a two-arm study; of a larger one the baseline, and in a deciding sweep the arms its
    # rounds decided (better, worse or equivalent).
    arms: list[str] = field(default_factory=list)


@dataclass
class Decide:
    """How a deciding sweep (hydra/sweeper=decide, cnnexp.sequential) runs its rounds: `first`
    seeds for every arm, then `step` more for each arm still open, up to `max_seeds`, or until
    `minutes` of the sweep have passed; an arm within +-`margin` points of the control is
    equivalent. The level is spent over the looks as t^`spending` (cnnexp.sequential)."""

    first: int = 3
    step: int = 2
    max_seeds: int = 9
    spending: float = RHO
    margin: float = 0.2  # points of accuracy
    minutes: float | None = None

    def rounds(self) -> Rounds:
        """Its looks and spending; ConfigError naming the keys where they cannot be."""
        try:
            return Rounds(self.first, self.step, self.max_seeds, self.spending)
        except ValueError as err:
            raise ConfigError(f"study.decide: {err}") from None


@dataclass
class Study:
    """A sweep whose arms differ in the swept keys and are compared with the baseline arm. The
    fields are the config's `study` node (conf/config.yaml says each one)."""

    _target_: str = "cnnexp.studies.Study"
    name: str | None = None
    question: str | None = None
    lab_question: str | None = None  # which of the lab's questions it answers: 3.1, 3.2
    budget: str | None = None
    baseline_reaches: float | None = None
    baseline: dict[str, Any] = field(default_factory=dict)
    tune: str | None = None
    sections: list[str] = field(default_factory=list)
    role: str | None = None
    generators: str | None = None
    factors: dict[str, Any] = field(default_factory=dict)
    confirm: dict[str, Any] = field(default_factory=dict)
    check: Check = field(default_factory=Check)
    decide: Decide = field(default_factory=Decide)
    # What each budget of the study changes (config key -> value; a value with commas is swept);
    # study.budget picks one, for its sweep.
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    # study=ladder: step name -> what that step changes (config key -> value), in order; each
    # step keeps every change before it. A job's own step is `step`.
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    step: str | None = None

    # --- what it runs ---------------------------------------------------------------------

    def jobs(self, swept: list[list[str]]) -> list[list[str]]:
        """The study's own jobs, from the sweep's (every combination of its swept values)."""
        return swept

    def reference(self) -> dict[str, str]:
        """What differences are measured from, by config key or group: the baseline."""
        return {key: str(value) for key, value in flatten(self.baseline).items()}

    def check_arms(self, arms: list[list[str]]) -> list[list[str]]:
        """The arms its check trains again: every arm of a two-arm study; else the baseline
        and those `check.arms` names (a deciding sweep adds the arms it decided: check_jobs)."""
        if len(arms) <= 2 and not self.check.arms:
            return arms
        return [arm for arm in arms if self.is_reference(arm) or set(self.check.arms) & set(arm)]

    def is_reference(self, arm: list[str]) -> bool:
        """Whether an arm (its overrides) is at every reference level it sets."""
        given = dict(key_value(text) for text in arm)
        reference = self.reference()
        return bool(reference) and all(given.get(k, v) == v for k, v in reference.items())

    def check_jobs(
        self, jobs: list[list[str]], epochs: int, also: Sequence[list[str]] = ()
    ) -> list[list[str]]:
        """Its check's jobs: the check's arms and those `also` gives (a deciding sweep's control
        and the arms its rounds decided, known before its check; a grid's check runs beside its
        arms), x its seeds at `check.times` x `epochs`, in the sweep folder's check/ subfolder."""
        arms = _arms(jobs)
        chosen = self.check_arms(arms)
        return [
            [
                *arm,
                f"{REPLICATE}={seed}",
                f"epochs={self.check.times * epochs}",
                f"study.role={BUDGET_CHECK}",
                f"hydra.sweep.subdir={CHECK_FOLDER}/${{hydra.job.num}}",
            ]
            for arm in arms
            if arm in chosen or arm in also
            for seed in self.check.seeds
        ]

    def validate(self) -> None:
        """Raise ConfigError naming the first bad key of the study."""
        if self.role not in (None, BUDGET_CHECK):
            raise ConfigError(
                f"study.role={self.role!r} is not valid; choose {BUDGET_CHECK} or null"
            )
        if self.budgets and self.budget not in self.budgets:
            raise ConfigError(
                f"study.budget={self.budget} is not one of this study's budgets; choose "
                f"{', '.join(self.budgets)}"
            )
        self.decide.rounds()
        if self.check.times < 1:
            raise ConfigError(f"study.check.times={self.check.times} is not valid: use 2 or more")
        for section in self.sections:
            if "." not in section:
                raise ConfigError(
                    f"study.sections has {section!r}: name a report function as module.name, "
                    "e.g. cnnexp.report.pooling.add_pooling"
                )

    # --- what the report and the lab make of it --------------------------------------------

    def report_sections(self) -> list[str]:
        """The report's extra sections for it: functions (module.name) called as
        `section(doc, study, tag, alpha)`."""
        return list(self.sections)

    def answers_lab(self) -> str | None:
        """The lab question it answers: its own, else 3.2 (which changes improve a network)
        for a study that compares anything."""
        return self.lab_question or ("3.2" if self.reference() else None)

    def tuned_key(self) -> str | None:
        """A key chosen per arm on the validation split, or None."""
        return None

    def answers_factors(self) -> bool:
        """Whether its answer is the main effects of factors (a design), not arm by arm."""
        return False

    def confirms(self) -> bool:
        """Whether its two arms confirm a design's recommendation."""
        return False

    def climbs(self) -> bool:
        """Whether its arms are a ladder's steps, each measured from the one before it."""
        return False

    def arm_keys(self, varied: list[str]) -> list[str]:
        """The keys that name its arms in the report, from those its runs vary."""
        return varied


class Tuned(Study):
    """A one-factor study that sweeps `tune` too and keeps, per arm, the level with the best
    validation accuracy (the test set decides nothing)."""

    def tuned_key(self) -> str | None:
        return self.tune


class Factorial(Study):
    """A two-level fractional factorial design: its jobs are the design's points (`generators`,
    one column per factor) x the sweep's seeds; its answer is each factor's main effect; its
    check trains the reference configuration (every factor low) again."""

    def jobs(self, swept: list[list[str]]) -> list[list[str]]:
        return [point + job for point in self.points() for job in swept]

    def points(self) -> list[list[str]]:
        """Each design point as overrides: [["model.kernel_size=3", "activation=relu"], ...]."""
        coded = design.points(self.generators or "")
        factors = list(self.factors.items())
        if coded.shape[1] != len(factors):
            raise ConfigError(
                f"study.generators={self.generators!r} has {coded.shape[1]} columns but "
                f"study.factors names {len(factors)} factors: give one column per factor"
            )
        return [
            [f"{spec['key']}={spec['high'] if level > 0 else spec['low']}" for (_, spec), level in
             zip(factors, row, strict=True)]
            for row in coded
        ]  # fmt: skip

    def reference(self) -> dict[str, str]:
        return {spec["key"]: str(spec["low"]) for spec in self.factors.values()}

    def check_arms(self, arms: list[list[str]]) -> list[list[str]]:
        return [arm for arm in arms if self.is_reference(arm) or set(self.check.arms) & set(arm)]

    def report_sections(self) -> list[str]:
        return ["cnnexp.report.factorial.add_factorial", *self.sections]

    def answers_factors(self) -> bool:
        return True

    def validate(self) -> None:
        """One factor (key, low, high) per column, and the generators."""
        super().validate()
        if not self.factors or not self.generators:
            raise ConfigError(
                "a factorial study needs study.factors (name -> {key, low, high}) and "
                "study.generators (e.g. 'a b c abc'); see conf/experiment/factorial.yaml"
            )
        for name, spec in self.factors.items():
            missing = [k for k in ("key", "low", "high") if k not in spec]
            if missing:
                raise ConfigError(
                    f"study.factors.{name} lacks {', '.join(missing)}: give key, low, high"
                )


class Confirm(Factorial):
    """A design's recommendation confirmed by runs: two arms, the reference configuration
    (every factor low) and the one `confirm` names (factor -> level)."""

    def points(self) -> list[list[str]]:
        reference = {name: spec["low"] for name, spec in self.factors.items()}
        arms = [reference, {**reference, **self.confirm}]
        return [[f"{self.factors[n]['key']}={v}" for n, v in arm.items()] for arm in arms]

    def check_arms(self, arms: list[list[str]]) -> list[list[str]]:
        return arms

    def report_sections(self) -> list[str]:
        return list(self.sections)

    def answers_factors(self) -> bool:
        return False

    def confirms(self) -> bool:
        return True

    def validate(self) -> None:
        super().validate()
        if not self.confirm:
            raise ConfigError(
                "study=confirm trains the reference configuration against the one in "
                "study.confirm (factor -> level, e.g. +study.confirm.activation=gelu): give it"
            )
        for name, level in self.confirm.items():
            spec = self.factors.get(name)
            if spec is None:
                raise ConfigError(
                    f"study.confirm.{name}: no such factor; choose from {', '.join(self.factors)}"
                )
            if str(level) not in (str(spec["low"]), str(spec["high"])):
                raise ConfigError(
                    f"study.confirm.{name}={level}: the factor's levels are {spec['low']} and "
                    f"{spec['high']}"
                )


class Ladder(Study):
    """A ladder: `steps` from a first network to a last one, one change at a time, each step
    keeping the changes before it; each step is compared with the step before it. Its check
    trains the first and the last step again (or the steps `check.arms` names)."""

    def jobs(self, swept: list[list[str]]) -> list[list[str]]:
        return [[*self.overrides(name), *job] for name in self.steps for job in swept]

    def overrides(self, name: str) -> list[str]:
        """A step's overrides: every change up to it, then `study.step=name`. A step that
        chooses a config group (model=whitened_resnet) drops the earlier steps' keys inside
        that group, which described the network it replaces."""
        kept: dict[str, Any] = {}
        for step, changes in self.steps.items():
            for key, value in changes.items():
                kept = {k: v for k, v in kept.items() if not k.startswith(f"{key}.")}
                kept.pop(key, None)
                kept[key] = value
            if step == name:
                return [*(f"{k}={override_text(v)}" for k, v in kept.items()), f"{STEP}={name}"]
        raise ConfigError(f"study.step={name}: no such step; choose {', '.join(self.steps)}")

    def reference(self) -> dict[str, str]:
        return {}  # each step is measured from the step before it (cnnexp.report.ladder)

    def check_arms(self, arms: list[list[str]]) -> list[list[str]]:
        names = self.check.arms or [*list(self.steps)[:1], *list(self.steps)[-1:]]
        named = [f"{STEP}={name}" for name in names]
        return [arm for arm in arms if set(named) & set(arm)]

    def report_sections(self) -> list[str]:
        return ["cnnexp.report.ladder.add_ladder", *self.sections]

    def answers_lab(self) -> str | None:
        return self.lab_question or "3.2"

    def climbs(self) -> bool:
        return True

    def arm_keys(self, varied: list[str]) -> list[str]:
        return [STEP] if STEP in varied else varied  # one name a step, not its many keys

    def validate(self) -> None:
        super().validate()
        if len(self.steps) < 2:
            raise ConfigError(
                "a ladder needs study.steps: two or more steps, name -> {key: value}; see "
                "conf/experiment/ladder.yaml"
            )
        for name in self.check.arms:
            if name not in self.steps:
                raise ConfigError(
                    f"study.check.arms has {name!r}: a ladder's check names its steps; choose "
                    f"from {', '.join(self.steps)}"
                )


# Runs written before studies had a kind name it by study.design (and study.tune), and their
# report sections by name.
LEGACY = {"factorial": Factorial, "reference": Factorial, "confirm": Confirm}
LEGACY_SECTIONS = {"pooling": ("cnnexp.report.pooling.add_pooling", "3.1")}


def of(node: Mapping[str, Any] | DictConfig | None) -> Study:
    """The study a config's `study` node describes (a run's saved config, or the composed one)."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    node = dict(node or {})
    legacy = node.pop("design", None)
    target = node.pop("_target_", None)
    kind = get_class(target) if target else LEGACY.get(legacy, Tuned if node.get("tune") else Study)
    for old in [name for name in node.get("sections") or [] if name in LEGACY_SECTIONS]:
        section, node["lab_question"] = LEGACY_SECTIONS[old]
        node["sections"] = [section if name == old else name for name in node["sections"]]
    known = {f.name for f in fields(Study)}
    values = {k: v for k, v in node.items() if k in known}
    values["check"] = Check(**(values.get("check") or {}))
    values["decide"] = Decide(**(values.get("decide") or {}))
    return kind(**values)


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """Every job of a sweep, as overrides: the study's own jobs, then its check's. Each job's
    overrides are the sweep's params (the study's YAML), then its budget's
    (study.budgets[study.budget]), then the command line's: a later value of a key wins."""
    study, jobs, texts = _composed(config)
    return jobs + _checks(study, jobs, texts, config)


def arms_of(
    config: DictConfig, also: Sequence[list[str]] = ()
) -> tuple[Study, list[list[str]], list[list[str]]]:
    """A sweep's study, its arms (its own jobs, as sweep_jobs makes them) and its check's
    jobs apart; `also`: arms the check trains besides its own (Study.check_jobs)."""
    study, jobs, texts = _composed(config)
    return study, jobs, _checks(study, jobs, texts, config, also)


def _checks(study, jobs, texts: list[str], config: DictConfig, also=()) -> list[list[str]]:
    epochs = next((v for k, v in map(key_value, reversed(texts)) if k == "epochs"), None)
    return study.check_jobs(jobs, int(epochs or config.epochs), also)


def _composed(config: DictConfig) -> tuple[Study, list[list[str]], list[str]]:
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    arguments = list(config.hydra.overrides.task)
    texts = _last_of_each([*params, *budget_overrides(config.study), *arguments])
    (swept,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(texts), None)
    study = of(_budgeted(config.study, {key_value(t)[0] for t in arguments}))
    study.validate()
    return study, study.jobs(swept), texts


def budget_overrides(study: DictConfig) -> list[str]:
    """The chosen budget's settings as overrides (`setup=convnet_cifar10`, `epochs=30`); none
    for a study without budgets (a budget it lacks is refused by `Study.validate`)."""
    chosen = (study.get("budgets") or {}).get(study.budget) or {}
    return [f"{key}={override_text(value)}" for key, value in chosen.items()]


def _budgeted(study: DictConfig, given: set[str]) -> DictConfig:
    """The study node as its jobs see it: with its budget's study.* settings, except those the
    command line gives."""
    node = OmegaConf.create(OmegaConf.to_container(study, resolve=True))
    for key, value in ((study.get("budgets") or {}).get(study.budget) or {}).items():
        if key.startswith("study.") and key not in given:
            OmegaConf.update(node, key.removeprefix("study."), value, force_add=True)
    return node


def override_text(value: Any) -> str:
    """A value as Hydra's override grammar writes it: null, true, [32,64], 0.05,0.1 (a sweep)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple) or OmegaConf.is_list(value):
        return "[" + ",".join(override_text(v) for v in value) + "]"
    if isinstance(value, Mapping) or OmegaConf.is_dict(value):
        return "{" + ",".join(f"{k}:{override_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _last_of_each(texts: list[str]) -> list[str]:
    """The overrides with only the last of each key, in the order of those last ones."""
    last = {key_value(text)[0]: i for i, text in enumerate(texts)}
    return [text for i, text in enumerate(texts) if last[key_value(text)[0]] == i]


def _arms(jobs: list[list[str]]) -> list[list[str]]:
    """The distinct arms of these jobs: their overrides without the replicate, in job order."""
    arms: list[list[str]] = []
    for job in jobs:
        arm = [text for text in job if key_value(text)[0] != REPLICATE]
        if arm not in arms:
            arms.append(arm)
    return arms


def key_value(text: str) -> tuple[str, str]:
    """An override's key (group or config key, without Hydra's +, ++ or ~) and its value text."""
    key, _, value = text.lstrip("+~").partition("=")
    return key, value


def flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a.b': value} for every leaf of a nested config."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
