"""In-memory data for the Python API: DataFrames, `datasets` objects, dicts of splits, (texts, labels) lists.

Everything becomes what a reader returns (frames by split, ClassLabel names, a description), so the
task splits, deduplicates and checks it exactly as it does a file.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..errors import DataError
from ..options import DataConfig
from .classification import SPLIT_ALIASES, dataset_frames

SPLITS = ("train", "validation", "test")


def in_memory_source(data: Any, cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]], str]:
    """(frames by split, ClassLabel names, description) of in-memory `data`; a missing validation or test
    split is made from train as for files."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        datasets = None
    if datasets is not None and isinstance(data, datasets.DatasetDict):
        frames, names = dataset_frames(data)
        return checked(frames), names, "in-memory DatasetDict"
    if datasets is not None and isinstance(data, datasets.Dataset):
        frames, names = dataset_frames({"train": data})
        return checked(frames), names, f"in-memory Dataset ({len(data)} rows)"
    if isinstance(data, pd.DataFrame):
        return checked({"train": data}), {}, f"in-memory DataFrame ({len(data)} rows)"
    if isinstance(data, dict) and data and all(isinstance(key, str) for key in data):
        if set(data) <= set(SPLITS) | set(SPLIT_ALIASES):
            frames, names = {}, {}
            for split, part in data.items():
                part_frames, part_names, _ = in_memory_source(part, cfg)
                frames[SPLIT_ALIASES.get(split, split)] = part_frames["train"]
                names |= part_names
            return checked(frames), names, f"in-memory splits ({', '.join(frames)})"
        return checked({"train": pd.DataFrame(data)}), {}, "in-memory columns"
    if isinstance(data, tuple | list) and len(data) == 2 and all(isinstance(part, list | tuple) for part in data):
        return checked({"train": pair_frame(list(data[0]), list(data[1]), cfg)}), {}, \
            f"in-memory lists ({len(data[0])} examples)"
    raise DataError(f"data= takes a pandas DataFrame, a datasets Dataset or DatasetDict, a dict of splits or "
                    f"(texts, labels) lists; got {type(data).__name__}")


def pair_frame(texts: list, labels: list, cfg: DataConfig) -> pd.DataFrame:
    """(texts, labels) as a frame with the configured columns: words and tags lists for token classification."""
    if len(texts) != len(labels):
        raise DataError(f"data=(texts, labels): {len(texts)} texts but {len(labels)} labels; give one label "
                        "(or tag list) per text")
    words = bool(texts) and isinstance(texts[0], list | tuple)
    columns = (cfg.tokens_column, cfg.tags_column) if words else (cfg.text_column, cfg.label_column)
    return pd.DataFrame({columns[0]: texts, columns[1]: labels})


def checked(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    unknown = [split for split in frames if split not in SPLITS]
    if unknown:
        raise DataError(f"data= has a split named '{unknown[0]}'; name the splits train, validation and test")
    if "train" not in frames:
        raise DataError(f"data= has no train split (found: {', '.join(frames)}); pass one named 'train'")
    return {split: frame.reset_index(drop=True) for split, frame in frames.items()}
