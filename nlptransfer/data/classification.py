"""Labeled text in, three checked splits out: readers, label maps and seeded stratified splits.

Every source (a packaged corpus, local files, a hub dataset) becomes a `pandas.DataFrame` with
the configured text/label columns; `load_classification` turns those into `ClassificationData`
with a train, validation and held-out test split and the label names in a fixed order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from .. import catalog
from ..errors import DataError
from ..options import DataConfig

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
READERS = {
    ".csv": lambda p, encoding: pd.read_csv(p, encoding=encoding),
    ".tsv": lambda p, encoding: pd.read_csv(p, sep="\t", encoding=encoding),
    ".json": lambda p, encoding: _read_json(p, encoding),
    ".jsonl": lambda p, encoding: pd.read_json(p, lines=True, encoding=encoding),
    ".parquet": lambda p, encoding: pd.read_parquet(p),
}


@dataclass
class TextSplit:
    texts: list[str]
    labels: list[int] | list[list[int]]
    """A label id per text; for multi-label data a list of label ids per text."""
    text_pairs: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class ClassificationData:
    label_names: list[str]
    train: TextSplit
    validation: TextSplit
    test: TextSplit
    source: str
    """Where the data came from, for logs and the model card."""
    multilabel: bool = False


def _read_json(path: Path, encoding: str) -> pd.DataFrame:
    # A .json file is either one array of records or (often) JSON lines.
    try:
        return pd.read_json(path, encoding=encoding)
    except ValueError:
        return pd.read_json(path, lines=True, encoding=encoding)


def read_table(path: str | Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a csv, tsv, json, jsonl or parquet file into a DataFrame."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}; check the path (data.train_file=...)")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(
            f"cannot read '{path.name}': use one of {', '.join(READERS)} files"
        )
    try:
        frame = reader(path, encoding)
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path} is not valid {e.encoding} text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            "convert it to UTF-8 or set data.encoding (e.g. data.encoding=latin-1)"
        ) from None
    except LookupError:
        raise DataError(f"unknown data.encoding '{encoding}'; use e.g. utf-8 or latin-1") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; give a file with a header and rows") from None
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(f"cannot parse {path}: {str(e).splitlines()[0]}; fix the file's format") from None
    if frame.empty:
        raise DataError(f"{path} has no rows; give a file with data")
    return frame


def read_packaged(name: str) -> dict[str, pd.DataFrame]:
    """A packaged corpus as one 'train' frame with `text` and `label` columns."""
    path = catalog.corpus_path(name)
    if name == "tweets":
        frame = pd.read_csv(path, encoding_errors="replace")
        frame = frame.rename(columns={"sentiment": "label"})[["text", "label"]]
    elif name == "bbc_news":
        rows = [
            {"text": file.read_text(encoding="utf-8", errors="replace").strip(), "label": folder.name}
            for folder in sorted(p for p in path.iterdir() if p.is_dir())
            for file in sorted(folder.glob("*.txt"))
        ]
        frame = pd.DataFrame(rows)
    else:
        raise DataError(f"corpus '{name}' is not a text classification corpus")
    return {"train": frame}


def read_hub(name: str, config: str | None) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    """A hub dataset's splits, and the label names of its ClassLabel columns."""
    import datasets

    try:
        dataset = datasets.load_dataset(name, config)
    except Exception as e:  # the hub client raises many types for "not reachable"/"not found"
        raise DataError(
            f"cannot load hub dataset '{name}'{f' ({config})' if config else ''}: "
            f"{str(e).splitlines()[0]}; check the name, your network, or use a packaged corpus "
            f"({', '.join(catalog.CORPORA)}) or data.train_file="
        ) from None
    return dataset_frames(dataset)


SPLIT_ALIASES = {"dev": "validation", "valid": "validation", "val": "validation"}


def dataset_frames(dataset) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    """A `datasets.DatasetDict`'s splits as frames (dev/valid/val named validation), and its ClassLabel names."""
    import datasets

    names = {
        column: feature.names
        for column, feature in next(iter(dataset.values())).features.items()
        if isinstance(feature, datasets.ClassLabel)
    }
    return {SPLIT_ALIASES.get(s, s): dataset[s].to_pandas() for s in dataset}, names


def read_source(cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]], str]:
    """The frames of whatever source the config names, their ClassLabel names and a description."""
    if cfg.train_file:
        files = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}
        frames = {split: read_table(path, cfg.encoding) for split, path in files.items() if path}
        return frames, {}, f"local files: {', '.join(str(p) for p in files.values() if p)}"
    if not cfg.name:
        raise DataError("no data given; set data.name=<corpus or hub id> or data.train_file=<path>")
    if cfg.name in catalog.CORPORA:
        return read_packaged(cfg.name), {}, f"packaged corpus '{cfg.name}': {catalog.CORPORA[cfg.name][2]}"
    frames, names = read_hub(cfg.name, cfg.config)
    return frames, names, f"hub dataset '{cfg.name}'" + (f" ({cfg.config})" if cfg.config else "")


def _columns(frame: pd.DataFrame, cfg: DataConfig, split: str) -> pd.DataFrame:
    wanted = [cfg.text_column, cfg.label_column] + (
        [cfg.text_pair_column] if cfg.text_pair_column else []
    )
    for option, column in zip(("text_column", "label_column", "text_pair_column"), wanted):
        if column not in frame.columns:
            raise DataError(
                f"{split} data has no column '{column}' (data.{option}); "
                f"columns found: {', '.join(map(str, frame.columns))}"
            )
    frame = frame[wanted]
    kept = frame.dropna()
    kept = kept[kept[cfg.text_column].astype(str).str.strip() != ""]
    if len(kept) < len(frame):
        logger.warning("%s: dropped %d rows with an empty text or label", split, len(frame) - len(kept))
    labels = kept[cfg.label_column]
    # One missing value makes pandas read an integer column as floats: 1 -> 1.0 -> label '1.0'.
    if pd.api.types.is_float_dtype(labels) and (labels % 1 == 0).all():
        kept = kept.assign(**{cfg.label_column: labels.astype("int64")})
    return kept.reset_index(drop=True)


def label_lists(frame: pd.DataFrame, cfg: DataConfig, split: str) -> pd.DataFrame:
    """Multi-label cells as tuples of label strings: JSON lists, `data.label_separator`-joined text, or one label."""
    rows = []
    for i, (text, value) in enumerate(zip(frame[cfg.text_column], frame[cfg.label_column])):
        if isinstance(value, str) and value.strip().startswith("[") and not cfg.label_separator:
            try:
                value = json.loads(value)
            except ValueError:
                pass
        if isinstance(value, list | tuple | np.ndarray):
            items = [str(v).strip() for v in value]
        elif isinstance(value, str) and cfg.label_separator:
            items = [v.strip() for v in value.split(cfg.label_separator)]
        else:
            items = [str(value).strip()]
        items = [item for item in dict.fromkeys(items) if item]
        if not items:
            raise DataError(f"{split} example {i + 1} ('{str(text)[:40]}') has an empty label list; give every "
                            "example at least one label or drop it")
        rows.append(tuple(items))
    return frame.assign(**{cfg.label_column: rows})


def strata(labels: pd.Series) -> pd.Series:
    """What a split is stratified on: the label, or for multi-label rows their rarest label."""
    if not len(labels) or not isinstance(labels.iloc[0], tuple):
        return labels
    counts = pd.Series([label for row in labels for label in row]).value_counts()
    return labels.map(lambda row: min(row, key=lambda label: (counts[label], label)))


def label_names_for(train_labels: pd.Series, cfg: DataConfig, class_names: list[str] | None) -> list[str]:
    """The label order: configured, else the dataset's ClassLabel names, else sorted training labels."""
    if cfg.label_names:
        return list(cfg.label_names)
    if class_names:
        return list(class_names)
    values = train_labels.tolist()
    if values and isinstance(values[0], tuple):
        values = [label for row in values for label in row]
    return [str(v) for v in sorted(set(values))]


def encode_labels(labels: pd.Series, label_names: list[str], split: str, class_names: bool) -> list[int]:
    """Map raw labels to ids; integer labels of a ClassLabel column are already ids."""
    if class_names:
        return [int(v) for v in labels]
    index = {name: i for i, name in enumerate(label_names)}
    if len(labels) and isinstance(labels.iloc[0], tuple):
        unknown = sorted({str(v) for row in labels for v in row} - set(index))
        if not unknown:
            return [[index[str(v)] for v in row] for row in labels]
    else:
        unknown = sorted({str(v) for v in labels} - set(index))
    if unknown:
        where = "training" if split == "train" else split
        raise DataError(
            f"{where} data has labels not seen in training or data.label_names: "
            f"{', '.join(unknown[:10])}; fix the labels or set data.label_names"
        )
    return [index[str(v)] for v in labels]


def _stratified_split(frame: pd.DataFrame, size: float | int, label: str, seed: int):
    """Split off `size` rows (a share or a count), keeping class proportions where possible."""
    groups = strata(frame[label])
    try:
        return train_test_split(frame, test_size=size, random_state=seed, stratify=groups)
    except ValueError:  # a class with one example, or fewer rows than classes
        counts = groups.value_counts()
        rare = [f"'{name}'" for name in counts[counts < 2].index]
        reason = (f"{', '.join(rare)} {'has' if len(rare) == 1 else 'have'} a single example, which cannot be in "
                  "every split" if rare else "the split is smaller than the number of classes")
        logger.warning("splitting without stratification: %s", reason)
        return train_test_split(frame, test_size=size, random_state=seed)


def report_missing_classes(splits: dict[str, TextSplit], label_names: list[str]) -> None:
    """Warn about classes a held-out split has no example of: their scores there mean nothing."""
    for split, texts in splits.items():
        present = {label for row in texts.labels for label in (row if isinstance(row, list) else [row])}
        missing = [name for i, name in enumerate(label_names) if i not in present]
        if missing:
            logger.warning("the %s split has no example of %s (too rare in the data); its scores for them "
                           "are undefined", split, ", ".join(missing))


def make_splits(frames: dict[str, pd.DataFrame], cfg: DataConfig, seed: int) -> dict[str, pd.DataFrame]:
    """Carve the missing test and validation splits out of train, seeded and stratified."""
    frames = dict(frames)
    train = frames["train"]
    remaining = 1.0  # share of the original training rows still in `train`
    if "test" not in frames:
        train, frames["test"] = _stratified_split(train, cfg.test_fraction, cfg.label_column, seed)
        remaining -= cfg.test_fraction
    if "validation" not in frames:
        if cfg.validation_fraction <= 0:
            raise DataError("no validation split: set data.validation_fraction > 0 or data.validation_file")
        share = min(cfg.validation_fraction / remaining, 0.5)
        train, frames["validation"] = _stratified_split(train, share, cfg.label_column, seed)
    frames["train"] = train
    limits = {"train": cfg.max_train_samples, "validation": cfg.max_validation_samples,
              "test": cfg.max_test_samples}
    for split, limit in limits.items():
        if limit is not None and len(frames[split]) > limit:
            frames[split], _ = _stratified_split(frames[split], len(frames[split]) - limit,
                                                 cfg.label_column, seed)
    return {split: frames[split].reset_index(drop=True) for split in SPLITS}


def drop_shared_texts(frames: dict[str, pd.DataFrame], cfg: DataConfig) -> dict[str, pd.DataFrame]:
    """Count held-out examples whose text (and pair) also occurs in training; drop them unless told not to.

    An exact duplicate of a training text in the test split measures memory, not generalization.
    """
    columns = [cfg.text_column] + ([cfg.text_pair_column] if cfg.text_pair_column else [])
    seen = set(frames["train"][columns].astype(str).itertuples(index=False, name=None))
    frames = dict(frames)
    for split in ("validation", "test"):
        shared = frames[split][columns].astype(str).apply(tuple, axis=1).isin(seen)
        if shared.any():
            action = "dropped" if cfg.dedup_across_splits else "kept (data.dedup_across_splits=false)"
            logger.info("%d %s examples repeat a training text exactly: %s", int(shared.sum()), split, action)
            if cfg.dedup_across_splits and shared.all():
                raise DataError(f"every {split} example also occurs in training; give held-out data that "
                                "differs from the training data, or set data.dedup_across_splits=false")
            if cfg.dedup_across_splits:
                frames[split] = frames[split][~shared].reset_index(drop=True)
    return frames


def load_classification(cfg: DataConfig, seed: int, multilabel: bool = False,
                        source: tuple[dict[str, pd.DataFrame], dict[str, list[str]], str] | None = None
                        ) -> ClassificationData:
    """Read, clean, split and label-encode the configured data (or the in-memory `source`: frames by
    split, ClassLabel names, description); refuse data that cannot be learned.

    With `multilabel`, each example's label cell is a list of labels (see `label_lists`).
    """
    raw, class_names, source = source or read_source(cfg)
    if "train" not in raw:
        raise DataError(f"the data has no 'train' split (found: {', '.join(raw)})")
    frames = {split: _columns(frame, cfg, split) for split, frame in raw.items() if split in SPLITS}
    if multilabel:
        frames = {split: label_lists(frame, cfg, split) for split, frame in frames.items()}
    if len(frames["train"]) < 3:
        raise DataError(f"the training data has {len(frames['train'])} usable rows; need more")
    frames = drop_shared_texts(make_splits(frames, cfg, seed), cfg)
    label_names = label_names_for(frames["train"][cfg.label_column], cfg, class_names.get(cfg.label_column))
    splits = {}
    for split, frame in frames.items():
        if frame.empty:
            raise DataError(f"the {split} split is empty; give more data or change data.{split}_fraction")
        labels = encode_labels(frame[cfg.label_column], label_names, split,
                               class_names=cfg.label_column in class_names)
        pairs = frame[cfg.text_pair_column].astype(str).tolist() if cfg.text_pair_column else None
        splits[split] = TextSplit(frame[cfg.text_column].astype(str).tolist(), labels, pairs)
    if not multilabel and len(set(splits["train"].labels)) < 2:
        raise DataError(
            f"the training data has a single class ('{label_names[splits['train'].labels[0]]}'); "
            "a classifier needs at least two"
        )
    report_missing_classes(splits, label_names)
    return ClassificationData(label_names=label_names, source=source, multilabel=multilabel, **splits)
