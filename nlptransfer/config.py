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

STRATEGIES = ("full", "frozen", "lora", "gradual")
TASKS = ("classification", "multilabel", "token-classification")
LONG_TEXT = ("truncate", "head_tail", "sliding")
POOLING = ("mean", "max")
MIXED_PRECISION = ("no", "fp16", "bf16")
LOG_WITH = ("tensorboard", "wandb", "mlflow", "none")


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
    """The column holding the label (string or integer); for task=multilabel a list of labels per example."""
    label_separator: str | None = None
    """task=multilabel: the delimiter between labels in a csv/tsv label cell (e.g. `|`); JSON lists need none."""
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
    """Tokens shared by consecutive windows of a text longer than max_length (NER, and long_text=sliding)."""
    pooling: str = "mean"
    """long_text=sliding: how a document's window logits become one prediction, `mean` or `max`."""


@dataclass
class TrainConfig:
    epochs: int = 3
    """Passes over the training data."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (quick runs); overrides `epochs` when reached."""
    batch_size: int = 32
    """Examples per optimizer step before gradient accumulation, all processes together (each takes a share)."""
    eval_batch_size: int = 32
    """Examples per evaluation batch, all processes together."""
    lr: float | None = None
    """Peak learning rate; default: full 1e-4 (2e-5..5e-5 for base-size models), lora 5e-4, frozen 1e-2."""
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
    layer_lr_decay: float | None = None
    """Discriminative learning rates: each encoder layer below the top gets the lr times this factor (e.g. 0.8)."""
    head_lr: float | None = None
    """Learning rate of the new task head; default: train.lr (strategies full and gradual)."""
    speedups: bool = True
    """Exact speed-ups of the model's computation (top layer for [CLS] only, fast CPU dropout); see speed.py."""


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
class LossConfig:
    class_weights: Any = "none"
    """`none`, `balanced` (inverse training frequency) or a list with one weight per label."""
    focal_gamma: float = 0.0
    """Focal loss focusing parameter; 0 is plain cross-entropy, 2 the usual focal loss for hard, rare classes."""


@dataclass
class GradualConfig:
    epochs_per_stage: int = 1
    """strategy=gradual: epochs per stage; stage 0 trains the head alone, each later one unfreezes more layers."""
    layers_per_stage: int | None = None
    """strategy=gradual: layers unfrozen per stage, top first, embeddings last; default: all by the last stage."""
    encoder_lr_factor: float = 1.0
    """strategy=gradual: the encoder's learning rate is train.lr times this factor (e.g. 0.1)."""


@dataclass
class PretrainConfig:
    mlm: bool = False
    """Continue masked-language-model training of the encoder on unlabeled in-domain text, then fine-tune."""
    text_file: str | None = None
    """Unlabeled text: .txt (a text per line) or csv/tsv/json/jsonl/parquet; default: all training-split texts."""
    text_column: str | None = None
    """The column of pretrain.text_file holding the text; default: data.text_column."""
    max_samples: int | None = None
    """Use a seeded random sample of at most this many texts."""
    epochs: int = 1
    """Passes of masked-language-model training over the texts."""
    lr: float = 5e-5
    """Peak learning rate of masked-language-model training."""
    batch_size: int = 32
    """Texts per masked-language-model training step."""
    mlm_probability: float = 0.15
    """Share of the tokens masked for the model to predict."""
    output_dir: str | None = None
    """Folder for the adapted encoder; default: <output_dir>/adapted-encoder; reused if its settings match."""


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
    """`classification` (one label per text), `multilabel` (any number) or `token-classification` (NER)."""
    model: str = "minilm"
    """A short name (`minilm`, `bert`, `roberta`, ...), a hub id or a local folder."""
    strategy: str = "full"
    """Transfer method: `full` fine-tuning, `frozen` encoder (feature extraction), `lora` or `gradual` unfreezing."""
    long_text: str = "truncate"
    """Texts over data.max_length: `truncate` (keep the start), `head_tail` (start + end) or `sliding` windows."""
    threshold: str = "tune"
    """task=multilabel: `tune` (per label, on the validation split) or a fixed probability such as 0.5."""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    """Class weights and focal loss for imbalanced classes (classification and multilabel)."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    gradual: GradualConfig = field(default_factory=GradualConfig)
    """Gradual unfreezing (strategy=gradual): the head first, then the encoder from the top layer down."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    """Domain-adaptive pretraining (pretrain.mlm=true) of the encoder before fine-tuning."""
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
    log_with: str | None = None
    """Experiment tracking: `tensorboard` (writes output_dir/tensorboard), `wandb` or `mlflow` (if installed)."""

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


VERBATIM_KEYS = ("data.label_separator",)
"""Options whose command-line value is used as typed, not parsed as YAML."""


def apply_overrides(cfg: C, overrides: list[str]) -> C:
    """Return a copy of `cfg` with dotted `key=value` overrides applied and checked."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"expected key=value, got '{item}'; e.g. train.epochs=2")
    # YAML parsing makes `3e-5` a string; OmegaConf converts it for float fields. Separators are
    # taken as typed: YAML would read `|` or `,` as syntax.
    verbatim = [item for item in overrides if item.split("=", 1)[0] in VERBATIM_KEYS]
    merged = _merge(cfg, OmegaConf.from_dotlist([item for item in overrides if item not in verbatim]))
    for item in verbatim:
        key, value = item.split("=", 1)
        update = OmegaConf.create()
        OmegaConf.update(update, key, value)
        merged = _merge(merged, update)
    return merged


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
    for ok, message in checks + transfer_checks(cfg) + adaptation_checks(cfg) + tracking_checks(cfg):
        if not ok:
            raise ConfigError(message)
    return cfg


def tracking_checks(cfg: RunConfig) -> list[tuple[bool, str]]:
    """`log_with` is a known tracker whose package is installed."""
    from .tracking import missing_package

    known = cfg.log_with is None or cfg.log_with in LOG_WITH
    missing = missing_package(cfg.log_with) if known else None
    return [(known, f"log_with must be one of {', '.join(LOG_WITH)}"),
            (missing is None, f"log_with={cfg.log_with} needs the {missing} package: pip install {missing}")]


def fixed_threshold(cfg: RunConfig) -> float | None:
    """The fixed multi-label threshold, or None for `threshold=tune`."""
    if cfg.threshold == "tune":
        return None
    try:
        value = float(cfg.threshold)
    except ValueError:
        raise ConfigError(f"threshold must be 'tune' or a number in [0, 1], got '{cfg.threshold}'") from None
    if not 0 <= value <= 1:
        raise ConfigError(f"threshold must be in [0, 1], got {value}; e.g. threshold=0.5 or threshold=tune")
    return value


def transfer_checks(cfg: RunConfig) -> list[tuple[bool, str]]:
    """Checks of the long-text, multi-label and loss options."""
    fixed_threshold(cfg)
    weights = cfg.loss.class_weights
    weights_ok = weights in (None, "none", "balanced") or (
        isinstance(weights, list) and weights and all(isinstance(w, int | float) and w > 0 for w in weights))
    return [
        (cfg.long_text in LONG_TEXT, f"long_text must be one of {', '.join(LONG_TEXT)}"),
        (cfg.data.pooling in POOLING, f"data.pooling must be one of {', '.join(POOLING)}"),
        (cfg.long_text != "sliding" or 0 <= cfg.data.stride <= cfg.data.max_length // 2,
         f"data.stride ({cfg.data.stride}) is the overlap of consecutive windows: it must be from 0 to half of "
         f"data.max_length ({cfg.data.max_length}); e.g. data.stride={cfg.data.max_length // 4}"),
        (cfg.long_text == "truncate" or cfg.task != "token-classification",
         "long_text applies to classification; NER always reads long sentences in windows (data.stride)"),
        (cfg.long_text == "truncate" or not cfg.data.text_pair_column,
         "long_text=head_tail|sliding works on single texts; with data.text_pair_column use long_text=truncate"),
        (weights_ok, "loss.class_weights must be none, balanced or a list of positive numbers, e.g. [1, 3.5, 1]"),
        (cfg.loss.focal_gamma >= 0, "loss.focal_gamma must be 0 (cross-entropy) or more"),
        (cfg.loss.focal_gamma == 0 and weights in (None, "none") or cfg.task != "token-classification",
         "loss.class_weights and loss.focal_gamma apply to classification and multilabel tasks"),
        (cfg.data.label_separator != "", "data.label_separator must not be empty; e.g. data.label_separator='|'"),
    ]


def adaptation_checks(cfg: RunConfig) -> list[tuple[bool, str]]:
    """Checks of gradual unfreezing, discriminative learning rates and domain-adaptive pretraining."""
    layerwise = cfg.train.layer_lr_decay is not None or cfg.train.head_lr is not None
    return [
        (cfg.strategy in ("full", "gradual") or not layerwise,
         "train.layer_lr_decay and train.head_lr work with strategy=full or gradual"),
        (cfg.train.layer_lr_decay is None or 0 < cfg.train.layer_lr_decay <= 1,
         "train.layer_lr_decay must be in (0, 1], e.g. 0.8"),
        (cfg.train.head_lr is None or cfg.train.head_lr > 0, "train.head_lr must be positive"),
        (cfg.gradual.epochs_per_stage >= 1, "gradual.epochs_per_stage must be at least 1"),
        (cfg.gradual.layers_per_stage is None or cfg.gradual.layers_per_stage >= 1,
         "gradual.layers_per_stage must be at least 1 (or null: all layers by the last stage)"),
        (cfg.gradual.encoder_lr_factor > 0, "gradual.encoder_lr_factor must be positive, e.g. 0.1"),
        (cfg.pretrain.epochs >= 1, "pretrain.epochs must be at least 1"),
        (cfg.pretrain.lr > 0, "pretrain.lr must be positive"),
        (cfg.pretrain.batch_size >= 1, "pretrain.batch_size must be at least 1"),
        (0 < cfg.pretrain.mlm_probability < 1, "pretrain.mlm_probability must be in (0, 1), e.g. 0.15"),
        (cfg.pretrain.max_samples is None or cfg.pretrain.max_samples >= 1,
         "pretrain.max_samples must be at least 1 (or null)"),
    ]


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
