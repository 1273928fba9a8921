"""Labeled text in, three checked splits out: readers, label maps and seeded stratified splits.

Every source (a packaged corpus, local files, a hub dataset) becomes a `pandas.DataFrame` with
the configured text/label columns; `load_classification` turns those into `ClassificationData`
with a train, validation and held-out test split and the label names in a fixed order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from .. import catalog
from ..errors import DataError
from ..options import DataConfig
from ..outputs import files
from . import arrow
from .arrow import use_arrow
from .readers import SPLIT_ALIASES, dataset_frames, read_hub, read_packaged, read_table  # noqa: F401
from .splits import (
    SPLITS,
    approximate_mode,
    check_distinct_columns,
    check_sample_keeps_labels,
    dedup_key,
    drop_repeats,
    intends_no_validation,
    sample_per_class,
    split_sizes,
)

logger = logging.getLogger(__name__)


@dataclass
class TextSplit:
    texts: Sequence[str]
    """A list, or for data held as Arrow tables (`data/arrow.py`) a `TableColumn` view of the mapped table."""
    labels: list[int] | list[list[int]] | np.ndarray
    """A label id per text; for multi-label data a list of label ids per text."""
    text_pairs: Sequence[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, indices) -> TextSplit:
        """The examples at `indices`, in that order."""
        def pick(values):
            if values is None:
                return None
            if isinstance(values, np.ndarray) or hasattr(values, "take"):
                return values.take(np.asarray(indices, dtype=np.int64))
            return [values[i] for i in indices]

        return TextSplit(pick(self.texts), pick(self.labels), pick(self.text_pairs))


@dataclass
class ClassificationData:
    label_names: list[str]
    train: TextSplit
    validation: TextSplit
    test: TextSplit
    source: str
    """Where the data came from, for logs and the model card."""
    multilabel: bool = False
    dropped_repeats: dict[str, int] = field(default_factory=dict)
    """Held-out examples dropped per split because they repeat a training (or, for validation, a test) text."""


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


def preview(value, width: int = 40) -> str:
    """A value shortened for a one-line message (repr: a newline inside stays on the line)."""
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= width else text[:width - 3] + "..."


LIST_LIKE = (list, tuple, set, np.ndarray)
NOT_PLAIN = (*LIST_LIKE, dict)


def first_not_plain(values: pd.Series):
    if values.dtype != object:
        return None
    return next((v for v in values if isinstance(v, NOT_PLAIN)), None)


def kind(value) -> str:
    return "dicts" if isinstance(value, dict) else "lists"


def check_plain_values(frame: pd.DataFrame, cfg: DataConfig, split: str, multilabel: bool) -> None:
    """Refuse texts that are not strings and labels that are not single values (or label lists for multilabel)."""
    for option, column in (("text_column", cfg.text_column), ("text_pair_column", cfg.text_pair_column)):
        if column and (value := first_not_plain(frame[column])) is not None:
            raise DataError(f"the {split} data's column '{column}' (data.{option}) holds {kind(value)} like "
                            f"{preview(value)}, not texts; give one string per example (lists of words with their tags "
                            "are for task=token-classification)")
    value = first_not_plain(frame[cfg.label_column])
    if value is None or (multilabel and not isinstance(value, dict)):
        return
    fix = ("give one string or integer label per example" if isinstance(value, dict) or multilabel
           else "for several labels per example use task=multilabel")
    raise DataError(f"the {split} data's column '{cfg.label_column}' (data.label_column) holds {kind(value)} like "
                    f"{preview(value)}, not single labels; {fix}")


def _columns(frame: pd.DataFrame, cfg: DataConfig, split: str, multilabel: bool = False) -> pd.DataFrame:
    options = {"text_column": cfg.text_column, "label_column": cfg.label_column,
               "text_pair_column": cfg.text_pair_column}
    check_distinct_columns(options)
    for option, column in options.items():
        if column is not None and column not in frame.columns:
            raise DataError(
                f"{split} data has no column '{column}' (data.{option}); "
                f"columns found: {', '.join(map(str, frame.columns))}"
            )
        if column is not None and (copies := int((frame.columns == column).sum())) > 1:
            raise DataError(f"the {split} data has {copies} columns named '{column}' (data.{option}), which is "
                            "ambiguous; give each column its own name")
    frame = frame[[column for column in options.values() if column is not None]]
    check_plain_values(frame, cfg, split, multilabel)
    kept = frame.dropna()
    blank = np.zeros(len(kept), dtype=bool)  # a blank text, pair or label is none, as in data/arrow.row_checks
    for column in kept.columns:
        blank |= (kept[column].astype(str).str.strip() == "").to_numpy()
    kept = kept[~blank]
    if len(kept) < len(frame):
        logger.warning("%s: dropped %d rows with an empty text or label", split, len(frame) - len(kept))
    labels = kept[cfg.label_column]
    # One missing value makes pandas read an integer column as floats: 1 -> 1.0 -> label '1.0'.
    if pd.api.types.is_float_dtype(labels) and (labels % 1 == 0).all():
        kept = kept.assign(**{cfg.label_column: labels.astype("int64")})
    elif len(labels) and all(isinstance(v, str) for v in labels):  # a table's cells, read as written
        kept = kept.assign(**{cfg.label_column: arrow.label_values(labels.tolist())})
    return kept.reset_index(drop=True)


def label_lists(frame: pd.DataFrame, cfg: DataConfig, split: str) -> pd.DataFrame:
    """Multi-label cells as tuples of label strings: JSON lists, `data.label_separator`-joined text, or one label."""
    rows, text_rows = [], []
    for i, (text, value) in enumerate(zip(frame[cfg.text_column], frame[cfg.label_column])):
        if isinstance(value, str) and value.strip().startswith("[") and not cfg.label_separator:
            try:
                value = json.loads(value)
            except ValueError:
                pass
        if isinstance(value, LIST_LIKE):
            values = sorted(value, key=str) if isinstance(value, set) else list(value)
            if (nested := next((v for v in values if isinstance(v, NOT_PLAIN)), None)) is not None:
                raise DataError(f"{split} example {i + 1} ({preview(text)}) has {preview(nested)} in its label list; "
                                "give each label as a string or an integer")
            items = [str(v).strip() for v in values if not pd.isna(v)]  # a null in a list is no label
        elif isinstance(value, str) and cfg.label_separator:
            items = [v.strip() for v in value.split(cfg.label_separator)]
        else:
            items = [str(value).strip()]
        items = [item for item in dict.fromkeys(items) if item]
        if not items:
            raise DataError(f"{split} example {i + 1} ({preview(text)}) has an empty label list; give every "
                            "example at least one label or drop it")
        rows.append(tuple(items))
        if not isinstance(value, LIST_LIKE):
            text_rows.append(rows[-1])
    check_joined_labels(text_rows, rows, cfg, split)
    return frame.assign(**{cfg.label_column: rows})


LABEL_SEPARATORS = ("|", ";", ",")


def check_joined_labels(text_rows: list[tuple[str, ...]], rows: list[tuple[str, ...]], cfg: DataConfig,
                        split: str) -> None:
    """Refuse label cells that look like several labels joined by a separator `data.label_separator` does not name.

    A separator counts when it is inside most cells, or when the parts it joins are labels of other cells.
    """
    named = set(map(str, cfg.label_names or ()))  # a configured name is a label, whatever it holds
    singles = {label for row in rows for label in row} | named
    for separator in (s for s in LABEL_SEPARATORS if s != cfg.label_separator):
        joined = {label for row in text_rows for label in row if label not in named
                  and separator in label and all(part.strip() for part in label.split(separator))}
        if not joined:
            continue
        parts = {part.strip() for label in joined for part in label.split(separator)}
        cells = [row for row in text_rows if joined & set(row)]
        if 2 * len(cells) > len(text_rows) or parts <= singles - joined:
            example = next(label for label in cells[0] if label in joined)
            configured = (f" (data.label_separator={cfg.label_separator!r} does not split them)"
                          if cfg.label_separator else "")
            raise DataError(f"{len(cells)} of {len(text_rows)} {split} label cells of '{cfg.label_column}' look like "
                            f"several labels joined by '{separator}' (e.g. {preview(example)}){configured}; pass "
                            f"data.label_separator='{separator}' to split them, or give each cell as a JSON list")


def strata(labels: pd.Series) -> pd.Series:
    """What a split is stratified on: the label, or for multi-label rows their rarest label."""
    if isinstance(labels.dtype, pd.CategoricalDtype):  # table rows (data/arrow.py): the codes, not 10M objects
        return pd.Series(labels.cat.codes, index=labels.index)
    if not len(labels) or not isinstance(labels.iloc[0], tuple):
        # labels of mixed types (2 and "x" from JSON) cannot be sorted; they are labels by their text
        return labels.map(str) if labels.map(type).nunique() > 1 else labels
    counts = pd.Series([label for row in labels for label in row]).value_counts()
    return labels.map(lambda row: min(row, key=lambda label: (counts[label], label)))


def label_names_for(train_labels: pd.Series, cfg: DataConfig, class_names: list[str] | None) -> list[str]:
    """The label order: configured, else the dataset's ClassLabel names, else sorted training labels."""
    if cfg.label_names:
        return list(cfg.label_names)
    if class_names:
        return list(class_names)
    values = {str(v): v for v in label_set(train_labels)}
    numbers = all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in values.values())
    return sorted(values, key=values.get) if numbers else sorted(values)  # 2 before 10; mixed types by their text


def label_set(labels: pd.Series) -> set:
    """The labels present: the values, or for multi-label rows every label of every row."""
    if isinstance(labels.dtype, pd.CategoricalDtype):
        return set(labels.unique())
    values = labels.tolist()
    if values and isinstance(values[0], tuple):
        return {label for row in values for label in row}
    return set(values)


def encode_labels(labels: pd.Series, label_names: list[str], split: str, class_names: bool) -> list[int] | np.ndarray:
    """Map raw labels to ids; integer labels of a ClassLabel column are already ids."""
    if class_names:
        return [int(v) for v in labels]
    index = {name: i for i, name in enumerate(label_names)}
    if isinstance(labels.dtype, pd.CategoricalDtype):  # table rows: each category once, then its codes
        unknown = sorted({str(v) for v in labels.unique()} - set(index))
        if not unknown:
            return np.asarray([index[str(v)] if str(v) in index else -1 for v in labels.cat.categories],
                              dtype=np.int64)[labels.cat.codes.to_numpy()]
    elif len(labels) and isinstance(labels.iloc[0], tuple):
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


def stratified_indices(groups: np.ndarray, size: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (kept, held-out) row indices that `train_test_split(..., test_size=size, stratify=groups,
    random_state=seed)` picks, computed as scikit-learn's StratifiedShuffleSplit does, draw for draw, but with
    arrays where it collects Python lists: 10 million rows cost 80 MB, not 400. A `ValueError` as it raises."""
    n_train, n_test = split_sizes(len(groups), size)
    classes, codes, class_counts = np.unique(groups, return_inverse=True, return_counts=True)
    if class_counts.min() < 2 or n_train < len(classes) or n_test < len(classes):
        raise ValueError("too few rows of a class, or fewer rows than classes, to stratify")
    class_indices = np.split(np.argsort(codes, kind="stable"), np.cumsum(class_counts)[:-1])
    rng = np.random.RandomState(seed)  # scikit-learn's check_random_state(seed)
    n_i = approximate_mode(class_counts, n_train, rng)
    t_i = approximate_mode(class_counts - n_i, n_test, rng)
    kept, held_out = [], []
    for i in range(len(classes)):
        rows = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        kept.append(rows[:n_i[i]])
        held_out.append(rows[n_i[i]:n_i[i] + t_i[i]])
    return rng.permutation(np.concatenate(kept)), rng.permutation(np.concatenate(held_out))


def _stratified_split(frame: pd.DataFrame, size: float | int, label: str, seed: int):
    """Split off `size` rows (a share or a count), keeping class proportions where possible."""
    groups = strata(frame[label])
    try:
        kept, held_out = stratified_indices(groups.to_numpy(), size, seed)
        return frame.iloc[kept], frame.iloc[held_out]
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
        if not len(texts):  # no validation split, on purpose
            continue
        present = (set(np.unique(texts.labels).tolist()) if isinstance(texts.labels, np.ndarray) else
                   {label for row in texts.labels for label in (row if isinstance(row, list) else [row])})
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
    if intends_no_validation(cfg, "validation" in frames):
        frames["validation"] = train.iloc[:0]  # trained for a fixed budget, the last epoch kept
    elif "validation" not in frames:
        share = min(cfg.validation_fraction / remaining, 0.5)
        train, frames["validation"] = _stratified_split(train, share, cfg.label_column, seed)
    frames["train"] = train
    limits = {"train": cfg.max_train_samples, "validation": cfg.max_validation_samples,
              "test": cfg.max_test_samples}
    for split, limit in limits.items():
        if limit is not None and len(frames[split]) > limit:
            frames[split], _ = _stratified_split(frames[split], len(frames[split]) - limit, cfg.label_column, seed)
    if cfg.examples_per_class is not None:
        frames["train"] = train.iloc[sample_per_class(train[cfg.label_column].tolist(), cfg.examples_per_class, seed)]
    frames = {split: frames[split].reset_index(drop=True) for split in SPLITS}
    labels = {split: label_set(frame[cfg.label_column]) for split, frame in frames.items()}
    sampled_by = ("max_train_samples", "examples_per_class") if cfg.examples_per_class != 0 else ()  # 0: none
    for option in sampled_by:
        check_sample_keeps_labels(label_set(train[cfg.label_column]), labels, getattr(cfg, option), "example of",
                                  option)
    return frames


def drop_shared_texts(frames: dict[str, pd.DataFrame], cfg: DataConfig) -> tuple[dict[str, pd.DataFrame],
                                                                                 dict[str, int]]:
    """Drop held-out examples whose text (and pair) repeats a training one, or a test one for validation
    (see `drop_repeats`); returns the frames and the count dropped per split."""
    columns = [cfg.text_column] + ([cfg.text_pair_column] if cfg.text_pair_column else [])
    keys = {split: [dedup_key(*row) for row in frame[columns].itertuples(index=False, name=None)]
            for split, frame in frames.items()}
    keep, dropped = drop_repeats(keys, cfg, "text")
    return {split: frame.loc[np.asarray(keep[split], dtype=bool)].reset_index(drop=True)
            for split, frame in frames.items()}, dropped


def load_classification(cfg: DataConfig, seed: int, multilabel: bool = False,
                        source: tuple[dict[str, pd.DataFrame], dict[str, list[str]], str] | None = None,
                        single_class: bool = False) -> ClassificationData:
    """Read, clean, split and label-encode the configured data (or the in-memory `source`: frames by
    split, ClassLabel names, description); refuse data that cannot be learned.

    With `multilabel`, each example's label cell is a list of labels (see `label_lists`). Files that
    `data.backend` holds as Arrow tables go through `load_tables`: the same steps on row ids. `single_class`
    allows training data of one class (a continual stage adding a class to those learned before).
    """
    if source is not None and cfg.backend == "arrow":
        raise DataError("data.backend=arrow reads data files (data.train_file=...); the data= given in Python is "
                        "already in memory: leave data.backend unset, or save it as parquet and pass its path")
    if source is None and use_arrow(cfg, multilabel):
        return load_tables(cfg, seed, single_class)
    raw, class_names, source = source or read_source(cfg)
    if "train" not in raw:
        raise DataError(f"the data has no 'train' split (found: {', '.join(raw)})")
    frames = {split: _columns(frame, cfg, split, multilabel) for split, frame in raw.items() if split in SPLITS}
    if multilabel:
        frames = {split: label_lists(frame, cfg, split) for split, frame in frames.items()}
    check_usable_rows(frames["train"])
    raw_train = frames["train"]
    frames, dropped = drop_shared_texts(make_splits(frames, cfg, seed), cfg)

    def text_split(split: str, frame: pd.DataFrame, labels) -> TextSplit:
        pairs = frame[cfg.text_pair_column].astype(str).tolist() if cfg.text_pair_column else None
        return TextSplit(frame[cfg.text_column].astype(str).tolist(), labels, pairs)

    label_names, splits = labeled(frames, raw_train, cfg, "validation" in raw, class_names.get(cfg.label_column),
                                  text_split, multilabel or single_class)
    return ClassificationData(label_names=label_names, source=source, multilabel=multilabel, dropped_repeats=dropped,
                              **splits)


def load_tables(cfg: DataConfig, seed: int, single_class: bool = False) -> ClassificationData:
    """`load_classification` of files held as memory-mapped Arrow tables (`data/arrow.py`): the same cleaning, splits,
    label order and checks on a narrow frame of label and row id per row (dedup by 64-bit hashes); the texts stay in
    the tables."""
    paths = arrow.data_files(cfg)
    tables = {split: arrow.read_table(path, cfg, split) for split, path in paths.items()}
    categories = arrow.label_categories(tables)
    frames = {split: arrow.narrow_frame(table, cfg.label_column, split, categories) for split, table in tables.items()}
    check_usable_rows(frames["train"])
    made = make_splits(frames, cfg, seed)
    source_of = {split: split if split in frames else "train" for split in SPLITS}  # the file a split's rows index
    keys = {split: arrow.dedup_keys(tables[source_of[split]], frame["__row"].to_numpy())
            for split, frame in made.items()}
    keep, dropped = drop_repeats(keys, cfg, "text")
    made = {split: frame.loc[np.asarray(keep[split], dtype=bool)].reset_index(drop=True)
            for split, frame in made.items()}

    def text_split(split: str, frame: pd.DataFrame, labels) -> TextSplit:
        table, rows = tables[source_of[split]], frame["__row"].to_numpy()
        return TextSplit(table.view("text", rows), np.asarray(labels, dtype=np.int64),
                         table.view("text_pair", rows) if cfg.text_pair_column else None)

    label_names, splits = labeled(made, frames["train"], cfg, "validation" in frames, None, text_split,
                                  one_class_ok=single_class)
    del frames, made, keys, keep
    arrow.release_memory()  # what splitting millions of rows freed
    sizes = ", ".join(f"{path} ({files.megabytes(path.stat().st_size)} MB)" for path in paths.values())
    return ClassificationData(label_names=label_names, source=f"local files as Arrow tables: {sizes}",
                              dropped_repeats=dropped, **splits)


def check_usable_rows(train: pd.DataFrame) -> None:
    if len(train) < 3:
        raise DataError(f"the training data has {len(train)} usable rows; need more")


def labeled(frames: dict[str, pd.DataFrame], raw_train: pd.DataFrame, cfg: DataConfig, validation_given: bool,
            class_names: list[str] | None, text_split, one_class_ok: bool = False
            ) -> tuple[list[str], dict[str, TextSplit]]:
    """The label names and the splits (`text_split(split, frame, label ids)`), once every split is checked: not
    empty unless meant to be, no unknown label, two classes to learn (unless `one_class_ok`: multi-label data, a
    continual stage)."""
    # with no labeled example (zero-shot, templated examples), the labels are those the data has
    named_by = raw_train if cfg.examples_per_class == 0 else frames["train"]
    label_names = label_names_for(named_by[cfg.label_column], cfg, class_names)
    no_validation = intends_no_validation(cfg, validation_given)
    splits = {}
    for split, frame in frames.items():
        intended = (split == "validation" and no_validation) or (split == "train" and cfg.examples_per_class == 0)
        if frame.empty and not intended:
            fix = f"change data.{split}_fraction" if split != "train" else "lower data.test_fraction"
            raise DataError(f"the {split} split is empty; give more data or {fix}")
        labels = encode_labels(frame[cfg.label_column], label_names, split, class_names=class_names is not None)
        splits[split] = text_split(split, frame, labels)
    train_labels = splits["train"].labels
    if not one_class_ok and len(np.unique(np.asarray(train_labels))) < 2 and cfg.examples_per_class != 0:
        raise DataError(
            f"the training data has a single class ('{label_names[int(train_labels[0])]}'); "
            "a classifier needs at least two"
        )
    report_missing_classes(splits, label_names)
    return label_names, splits
