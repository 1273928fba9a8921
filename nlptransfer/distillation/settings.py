"""The distillation command's options and their checks (stdlib and the option sections only: `--help` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..options import TrainConfig


@dataclass
class UnlabeledOptions:
    file: str | None = None
    """Unlabeled texts the teacher labels for the student: a .txt file (one text per line; NER: words split on
    spaces) or a table (.csv, .tsv, .json, .jsonl, .parquet) read by `unlabeled.column`."""
    column: str | None = None
    """The table's text column; default: the teacher's data.text_column."""
    unused_rows: bool = False
    """Also the teacher corpus's training rows its run left out (data.max_train_samples), labels ignored."""
    max_texts: int | None = None
    """At most this many unlabeled texts (the first ones); null: all."""


@dataclass
class DistillOptions:
    teachers: list[str] = field(default_factory=list)
    """Teacher folders (finished runs, ensembles); the command's positional arguments add to them."""
    model: str | None = None
    """The student: a short name (`minilm`), a model folder, a finished run or a hub id, under a new head;
    null: a copy of the teacher's own model keeping `layers` of its encoder layers (and its head)."""
    layers: str | None = None
    """With model=null: `every_other` (layers 0, 2, 4, ...: the default) or K (K layers spread evenly, first and last
    kept), e.g. layers=3."""
    temperature: float = 2.0
    """Softens the teacher's and the student's distributions (T > 0); the soft loss is scaled by T^2."""
    alpha: float = 0.5
    """Weight of the soft (teacher) loss; 1 - alpha weighs the hard labels' loss (labeled rows only)."""
    unlabeled: UnlabeledOptions = field(default_factory=UnlabeledOptions)
    """Texts without labels that the teacher labels for the student."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The student's training (train.lr null: full fine-tuning's default rate)."""
    batch_size: int = 32
    """Texts per forward pass while the teachers predict, and in the side-by-side throughput measurement."""
    benchmark_texts: int = 512
    """Test texts (sentences) teacher and student each predict on CPU for the throughput comparison; 0 skips it."""
    output_dir: str | None = None
    """The student's run folder; default: runs/<teacher recipe>-distilled-<time>."""
    overwrite: bool = False
    """Replace the run the output_dir holds (only what a run writes)."""
    resume: str | None = None
    """`auto`: continue a killed distillation in output_dir from its newest checkpoint (teacher outputs reused)."""


def layer_setting(options: DistillOptions) -> str | int | None:
    """`every_other`, a layer count, or None when the student is another checkpoint (`model=`)."""
    if options.model is not None:
        if options.layers is not None:
            raise ConfigError(f"layers={options.layers} makes the student a copy of the teacher's model; with "
                              f"model={options.model} drop layers=, or drop model= to copy the teacher")
        return None
    value = "every_other" if options.layers is None else str(options.layers).strip()
    if value == "every_other":
        return value
    try:
        count = int(value)
    except ValueError:
        raise ConfigError(f"layers must be every_other or a number of layers, got '{options.layers}'") from None
    if count < 1:
        raise ConfigError(f"layers={count}: a student keeps at least 1 layer; e.g. layers=3 or layers=every_other")
    return count


def check_options(options: DistillOptions) -> None:
    """The checks that need no teacher: one line each."""
    if not options.temperature > 0:
        raise ConfigError(f"temperature must be above 0, got {options.temperature}; e.g. temperature=2")
    if not 0 <= options.alpha <= 1:
        raise ConfigError(f"alpha must be from 0 (hard labels only) to 1 (teacher only), got {options.alpha}")
    for name in ("batch_size", "benchmark_texts"):
        value, least = getattr(options, name), 1 if name == "batch_size" else 0
        if isinstance(value, bool) or value < least:
            raise ConfigError(f"{name} must be a whole number of at least {least}, got {value}")
    if options.unlabeled.max_texts is not None and options.unlabeled.max_texts < 1:
        raise ConfigError(f"unlabeled.max_texts must be at least 1 (or null), got {options.unlabeled.max_texts}")
    if options.resume not in (None, "auto"):
        raise ConfigError(f"resume must be auto (or null), got '{options.resume}'; e.g. resume=auto "
                          "output_dir=runs/<the distillation>")
    if options.resume and options.overwrite:
        raise ConfigError("overwrite=true would delete the distillation that resume=auto continues; pass one of them")
    if options.resume and not options.output_dir:
        raise ConfigError("resume=auto needs the distillation's folder: pass output_dir=runs/<it> too")
    layer_setting(options)
