"""What every task's splits share: held-out splits carved seeded from train, and repeats across
splits found by a normalized key (case and white space ignored), counted and dropped."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from ..options import DataConfig

logger = logging.getLogger(__name__)


SPLITS = ("train", "validation", "test")


def split_sizes(n_rows: int, size: float | int) -> tuple[int, int]:
    """The (kept, held-out) row counts of scikit-learn's `train_test_split(test_size=size)`: a share rounded up, or
    a count; a `ValueError` where it raises one (a part left empty)."""
    import math

    held_out = math.ceil(size * n_rows) if isinstance(size, float) else int(size)
    if not 0 < held_out < n_rows:
        raise ValueError(f"cannot hold out {size} of {n_rows} rows and keep some")
    return n_rows - held_out, held_out


def approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of `n_draws` to take from each class: the approximate mode of the multivariate hypergeometric,
    ties broken by `rng`, as stratified splits draw them.

    Copied from scikit-learn's private `sklearn.utils.extmath._approximate_mode` (`sklearn.utils` before 1.5),
    unchanged so that the draws stay scikit-learn's; BSD-3-Clause, Copyright (c) 2007-2024 The scikit-learn
    developers.
    """
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)  # never more than n_draws, likely fewer
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:  # the rest by the largest left-over share, ties broken at random
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (indices,) = np.where(remainder == value)
            add_now = min(len(indices), need_to_add)
            floored[rng.choice(indices, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def check_distinct_columns(options: dict[str, str | None]) -> None:
    """Refuse two data options naming one column: `data.text_column=label` would read the label as the text."""
    seen: dict[str, str] = {}
    for option, column in options.items():
        if column is not None and column in seen:
            raise ConfigError(f"data.{seen[column]} and data.{option} both name the column '{column}'; each needs "
                              "a column of its own: point one of them at another column")
        seen.setdefault(column, option)


def check_sample_keeps_labels(labels: set, present: dict[str, set], limit: int | None, unit: str,
                              option: str = "max_train_samples") -> None:
    """Refuse a `data.max_train_samples` (or `option`) sample that lost labels the held-out splits have: they
    could not be learned.

    `labels` are those of the whole training split, `present` those of each split after sampling.
    """
    lost = sorted(map(str, (labels - present["train"]) & (present["validation"] | present["test"])))
    if limit is not None and lost:
        least = f" (at least {len(labels)})" if option == "max_train_samples" else ""
        raise DataError(f"the training data is too small: data.{option}={limit} keeps no {unit} "
                        f"{', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}, which the held-out splits have; "
                        f"raise data.{option}{least} or leave it unset")


def intends_no_validation(cfg: DataConfig, given: bool) -> bool:
    """Whether a run has no validation split on purpose: the source gives none (`given` is False) and
    `data.validation_fraction=0` or `data.examples_per_class` (few-shot data: nothing to spare) is set."""
    return not given and (cfg.validation_fraction <= 0 or cfg.examples_per_class is not None)


def sample_per_class(labels: Sequence[Hashable], n: int, seed: int) -> list[int]:
    """The sorted indices of a seeded, stratified sample of exactly `n` rows per class.

    `labels` holds one label per row; a multi-label row (a tuple of labels) counts for its rarest
    label (fewest rows, then the smallest name), as the splits are stratified. The sample depends on
    `labels`, `n` and `seed` alone (its own numpy generator, not the global RNG), so a benchmark gets
    the same rows for every method; each class's rows are permuted once, so for one seed the sample
    of `n` rows is part of the sample of more. A class with fewer than `n` rows is a `DataError`.
    """
    rows = list(labels)
    multilabel = bool(rows) and isinstance(rows[0], tuple)
    if multilabel:
        counts: dict = {}
        for row in rows:
            for label in row:
                counts[label] = counts.get(label, 0) + 1
        rows = [min(row, key=lambda label: (counts[label], str(label))) for row in rows]
    by_class: dict = {}
    for index, label in enumerate(rows):
        by_class.setdefault(label, []).append(index)
    rarest = min(by_class, key=lambda label: (len(by_class[label]), str(label)), default=None)
    if rarest is not None and len(by_class[rarest]) < n:
        has = (f"label '{rarest}' is the rarest label of only {len(by_class[rarest])}" if multilabel
               else f"class '{rarest}' has only {len(by_class[rarest])}")
        raise DataError(f"data.examples_per_class={n} but {has} training examples; set "
                        f"data.examples_per_class={len(by_class[rarest])} or less")
    rng = np.random.default_rng(seed)
    chosen = [index for label in sorted(by_class, key=lambda label: (str(label), type(label).__name__))
              for index in rng.permutation(by_class[label])[:n].tolist()]
    return sorted(chosen)


def dedup_key(*texts) -> tuple[str, ...]:
    """What two examples share when they repeat each other: their texts stripped, white space collapsed, casefolded.

    Copies that differ only so tokenize alike for an uncased model, and nearly so for a cased one.
    """
    return tuple(" ".join(str(text).split()).casefold() for text in texts)


def repeats(keys: dict[str, list]) -> dict[str, list[str | None]]:
    """Per held-out example, the split it repeats, if any: test against training; validation against training,
    then test (the test split is kept whole: it is what the run reports)."""
    if isinstance(keys["train"], np.ndarray):  # hashes of table rows (data/arrow.py): compared sorted, not as sets
        in_train = {split: contained(keys[split], keys["train"]) for split in ("test", "validation")}
        in_test = contained(keys["validation"], keys["test"])
        return {"test": ["training" if hit else None for hit in in_train["test"]],
                "validation": ["training" if hit else "test" if test_hit else None
                               for hit, test_hit in zip(in_train["validation"], in_test)]}
    train, test = set(keys["train"]), set(keys["test"])
    return {"test": ["training" if key in train else None for key in keys["test"]],
            "validation": ["training" if key in train else "test" if key in test else None
                           for key in keys["validation"]]}


def contained(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per value, whether `reference` holds it: by sorting and binary search (numpy's `isin` takes 20x longer on
    8 million 64-bit hashes)."""
    if not len(reference):
        return np.zeros(len(values), dtype=bool)
    ordered = np.sort(reference)
    found = np.minimum(np.searchsorted(ordered, values), len(ordered) - 1)
    return ordered[found] == values


def drop_repeats(keys: dict[str, list], cfg: DataConfig, unit: str) -> tuple[dict[str, list[bool]], dict[str, int]]:
    """Which examples each split keeps, and how many it drops, once held-out repeats are counted (and logged).

    A held-out example that repeats a training one measures memory, not generalization; a validation
    example that repeats a test one lets the choice of the best epoch peek at the test split.
    `data.dedup_across_splits=false` counts them and keeps them. `unit` names an example ("text").
    """
    keep = {"train": [True] * len(keys["train"])}
    dropped = {"train": 0}
    for split, found in repeats(keys).items():
        for source in ("training", "test"):
            if count := found.count(source):
                action = "dropped" if cfg.dedup_across_splits else "kept (data.dedup_across_splits=false)"
                logger.info("%d %s examples repeat a %s %s (ignoring case and white space): %s", count, split,
                            source, unit, action)
        if cfg.dedup_across_splits and found and None not in found:
            raise DataError(all_repeats_message(split, found, dropped.get("test", 0), len(keys["test"])))
        keep[split] = [source is None or not cfg.dedup_across_splits for source in found]
        dropped[split] = keep[split].count(False)
    return keep, {split: dropped[split] for split in SPLITS}


def all_repeats_message(split: str, found: list[str], test_repeats: int, test_size: int) -> str:
    """Why a held-out split would be empty; for validation, also how much of the test split repeats training."""
    sources = " or ".join(sorted(set(found)))
    also = (f", and {test_repeats} of the {test_size} test examples occur in training"
            if split == "validation" and test_repeats else "")
    return (f"every {split} example also occurs in {sources} (ignoring case and white space){also}; give {split} "
            "data that differs from it, or set data.dedup_across_splits=false")
