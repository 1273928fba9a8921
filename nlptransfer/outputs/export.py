"""Everything a run leaves behind, written atomically: a crash never leaves a half-written file.

A file is written next to its destination and renamed into place; a model folder is saved to a
temporary folder and renamed. `model/` loads with `transformers.pipeline(...)`; for LoRA,
`adapter/` holds the peft adapter with its head.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import TrainingError
from .files import readable_as_umask_says, write_bytes, write_json, write_jsonl, write_text

__all__ = ["merged_copy", "save_model", "save_pretrained", "write_bytes", "write_json", "write_jsonl", "write_text"]


def save_pretrained(model: nn.Module, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """Save a model (or peft adapter) with its tokenizer into `folder`, atomically."""
    broken = next((name for name, p in model.named_parameters() if not torch.isfinite(p).all()), None)
    if broken is not None:
        raise TrainingError(f"refusing to save {folder}: weight {broken} is NaN/inf; lower train.lr")
    staging = folder.with_name(f".{folder.name}.tmp")
    previous = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
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
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, output_dir: Path, adapter: bool = False
) -> tuple[Path, Path | None]:
    """Save `model/` (adapters merged in, so it loads without peft) and, with `adapter`, `adapter/` with its head.

    Returns the model folder and the adapter folder (None without an adapter).
    """
    adapter_dir = None
    if adapter:
        adapter_dir = output_dir / "adapter"
        save_pretrained(model, tokenizer, adapter_dir)
        model = merged_copy(model)
    save_pretrained(model, tokenizer, output_dir / "model")
    return output_dir / "model", adapter_dir
