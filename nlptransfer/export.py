"""Everything a run leaves behind, written atomically: a crash never leaves a half-written file.

A file is written next to its destination and renamed into place; a model folder is saved to a
temporary folder and renamed. `model/` loads with `transformers.pipeline(...)`; for LoRA,
`adapter/` holds the peft adapter with its head.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from .errors import ConfigError, TrainingError


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (temporary file in the same folder, then rename)."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


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
    if folder.exists():  # swap: the old folder goes only once the new one is in place
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(folder, previous)
    os.replace(staging, folder)
    shutil.rmtree(previous, ignore_errors=True)


def prepare_output_dir(output_dir: Path, overwrite: bool) -> Path:
    """Create the run folder; refuse to write into an existing run unless `overwrite` is set."""
    # A run that failed before training leaves only these; rerunning into its folder is safe.
    started_only = {"config.yaml", "train.log"}
    if output_dir.exists() and not overwrite and any(p.name not in started_only for p in output_dir.iterdir()):
        raise ConfigError(
            f"output folder {output_dir} already holds a run; choose another output_dir or pass overwrite=true"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir


def save_model(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, output_dir: Path, lora: bool
) -> tuple[Path, Path | None]:
    """Save `model/` (LoRA merged in, so it loads without peft) and, for LoRA, `adapter/` with its head.

    Returns the model folder and the adapter folder (None without LoRA).
    """
    from .models import merged_copy

    adapter_dir = None
    if lora:
        adapter_dir = output_dir / "adapter"
        save_pretrained(model, tokenizer, adapter_dir)
        model = merged_copy(model)
    save_pretrained(model, tokenizer, output_dir / "model")
    return output_dir / "model", adapter_dir
