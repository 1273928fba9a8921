"""One typed tree of dataclasses holds every option of a run, assembled from the parts' own sections.

`RunConfig` is the common options (`options.py` sections: data, train, loss, ...) plus one
section per registered strategy that has options (`lora`, `freeze`, `gradual`, ...), declared in
the strategy's own file. Recipes subclass `RunConfig` only to change defaults. Overrides come as dotted `key=value`
strings (CLI), YAML files or keyword arguments (notebooks); all three go through OmegaConf,
which converts and checks types, and every failure becomes a one-line `ConfigError` that
names the close valid keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import GrammarParseError, InterpolationResolutionError, OmegaConfBaseException

from . import option_values, strategies, tasks
from .errors import ConfigError
from .option_values import describe, field_docs  # noqa: F401 (field_docs: part of this module's API)
from .options import (
    BACKENDS,
    HEAD_POOLING,
    LOG_WITH,
    LOG_WITH_EXTRAS,
    MAX_SEED,
    MIXED_PRECISION,
    CheckpointConfig,
    DataConfig,
    HeadConfig,
    LabelsConfig,
    LossConfig,
    PretrainConfig,
    PushConfig,
    TrainConfig,
)
from .strategies.descriptions import alternatives
from .strategies.full import FreezeConfig
from .strategies.gradual import GradualConfig
from .strategies.lora import LoraSettings
from .tasks.multitask import MultitaskConfig

__all__ = ["CheckpointConfig", "DataConfig", "FreezeConfig", "GradualConfig", "LoraSettings", "LossConfig",
           "PretrainConfig", "PushConfig", "RunConfig", "TrainConfig", "apply_overrides", "describe", "load_yaml",
           "to_yaml", "validate"]


@dataclass
class RunOptions:
    """The options of every run; `RunConfig` adds the strategies' own sections (`lora`, `freeze`, ...)."""

    recipe: str = "custom"
    """Name of the recipe; names the run folder."""
    task: str = "classification"
    """`classification` (one label per text), `multilabel` (any number) or `token-classification` (NER)."""
    model: str = "minilm"
    """A short name (`minilm`, `bert`, `roberta`, ...), a hub id or a local folder."""
    strategy: str = "full"
    """Transfer method: a registered strategy's name (`python -m nlptransfer.run --help` lists them)."""
    long_text: str = "truncate"
    """Texts over data.max_length: `truncate` (keep the start), `head_tail` (start + end) or `sliding` windows."""
    threshold: str = "tune"
    """task=multilabel: `tune` (per label, on the validation split) or a fixed probability such as 0.5."""
    data: DataConfig = field(default_factory=DataConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    """How the classification head reads the encoder: its own head, or a pooled sentence embedding."""
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    """What the labels mean in words: zero-shot classification and templated examples."""
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    """Class weights and focal loss for imbalanced classes (classification and multilabel)."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    """Domain-adaptive pretraining (pretrain.mlm=true) of the encoder before fine-tuning."""
    push: PushConfig = field(default_factory=PushConfig)
    """Share the finished run on the Hugging Face Hub (push.repo_id=user/name)."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoints a killed run resumes from (resume=auto)."""
    multitask: MultitaskConfig = field(default_factory=MultitaskConfig)
    """task=multitask: the sub-tasks (each with its own data section) and the batch sampler."""
    resume: str | None = None
    """`auto` (newest complete checkpoint of output_dir) or a checkpoint folder; null starts afresh."""
    resume_force: bool = False
    """Resume even if the checkpoint was saved with another model, labels, task, strategy or batch size."""
    trust_remote_code: bool = False
    """Allow a hub checkpoint to run its own Python code (only for checkpoints you trust)."""
    keep_head: bool = False
    """`model=` is already a classifier or tagger: keep its head (same labels, same order) instead of a new one."""
    seed: int = 42
    """Seed for splits, sampling, initialization and dropout."""
    output_dir: str | None = None
    """Folder the run writes to; default: runs/<recipe>-<time>."""
    overwrite: bool = False
    """Allow writing into an existing run folder (its files are replaced)."""
    log_with: str | None = None
    """Experiment tracking: `tensorboard` (writes output_dir/tensorboard), `wandb` or `mlflow` (if installed)."""

    def __post_init__(self) -> None:
        # Notebooks pass sections as dicts: Config(train={"epochs": 1}) keeps the recipe's
        # other train defaults.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict) and f.default_factory is not dataclasses.MISSING:
                setattr(self, f.name, _merge(f.default_factory(), value, prefix=f"{f.name}."))


RunConfig = dataclasses.make_dataclass(
    "RunConfig",
    [(name, section, field(default_factory=section)) for name, section in strategies.sections().items()],
    bases=(RunOptions,),
    namespace={"__doc__": "Every option of a run: the common ones and each registered strategy's own section."},
)
RunConfig.__module__ = __name__


C = TypeVar("C", bound=RunConfig)


def _merge(base: Any, updates: Any, prefix: str = "") -> Any:
    """Merge a dict/DictConfig onto a dataclass instance with OmegaConf's type checks."""
    check_sections(base, updates, prefix)
    structured = OmegaConf.structured(base)
    try:
        return OmegaConf.to_object(OmegaConf.merge(structured, updates))  # resolves `${...}` interpolations
    except OmegaConfBaseException as e:
        raise _config_error(e, structured, prefix) from None


def _config_error(e: OmegaConfBaseException, structured: Any, prefix: str = "") -> ConfigError:
    key = prefix + (getattr(e, "full_key", None) or "")
    message = str(e).splitlines()[0]
    if "not in" in message or "Missing key" in message:
        return unknown_option(OmegaConf.to_object(structured), key, prefix)
    if isinstance(e, InterpolationResolutionError | GrammarParseError):
        return ConfigError(f"cannot resolve the interpolation in '{key}': {message}; set the variable it reads, "
                           "or write the value itself")
    if "is not a supported primitive type" in message:  # e.g. Config(data={"train_file": frame})
        return ConfigError(f"'{key}' takes a plain value (a name, a path, a number), not an object; "
                           f"{OBJECTS_HINT}")
    return ConfigError(f"bad value for '{key}': {message}")


def check_sections(base: Any, updates: Any, prefix: str = "") -> None:
    """Refuse a plain value for a section (`train=5`, YAML `train: 5`), naming it; OmegaConf's own error names
    no key."""
    if isinstance(updates, DictConfig):
        updates = OmegaConf.to_container(updates, resolve=False)
    if not isinstance(updates, dict):
        return
    for f in dataclasses.fields(base):
        section = getattr(base, f.name)
        if f.name not in updates or not dataclasses.is_dataclass(section):
            continue
        if isinstance(updates[f.name], dict):
            check_sections(section, updates[f.name], f"{prefix}{f.name}.")
        else:
            raise ConfigError(section_value_error(prefix + f.name, section))


def section_value_error(key: str, section: Any, in_file: bool = False) -> str:
    """'train' is a section: how to set its options, on the command line or in a YAML file."""
    option = next((f.name for f in dataclasses.fields(section) if getattr(section, f.name) is not None),
                  dataclasses.fields(section)[0].name)
    value = option_values.format_value(getattr(section, option))
    if in_file:
        return (f"'{key}' is a section of options, not a value: give it `key: value` lines indented under "
                f"`{key.rsplit('.', 1)[-1]}:` (e.g. `  {option}: {value}`)")
    return f"'{key}' is a section of options, not a value: set its options one by one (e.g. {key}.{option}={value})"


OBJECTS_HINT = ("pass in-memory data as nlptransfer.run(cfg, data=...) and a model object as "
                "nlptransfer.run(cfg, model=..., tokenizer=...)")


def dotted_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every leaf option of a config as a dotted key (`train.epochs`)."""
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys += dotted_keys(value, prefix=f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def apply_overrides(cfg: C, overrides: list[str], interpolate: bool = True) -> C:
    """Return a copy of `cfg` with dotted `key=value` overrides applied and checked, each value read by its
    option's declared type (`option_values`: `no` stays the text no, `null` unsets an optional option).

    With `interpolate`, `${oc.env:VAR}` and `${section.key}` are resolved (a run's options); without, every value
    is taken as written (a command's own options: `predict text='${x}'` predicts that text)."""
    updates: dict = {}
    for item in overrides:
        check_not_hydra(item)
        if "=" not in item:
            raise ConfigError(f"expected key=value, got '{item}'; e.g. train.epochs=2")
        key, text = item.split("=", 1)
        key = key.strip()
        section, name = option_owner(cfg, key)
        value = option_values.from_text(text, option_values.field_types(type(section))[name], key, interpolate)
        target = updates
        for part in key.split(".")[:-1]:
            target = target.setdefault(part, {})
        target[name] = value
    return _merge(cfg, updates) if interpolate else with_values(cfg, updates)


def with_values(cfg: C, updates: dict) -> C:
    """A copy of `cfg` with already typed values (nested dicts for sections), no interpolation."""
    return dataclasses.replace(cfg, **{
        name: with_values(getattr(cfg, name), value) if isinstance(value, dict)
        and dataclasses.is_dataclass(getattr(cfg, name)) else value for name, value in updates.items()})


def option_owner(cfg: Any, key: str) -> tuple[Any, str]:
    """The section holding option `key` and the option's name; a one-line error for an unknown key or a section
    given a value."""
    section, parts = cfg, key.split(".")
    for depth, part in enumerate(parts):
        names = {f.name for f in dataclasses.fields(section)} if dataclasses.is_dataclass(section) else set()
        if part not in names:
            raise unknown_option(cfg, key)
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(section, part)):
                raise ConfigError(section_value_error(key, getattr(section, part)))
            return section, part
        section = getattr(section, part)
    raise unknown_option(cfg, key)


def unknown_option(cfg: Any, key: str, prefix: str = "") -> ConfigError:
    """'train.epoch' is not an option: name the close ones and the section's others."""
    valid = [prefix + k for k in dotted_keys(cfg)]
    close = difflib.get_close_matches(key, valid, n=5, cutoff=0.6)
    section = key.rsplit(".", 1)[0] + "." if "." in key else ""
    siblings = [k for k in valid if k not in close and k.startswith(section) and "." not in k[len(section):]]
    return ConfigError(f"unknown option '{key}'; did you mean: {', '.join((close + siblings)[:8])} "
                       "(add --help to list every option)")


def typed_tree(cfg: Any, loaded: dict, prefix: str = "") -> dict:
    """A YAML file's nested options (text, as `option_values.TextLoader` reads them) converted by each option's
    type; an unknown key or a section given a value is a one-line error."""
    types = option_values.field_types(type(cfg))
    typed = {}
    for name, value in loaded.items():
        key = f"{prefix}{name}"
        if name not in types:
            raise unknown_option(cfg, key, prefix)
        section = getattr(cfg, name)
        if dataclasses.is_dataclass(section):
            if not isinstance(value, dict):
                raise ConfigError(section_value_error(key, section, in_file=True))
            typed[name] = typed_tree(section, value, f"{key}.")
        elif (item_type := option_values.list_entry_type(types[name])) is not None and isinstance(value, list):
            typed[name] = [typed_tree(item_type(), item, f"{key}[{i}].") if isinstance(item, dict) else item
                           for i, item in enumerate(value)]
        else:
            typed[name] = option_values.convert(value, types[name], key)
    return typed


def check_not_hydra(item: str) -> None:
    """`+key=value`, `++key=value` and `~key` are Hydra's syntax; say so rather than report an unknown '+key'."""
    prefix = next((p for p in ("++", "+", "~") if item.startswith(p)), None)
    if prefix is None:
        return
    rest = item[len(prefix):]
    if prefix == "~":
        raise ConfigError(f"'{item}': the leading '~' is Hydra syntax (deleting an option); nlptransfer options "
                          f"cannot be deleted: set {rest.split('=', 1)[0]}=VALUE")
    raise ConfigError(f"'{item}': the leading '{prefix}' is Hydra syntax; nlptransfer options are set without it: "
                      f"{rest} (add --help to list every option)")


YAML_LAYOUT = "write `key: value` lines (e.g. `strategy: lora`), a section's options indented under its name"


def load_yaml(cfg: C, path: str | Path) -> C:
    """Return a copy of `cfg` with the options of a YAML file (e.g. a saved config.yaml)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}; pass an existing .yaml file")
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=option_values.TextLoader)  # noqa: S506
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot parse {path}: {option_values.first_line(e)}") from None
    if isinstance(loaded, str) and re.fullmatch(r"[A-Za-z_][\w.]*", loaded):  # `lora` alone: a section? an option?
        try:
            option_owner(cfg, loaded)
        except ConfigError as e:
            raise ConfigError(f"in {path}: {e}") from None
    if loaded is None:  # empty, or comments only
        loaded = {}
    if isinstance(loaded, str):
        raise ConfigError(f"{path} holds a single value ({loaded}) at its top level; {YAML_LAYOUT}")
    if isinstance(loaded, list):
        raise ConfigError(f"{path} holds a list at its top level; {YAML_LAYOUT}")
    try:
        return _merge(cfg, typed_tree(cfg, loaded))
    except ConfigError as e:
        raise ConfigError(f"in {path}: {e}") from None


def validate(cfg: RunConfig) -> RunConfig:
    """Check choices and ranges that types alone cannot express: the common options, then the task's
    and the strategy's own checks."""
    check_section_types(cfg)
    task, strategy = tasks.get(cfg.task), strategies.get(cfg.strategy)
    checks = [
        (0 <= cfg.seed <= MAX_SEED, f"seed must be from 0 to {MAX_SEED} (numpy's seed range); e.g. seed=42"),
        (cfg.train.mixed_precision in MIXED_PRECISION,
         f"train.mixed_precision must be one of {', '.join(MIXED_PRECISION)}; got {cfg.train.mixed_precision}"),
        (cfg.train.epochs >= 1, "train.epochs must be at least 1"),
        (cfg.train.batch_size >= 1, "train.batch_size must be at least 1"),
        (cfg.train.eval_batch_size >= 1, "train.eval_batch_size must be at least 1"),
        (cfg.train.grad_accum_steps >= 1, "train.grad_accum_steps must be at least 1"),
        (cfg.train.lr is None or cfg.train.lr > 0, "train.lr must be positive"),
        (cfg.train.max_nonfinite_steps >= 1, "train.max_nonfinite_steps must be at least 1"),
        (cfg.train.max_grad_norm is None or cfg.train.max_grad_norm > 0,
         "train.max_grad_norm must be positive (the largest gradient norm kept), or null for no clipping"),
        (cfg.train.patience is None or cfg.train.patience >= 1,
         "train.patience must be at least 1 (epochs without a better validation metric), or null never to stop"),
        (all(template_fields(each) == [""] for each in alternatives(cfg.labels.template)),
         f"labels.template must hold one '{{}}' where the description goes, in each alternative separated by | "
         f"(write '{{{{' and '}}}}' for literal braces), e.g. 'This text is about {{}}.'; got '{cfg.labels.template}'"),
        (cfg.checkpoint.every_steps is None or cfg.checkpoint.every_steps >= 1,
         "checkpoint.every_steps must be at least 1 (or null)"),
        (cfg.checkpoint.keep >= 1, "checkpoint.keep must be at least 1"),
        (cfg.train.warmup_ratio >= 0 and cfg.train.warmup_ratio < 1, "train.warmup_ratio must be in [0, 1)"),
        (cfg.train.weight_decay >= 0, "train.weight_decay must be 0 or more"),
        (cfg.train.max_steps is None or cfg.train.max_steps >= 1, "train.max_steps must be at least 1 (or null)"),
    ] + data_checks(cfg.data)
    metric = [(cfg.train.metric_for_best in task.best_metrics(cfg),  # after the task's own checks: they say more
               f"train.metric_for_best={cfg.train.metric_for_best} is not a metric of task={task.name}: "
               f"metric_for_best must be one of {', '.join(task.best_metrics(cfg))}")]
    for ok, message in (plain_value_checks(cfg) + secret_checks(cfg) + checks + strategy_checks(cfg, strategy, task)
                        + task.checks(cfg) + sub_task_checks(cfg, task) + metric + head_checks(cfg, task, strategy)
                        + adaptation_checks(cfg) + tracking_checks(cfg)):
        if not ok:
            raise ConfigError(message)
    return cfg


def data_checks(data: DataConfig) -> list[tuple[bool, str]]:
    """The checks of a data section: the run's, or one of several tasks' (`sub_task_checks`)."""
    return [
        (data.max_length >= 8, "data.max_length must be at least 8"),
        (0 <= data.validation_fraction < 1, "data.validation_fraction must be in [0, 1)"),
        (0 < data.test_fraction < 1, "data.test_fraction must be in (0, 1)"),
        (data.validation_fraction + data.test_fraction < 0.9,
         "data.validation_fraction + data.test_fraction must leave at least 10% for training"),
        (all(n is None or n >= 1 for n in (data.max_train_samples, data.max_validation_samples, data.max_test_samples)),
         "data.max_train_samples, max_validation_samples and max_test_samples must be at least 1 (or null)"),
        (data.examples_per_class is None or data.examples_per_class >= 0,
         "data.examples_per_class must be 0 or more (or null); e.g. data.examples_per_class=8"),
        (data.backend in BACKENDS, f"data.backend must be one of {', '.join(BACKENDS)}"),
        (data.num_proc is None or data.num_proc >= 1, "data.num_proc must be at least 1 (or null)"),
        (data.label_names != [], "data.label_names is an empty list: name the labels in order, e.g. "
                                 "data.label_names=[negative,positive], or null for the training split's own"),
    ]


def sub_task_checks(cfg: RunConfig, task) -> list[tuple[bool, str]]:
    """A run of several tasks (multitask): each task's data section and its task's own checks, named by task."""
    return [(ok, f"multitask task {name}: {message}") for name, sub, sub_cfg in task.sub_tasks(cfg)
            for ok, message in data_checks(sub_cfg.data) + sub.checks(sub_cfg)]


def template_fields(template: str) -> list[str] | None:
    """The replacement fields of a `str.format` template (`[""]` for one `{}`), None if it is malformed."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError:
        return None


SECRET_NAMES = re.compile(r"TOKEN|KEY|SECRET|PASSWORD", re.IGNORECASE)


def secret_checks(cfg: RunConfig) -> list[tuple[bool, str]]:
    """No option holds the value of a token-like environment variable (`${oc.env:HF_TOKEN}`, `$HF_TOKEN` in the
    shell): options are written to config.yaml, train.log and the model card, and `push` uploads them."""
    secrets = {name: value for name, value in os.environ.items()
               if SECRET_NAMES.search(name) and len(value.strip()) >= 8}
    leaks = [(key, name) for key, value in option_items(cfg) if isinstance(value, str)
             for name, secret in secrets.items() if secret.strip() in value]
    return [(False, f"'{key}' holds the value of the environment variable {name}: options are written to "
                    "config.yaml, train.log and the model card (and pushed with them), so a secret never goes in "
                    "one; the hub token is read from HF_TOKEN by push itself") for key, name in leaks[:1]]


def option_items(cfg: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf option as (dotted key, value), list and dict items included."""
    items = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            items += option_items(value, f"{prefix}{f.name}.")
        else:
            values = value if isinstance(value, list) else [*value, *value.values()] if isinstance(value, dict) \
                else [value]
            items += [(prefix + f.name, item) for item in values]
    return items


def check_section_types(cfg: RunConfig) -> None:
    """Each section is its dataclass (a notebook may have set `cfg.train = 5`); checked before anything reads one."""
    for f in dataclasses.fields(RunConfig):  # a recipe's Config may build its sections with a lambda
        section_type, value = f.default_factory, getattr(cfg, f.name, None)
        if isinstance(section_type, type) and dataclasses.is_dataclass(section_type) \
                and not isinstance(value, section_type):
            raise ConfigError(f"'{f.name}' is a section of options, not a value ({type(value).__name__}): pass a "
                              f"dict of its options ({f.name}={{...}}) or a {section_type.__name__}")


def plain_value_checks(cfg: RunConfig) -> list[tuple[bool, str]]:
    """The model and the data files are names and paths (config.yaml records them), not objects."""
    files = [(name, getattr(cfg.data, name)) for name in ("train_file", "validation_file", "test_file")]
    return [(isinstance(cfg.model, str), f"model takes a short name, hub id or folder, not a "
                                         f"{type(cfg.model).__name__}; {OBJECTS_HINT}")] + [
        (value is None or isinstance(value, str | Path),
         f"data.{name} takes a file path, not a {type(value).__name__}; {OBJECTS_HINT}") for name, value in files]


def strategy_checks(cfg: RunConfig, strategy: strategies.Strategy, task) -> list[tuple[bool, str]]:
    """The strategy's own checks; options of another strategy's section, layer-wise rates and several tasks it
    cannot train."""
    layerwise = cfg.train.layer_lr_decay is not None or cfg.train.head_lr is not None
    layerwise_names = [s.name for s in strategies.REGISTRY.values() if s.layerwise_lr]
    shared_names = [s.name for s in strategies.REGISTRY.values() if s.shared_encoder]
    foreign = [(name, owner) for name in strategies.foreign_sections(strategy)
               for owner in strategies.REGISTRY.values() if name in owner.sections
               if getattr(cfg, name) != owner.sections[name]()]
    return strategy.checks(cfg) + [
        (strategy.layerwise_lr or not layerwise,
         f"train.layer_lr_decay and train.head_lr work with strategy={' or '.join(layerwise_names)}"),
        (strategy.shared_encoder or not task.several_tasks,
         f"strategy={strategy.name} does not train a model of several tasks (task={task.name}) yet; use "
         f"strategy={' or '.join(shared_names)}"),
    ] + [(False, f"{name}.* options combine with strategy={owner.name} only; drop them or set strategy={owner.name}")
         for name, owner in foreign]


def head_checks(cfg: RunConfig, task, strategy: strategies.Strategy) -> list[tuple[bool, str]]:
    """A pooled head (`head.pooling`, the sentence-embedding strategies) needs a task that has one."""
    pooling = cfg.head.pooling or strategy.default_pooling
    pooled_tasks = " or ".join(name for name in tasks.names() if tasks.get(name).pooled_head)
    return [
        (cfg.head.pooling is None or cfg.head.pooling in HEAD_POOLING,
         f"head.pooling must be one of {', '.join(HEAD_POOLING)}; got '{cfg.head.pooling}'"),
        (task.pooled_head or not strategy.sentence_embeddings,
         f"strategy={strategy.name} works on sentence embeddings: use it with task={pooled_tasks}"),
        (task.pooled_head or pooling == "model",
         f"head.pooling={pooling} pools a text into one embedding: use it with task={pooled_tasks}, or drop it"),
        (not strategy.sentence_embeddings or pooling != "model",
         f"strategy={strategy.name} needs a pooled sentence embedding: head.pooling=auto, mean, max or cls"),
    ]


def only_own_sections(cfg: RunConfig) -> RunConfig:
    """`cfg` with the other strategies' sections back at their defaults (compare runs one config per strategy)."""
    strategy = strategies.get(cfg.strategy)
    defaults = {name: section() for name, section in strategies.sections().items() if name not in strategy.sections}
    return dataclasses.replace(cfg, **defaults)


def tracking_checks(cfg: RunConfig) -> list[tuple[bool, str]]:
    """`log_with` is a known tracker whose package is installed."""
    from .outputs.tracking import missing_package

    known = cfg.log_with is None or cfg.log_with in LOG_WITH
    missing = missing_package(cfg.log_with) if known else None
    extra = f" (or pip install 'nlptransfer[{cfg.log_with}]')" if cfg.log_with in LOG_WITH_EXTRAS else ""
    return [(known, f"log_with must be one of {', '.join(LOG_WITH)}"),
            (missing is None, f"log_with={cfg.log_with} needs the {missing} package: pip install {missing}{extra}")]


def adaptation_checks(cfg: RunConfig) -> list[tuple[bool, str]]:
    """Checks of discriminative learning rates and domain-adaptive pretraining."""
    return [
        (cfg.train.layer_lr_decay is None or 0 < cfg.train.layer_lr_decay <= 1,
         "train.layer_lr_decay must be in (0, 1], e.g. 0.8"),
        (cfg.train.head_lr is None or cfg.train.head_lr > 0, "train.head_lr must be positive"),
        (cfg.pretrain.epochs >= 1, "pretrain.epochs must be at least 1"),
        (cfg.pretrain.lr > 0, "pretrain.lr must be positive"),
        (cfg.pretrain.batch_size >= 1, "pretrain.batch_size must be at least 1"),
        (0 < cfg.pretrain.mlm_probability < 1, "pretrain.mlm_probability must be in (0, 1), e.g. 0.15"),
        (cfg.pretrain.max_samples is None or cfg.pretrain.max_samples >= 1,
         "pretrain.max_samples must be at least 1 (or null)"),
    ]


def to_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
