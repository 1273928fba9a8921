"""A disk cache for frozen-encoder features: a second run on the same data skips the encoder.

The key names everything the features depend on: the checkpoint (its folder and the sizes and
modification times of its config and weight files, or the hub snapshot), the tokenizer, every
token id and label of the split, the maximum length, the feature kind, the precision and the
library versions. A file is written to a temporary name and renamed into place, so a crash
never leaves a half-written entry; an entry that cannot be read or does not match its key is
recomputed, never trusted.

    features = cached(feature_key(cfg.model, encoded["train"], cfg.data.max_length, "first_token",
                                  tokenizer), lambda: extract(encoder, loader, accelerator))
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers

from .. import catalog
from ..data.arrow import CACHE_ENV, OFF  # one cache variable for features, tables and tokens
from ..outputs import files
from . import distributed
from .batches import EncodedSplit

logger = logging.getLogger(__name__)

DEFAULT_FOLDER = Path("~/.cache/nlptransfer/features")
FORMAT_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")


def cache_folder(folder: str | Path | None = None) -> Path | None:
    """The cache folder: `folder`, else $NLPTRANSFER_CACHE, else ~/.cache/nlptransfer/features; None if off."""
    chosen = folder if folder is not None else os.environ.get(CACHE_ENV) or DEFAULT_FOLDER
    if str(chosen).strip().lower() in OFF:
        return None
    return Path(chosen).expanduser()


def checkpoint_folder(model: str) -> Path | None:
    """The folder holding a checkpoint given by short name, local path or (already downloaded) hub id."""
    path = Path(catalog.resolve_model(model)).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(str(path), "config.json")
    except Exception:  # an id the hub client rejects is simply not in its cache
        return None
    return Path(config).parent if isinstance(config, str) else None


def checkpoint_fingerprint(model: str) -> dict[str, Any]:
    """What identifies a checkpoint's weights: its folder and each config/weight file's size and mtime."""
    folder = checkpoint_folder(model)
    if folder is None:  # not on disk: only the name can identify it
        return {"name": model}
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and (p.name == "config.json" or p.name.endswith(WEIGHT_SUFFIXES)))
    return {"folder": str(folder.resolve()),
            "files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}}


def split_digest(split: EncodedSplit) -> str:
    """What identifies a split's inputs: every field of every example (a table-held split: its token cache key)."""
    return split.digest()


def feature_key(model: str, split: EncodedSplit, max_length: int, kind: str, tokenizer=None,
                **extra: Any) -> dict[str, Any]:
    """The key parts of one split's features.

    `model` is the name or path the run loads (`cfg.model`); `kind` says what is stored
    (`first_token` for sequence classification, `tokens` for token classification); `extra`
    adds anything else the features depend on (e.g. `precision=cfg.train.mixed_precision`).
    """
    return {
        "format": FORMAT_VERSION,
        "model": checkpoint_fingerprint(model),
        "tokenizer": None if tokenizer is None else [type(tokenizer).__name__, tokenizer.name_or_path,
                                                      len(tokenizer)],
        "split": split_digest(split),
        "max_length": max_length,
        "kind": kind,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        **extra,
    }


def key_text(key_parts: dict[str, Any]) -> str:
    return json.dumps(key_parts, sort_keys=True, default=str)


def entry_path(key_parts: dict[str, Any], folder: Path) -> Path:
    return folder / f"{hashlib.sha256(key_text(key_parts).encode()).hexdigest()[:32]}.pt"


def pack(split: EncodedSplit) -> dict[str, dict]:
    """Columns of a split: tensors of one shape stacked, of varying length concatenated, the rest as lists."""
    columns = {}
    for key in split.features[0] if len(split) else ():
        values = [row[key] for row in split.features]
        if not all(isinstance(v, torch.Tensor) for v in values):
            columns[key] = {"values": values}
        elif len({v.shape for v in values}) == 1:
            columns[key] = {"stacked": torch.stack(values)}
        else:
            columns[key] = {"flat": torch.cat(values), "lengths": torch.tensor([len(v) for v in values])}
    return columns


def unpack(columns: dict[str, dict], rows: int) -> EncodedSplit:
    """The split `pack` was given (tensors come back as views of the column tensors)."""
    unpacked = {}
    for key, column in columns.items():
        if "values" in column:
            unpacked[key] = column["values"]
        elif "stacked" in column:
            unpacked[key] = list(column["stacked"].unbind(0))
        else:
            unpacked[key] = list(column["flat"].split(column["lengths"].tolist()))
        if len(unpacked[key]) != rows:
            raise ValueError(f"column {key} has {len(unpacked[key])} rows, expected {rows}")
    return EncodedSplit([{key: unpacked[key][i] for key in unpacked} for i in range(rows)])


def load(path: Path, key_parts: dict[str, Any]) -> EncodedSplit:
    """An entry from disk; raises if it is unreadable or belongs to another key."""
    stored = torch.load(path, map_location="cpu", weights_only=True)
    if stored.get("key") != key_text(key_parts):
        raise ValueError("the entry was written for another key")
    return unpack(stored["columns"], stored["rows"])


def save(path: Path, key_parts: dict[str, Any], split: EncodedSplit) -> None:
    """Write an entry atomically: to a temporary file in the same folder, then rename it into place."""
    buffer = io.BytesIO()
    torch.save({"key": key_text(key_parts), "rows": len(split), "columns": pack(split)}, buffer)
    files.write_bytes(path, buffer.getvalue())


def cached(key_parts: dict[str, Any], compute: Callable[[], EncodedSplit],
           folder: str | Path | None = None) -> EncodedSplit:
    """The features stored under `key_parts`, else `compute()`'s, stored for the next run.

    An unreadable or mismatched entry is logged and recomputed; a cache folder that cannot be
    written only costs the next run a recomputation. On several processes `compute()` runs on all
    of them or none (it gathers across processes), and one process per machine writes the entry.
    """
    root = cache_folder(folder)
    if root is None:
        return compute()
    path = entry_path(key_parts, root)
    split = None
    if path.is_file():
        try:
            split = load(path, key_parts)
        except Exception as e:  # truncated, corrupted or foreign files are all recomputed
            logger.warning("ignoring the unreadable feature cache entry %s (%s); recomputing", path, e)
    if distributed.on_every_process(split is not None):
        logger.info("encoder features from the cache: %s", path)
        return split
    split = compute()
    if distributed.is_local_main():
        try:
            save(path, key_parts, split)
        except OSError as e:
            logger.warning("cannot write the feature cache %s: %s", path, e)
    return split
