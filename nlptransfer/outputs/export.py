"""Everything a run leaves behind, written atomically: a crash never leaves a half-written file.

A file is written next to its destination and renamed into place; a model folder is saved to a
temporary folder and renamed. `model/` loads with `transformers.pipeline(...)`; for LoRA,
`adapter/` holds the peft adapter with its head. A pooled head's `model/` also holds its code
(`modeling_nlptransfer.py`: transformers loads it only with `trust_remote_code=True`, and refuses it
without) and the sentence-transformers and SetFit files.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .. import catalog
from ..errors import TrainingError
from ..modeling_nlptransfer import ENCODER_CONFIG_FILE, PooledForSequenceClassification, encoder_values, saved_config
from .files import readable_as_umask_says, write_bytes, write_json, write_jsonl, write_text
from .model_files import LABELS_FILE
from .sentence_files import write_sentence_files

__all__ = ["merged_copy", "save_model", "save_pretrained", "write_bytes", "write_json", "write_jsonl", "write_text"]


def save_pretrained(model: nn.Module, tokenizer: PreTrainedTokenizerBase, folder: Path,
                    complete: Callable[[Path], None] | None = None) -> None:
    """Save a model (or peft adapter) with its tokenizer into `folder`, atomically; `complete(staging)` adds
    to or edits the folder before it is moved into place."""
    broken = next((name for name, p in model.named_parameters() if not torch.isfinite(p).all()), None)
    if broken is not None:
        raise TrainingError(f"refusing to save {folder}: weight {broken} is NaN/inf; lower train.lr")
    staging = folder.with_name(f".{folder.name}.tmp")
    previous = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if complete is not None:
        complete(staging)
    readable_as_umask_says(staging)
    if folder.exists():  # swap: the old folder goes only once the new one is in place
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(folder, previous)
    os.replace(staging, folder)
    shutil.rmtree(previous, ignore_errors=True)


@torch.no_grad()
def merged_copy(model: nn.Module) -> PreTrainedModel:
    """A plain transformers model with the adapter updates merged in (the original stays intact)."""
    return copy.deepcopy(model).merge_and_unload()


def save_model(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, output_dir: Path, adapter: bool = False,
    task: str | None = None, base_model: str | None = None,
) -> tuple[Path, Path | None]:
    """Save `model/` (adapters merged in, so it loads without peft) and, with `adapter`, `adapter/` with its head.

    The adapter loads as users load adapters: its base named as it loads here (`adapter_base`; `base_model` is
    the run's `model=`), its task and labels in labels.json. Returns the model folder and
    the adapter folder (None without an adapter).
    """
    adapter_dir = None
    if adapter:
        adapter_dir = output_dir / "adapter"
        save_pretrained(model, tokenizer, adapter_dir,
                        lambda staging: portable_adapter(staging, model, task, base_model))
        model = merged_copy(model)
    complete = None
    if isinstance(model, PooledForSequenceClassification):  # its code beside it; sentence-transformers/SetFit files
        model.register_for_auto_class("AutoModelForSequenceClassification")
        complete = lambda staging: pooled_files(staging, model, tokenizer.model_max_length)
    save_pretrained(model, tokenizer, output_dir / "model", complete)
    return output_dir / "model", adapter_dir


def pooled_files(folder: Path, model: PooledForSequenceClassification, max_length: int) -> None:
    """A saved pooled model's config.json under its own model type (transformers refuses the folder without
    `trust_remote_code=True` instead of loading the encoder under a new, random classifier), the encoder's config
    as encoder_config.json, and the sentence-transformers and SetFit files."""
    values = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    write_json(folder / ENCODER_CONFIG_FILE, {key: value for key, value in encoder_values(values).items()
                                              if key not in ("auto_map", "architectures")})
    write_json(folder / "config.json", saved_config(values))
    write_sentence_files(folder, model, max_length)


def portable_adapter(folder: Path, model: nn.Module, task: str | None, base_model: str | None) -> None:
    """A saved adapter folder made loadable with peft: its base as it loads here (absolute path or hub id),
    labels.json beside it (peft keeps neither task nor label names), without peft's blank README template."""
    settings_file = folder / "adapter_config.json"
    settings = json.loads(settings_file.read_text(encoding="utf-8"))
    settings["base_model_name_or_path"] = adapter_base(base_model, settings.get("base_model_name_or_path") or "")
    write_json(settings_file, settings)
    id2label = model.config.id2label
    label_names = [id2label[i] for i in sorted(id2label)]
    write_json(folder / LABELS_FILE, ({"task": task} if task else {}) | {"label_names": label_names})
    (folder / "README.md").unlink(missing_ok=True)


def adapter_base(base_model: str | None, recorded: str) -> str:
    """The base a run's adapter names: what loads on this machine, offline too: a local folder (the packaged copy
    of a catalog checkpoint included) by its absolute path, else the hub id of a known checkpoint, else what peft
    recorded. `push` names the hub id instead (hub/push.py), which is what loads on another machine."""
    names = [name for name in (base_model, recorded) if name]
    local = [catalog.resolve_model(name) for name in names]
    folder = next((Path(name).expanduser() for name in local if Path(name).expanduser().is_dir()), None)
    if folder is not None:
        return str(folder.resolve())
    hub_id = next((catalog.base_model_id(name) for name in names if catalog.base_model_id(name)), None)
    return hub_id or recorded
