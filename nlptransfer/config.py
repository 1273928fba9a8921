"""One typed tree of dataclasses holds every option of a run.

Recipes subclass `RunConfig` only to change defaults. Overrides come as dotted `key=value`
strings (CLI), YAML files or keyword arguments (notebooks); all three go through OmegaConf,
which converts and checks types, and every failure becomes a one-line `ConfigError` that
names the close valid keys.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError

STRATEGIES = ("full", "frozen", "lora")
TASKS = ("classification", "token-classification")
MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass
class DataConfig:
    name: str | None = None
    """A packaged corpus (`tweets`, `bbc_news`, `wnut16`) or a hub dataset id (`glue`)."""
    config: str | None = None
    """The hub dataset's configuration, e.g. `sst2` for `glue`."""
    train_file: str | None = None
    """A local csv/tsv/json/jsonl/parquet file; used instead of `name`."""
    validation_file: str | None = None
    """A local file for the validation split; made from train when missing."""
    test_file: str | None = None
    """A local file for the held-out test split; made from train when missing."""
    text_column: str = "text"
    """The column holding the text."""
    text_pair_column: str | None = None
    """A second text column, tokenized as a pair with the first (paraphrase, NLI)."""
    label_column: str = "label"
    """The column holding the label (string or integer)."""
    label_names: list[str] | None = None
    """The labels in order; default: the sorted labels of the training split."""
    validation_fraction: float = 0.1
    """Share of the training data held out for validation when no validation split exists."""
    test_fraction: float = 0.1
    """Share of the training data held out for testing when no test split exists."""
    max_train_samples: int | None = None
    """Train on a seeded, stratified sample of at most this many examples."""
    max_validation_samples: int | None = None
    """Validate on at most this many examples."""
    max_test_samples: int | None = None
    """Test on at most this many examples."""
    max_length: int = 128
    """Longest input in tokens; longer texts are truncated."""
    encoding: str = "utf-8"
    """Text encoding of local files (e.g. `latin-1`)."""
    dedup_across_splits: bool = True
    """Drop validation/test examples whose text also occurs in training (they inflate held-out scores)."""
    tokens_column: str = "tokens"
    """Token classification: the JSON/hub column holding each sentence's list of words."""
    tags_column: str = "tags"
    """Token classification: the JSON/hub column holding each sentence's list of tags (e.g. `ner_tags`)."""
    conll_tag_column: int = -1
    """Token classification: the CoNLL column (0-based) holding the tag; -1 is the last."""
    label_all_subtokens: bool = False
    """Token classification: train on every sub-token of a word (B- becomes I-), not only the first."""
    stride: int = 16
    """Token classification: tokens of context shared by the windows of a sentence longer than max_length."""


@dataclass
class TrainConfig:
    epochs: int = 3
    """Passes over the training data."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (quick runs); overrides `epochs` when reached."""
    batch_size: int = 32
    """Examples per optimizer step and process, before gradient accumulation."""
    eval_batch_size: int = 32
    """Examples per evaluation batch."""
    lr: float | None = None
    """Peak learning rate; default: full 1e-4 (2e-5..5e-5 for base-size models), lora 5e-4, frozen 1e-3."""
    weight_decay: float = 0.01
    """AdamW weight decay (never on biases and LayerNorm weights)."""
    warmup_ratio: float = 0.06
    """Share of the optimizer steps spent warming the learning rate up from 0."""
    grad_accum_steps: int = 1
    """Accumulate gradients over this many batches per optimizer step."""
    max_grad_norm: float | None = 1.0
    """Clip the gradient norm to this value; null disables clipping."""
    mixed_precision: str = "no"
    """`no`, `fp16` or `bf16` (GPU); passed to Accelerate."""
    metric_for_best: str = "accuracy"
    """Validation metric that picks the best epoch (higher is better)."""
    patience: int | None = 2
    """Stop after this many epochs without a better validation metric; null never stops early."""
    group_by_length: bool = True
    """Batch texts of similar length together: less padding, faster steps."""
    max_nonfinite_steps: int = 10
    """Stop the run after this many steps in a row with a NaN/inf loss or gradient (each is skipped)."""


@dataclass
class LoraSettings:
    r: int = 8
    """Rank of the LoRA update matrices."""
    alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.1
    """Dropout on the LoRA input."""
    target_modules: list[str] | None = None
    """Module names to adapt; default: peft's attention projections for the architecture."""


@dataclass
class CheckpointConfig:
    every_steps: int | None = None
    """Save a checkpoint every N optimizer steps (null: not by steps)."""
    every_epoch: bool = True
    """Save a checkpoint at the end of each epoch."""
    keep: int = 1
    """Keep the newest N checkpoints (plus the best one); older ones are deleted once a new one is complete."""


@dataclass
class FreezeConfig:
    embeddings: bool = False
    """Freeze the embedding layer (with strategy=full)."""
    layers: int = 0
    """Freeze the bottom K encoder layers (with strategy=full)."""


@dataclass
class PushConfig:
    repo_id: str | None = None
    """Push the finished run to this Hugging Face Hub repo (`user/name`); null: do not push."""
    private: bool = False
    """Create the hub repo as private (an existing repo keeps its visibility)."""
    revision: str | None = None
    """Push to this branch of the repo (created if needed); default: main."""


@dataclass
class RunConfig:
    recipe: str = "custom"
    """Name of the recipe; names the run folder."""
    task: str = "classification"
    """`classification` or `token-classification`."""
    model: str = "minilm"
    """A short name (`minilm`, `bert`, `roberta`, ...), a hub id or a local folder."""
    strategy: str = "full"
    """Transfer method: `full` fine-tuning, `frozen` encoder (feature extraction) or `lora`."""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    push: PushConfig = field(default_factory=PushConfig)
    """Share the finished run on the Hugging Face Hub (push.repo_id=user/name)."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoints a killed run resumes from (resume=auto)."""
    resume: str | None = None
    """`auto` (newest complete checkpoint of output_dir) or a checkpoint folder; null starts afresh."""
    resume_force: bool = False
    """Resume even if the checkpoint was saved with another model, labels, task, strategy or batch size."""
    trust_remote_code: bool = False
    """Allow a hub checkpoint to run its own Python code (only for checkpoints you trust)."""
    seed: int = 42
    """Seed for splits, sampling, initialization and dropout."""
    output_dir: str | None = None
    """Folder the run writes to; default: runs/<recipe>-<time>."""
    overwrite: bool = False
    """Allow writing into an existing run folder (its files are replaced)."""

    def __post_init__(self) -> None:
        # Notebooks pass sections as dicts: Config(train={"epochs": 1}) keeps the recipe's
        # other train defaults.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict) and f.default_factory is not dataclasses.MISSING:
                setattr(self, f.name, _merge(f.default_factory(), value, prefix=f"{f.name}."))


C = TypeVar("C", bound=RunConfig)


def _merge(base: Any, updates: Any, prefix: str = "") -> Any:
    """Merge a dict/DictConfig onto a dataclass instance with OmegaConf's type checks."""
    structured = OmegaConf.structured(base)
    try:
        merged = OmegaConf.merge(structured, updates)
    except OmegaConfBaseException as e:
        raise _config_error(e, structured, prefix) from None
    return OmegaConf.to_object(merged)


def _config_error(e: OmegaConfBaseException, structured: Any, prefix: str = "") -> ConfigError:
    key = prefix + (getattr(e, "full_key", None) or "")
    message = str(e).splitlines()[0]
    if "not in" in message or "Missing key" in message:
        valid = [prefix + k for k in dotted_keys(OmegaConf.to_object(structured))]
        close = difflib.get_close_matches(key, valid, n=5, cutoff=0.6)
        section = key.rsplit(".", 1)[0] + "." if "." in key else ""
        siblings = [k for k in valid if k not in close and k.startswith(section) and "." not in k[len(section):]]
        return ConfigError(
            f"unknown option '{key}'; did you mean: {', '.join((close + siblings)[:8])} "
            "(add --help to list every option)"
        )
    return ConfigError(f"bad value for '{key}': {message}")


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


def apply_overrides(cfg: C, overrides: list[str]) -> C:
    """Return a copy of `cfg` with dotted `key=value` overrides applied and checked."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"expected key=value, got '{item}'; e.g. train.epochs=2")
    # YAML parsing makes `3e-5` a string; OmegaConf converts it for float fields.
    return _merge(cfg, OmegaConf.from_dotlist(overrides))


def load_yaml(cfg: C, path: str | Path) -> C:
    """Return a copy of `cfg` with the options of a YAML file (e.g. a saved config.yaml)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}; pass an existing .yaml file")
    try:
        loaded = OmegaConf.load(path)
    except Exception as e:  # yaml's many parser errors
        raise ConfigError(f"cannot parse {path}: {str(e).splitlines()[0]}") from None
    return _merge(cfg, loaded)


def validate(cfg: RunConfig) -> RunConfig:
    """Check choices and ranges that types alone cannot express."""
    checks = [
        (cfg.strategy in STRATEGIES, f"strategy must be one of {', '.join(STRATEGIES)}"),
        (cfg.task in TASKS, f"task must be one of {', '.join(TASKS)}"),
        (cfg.train.mixed_precision in MIXED_PRECISION,
         f"train.mixed_precision must be one of {', '.join(MIXED_PRECISION)}"),
        (cfg.train.epochs >= 1, "train.epochs must be at least 1"),
        (cfg.train.batch_size >= 1, "train.batch_size must be at least 1"),
        (cfg.train.grad_accum_steps >= 1, "train.grad_accum_steps must be at least 1"),
        (cfg.train.lr is None or cfg.train.lr > 0, "train.lr must be positive"),
        (cfg.data.max_length >= 8, "data.max_length must be at least 8"),
        (0 <= cfg.data.validation_fraction < 1, "data.validation_fraction must be in [0, 1)"),
        (0 < cfg.data.test_fraction < 1, "data.test_fraction must be in (0, 1)"),
        (cfg.freeze.layers >= 0, "freeze.layers must be 0 or more"),
        (cfg.strategy == "full" or not (cfg.freeze.embeddings or cfg.freeze.layers),
         "freeze.embeddings and freeze.layers combine with strategy=full only"),
        (cfg.lora.r >= 1, "lora.r must be at least 1"),
        (cfg.data.validation_fraction + cfg.data.test_fraction < 0.9,
         "data.validation_fraction + data.test_fraction must leave at least 10% for training"),
        (cfg.train.max_nonfinite_steps >= 1, "train.max_nonfinite_steps must be at least 1"),
        (cfg.checkpoint.every_steps is None or cfg.checkpoint.every_steps >= 1,
         "checkpoint.every_steps must be at least 1 (or null)"),
        (cfg.checkpoint.keep >= 1, "checkpoint.keep must be at least 1"),
        (cfg.train.warmup_ratio >= 0 and cfg.train.warmup_ratio < 1, "train.warmup_ratio must be in [0, 1)"),
        (cfg.train.weight_decay >= 0, "train.weight_decay must be 0 or more"),
        (cfg.train.max_steps is None or cfg.train.max_steps >= 1, "train.max_steps must be at least 1 (or null)"),
        (all(n is None or n >= 1 for n in (cfg.data.max_train_samples, cfg.data.max_validation_samples,
                                           cfg.data.max_test_samples)),
         "data.max_train_samples, max_validation_samples and max_test_samples must be at least 1 (or null)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return cfg


def to_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings (the string under each field) of a dataclass and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)):
                docs[node.target.id] = str(after.value.value)
    return docs


def describe(cfg: RunConfig) -> str:
    """Every option with its default and one-line doc, for `--help`."""
    lines = []

    def walk(obj: Any, prefix: str) -> None:
        docs = field_docs(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
                continue
            lines.append(f"  {prefix}{f.name}={OmegaConf.to_yaml({'v': value})[3:].strip()}")
            if f.name in docs:
                lines.append(f"      {docs[f.name]}")

    walk(cfg, "")
    return "\n".join(lines)
