"""Use a trained model: `python -m nlptransfer.predict model=RUN_OR_MODEL text="..."` or `input=FILE`.

`load_model` takes a run folder (its merged `model/`, else its `adapter/`), a saved model folder,
a LoRA adapter folder (loaded onto the base model its adapter_config.json names) or a hub id,
and returns a `Predictor` around a transformers pipeline:

    from nlptransfer import load_model
    load_model("runs/sentiment-lora-...").predict(["what a great day"])
    # [{"text": "what a great day", "label": "positive", "score": 0.93}]

Token-classification models return `entities` with their type, character span, score and words.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, Pipeline, PreTrainedModel, pipeline

from . import catalog, models, speed
from .batches import head_tail_texts, pool_windows
from .config import RunConfig, describe, load_yaml
from .errors import ConfigError, DataError, ModelError
from .export import write_jsonl
from .run import parse_args, parse_options, quiet_libraries, run_command

PIPELINE_TASKS = {"classification": "text-classification", "token-classification": "token-classification"}
PEFT_TASKS = {"SEQ_CLS": "classification", "TOKEN_CLS": "token-classification"}
LABELS_FILE = "labels.json"
"""Written beside an exported adapter: its task and label names (peft keeps neither)."""
HUB_IGNORE = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite", "onnx/*", "openvino/*"]
"""Weights of other frameworks that a hub download skips."""


@dataclass
class Predictor:
    """A loaded model that labels texts (classification) or finds entities in them (NER)."""

    pipe: Pipeline
    task: str
    """`classification` or `token-classification`."""
    source: str
    """The folder the weights came from."""
    stride: int = 16
    """Tokens shared by the windows of a text longer than the maximum length (NER, long_text=sliding)."""
    settings: dict = field(default_factory=dict)
    """Classification: the run's long-text policy and multi-label thresholds (config.json `nlptransfer`)."""

    @property
    def label_names(self) -> list[str]:
        id2label = self.pipe.model.config.id2label
        return [id2label[i] for i in sorted(id2label)]

    @property
    def multilabel(self) -> bool:
        return self.pipe.model.config.problem_type == "multi_label_classification"

    def predict(self, texts: str | Iterable[str], all_scores: bool = False, batch_size: int = 32,
                text_pairs: str | Iterable[str] | None = None) -> list[dict]:
        """One dict per text: `label`, `score` (and `scores` of every label); multi-label: `labels` over
        their thresholds and every label's `scores`; NER: `entities`. `text_pairs` for pair models."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        pairs = [text_pairs] if isinstance(text_pairs, str) else (list(text_pairs) if text_pairs is not None else None)
        if pairs is not None and len(pairs) != len(texts):
            raise DataError(f"got {len(texts)} texts but {len(pairs)} text pairs; give one pair text per text")
        if not texts:
            return []
        if self.task == "classification":
            probabilities = self.class_probabilities(texts, pairs, batch_size)
            rows = [self.classification_row(p, all_scores) for p in probabilities]
            return [{"text": text} | ({"text_pair": pairs[i]} if pairs else {}) | row
                    for i, (text, row) in enumerate(zip(texts, rows))]
        outputs = self.pipe(texts, aggregation_strategy="first", stride=self.stride, batch_size=batch_size)
        return [{"text": text, "entities": [entity_row(e) for e in found]} for text, found in zip(texts, outputs)]


    @torch.inference_mode()
    def class_probabilities(self, texts: list[str], pairs: list[str] | None, batch_size: int) -> np.ndarray:
        """Per text, every label's probability; long texts read as the run did (truncate, head_tail, sliding)."""
        model, tokenizer = self.pipe.model, self.pipe.tokenizer
        long_text = self.settings.get("long_text", "truncate") if pairs is None else "truncate"
        max_length = tokenizer.model_max_length
        if long_text == "head_tail":
            texts = head_tail_texts(texts, tokenizer, max_length)
        sliding = long_text == "sliding"
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length,
                            stride=min(self.stride, max_length // 2) if sliding else 0,
                            return_overflowing_tokens=sliding)
        documents = encoded.pop("overflow_to_sample_mapping", list(range(len(texts))))
        rows = [{key: encoded[key][i] for key in encoded.keys()} for i in range(len(documents))]
        logits = []
        for start in range(0, len(rows), batch_size):
            batch = tokenizer.pad(rows[start:start + batch_size], return_tensors="pt").to(model.device)
            logits.append(model(**batch).logits.float().cpu())
        pooled = torch.from_numpy(pool_windows(torch.cat(logits).numpy(), documents,
                                               self.settings.get("pooling", "mean")))
        return (torch.sigmoid(pooled) if self.multilabel else torch.softmax(pooled, dim=-1)).numpy()

    def classification_row(self, probabilities: np.ndarray, all_scores: bool) -> dict:
        names = self.label_names
        scores = {name: round(float(p), 6) for name, p in sorted(zip(names, probabilities), key=lambda x: -x[1])}
        if self.multilabel:
            thresholds = self.settings.get("thresholds") or [0.5] * len(names)
            return {"labels": [n for n, p, t in zip(names, probabilities, thresholds) if p >= t], "scores": scores}
        best = int(np.argmax(probabilities))
        row = {"label": names[best], "score": round(float(probabilities[best]), 6)}
        return row | ({"scores": scores} if all_scores else {})


def entity_row(entity: dict) -> dict:
    return {"type": entity["entity_group"], "start": int(entity["start"]), "end": int(entity["end"]),
            "score": round(float(entity["score"]), 6), "word": entity["word"]}


def load_model(location: str | Path, base_model: str | None = None) -> Predictor:
    """A `Predictor` for a run folder, a model folder, a LoRA adapter folder or a hub id.

    `base_model` replaces the base checkpoint an adapter names (e.g. a local copy of it).
    """
    folder = local_folder(str(location))
    kind, model_dir = find_model(folder, str(location))
    if kind == "adapter":
        model, task = load_adapter(model_dir, base_model)
    else:
        model, task = load_saved(model_dir)
    has_tokenizer = (model_dir / "tokenizer_config.json").is_file()
    tokenizer = models.load_tokenizer(str(model_dir) if has_tokenizer else model.name_or_path)
    max_length, stride = input_limits(model, tokenizer.model_max_length, run_config(folder))
    tokenizer.model_max_length = max_length
    device = "cuda" if torch.cuda.is_available() else "cpu"
    speed.first_token_top(model)  # exact: the head reads the first token only
    pipe = pipeline(PIPELINE_TASKS[task], model=model.eval(), tokenizer=tokenizer, device=device)
    settings = getattr(model.config, "nlptransfer", None) or {}
    return Predictor(pipe=pipe, task=task, source=str(model_dir), stride=stride, settings=settings)


def local_folder(location: str) -> Path:
    """The folder itself, or the hub repo `location` downloaded into the hub cache."""
    path = Path(location).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelError(f"'{location}' is a file; pass a run folder, a model folder or a LoRA adapter folder")
    if location.startswith((".", "/", "~")) or not is_repo_id(location):
        raise ModelError(f"model folder '{location}' does not exist; pass a run folder, a model folder, "
                         "a LoRA adapter folder or a hub id (user/name)")
    import huggingface_hub

    try:
        return Path(huggingface_hub.snapshot_download(location, ignore_patterns=HUB_IGNORE))
    except (OSError, ValueError) as e:  # not found, offline, gated, network: all OSError subclasses
        raise ModelError(f"'{location}' is not a local folder and cannot be downloaded from the hub: "
                         f"{first_line(e)}; check the path, the hub id and your network") from None


def is_repo_id(name: str) -> bool:
    """Whether `name` has the shape of a hub repo id (`user/name` or a legacy `name`)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def find_model(folder: Path, location: str) -> tuple[str, Path]:
    """("model" | "adapter", folder): a (merged) model wins over the LoRA adapter beside it."""
    for kind, candidate in (("model", folder / "model"), ("model", folder),
                            ("adapter", folder / "adapter"), ("adapter", folder)):
        marker = "config.json" if kind == "model" else "adapter_config.json"
        if (candidate / marker).is_file():
            return kind, candidate
    raise ModelError(f"'{location}' is not a model: it has no config.json (saved model), adapter_config.json "
                     "(LoRA adapter) or model/ (run folder); pass one of those or a hub id")


def task_of(architectures: list[str] | None, where: Path) -> str:
    """The task a model was trained for, from its config's `architectures`."""
    for architecture in architectures or []:
        if architecture.endswith("ForSequenceClassification"):
            return "classification"
        if architecture.endswith("ForTokenClassification"):
            return "token-classification"
    raise ModelError(f"{where} holds no classification or token-classification model "
                     f"(architectures: {', '.join(architectures or ['unknown'])}); fine-tune it first with "
                     "python -m nlptransfer.run")


def load_saved(model_dir: Path) -> tuple[PreTrainedModel, str]:
    """A model saved with `save_pretrained`, and its task."""
    try:
        task = task_of(AutoConfig.from_pretrained(model_dir).architectures, model_dir)
        return models.AUTO_CLASSES[task].from_pretrained(model_dir), task
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the model in {model_dir}: {first_line(e)}") from None


def saved_label_names(config_file: Path) -> list[str]:
    """The label names in id order from a saved model's config.json."""
    id2label = json.loads(config_file.read_text(encoding="utf-8")).get("id2label") or {}
    return [id2label[key] for key in sorted(id2label, key=int)]


def adapter_labels(adapter_dir: Path) -> tuple[str | None, list[str]]:
    """(task, label names) of an adapter: from labels.json, else from the run's merged model/."""
    labels_file = adapter_dir / LABELS_FILE
    if labels_file.is_file():
        saved = json.loads(labels_file.read_text(encoding="utf-8"))
        return saved.get("task"), list(saved["label_names"])
    merged_config = adapter_dir.parent / "model" / "config.json"
    if merged_config.is_file():
        return None, saved_label_names(merged_config)
    raise ModelError(f"adapter {adapter_dir} has no {LABELS_FILE} and no run model/ beside it, so its labels "
                     "are unknown; export it with python -m nlptransfer.push or use the run folder")


def base_checkpoint(base: str) -> str:
    """The packaged offline copy when the adapter names a catalog model's hub id, else `base`."""
    for name, (_, _, hub_id) in catalog.MODELS.items():
        if base == hub_id:
            return catalog.resolve_model(name)
    return base


def load_adapter(adapter_dir: Path, base_model: str | None) -> tuple[PreTrainedModel, str]:
    """The base model with the LoRA adapter (and its head) merged in, and its task."""
    from peft import PeftModel

    settings = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    saved_task, label_names = adapter_labels(adapter_dir)
    task = saved_task or PEFT_TASKS.get(settings.get("task_type"))
    if task not in PIPELINE_TASKS:
        raise ModelError(f"adapter {adapter_dir} is for task_type {settings.get('task_type')}; "
                         "only SEQ_CLS and TOKEN_CLS adapters can predict here")
    base = base_model or base_checkpoint(settings.get("base_model_name_or_path") or "")
    fix = "pass base_model=PATH_OR_HUB_ID (python API: load_model(..., base_model=...))"
    if base.startswith((".", "/", "~")) and not Path(base).expanduser().is_dir():
        raise ModelError(f"the adapter's base model folder '{base}' does not exist; {fix}")
    try:
        model = models.AUTO_CLASSES[task].from_pretrained(
            base, num_labels=len(label_names), id2label=dict(enumerate(label_names)),
            label2id={label: i for i, label in enumerate(label_names)})
    except (OSError, ValueError) as e:
        raise ModelError(f"the adapter's base model '{base}' cannot be loaded ({first_line(e)}); {fix}") from None
    return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload(), task


def run_config(folder: Path) -> RunConfig | None:
    """The run's resolved config when `folder` is a run folder (for its max_length and stride)."""
    config_file = folder / "config.yaml"
    if not config_file.is_file():
        return None
    try:
        return load_yaml(RunConfig(), config_file)
    except ConfigError:  # a run of another nlptransfer version: fall back to the model's limits
        return None


def input_limits(model: PreTrainedModel, tokenizer_limit: int, cfg: RunConfig | None) -> tuple[int, int]:
    """(max tokens per input, NER window stride): the run's settings, else what the model can take."""
    saved = getattr(model.config, "nlptransfer", None) or {}  # a model folder saved by a run
    model_limit = getattr(model.config, "max_position_embeddings", None) or 512
    max_length = min(tokenizer_limit, model_limit, cfg.data.max_length if cfg else saved.get("max_length", model_limit))
    stride = cfg.data.stride if cfg else saved.get("stride", 16)
    return max_length, min(stride, max_length // 4)


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


@dataclass
class PredictOptions:
    model: str | None = None
    """A run folder, a saved model folder, a LoRA adapter folder or a hub id."""
    text: str | None = None
    """One text to predict; printed as one JSON line."""
    input: str | None = None
    """A .txt (one text a line), .csv, .tsv, .json or .jsonl file of texts."""
    output: str | None = None
    """Write the predictions here as JSON lines; default: print them."""
    text_column: str = "text"
    """The column (csv) or key (jsonl) holding the text in `input`."""
    text_pair: str | None = None
    """Pair models (paraphrase, NLI): the second text of `text`."""
    text_pair_column: str | None = None
    """Pair models: the column (csv) or key (jsonl) of `input` holding each second text."""
    all_scores: bool = False
    """Classification: add the score of every label."""
    batch_size: int = 32
    """Texts per forward pass."""
    base_model: str | None = None
    """LoRA adapter: load it onto this checkpoint instead of the one its adapter_config.json names."""


VERBATIM = ("model", "text", "input", "output", "text_column", "base_model", "text_pair", "text_pair_column")
"""Options whose value is used as typed: free text and paths."""

USAGE = """usage: python -m nlptransfer.predict model=RUN_OR_MODEL_DIR_OR_HUB_ID (text="..." | input=FILE [output=FILE])
                                      [all_scores=true] [batch_size=32] [--debug] [--quiet] [--help]
examples:
  python -m nlptransfer.predict model=runs/sentiment-full-20250101-120000 text="what a great day"
  python -m nlptransfer.predict model=user/my-ner input=tweets.txt output=entities.jsonl"""


def read_texts(path: str, column: str) -> list[str]:
    """The texts of a .txt file (one a line, blank lines skipped) or of a table's `column`."""
    from .data import read_table

    if Path(path).suffix.lower() == ".txt":
        if not Path(path).is_file():
            raise DataError(f"input file not found: {path}")
        return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    table = read_table(path)
    if column not in table.columns:
        raise DataError(f"{path} has no column '{column}' (text_column=); columns: "
                        f"{', '.join(map(str, table.columns))}")
    return table[column].fillna("").astype(str).tolist()


def predict_command(argv: list[str]) -> int:
    """The command line: parse the options, load the model, write or print the predictions."""
    flags, overrides, config_file = parse_args(argv)
    if flags["help"]:
        print(f"{USAGE}\noptions (key=default):\n{describe(PredictOptions())}")
        return 0
    if not overrides and not config_file:
        print(USAGE, file=sys.stderr)
        return 2
    if config_file:
        raise ConfigError("predict takes no --config file; pass its options as key=value")
    options = parse_options(PredictOptions(), overrides, verbatim=VERBATIM)
    if not options.model:
        raise ConfigError("pass model=RUN_OR_MODEL_DIR_OR_HUB_ID")
    if (options.text is None) == (options.input is None):
        raise ConfigError('pass exactly one of text="..." and input=FILE')
    quiet_libraries()
    texts = [options.text] if options.text is not None else read_texts(options.input, options.text_column)
    pairs = None
    if options.text_pair is not None:
        pairs = [options.text_pair]
    elif options.text_pair_column and options.input:
        pairs = read_texts(options.input, options.text_pair_column)
    predictor = load_model(options.model, base_model=options.base_model)
    rows = predictor.predict(texts, all_scores=options.all_scores, batch_size=options.batch_size, text_pairs=pairs)
    if options.output:
        write_jsonl(Path(options.output), rows)
        if not flags["quiet"]:
            print(f"{len(rows)} predictions written to {options.output}", file=sys.stderr)
    else:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(predict_command, argv)


if __name__ == "__main__":
    sys.exit(main())
