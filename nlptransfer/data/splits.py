"""What every task's splits share: held-out splits carved seeded from train, and repeats across
splits found by a normalized key (case and white space ignored), counted and dropped."""

from __future__ import annotations

import logging

from ..errors import ConfigError, DataError
from ..options import DataConfig

logger = logging.getLogger(__name__)


SPLITS = ("train", "validation", "test")


def check_distinct_columns(options: dict[str, str | None]) -> None:
    """Refuse two data options naming one column: `data.text_column=label` would read the label as the text."""
    seen: dict[str, str] = {}
    for option, column in options.items():
        if column is not None and column in seen:
            raise ConfigError(f"data.{seen[column]} and data.{option} both name the column '{column}'; each needs "
                              "a column of its own: point one of them at another column")
        seen.setdefault(column, option)


def check_sample_keeps_labels(labels: set, present: dict[str, set], limit: int | None, unit: str) -> None:
    """Refuse a `data.max_train_samples` sample that lost labels the held-out splits have: they could not be learned.

    `labels` are those of the whole training split, `present` those of each split after sampling.
    """
    lost = sorted(map(str, (labels - present["train"]) & (present["validation"] | present["test"])))
    if limit is not None and lost:
        raise DataError(f"the training data is too small: data.max_train_samples={limit} keeps no {unit} "
                        f"{', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}, which the held-out splits have; "
                        f"raise data.max_train_samples (at least {len(labels)}) or leave it unset")


def dedup_key(*texts) -> tuple[str, ...]:
    """What two examples share when they repeat each other: their texts stripped, white space collapsed, casefolded.

    Copies that differ only so tokenize alike for an uncased model, and nearly so for a cased one.
    """
    return tuple(" ".join(str(text).split()).casefold() for text in texts)


def repeats(keys: dict[str, list]) -> dict[str, list[str | None]]:
    """Per held-out example, the split it repeats, if any: test against training; validation against training,
    then test (the test split is kept whole: it is what the run reports)."""
    train, test = set(keys["train"]), set(keys["test"])
    return {"test": ["training" if key in train else None for key in keys["test"]],
            "validation": ["training" if key in train else "test" if key in test else None
                           for key in keys["validation"]]}


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
