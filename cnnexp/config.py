"""The config's schema and the checks a type cannot express.

Every group and the top level have a structured config (a dataclass in Hydra's ConfigStore), so a
wrong type or an unknown key fails when the config is composed. The values themselves live once,
in the YAML files under conf/; the dataclasses only say what each key is (no defaults here: a
key without a value in YAML is MISSING).
`validate` then checks ranges and choices.
"""

import importlib
import pkgutil
import types
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import (
    Any,
    NamedTuple,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, InstantiationException
from hydra.utils import instantiate
from omegaconf import BooleanNode, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cnnexp import studies
from cnnexp.errors import CnnexpError, ConfigError

# Each option's schema, by group: {group: {name: dataclass}}. A schema is declared beside the
# code it configures (a model's in its module) with @schema; `register` imports those modules.
SCHEMAS: dict[str, dict[str, type]] = {}


def schema(group: str, name: str) -> Any:
    """Declare the decorated dataclass as the schema of `group`'s option `name`: its YAML takes
    it as `defaults: [/schema/<group>/<name>@_here_]`. A `check(node)` method on it checks the
    ranges a type cannot say."""

    def declare(cls: type) -> type:
        SCHEMAS.setdefault(group, {})[name] = cls
        return cls

    return declare


@schema("pool", "built")
@schema("activation", "built")
@schema("schedule", "built")
@dataclass
class Built:
    """A class or function built by `hydra.utils.instantiate`, its arguments given later."""

    _target_: str
    _partial_: bool


@schema("activation", "leaky_relu")
@dataclass
class LeakyReLU(Built):
    negative_slope: float


@schema("optimizer", "sgd")
@dataclass
class SGD(Built):
    lr: float  # peak learning rate, for the mean loss of a batch
    momentum: float
    nesterov: bool
    weight_decay: float


@schema("optimizer", "adam")
@dataclass
class Adam(Built):
    lr: float
    weight_decay: float


@dataclass
class Augment:
    translate: int
    flip: Any  # true | false | alternate


@dataclass
class Synthetic:
    train_size: int
    test_size: int
    noise: float


@dataclass
class Data:
    name: str
    title: str  # the data set's own name, as reports give it
    source: str
    root: str | None
    folder: str | None
    download: bool
    cache: str | None
    channels: int
    size: int
    pad: int
    classes: int
    mean: list[float]
    std: list[float]
    subset: int | None
    validation: int
    augment: Augment
    synthetic: Synthetic | None = None  # only for source=synthetic


@dataclass
class Trainer:
    _target_: str  # a trainer of the protocol in cnnexp.trainer
    devices: int


@dataclass
class Tracking:
    images_every: int
    feature_map_images: int
    histograms_every: int
    graph: bool
    confusion: bool
    misclassified: int
    hparams: bool
    monitor_interval: float


@dataclass
class Config:
    """The top level. Groups whose options differ in shape (model, optimizer, ...) are typed by
    each option's own schema, named in that option's defaults list."""

    data: Data
    model: Any
    pool: Any
    activation: Any
    optimizer: Any
    schedule: Any
    trainer: Trainer
    seed: int
    epochs: int
    batch_size: int
    device: str
    precision: str
    channels_last: Any  # auto | true | false
    compile: bool
    label_smoothing: float
    eval_batch_size: int
    tta: Any  # a test-time augmentation of cnnexp.engine (conf/tta/)
    ema: float | None
    lookahead: bool
    norm_bias_lr: float
    objective: str
    max_loss: float
    progress: Any  # auto | true | false
    study: studies.Study
    tracking: Tracking


# Where schemas are declared besides this module: every model's module, and our optimizer's and
# schedules'.
SCHEMA_PACKAGES = ("cnnexp.models",)
SCHEMA_MODULES = ("cnnexp.muon", "cnnexp.schedules")


def register() -> None:
    """Put every schema in Hydra's ConfigStore, before any config is composed: the top level's
    as `schema/config` (first in conf/config.yaml's defaults), each option's as
    `schema/<group>/<name>` (conf/model/convnet.yaml: `defaults: [/schema/model/convnet@_here_]`).
    Under schema/, apart from the groups' own options. A new model is its module and its YAML:
    every module of cnnexp.models is imported here, so its @schema declares itself."""
    for package in SCHEMA_PACKAGES:
        found = importlib.import_module(package).__path__
        for module in pkgutil.iter_modules(found, f"{package}."):
            importlib.import_module(module.name)
    for module in SCHEMA_MODULES:
        importlib.import_module(module)
    store = ConfigStore.instance()
    store.store(group="schema", name="config", node=Config)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=f"schema/{group}", name=name, node=node)


# What data.augment.flip can be: every epoch, never, or every other epoch (cnnexp.loader).
FLIPS = (True, False, "alternate")
# Text keys with a fixed set of values (booleans are typed by the schema).
CHOICES = {
    "device": ("auto", "cpu", "cuda", "mps"),
    "precision": ("auto", "bf16", "fp16", "fp32"),
    "channels_last": ("auto", True, False),
    "progress": ("auto", True, False),
    # What a search maximises: never a test metric, so the test set decides nothing.
    "objective": ("final_val_acc", "best_val_acc"),
}


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key, its value and what would be valid. The
    schema has already checked every type; these are the ranges and choices a type cannot say."""
    _refuse_unknown_keys(cfg)
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if cfg[key] < 1:
            raise ConfigError(f"{key}={cfg[key]!r} is not valid: it must be a whole number >= 1")
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError(
            f"seed={cfg.seed!r} is not valid: it must be a whole number from 0 to 2**32 - 1"
        )
    if cfg.data.augment.translate < 0:
        raise ConfigError(
            f"data.augment.translate={cfg.data.augment.translate!r} is not valid: "
            "it must be a whole number of pixels >= 0 (0 = off)"
        )
    _check_option(cfg.model)
    if cfg.optimizer.lr <= 0:
        raise ConfigError(
            f"optimizer.lr={cfg.optimizer.lr!r} is not valid: it must be a number > 0, e.g. 0.01"
        )
    for key, valid in CHOICES.items():
        if cfg[key] not in valid:
            raise ConfigError(
                f"{key}={cfg[key]!r} is not valid; choose one of {', '.join(map(str, valid))}"
            )
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing={cfg.label_smoothing} is not valid: use 0 <= value < 1")
    if cfg.norm_bias_lr <= 0:
        raise ConfigError(f"norm_bias_lr={cfg.norm_bias_lr!r} is not valid: use a number > 0")
    if cfg.data.augment.flip not in FLIPS:
        raise ConfigError(
            f"data.augment.flip={cfg.data.augment.flip!r} is not valid; choose true, false or "
            "alternate"
        )
    studies.of(cfg.study).validate()
    if cfg.trainer.devices < 1:
        raise ConfigError(
            f"trainer.devices={cfg.trainer.devices!r} is not valid: it must be a whole number >= 1"
        )
    if cfg.ema is not None and not 0.0 < cfg.ema < 1.0:
        raise ConfigError(f"ema={cfg.ema} is not valid: use a decay in (0, 1), e.g. 0.99, or null")


def _check_option(node: DictConfig) -> None:
    """The ranges its schema checks (`check`), for a group's chosen option."""
    check = getattr(OmegaConf.get_type(node), "check", None)
    if check is not None:
        check(node)


def _refuse_unknown_keys(node: DictConfig, path: str = "") -> None:
    """Every key under a schema is one of its fields. Hydra's `+key=value` appends past the
    schema, so composing alone does not catch `+model.kernelsize=5`."""
    schema = OmegaConf.get_type(node)
    if is_dataclass(schema):
        known = [f.name for f in fields(schema)]
        for key in node:
            if key not in known:
                raise ConfigError(_not_a_key(f"{path}{key}", schema))
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            _refuse_unknown_keys(child, f"{path}{key}.")


def _not_a_key(key: str, schema: type) -> str:
    parent, _, _ = key.rpartition(".")
    where = f"{parent} ({schema.__name__.removesuffix('Config')})" if parent else "the top level"
    names = [f.name for f in fields(schema) if not f.name.startswith("_")]
    return f"{key} is not a config key; {where} has: {', '.join(names)}"


# --- objects built from the config ---------------------------------------------------------


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`instantiate`, with a config mistake (or a misfit network) reported as our own error."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        ours = _our_cause(err)
        if ours is not None:
            raise ours from None
        raise ConfigError(
            f"{err}\nCheck the keys of that config group against its YAML file"
        ) from err


def _our_cause(err: BaseException) -> CnnexpError | None:
    """Our own error behind Hydra's, however deep (a target's import raises it too)."""
    while err is not None and not isinstance(err, CnnexpError):
        err = err.__cause__ or err.__context__
    return err


# --- the command line, checked before Hydra starts a run --------------------------------------


class Choice(NamedTuple):
    """One value of one override: `seed=1` of `seed=0,1`."""

    text: str  # as an override: seed=1
    key: str  # seed; +experiment=x gives experiment
    value: Any  # typed as Hydra's grammar reads it: 1, true, 'yes'


def typed_overrides(overrides: list[str]) -> dict[str, Any]:
    """A job's overrides as {key: value}, typed as Hydra's grammar reads them (`seed=1` -> 1,
    `model.widths=[8,16]` -> [8, 16]), Hydra's own left out. The one reading of them: written
    into metrics.json at the start of a run, and used by the report for a run that never began."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return {o.key_or_group: o.value() for o in parsed if not o.key_or_group.startswith("hydra")}


def command_line_problem(args: list[str], conf: Path) -> str | None:
    """The first problem with the configs that a command line composes, as one line naming the
    key and what is allowed; else None. Each value of a sweep is composed with the first value
    of every other sweep, so a bad value fails before any job trains."""
    overrides = [arg for arg in args if "=" in arg and not arg.startswith("-")]
    if problem := unknown_choice(overrides, conf):
        return problem
    parser, parsed = OverridesParser.create(), []
    for arg in overrides:
        try:
            parsed += parser.parse_overrides([arg])
        except HydraException as err:  # Hydra's message, without its link to the grammar
            reason = " ".join(line for line in str(err).splitlines() if not line.startswith("See"))
            return f"{arg} cannot be read: {reason} (https://hydra.cc/docs/advanced/override_grammar/basic/)"
    sweeps = [_choices(o) for o in parsed if not o.key_or_group.startswith("hydra")]
    sweeps = [values for values in sweeps if values]
    firsts = [values[0] for values in sweeps]
    runs = [firsts] + [
        [*firsts[:i], value, *firsts[i + 1 :]]
        for i, values in enumerate(sweeps)
        for value in values[1:]
    ]
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        for run in runs:
            if problem := _composed_problem(run):
                return problem
    return None


def _choices(override: Override) -> list[Choice]:
    """The override's values; none for a search's interval (the search draws those)."""
    key, prefix = override.key_or_group, override.get_key_element()
    if not override.is_sweep_override():
        return [Choice(override.input_line or "", key, override.value())]
    if override.is_interval_sweep():
        return []
    texts = override.sweep_string_iterator()
    return [
        Choice(f"{prefix}={text}", key, value)
        for text, value in zip(texts, override.sweep_iterator(), strict=True)
    ]


def _composed_problem(run: list[Choice]) -> str | None:
    """Compose one job's config and check it: types and keys (the schema), then `validate`."""
    try:
        cfg = compose(config_name="config", overrides=[choice.text for choice in run])
    except (HydraException, OmegaConfBaseException) as err:
        return _explain(err, run)
    for choice in run:
        node = _node(cfg, choice.key)
        if isinstance(node, BooleanNode) and not isinstance(choice.value, bool | None):
            # OmegaConf would read yes/no/on/off as booleans; a typo should not pass as one.
            return f"{choice.text} is not valid: {choice.key} is true or false"
    try:
        validate(cfg)
    except ConfigError as err:
        return str(err)
    return None


def _node(cfg: DictConfig, key: str) -> Any:
    """The node (not its value) at a dotted key, or None."""
    parent, _, last = key.rpartition(".")
    container = OmegaConf.select(cfg, parent) if parent else cfg
    if isinstance(container, DictConfig) and last in container:
        return container._get_node(last)
    return None  # a config group (+experiment=...) or a key the schema would refuse


def _explain(err: Exception, run: list[Choice]) -> str:
    """One line for a composition error: the key, its value and what the schema allows."""
    cause = err.__cause__ or err
    key = (getattr(cause, "full_key", None) or "").partition("[")[0]  # model.widths[1]: a list
    schema = getattr(cause, "object_type", None)
    given = _given(run, key, getattr(cause, "value", None))
    if not key:
        return " ".join(str(err).split())
    if not is_dataclass(schema):  # an element of a list: OmegaConf's own reason
        return f"{given or key} is not valid: {str(getattr(cause, 'msg', cause)).splitlines()[0]}"
    field = key.rpartition(".")[2]
    hints = get_type_hints(schema)
    if field not in hints:
        return _not_a_key(key, schema)
    return f"{given or key} is not valid: {key} is {_kind(hints[field])}"


def _given(run: list[Choice], key: str, value: Any) -> str | None:
    """The override that set `key` to the refused `value`, as the user typed it: of a key given
    twice (epochs=1 epochs=2.5), the occurrence that is wrong."""
    occurrences = [c for c in run if c.key == key]
    wrong = [c for c in occurrences if c.value == value] or occurrences[-1:]
    return wrong[0].text if wrong else None


def _kind(annotation: Any) -> str:
    """A schema type in words: int -> 'a whole number'."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, types.UnionType):  # X | None
        return f"{_kind(args[0])} or null"
    if get_origin(annotation) is list:
        return f"a list of {_kind(args[0]).removeprefix('a ')}s, e.g. [1,2]"
    words = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}
    return words.get(annotation, "a value")


def unknown_choice(args: list[str], conf: Path) -> str | None:
    """The message for the first override that picks a config group option that does not
    exist (`pool=median`), else None. Checked before Hydra, whose own message is a stack of
    lines; sweeps (`pool=max,avg`) are checked per value."""
    for arg in args:
        key, sep, value = arg.lstrip("+~").partition("=")
        group = conf / key
        if not sep or arg.startswith("-") or "(" in value or not group.is_dir():
            continue
        if key.startswith("hydra"):  # Hydra's own groups hold its plugins' options too
            continue
        # A name with a leading underscore is what the options share (data/_base), not one.
        options = sorted(p.stem for p in group.glob("*.yaml") if not p.stem.startswith("_"))
        for choice in value.split(","):
            if choice != "null" and choice not in options:
                return (
                    f"{key}={choice} is not an option: choose one of {', '.join(options)} "
                    f"(the files in conf/{key}/)"
                )
    return None
