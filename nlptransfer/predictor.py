"""Use a trained model (the library side of `python -m nlptransfer.predict`).

`load_model` takes a run folder (its merged `model/`, else its `adapter/`), a saved model folder,
an adapter folder (LoRA, IA3: loaded onto the base model its adapter_config.json names) or a hub id,
and returns a `Predictor` around a transformers pipeline:

    from nlptransfer import load_model
    load_model("runs/sentiment-lora-...").predict(["what a great day"])
    # [{"text": "what a great day", "label": "positive", "score": 0.93}]

Token-classification models return `entities` with their type, character span, score and words. An ensemble
folder (`nlptransfer.ensemble`) loads as an `EnsemblePredictor`: its members, combined as the ensemble says.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import Pipeline, PreTrainedModel, pipeline

from . import catalog, combiners, models, runtimes, tasks
from .config import RunConfig, load_yaml
from .engine import speed
from .engine.onnx_model import OnnxModel
from .errors import ConfigError, DataError, ModelError
from .modeling_nlptransfer import PooledForSequenceClassification
from .outputs import console, folders
from .outputs.model_files import adapter_labels, first_line

HUB_IGNORE = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite", "onnx/*", "openvino/*", *models.PICKLE_WEIGHTS]
"""Weights of other frameworks, and pickled weights (never loaded: they can run code), that a hub download skips."""
PREDICT_CHUNK = 16
"""`Predictor.predict` reads its texts in chunks of this many batches, the progress bar advancing after each."""


@dataclass
class Predictor:
    """A loaded model that labels texts (classification) or finds entities in them (NER)."""

    pipe: Pipeline
    task: str
    """The task's name (`classification`, `token-classification`); `tasks.get(task)` predicts."""
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
        check_batch_size(batch_size)
        if not texts:
            return []
        task, chunk, rows = tasks.get(self.task), batch_size * PREDICT_CHUNK, []
        bar = console.progress_bar(None, total=len(texts), desc="predicting", unit="text", leave=False)
        for start in range(0, len(texts), chunk):  # in chunks of batches, so that a long input shows progress
            part = slice(start, start + chunk)
            rows += task.predict_texts(self, texts[part], pairs[part] if pairs is not None else None, all_scores,
                                       batch_size)
            bar.update(len(texts[part]))
        bar.close()
        return rows

    def probabilities(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32):
        """Per text, every label's probability (a numpy array; tasks whose models give one, see `Task.ensembles`)."""
        return tasks.get(self.task).text_probabilities(self, texts, pairs, batch_size)


@dataclass
class EnsemblePredictor:
    """An ensemble folder's finished runs, each predicting, their probabilities combined by the ensemble's method;
    answers `predict` as a `Predictor` of their task does."""

    members: list[Predictor]
    method: str
    """A `combiners` method: mean, weights, stack."""
    params: dict
    """The method's parameters as ensemble.json holds them (weights, the meta-classifier's coefficients)."""
    source: str
    """The ensemble folder."""
    settings: dict = field(default_factory=dict)
    """Multi-label: the ensemble's own thresholds (tuned on the validation split)."""

    @property
    def task(self) -> str:
        return self.members[0].task

    @property
    def label_names(self) -> list[str]:
        return self.members[0].label_names

    @property
    def multilabel(self) -> bool:
        return self.members[0].multilabel

    def probabilities(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32):
        each = [member.probabilities(texts, pairs, batch_size) for member in self.members]
        return combiners.get(self.method).combine(self.params, each, self.multilabel)

    predict = Predictor.predict


@dataclass
class StackedPredictor:
    """A stacked model (`strategy=frozen stack.models=[...]`): every member encodes the texts with its own tokenizer,
    one head reads their concatenated features; answers `predict` as a `Predictor` of its task does."""

    model: torch.nn.Module
    task: str
    source: str
    settings: dict = field(default_factory=dict)

    @property
    def label_names(self) -> list[str]:
        return [self.model.config.id2label[i] for i in sorted(self.model.config.id2label)]

    @property
    def multilabel(self) -> bool:
        return self.model.config.problem_type == "multi_label_classification"

    def probabilities(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32):
        logits = self.model.text_logits(texts, pairs, batch_size, self.settings.get("max_length", 512))
        return (torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)).numpy()

    predict = Predictor.predict


def load_stacked(model_dir: Path, runtime: str) -> StackedPredictor:
    from .engine import stacking

    if runtime != "torch":
        raise ConfigError(f"runtime={runtime}: a stacked model ({model_dir}) runs in torch only; pass runtime=torch")
    model = stacking.load(model_dir)
    return StackedPredictor(model=model, task=task_of(model.config.architectures, model_dir), source=str(model_dir),
                            settings=getattr(model.config, "nlptransfer", None) or {})


def check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number of at least 1, got {batch_size!r}; e.g. batch_size=32")


@dataclass
class MultitaskPredictor:
    """A multi-task run (task=multitask): each task's exported model (model/<task>/) loaded as `load_model` loads it;
    `predict` answers every task for each text."""

    members: dict[str, Predictor]
    """Each task's `Predictor`, by task name."""
    source: str
    """The run folder."""

    def predict(self, texts: str | Iterable[str], all_scores: bool = False, batch_size: int = 32,
                text_pairs: str | Iterable[str] | None = None) -> list[dict]:
        """One dict per text: its `text` and `tasks`, each task's prediction (as its own `Predictor` gives it) by
        task name."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        each = {name: member.predict(texts, all_scores, batch_size, text_pairs)
                for name, member in self.members.items()}
        return [{"text": text, "tasks": {name: {k: v for k, v in rows[i].items() if k != "text"}
                                         for name, rows in each.items()}} for i, text in enumerate(texts)]


def task_folders(folder: Path) -> dict[str, Path]:
    """A multi-task run's exported tasks (model/<task>/, each a transformers model) by name; {} for any other
    folder."""
    model_dir = folder / "model"
    if not model_dir.is_dir() or (model_dir / "config.json").is_file():
        return {}
    found = {path.name: path for path in sorted(model_dir.iterdir()) if (path / "config.json").is_file()}
    cfg = run_config(folder)
    order = [sub.name for sub in cfg.multitask.tasks] if cfg is not None else []
    return {name: found[name] for name in order if name in found} | found


def load_tasks(folder: Path, location: str, task: str | None, base_model: str | None,
               runtime: str) -> Predictor | MultitaskPredictor:
    """A multi-task run: one task's `Predictor` (`task`), or every task's in a `MultitaskPredictor`."""
    found = task_folders(folder)
    if task is None:
        return MultitaskPredictor({name: load_model(path, base_model, runtime) for name, path in found.items()},
                                  source=str(folder))
    if not found:
        raise ModelError(f"task={task}: {location} is not a multi-task run (no model/<task>/ folders); leave task "
                         "unset")
    if task not in found:
        raise ModelError(f"task={task}: the multi-task run {location} has no such task; its tasks: "
                         f"{', '.join(found)}")
    return load_model(found[task], base_model, runtime)


def load_model(location: str | Path, base_model: str | None = None, runtime: str = "torch",
               task: str | None = None) -> Predictor:
    """A `Predictor` for a run folder, a model folder, an adapter folder (LoRA, IA3) or a hub id.

    `base_model` replaces the base checkpoint an adapter names (e.g. a local copy of it). `runtime` (see
    `nlptransfer.runtimes`): `torch`, the exact fp32 model (default); `int8`, its linear layers quantized as it
    loads; `onnx` and `onnx-int8`, the files `export_model` wrote beside the model, in onnxruntime. A multi-task
    run (task=multitask) loads every task as a `MultitaskPredictor`, or one task's `Predictor` by its name (`task`).
    """
    serving = runtimes.get(runtime)
    folder = local_folder(str(location))
    if task is None and folders.kind_of(folder) in FOLDER_LOADERS:  # another kind than a model's: an ensemble
        return FOLDER_LOADERS[folders.kind_of(folder)](folder, runtime)
    if task is not None or task_folders(folder):
        return load_tasks(folder, str(location), task, base_model, runtime)
    kind, model_dir = find_model(folder, str(location))
    if kind == "model" and stacking_folder(model_dir):
        return load_stacked(model_dir, runtime)
    if serving.file:
        model, task = open_exported(model_dir, kind, serving, base_model)
    else:
        model, task = load_torch(folder, kind, model_dir, base_model)
        speed.first_token_top(model)  # exact: the head reads the first token only
        model = serving.prepare(model)
    has_tokenizer = (model_dir / "tokenizer_config.json").is_file()
    tokenizer = models.load_tokenizer(str(model_dir) if has_tokenizer else model.name_or_path)
    max_length, stride = input_limits(model, tokenizer.model_max_length, run_config(folder))
    tokenizer.model_max_length = max_length
    device = "cuda" if torch.cuda.is_available() and serving.gpu else "cpu"
    with pipeline_accepts(model):
        pipe = pipeline(tasks.get(task).pipeline_tag, model=model.eval(), tokenizer=tokenizer, device=device)
    settings = getattr(model.config, "nlptransfer", None) or {}
    return Predictor(pipe=pipe, task=task, source=str(model_dir), stride=stride, settings=settings)


def stacking_folder(model_dir: Path) -> bool:
    from .engine import stacking

    return stacking.is_stacked(model_dir)


def load_torch(folder: Path, kind: str, model_dir: Path, base_model: str | None) -> tuple[PreTrainedModel, str]:
    """The fp32 torch model of a model folder, or of an adapter merged into its base model, and its task."""
    if kind == "adapter":
        return load_adapter(model_dir, base_model)
    if base_model:
        adapter = folder / "adapter"
        raise ConfigError(f"base_model= is for an adapter, but {model_dir} is a whole model; drop base_model="
                          + (f" or pass the adapter folder {adapter}" if (adapter / "adapter_config.json").is_file()
                             else ""))
    return load_saved(model_dir)


def open_exported(model_dir: Path, kind: str, serving: runtimes.Runtime,
                  base_model: str | None) -> tuple[torch.nn.Module, str]:
    """The file `export_model` wrote for `serving` (ONNX), and the model's task from its config."""
    if kind == "adapter" or base_model:
        raise ConfigError(f"runtime={serving.name} runs an exported whole model, not an adapter ({model_dir}); "
                          "predict the run folder (its merged model/) or pass runtime=torch")
    model = serving.open(model_dir)
    return model, task_of(model.config.architectures, model_dir)


def export_model(location: str | Path, formats: list[str] | str = ("onnx", "onnx-int8")) -> list[Path]:
    """Write the serving files of `formats` (`onnx`, `onnx-int8`) into the model folder's `onnx/`, for
    `load_model(..., runtime=...)`; returns the files written. Exports the exact model the `torch` runtime runs."""
    formats = runtimes.check_formats(formats.split(",") if isinstance(formats, str) else list(formats))
    folder = Path(location).expanduser()
    if not folder.is_dir():
        raise ModelError(f"model folder '{location}' does not exist; pass a run folder or a saved model folder "
                         "(export writes beside the weights, so a hub id must be downloaded first)")
    kind, model_dir = find_model(folder, str(location))
    if kind == "adapter":
        raise ConfigError(f"{model_dir} is an adapter; export the whole model: the run folder's merged model/, "
                          "or save the adapter merged (merge_and_unload) first")
    model, _ = load_saved(model_dir)
    speed.first_token_top(model)
    has_tokenizer = (model_dir / "tokenizer_config.json").is_file()
    tokenizer = models.load_tokenizer(str(model_dir) if has_tokenizer else model.name_or_path)
    return runtimes.export(model, tokenizer, model_dir, formats)


@contextlib.contextmanager
def pipeline_accepts(model: PreTrainedModel):
    """Quiet transformers' "model not supported" error for a pooled classifier or an ONNX session: the pipeline
    runs them all the same."""
    from transformers.utils import logging as hf_logging

    base = hf_logging.get_logger("transformers.pipelines.base")
    level = base.level
    if isinstance(model, PooledForSequenceClassification | OnnxModel):
        base.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        base.setLevel(level)


def local_folder(location: str) -> Path:
    """The folder itself, or the hub repo `location` downloaded into the hub cache."""
    path = Path(location).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelError(f"'{location}' is a file; pass a run folder, a model folder or an adapter folder")
    if models.is_local_path(location):
        raise ModelError(f"model folder '{location}' does not exist; pass a run folder, a model folder, "
                         "an adapter folder or a hub id (user/name)")
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        return Path(huggingface_hub.snapshot_download(location, ignore_patterns=HUB_IGNORE))
    except (OSError, ValueError) as e:  # not found, offline, gated, network: all OSError subclasses
        offline = isinstance(e, OfflineModeIsEnabled) or constants.HF_HUB_OFFLINE
        why = "HF_HUB_OFFLINE is set and the hub cache has no copy" if offline else first_line(e)
        raise ModelError(f"'{location}' is not a local folder and cannot be downloaded from the hub ({why}); "
                         "check the path of the run or model folder, or the hub id") from None


def find_model(folder: Path, location: str) -> tuple[str, Path]:
    """("model" | "adapter", folder): a (merged) model wins over the adapter beside it."""
    for kind, candidate in (("model", folder / "model"), ("model", folder),
                            ("adapter", folder / "adapter"), ("adapter", folder)):
        marker = "config.json" if kind == "model" else "adapter_config.json"
        if (candidate / marker).is_file():
            return kind, candidate
    raise ModelError(f"'{location}' is not a model: it has no config.json (saved model), adapter_config.json "
                     "(adapter) or model/ (run folder); pass one of those or a hub id")


def task_of(architectures: list[str] | None, where: Path) -> str:
    """The task a model was trained for, from its config's `architectures`."""
    task = tasks.for_architectures(architectures or [])
    if task is None:
        raise ModelError(f"{where} holds no classification or token-classification model "
                         f"(architectures: {', '.join(architectures or ['unknown'])}); fine-tune it first with "
                         "python -m nlptransfer.run")
    return task.name


def check_folder(folder: Path, what: str, loader: str = "transformers") -> None:
    """Refuse what predict does not load: pickled weights only, or a model with its own code."""
    code = models.remote_code(folder)
    if code:
        raise ModelError(f"{what}: its config.json runs its own Python code ({code}), which predict never runs; "
                         "load it with transformers (trust_remote_code=True) if you trust that code")
    models.require_safetensors(folder, what, loader)


def load_saved(model_dir: Path) -> tuple[PreTrainedModel, str]:
    """A model saved with `save_pretrained`, and its task."""
    check_folder(model_dir, f"cannot load the model in {model_dir}")
    try:
        config = models.saved_config(model_dir)  # a pooled model's by the installed class, never the folder's
        task = task_of(config.architectures, model_dir)
        if PooledForSequenceClassification.__name__ in (config.architectures or []):  # the installed code, not the copy
            return PooledForSequenceClassification.from_pretrained(model_dir, config=config, use_safetensors=True), task
        return tasks.get(task).auto_class.from_pretrained(model_dir, use_safetensors=True), task
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the model in {model_dir}: {first_line(e)}") from None


def base_checkpoint(base: str) -> str:
    """The packaged offline copy when the adapter names a catalog model's hub id, else `base`."""
    for name, (_, _, hub_id) in catalog.MODELS.items():
        if base == hub_id:
            return catalog.resolve_model(name)
    return base


def load_adapter(adapter_dir: Path, base_model: str | None) -> tuple[PreTrainedModel, str]:
    """The base model with the adapter (and its head) merged in, and its task."""
    from peft import PeftModel

    models.require_safetensors(adapter_dir, f"cannot load the adapter in {adapter_dir}",
                               "peft (PeftModel.from_pretrained onto its base model)")
    try:
        settings = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except ValueError as e:
        raise ModelError(f"{adapter_dir / 'adapter_config.json'} is not valid JSON ({first_line(e)}); "
                         "save the adapter again with save_pretrained") from None
    saved_task, label_names = adapter_labels(adapter_dir)
    task = saved_task or tasks.for_peft_type(settings.get("task_type"))
    if task not in tasks.names():
        raise ModelError(f"adapter {adapter_dir} is for task_type {settings.get('task_type')}; "
                         "only SEQ_CLS and TOKEN_CLS adapters can predict here")
    base = base_model or base_checkpoint(settings.get("base_model_name_or_path") or "")
    fix = "pass base_model=PATH_OR_HUB_ID (python API: load_model(..., base_model=...))"
    if base.startswith((".", "/", "~")) and not Path(base).expanduser().is_dir():
        raise ModelError(f"the adapter's base model folder '{base}' does not exist; {fix}")
    if Path(base).expanduser().is_dir():
        check_folder(Path(base).expanduser(), f"cannot load the adapter's base model '{base}'")
    try:
        model = tasks.get(task).auto_class.from_pretrained(
            base, use_safetensors=True, num_labels=len(label_names), id2label=dict(enumerate(label_names)),
            label2id={label: i for i, label in enumerate(label_names)}, **tasks.get(task).extra_model_options)
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
    model_limit = models.position_limit(model.config.to_dict()) or 512
    max_length = min(tokenizer_limit, model_limit, cfg.data.max_length if cfg else saved.get("max_length", model_limit))
    stride = cfg.data.stride if cfg else saved.get("stride", 16)
    return max_length, min(stride, max_length // 4)


ENSEMBLE_FILE = "ensemble.json"
"""An ensemble folder's members (paths relative to it), method, parameters and labels."""


def load_ensemble(folder: Path, runtime: str = "torch") -> EnsemblePredictor:
    """The `EnsemblePredictor` of an ensemble folder: each member run loaded as `load_model` loads it."""
    spec_file = folder / ENSEMBLE_FILE
    if not (folder / "metrics.json").is_file() or not spec_file.is_file():
        raise ModelError(f"{folder} is an unfinished ensemble (no metrics.json or {ENSEMBLE_FILE}); build it again "
                         "with python -m nlptransfer.ensemble RUN1 RUN2 ... output_dir=" + str(folder))
    try:
        spec = json.loads(spec_file.read_text(encoding="utf-8"))
        paths = [folder / member for member in spec["members"]]
        method, params, label_names = spec["method"], spec["params"], spec["label_names"]
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{spec_file} is not an ensemble nlptransfer wrote ({first_line(e)}); build it again "
                         "with python -m nlptransfer.ensemble") from None
    missing = [str(path) for path in paths if not path.is_dir()]
    if missing:
        raise ModelError(f"the ensemble {folder} names member runs that are gone ({', '.join(missing)}); keep its "
                         "members where they were (their paths are relative to the ensemble folder)")
    members = [load_model(path, runtime=runtime) for path in paths]
    if any(member.label_names != label_names for member in members):
        raise ModelError(f"a member of the ensemble {folder} now predicts other labels than {label_names}; "
                         "build the ensemble again")
    return EnsemblePredictor(members=members, method=method, params=params, source=str(folder),
                             settings={"thresholds": spec["thresholds"]} if spec.get("thresholds") else {})


def load_continual(folder: Path, runtime: str = "torch") -> Predictor | MultitaskPredictor:
    """A continual sequence's folder (`nlptransfer.continual`): its final model (model/, or model/<stage>/); with
    several methods, one line naming their folders."""
    if (folder / "model" / "config.json").is_file():
        return load_model(folder / "model", runtime=runtime)
    if task_folders(folder):
        return load_tasks(folder, str(folder), None, None, runtime)
    methods = sorted(path.name for path in folder.iterdir() if (path / "model").is_dir())
    if not methods:
        raise ModelError(f"{folder} is an unfinished continual sequence (no final model yet); run its command again "
                         "to resume it")
    raise ModelError(f"{folder} holds the final models of several methods ({', '.join(methods)}); pass one: "
                     f"model={folder / methods[0]}")


FOLDER_LOADERS = {folders.ENSEMBLE.name: load_ensemble, folders.CONTINUAL.name: load_continual}
"""What `load_model` returns for a folder the toolkit marked as one of these kinds (outputs/folders.py)."""
