"""In-memory data for the Python API: DataFrames, `datasets` objects, dicts of splits, (texts, labels) lists,
lists of records (`[{"text": ..., "label": ...}, ...]`).

Everything becomes what a reader returns (frames by split, ClassLabel names, a description), so the
task splits, deduplicates and checks it exactly as it does a file.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from ..options import DataConfig
from .readers import SPLIT_ALIASES, dataset_frames

SPLITS = ("train", "validation", "test")


def in_memory_source(data: Any, cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]], str]:
    """(frames by split, ClassLabel names, description) of in-memory `data`; a missing validation or test
    split is made from train as for files."""
    import datasets

    if isinstance(data, datasets.DatasetDict):
        frames, names = dataset_frames(data)
        return checked(frames), names, "in-memory DatasetDict"
    if isinstance(data, datasets.Dataset):
        frames, names = dataset_frames({"train": data})
        return checked(frames), names, f"in-memory Dataset ({len(data)} rows)"
    if isinstance(data, pd.DataFrame):
        return checked({"train": data}), {}, f"in-memory DataFrame ({len(data)} rows)"
    if is_pair(data):
        texts, labels = (list(part) for part in data)
        return checked({"train": pair_frame(texts, labels, cfg)}), {}, f"in-memory lists ({len(texts)} examples)"
    if isinstance(data, list | tuple):
        return checked({"train": record_frame(data)}), {}, f"in-memory records ({len(data)} examples)"
    if isinstance(data, dict) and data and all(isinstance(key, str) for key in data):
        if is_splits(data):
            return split_frames(data, cfg)
        return checked({"train": column_frame(data)}), {}, "in-memory columns"
    if isinstance(data, DataConfig):
        raise DataError("data= takes the data itself; pass data options as data_options=DataConfig(...) or a dict")
    raise DataError(f"data= takes a pandas DataFrame, a datasets Dataset or DatasetDict, a dict of splits or of "
                    f"columns, (texts, labels) lists or a list of records; got {type(data).__name__}")


LIST_LIKE = (list, tuple, pd.Series, np.ndarray)


def is_pair(data: Any) -> bool:
    """(texts, labels): two list-likes (lists, tuples, Series, arrays)."""
    return isinstance(data, tuple | list) and len(data) == 2 and all(isinstance(part, LIST_LIKE) for part in data)


def is_splits(data: dict) -> bool:
    """A dict of splits (a key named like one, or every value a table) rather than of columns."""
    import datasets

    return any(key in SPLITS or key in SPLIT_ALIASES for key in data) or all(
        isinstance(part, pd.DataFrame | datasets.Dataset | dict) for part in data.values())


def split_frames(data: dict, cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]], str]:
    unknown = [key for key in data if key not in SPLITS and key not in SPLIT_ALIASES]
    if unknown:
        raise DataError(f"data= has a split named '{unknown[0]}'; name the splits train, validation (or dev) "
                        "and test")
    frames, names = {}, {}
    for split, part in data.items():
        part_frames, part_names, _ = in_memory_source(part, cfg)
        frames[SPLIT_ALIASES.get(split, split)] = part_frames["train"]
        names |= part_names
    return checked(frames), names, f"in-memory splits ({', '.join(frames)})"


def column_frame(columns: dict) -> pd.DataFrame:
    """A dict of equally long columns as a frame."""
    scalars = [key for key, values in columns.items() if not isinstance(values, LIST_LIKE)]
    if scalars:
        hint = ("; pass data options as data_options={...}"
                if set(columns) <= {f.name for f in dataclasses.fields(DataConfig)} else "")
        raise DataError(f"data= as a dict takes splits ({{'train': frame, ...}}) or columns of values "
                        f"({{'text': [...], 'label': [...]}}); '{scalars[0]}' holds a single value{hint}")
    lengths = {key: len(values) for key, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise DataError("data= columns differ in length (" + ", ".join(f"{k}: {n}" for k, n in lengths.items())
                        + "); give one value per example in each")
    return pd.DataFrame({key: list(values) for key, values in columns.items()})


def record_frame(records: list | tuple) -> pd.DataFrame:
    """A list of records (`{"text": ..., "label": ...}`, or `{"tokens": [...], "tags": [...]}`) as a frame: every
    record a dict with the same keys, as a dict of columns must give every column the same length."""
    if not records:
        raise DataError("data= is an empty list; give records like {'text': ..., 'label': ...}, one per example")
    if (wrong := next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)) is not None:
        raise DataError(f"data= as a list takes records (dicts like {{'text': ..., 'label': ...}}) or (texts, "
                        f"labels) lists; item {wrong + 1} is a {type(records[wrong]).__name__}")
    keys = list(records[0])
    for i, record in enumerate(records):
        if set(record) != set(keys):
            differ = sorted(set(keys) ^ set(record), key=str)[0]
            where = "has no" if differ in keys else "has an extra key"
            raise DataError(f"data= record {i + 1} {where} '{differ}' (record 1 has {', '.join(map(str, keys))}); "
                            "give every record the same keys")
    return pd.DataFrame({key: [record[key] for record in records] for key in keys})


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
