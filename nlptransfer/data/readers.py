"""The readers of labeled data: tables (csv, tsv, json, jsonl, parquet) in one registry by suffix,
packaged corpora, hub datasets; with the checks every reader shares (a readable file, a unique header,
a separator that matches the suffix). Token classification's CoNLL/JSON readers build on them."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from .. import catalog
from ..errors import DataError

logger = logging.getLogger(__name__)


AS_WRITTEN = {"dtype": str, "keep_default_na": False, "na_values": [""]}
"""Table cells read as written, as data.backend=arrow reads them: strings, only an empty cell missing (pandas would
make the labels and texts None, null, NA, N/A, nan ... missing, and 007 the number 7)."""
JSON_AS_WRITTEN = {"dtype": False, "convert_dates": False}
"""JSON values as typed in the file: only null is missing; the string "007" stays a string."""

READERS = {
    ".csv": lambda p, encoding: pd.read_csv(p, encoding=encoding, **AS_WRITTEN),
    ".tsv": lambda p, encoding: pd.read_csv(p, sep="\t", encoding=encoding, **AS_WRITTEN),
    ".json": lambda p, encoding: _read_json(p, encoding),
    ".jsonl": lambda p, encoding: pd.read_json(p, lines=True, encoding=encoding, **JSON_AS_WRITTEN),
    ".parquet": lambda p, encoding: pd.read_parquet(p),
}


def _read_json(path: Path, encoding: str) -> pd.DataFrame:
    # A .json file is either one array of records or (often) JSON lines.
    try:
        return pd.read_json(path, encoding=encoding, **JSON_AS_WRITTEN)
    except ValueError:
        return pd.read_json(path, lines=True, encoding=encoding, **JSON_AS_WRITTEN)


def read_table(path: str | Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a csv, tsv, json, jsonl or parquet file into a DataFrame."""
    path = Path(path)
    check_file(path)
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
        fix = separator_hint(path, first_line(path, encoding)) or "fix the file's format"
        raise DataError(f"cannot parse {path}: {str(e).splitlines()[0]}; {fix}") from None
    except OSError as e:
        raise DataError(unreadable(path, e)) from None
    if frame.empty:
        raise DataError(f"{path} has no rows; give a file with data")
    if len(frame.columns) == 1 and (hint := separator_hint(path, str(frame.columns[0]))):
        raise DataError(f"{path} has a single column {str(frame.columns[0])!r}: {hint}")
    check_unique_header(frame, path, encoding)
    separator = TABLE_SEPARATORS.get(path.suffix.lower())
    if separator and frame.isna().to_numpy().any():  # pandas reads a short row's missing values as empty cells
        check_row_lengths(path, separator, encoding)
    return frame


class ShortRows:
    """An Arrow CSV `invalid_row_handler` that stops at a row of more or fewer values than the header, keeping a
    shorter one (pandas would fill it with empty cells; a carriage return inside an unquoted value makes two)."""

    def __init__(self):
        self.row = None

    def __call__(self, row) -> str:
        if row.actual_columns < row.expected_columns:
            self.row = row
        return "error"

    def message(self, path: Path) -> str:
        text = self.row.text if len(self.row.text) <= 40 else self.row.text[:37] + "..."
        return (f"{path} has a row with {self.row.actual_columns} of the header's {self.row.expected_columns} "
                f"columns ({text!r}); give every row all the columns (an empty value between two separators) and quote "
                "values that hold a line break or a carriage return, which end a row (pandas leaves a carriage return "
                "bare: write with to_csv(..., lineterminator='\\r\\n'))")


def check_row_lengths(path: Path, separator: str, encoding: str) -> None:
    """Refuse a csv/tsv file with a row shorter than its header, parsed as data.backend=arrow parses it."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    short = ShortRows()
    read = pcsv.ReadOptions(encoding=encoding, block_size=min(max(path.stat().st_size + 1, 2**20), 2**30))
    parse = pcsv.ParseOptions(delimiter=separator, newlines_in_values=True, invalid_row_handler=short)
    try:
        names = pcsv.open_csv(path, read_options=read, parse_options=parse).schema.names
        for _ in pcsv.open_csv(path, read_options=read, parse_options=parse, convert_options=pcsv.ConvertOptions(
                include_columns=names[:1], column_types=dict.fromkeys(names, pa.string()))):
            pass
    except pa.ArrowInvalid:
        pass  # stopped at the short row, or at a longer one (pandas refused those already)
    if short.row is not None:
        raise DataError(short.message(path))


def check_file(path: Path) -> None:
    """Refuse a path that is not a file, or that this user may not look into."""
    try:
        found = path.is_file()
    except OSError as e:  # a folder on the way that this user may not enter
        raise DataError(unreadable(path, e)) from None
    if not found:
        raise DataError(f"data file not found: {path}; check the path (data.train_file=...)")


def unreadable(path: Path, error: OSError) -> str:
    """The message for a file that exists but cannot be read (permissions, a vanished mount)."""
    if isinstance(error, PermissionError):
        return (f"cannot read {path}: permission denied; make it readable for this user (chmod a+r {path}, and a+x "
                "on its folders) or copy it")
    return f"cannot read {path}: {error.strerror or error}; check the file and the disk it is on"


def first_line(path: Path, encoding: str) -> str:
    try:
        with path.open(encoding=encoding, errors="replace") as file:
            return file.readline()
    except (OSError, LookupError):
        return ""


TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t"}


SEPARATOR_NAMES = {",": "comma", "\t": "tab", ";": "semicolon"}


def separator_hint(path: Path, header: str) -> str | None:
    """How to fix a table whose header holds another separator than its suffix says, if it does."""
    expected = TABLE_SEPARATORS.get(path.suffix.lower())
    if expected is None or expected in header:
        return None
    for separator, name in SEPARATOR_NAMES.items():
        if separator in header:
            suffix = next((s for s, sep in TABLE_SEPARATORS.items() if sep == separator), None)
            fix = (f"rename it {path.stem}{suffix}" if suffix
                   else "save it comma-separated (.csv) or tab-separated (.tsv)")
            return f"it looks {name}-separated, not {SEPARATOR_NAMES[expected]}-separated as {path.suffix} says; {fix}"
    return None


MANGLED = re.compile(r"^(.*)\.(\d+)$")


def check_unique_header(frame: pd.DataFrame, path: Path, encoding: str) -> None:
    """Refuse a csv/tsv header that names a column twice: pandas renames the second `label.1`, silently."""
    names = [str(c) for c in frame.columns]
    suspects = {m.group(1) for name in names if (m := MANGLED.match(name)) and m.group(1) in names}
    separator = TABLE_SEPARATORS.get(path.suffix.lower())
    if not suspects or separator is None:
        return
    header = pd.read_csv(path, sep=separator, header=None, nrows=1, encoding=encoding, dtype=str).iloc[0].tolist()
    twice = sorted({name for name in header if header.count(name) > 1 and name in suspects})
    if twice:
        raise DataError(f"{path}: the header names column '{twice[0]}' {header.count(twice[0])} times, which is "
                        "ambiguous; give each column its own name")


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


def load_hub_dataset(name: str, config: str | None, corpora: list[str] | tuple[str, ...] | None = None):
    """A hub dataset (a `datasets.DatasetDict`); one line naming the fixes when it cannot be loaded."""
    import datasets

    try:
        return datasets.load_dataset(name, config)
    except Exception as e:  # the hub client raises many types for "not reachable"/"not found"
        raise DataError(
            f"cannot load hub dataset '{name}'{f' ({config})' if config else ''}: "
            f"{str(e).splitlines()[0]}; check the name, your network, or use a packaged corpus "
            f"({', '.join(corpora or catalog.CORPORA)}) or data.train_file="
        ) from None


def read_hub(name: str, config: str | None) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    """A hub dataset's splits, and the label names of its ClassLabel columns."""
    return dataset_frames(load_hub_dataset(name, config))


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
