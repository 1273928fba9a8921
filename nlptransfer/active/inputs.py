"""The loop's input files: the pool of unlabeled texts, labeled examples (a start, an oracle, a test set), checked
before anything is written: a missing column, an empty pool, a label that is not a label name are one line each."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import DataError

logger = logging.getLogger("nlptransfer")

SEPARATOR = "|"
"""Between the labels of a multi-label cell in csv files."""


def read_frame(path: str | Path, what: str):
    """A table file as a DataFrame (a .txt file: one text a line, column `text`)."""
    import pandas as pd

    from ..data.readers import read_table

    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise DataError(f"{what}={path} is not a file; give the path of a .txt or table file")
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        return pd.DataFrame({"text": [line for line in lines if line]})
    return read_table(path)


def column(frame, path: str | Path, name: str, what: str, option: str) -> list:
    if name not in frame.columns:
        raise DataError(f"{what}={path} has no column '{name}' (its columns: "
                        f"{', '.join(map(str, frame.columns))}); set {option}=<the column>")
    return frame[name].tolist()


def read_pool(path: str | Path, text_column: str) -> list[str]:
    """The pool's texts, blank ones dropped and repeats dropped (said); an empty pool is a DataError."""
    frame = read_frame(path, "pool")
    texts = [str(text).strip() for text in column(frame, path, text_column, "pool", "text_column")
             if isinstance(text, str) and text.strip()]
    unique = list(dict.fromkeys(texts))
    if not unique:
        raise DataError(f"pool={path} holds no text in column '{text_column}'; give a file of unlabeled texts")
    if len(unique) < len(texts):
        logger.info("the pool repeats %d texts: each is asked once", len(texts) - len(unique))
    return unique


def parse_label(value, label_names: list[str], multilabel: bool, where: str):
    """A label cell as the loop stores it (a name, or a list of names for multi-label); None for an empty cell; a name
    that is not a label name is a DataError naming `where`."""
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        return None
    if multilabel:
        given = value if isinstance(value, list) else [part.strip() for part in str(value).split(SEPARATOR)]
        given = [str(name) for name in given if str(name).strip()]
    else:
        given = [str(value).strip()]
    unknown = [name for name in given if name not in label_names]
    if unknown:
        raise DataError(f"{where}: '{unknown[0]}' is not a label name ({', '.join(label_names)}); fix it and rerun "
                        "(nothing was added; every label given before is kept)")
    return sorted(set(given), key=label_names.index) if multilabel else given[0]


def read_labeled(path: str | Path, text_column: str, label_column: str, label_names: list[str], multilabel: bool,
                 what: str) -> dict[str, object]:
    """Text -> label of a labeled file, every label checked first (a bad row is named; nothing is taken)."""
    frame = read_frame(path, what)
    texts = column(frame, path, text_column, what, "text_column")
    values = column(frame, path, label_column, what, "label_column")
    labeled: dict[str, object] = {}
    for row, (text, value) in enumerate(zip(texts, values), 2):
        label = parse_label(value, label_names, multilabel, f"{what}={path} row {row}")
        if isinstance(text, str) and text.strip() and label is not None:
            labeled[text.strip()] = label
    if not labeled:
        raise DataError(f"{what}={path} holds no labeled text; give rows with a text and a label")
    return labeled
