"""The option sections every run has: data, training, loss, pretraining, checkpoints, push.

Plain dataclasses, one docstring per field (shown by `--help`). The sections a transfer strategy
owns (`lora`, `freeze`, `gradual`, ...) live in the strategy's own file; `config.RunConfig`
assembles all of them into one tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LONG_TEXT = ("truncate", "head_tail", "sliding")
BACKENDS = ("auto", "memory", "arrow")
POOLING = ("mean", "max")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
LOG_WITH = ("tensorboard", "wandb", "mlflow", "none")
LOG_WITH_EXTRAS = ("tensorboard",)
"""Trackers that nlptransfer's own extras install (`pip install 'nlptransfer[tensorboard]'`)."""
MAX_SEED = 2**32 - 1
"""The largest seed numpy accepts (`seed` seeds torch, numpy and Python's random)."""


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
    examples_per_class: int | None = None
    """Few-shot: train on a seeded sample of exactly this many examples per class (no validation split is carved);
    0: no labeled example (strategy=zeroshot, or contrastive with templated examples)."""
    max_validation_samples: int | None = None
    """Validate on at most this many examples."""
    max_test_samples: int | None = None
    """Test on at most this many examples."""
    max_length: int = 128
    """Longest input in tokens; longer texts are truncated."""
    encoding: str = "utf-8"
    """Text encoding of local files (e.g. `latin-1`)."""
    dedup_across_splits: bool = True
    """Drop held-out examples repeating a training one (and validation ones repeating test), case/space ignored."""
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
    backend: str = "auto"
    """How data files are held: `memory` (pandas), `arrow` (memory-mapped Arrow tables and an on-disk token cache:
    files larger than memory) or `auto` (arrow for single-label csv/tsv/jsonl/parquet files of 32 MB or more)."""
    num_proc: int | None = None
    """data.backend=arrow: processes that tokenize (default: one per CPU core, at most 8)."""
    token_cache: str | None = None
    """data.backend=arrow: a folder that is this data's token cache (one entry per split); default: entries keyed
    by tokenizer, length and data under $NLPTRANSFER_CACHE/tokens (~/.cache/nlptransfer/tokens)."""


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
    """Peak learning rate; default: the strategy's (full 1e-4, frozen 1e-2, lora 5e-4, bitfit 1e-3, ia3 3e-3)."""
    weight_decay: float = 0.01
    """AdamW weight decay (never on biases and LayerNorm weights)."""
    warmup_ratio: float = 0.06
    """Share of the optimizer steps spent warming the learning rate up from 0."""
    grad_accum_steps: int = 1
    """Accumulate gradients over this many batches per optimizer step."""
    max_grad_norm: float | None = 1.0
    """Clip the gradient norm to this value; null disables clipping."""
    mixed_precision: str = "auto"
    """`auto` (bf16 on a GPU or CPU that computes it fast, fp16 on an older GPU, else fp32), `no` (fp32), `fp16`,
    `bf16`; passed to Accelerate."""
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
    compile: bool = False
    """Train through `torch.compile` (dynamic shapes; its compile time counted): for GPUs; measured slower on a 2-core
    CPU. Where compilation fails, a warning says why and training runs without it."""


@dataclass
class LossConfig:
    class_weights: Any = "none"
    """`none`, `balanced` (inverse training frequency) or a list with one weight per label."""
    focal_gamma: float = 0.0
    """Focal loss focusing parameter; 0 is plain cross-entropy, 2 the usual focal loss for hard, rare classes."""


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
class PushConfig:
    repo_id: str | None = None
    """Push the finished run to this Hugging Face Hub repo (`user/name`); null: do not push."""
    private: bool = False
    """Create the hub repo as private (an existing repo keeps its visibility)."""
    revision: str | None = None
    """Push to this branch of the repo (created if needed); default: main."""


HEAD_POOLING = ("model", "auto", "mean", "max", "cls")


@dataclass
class HeadConfig:
    pooling: str | None = None
    """How the classification head reads the encoder: `model` (the architecture's own head: [CLS]/pooler, a plain
    transformers model), `auto` (the checkpoint's sentence-transformers pooling, else mean), `mean`, `max` or `cls`;
    default: the strategy's (`model`; `auto` for contrastive and zeroshot)."""
    normalize: bool | None = None
    """Pooled heads: L2-normalize the pooled embedding before the head; default: as the checkpoint's
    sentence-transformers modules say (a Normalize module), else no."""


@dataclass
class LabelsConfig:
    descriptions: dict[str, str] | None = None
    """Label -> description for zero-shot and templated examples (e.g. {sport: 'sports and athletes'}); several
    alternatives separated by | are each prompted and averaged ({neg: 'negative | sad | angry'}); default: the label
    names."""
    template: str = "This text is about {}."
    """The prompt a description is put in (`{}` marks where); alternatives separated by | are averaged."""
