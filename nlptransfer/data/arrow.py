"""Data files larger than memory (`data.backend=arrow`): read once into memory-mapped Arrow tables, split by row ids.

A csv/tsv/jsonl/parquet file is streamed (in blocks, never whole) into an Arrow IPC file in the
cache (`$NLPTRANSFER_CACHE/tables`, else ~/.cache/nlptransfer/tables), keyed by the file's path,
size and modification time and the columns read; a rerun memory-maps it at once. Each row also
gets, while it streams, whether it is usable (a text and a label) and a 64-bit hash of its
dedup key (`splits.dedup_key`), so that held-out repeats are found by comparing integers.

The splits are then made exactly as for in-memory data (`classification.load_tables`: seeded,
stratified) on a narrow frame of row ids, label codes and hashes, and each split is a `TextSplit`
whose texts are a `TableColumn`: a view of the mapped column through its row ids. Nothing holds the
texts in Python objects; the token cache (`engine/token_cache.py`) tokenizes them in parallel
processes.

    use_arrow(cfg, multilabel=False)   # data.backend, or auto: files of 32 MB or more
    read_table(path, cfg, split)       # -> Table (memory-mapped), from the cache or streamed into it
    narrow_frame(table, ...)           # label, row id and dedup hash per usable row: what splitting needs
(`classification.load_tables` makes the splits from them.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..options import DataConfig
from ..outputs import files
from .readers import ShortRows, check_file, first_line, separator_hint, unreadable
from .splits import dedup_key

logger = logging.getLogger(__name__)

CACHE_ENV = "NLPTRANSFER_CACHE"
"""The cache folder (the frozen features' entries; tables/ and tokens/ beside them), or `off`."""
FORMAT_VERSION = 1
AUTO_BYTES = 32 * 2**20
"""data.backend=auto holds files of at least this many bytes (together) as Arrow tables."""
SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
BLOCK_BYTES = 2**20
"""Bytes a reader parses at a time: Arrow's CSV reader holds several blocks, 16 MB ones took 700 MB of 10M rows."""
OFF = ("off", "0", "false", "no", "")


def cache_root(kind: str) -> Path | None:
    """The folder of one kind of cache entry (`tables`, `tokens`): under $NLPTRANSFER_CACHE, else ~/.cache/nlptransfer;
    None when the cache is off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None and chosen.strip().lower() in OFF:
        return None
    return Path(chosen or "~/.cache/nlptransfer").expanduser() / kind


_SCRATCH: list[Path] = []


def scratch_folder(kind: str) -> Path:
    """Where entries go with the cache off: a temporary folder removed when the process ends (a table must be a
    file to be memory-mapped)."""
    import atexit

    folder = Path(tempfile.mkdtemp(prefix=f"nlptransfer-{kind}-"))
    if not _SCRATCH:
        atexit.register(lambda: [shutil.rmtree(path, ignore_errors=True) for path in _SCRATCH])
    _SCRATCH.append(folder)
    return folder


def data_files(cfg: DataConfig) -> dict[str, Path]:
    return {split: Path(path) for split, path in
            (("train", cfg.train_file), ("validation", cfg.validation_file), ("test", cfg.test_file)) if path}


def use_arrow(cfg: DataConfig, multilabel: bool = False) -> bool:
    """Whether the configured files are read as Arrow tables: `data.backend`, or `auto` (single-label csv, tsv,
    jsonl or parquet files of 32 MB or more together)."""
    paths = data_files(cfg)
    if cfg.backend == "memory" or (cfg.backend == "auto" and (multilabel or not paths)):
        return False
    if not paths:
        raise DataError("data.backend=arrow reads local files (data.train_file=...); packaged corpora and hub "
                        "datasets use data.backend=memory")
    unsupported = [p for p in paths.values() if p.suffix.lower() not in SUFFIXES]
    if cfg.backend == "auto":
        if unsupported:
            return False
        for path in paths.values():
            check_file(path)
        return sum(p.stat().st_size for p in paths.values()) >= AUTO_BYTES
    if unsupported:
        raise DataError(f"data.backend=arrow reads {', '.join(SUFFIXES)} files, not '{unsupported[0].name}'; "
                        "convert it or use data.backend=memory")
    return True


class TableColumn(Sequence):
    """A text column of a memory-mapped Arrow table seen through row ids: a read-only sequence of strings that
    reads rows only when asked, in blocks. `key` names the table and column (the token cache's key)."""

    BLOCK = 8192

    def __init__(self, column, rows: np.ndarray, key: str = "", source: tuple[str, str] | None = None):
        self.column, self.key, self.source = column, key, source
        """`source`: (the table's IPC file, the column's name), for processes that map the table themselves."""
        self.rows = np.asarray(rows)
        if self.rows.dtype.kind not in "iu":
            self.rows = self.rows.astype(np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return TableColumn(self.column, self.rows[index], self.key, self.source)
        return self.column[int(self.rows[index])].as_py()

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self.rows), self.BLOCK):
            yield from self.block(start, start + self.BLOCK)

    def block(self, start: int, end: int) -> list[str]:
        """Rows `start` to `end` of the view, as strings."""
        return take_rows(self.column, self.rows[start:end])

    def __reduce__(self):  # to another process: the file and row ids, never the mapped data
        return mapped_column, (self.source, self.rows, self.key)

    def take(self, indices) -> TableColumn:
        """The view of some of its rows (positions in the view)."""
        return TableColumn(self.column, self.rows[np.asarray(indices, dtype=np.int64)], self.key, self.source)

    def digest(self) -> str:
        """What identifies the view: its table and column, and its row ids."""
        return hashlib.sha256(self.key.encode() + self.rows.astype(np.int64).tobytes()).hexdigest()


def take_rows(column, rows: np.ndarray) -> list:
    """The values of a chunked column at `rows`, as Python objects, reading each chunk for its own rows.

    (`ChunkedArray.take` first concatenates every chunk: a copy of the whole column for each batch.)
    """
    import pyarrow as pa

    rows = np.asarray(rows, dtype=np.int64)
    if column.num_chunks == 1:
        return column.chunk(0).take(pa.array(rows)).to_pylist()
    offsets = np.cumsum([0] + [len(chunk) for chunk in column.chunks])
    which = np.searchsorted(offsets, rows, side="right") - 1
    values: list = [None] * len(rows)
    for chunk in np.unique(which):
        positions = np.flatnonzero(which == chunk)
        for position, value in zip(positions.tolist(), column.chunk(int(chunk)).take(
                pa.array(rows[positions] - offsets[chunk])).to_pylist()):
            values[position] = value
    return values


def mapped_column(source: tuple[str, str], rows: np.ndarray, key: str) -> TableColumn:
    """A `TableColumn` in this process, mapping the table file anew (unmapped with it: a worker's resident pages are
    those of its task's rows only)."""
    import pyarrow as pa

    path, name = source
    return TableColumn(pa.ipc.open_file(pa.memory_map(path)).read_all().column(name), rows, key, source)


@dataclass
class Table:
    """One data file as a memory-mapped Arrow table: `text`, `text_pair`, `label` (strings), `usable`, `dedup`."""

    table: object
    """The `pyarrow.Table` (memory-mapped)."""
    path: Path
    key: str
    """What the table was read from (file, size, time, columns): part of the token cache's key."""

    def view(self, name: str, rows: np.ndarray) -> TableColumn:
        return TableColumn(self.table.column(name), rows, f"{self.key}:{name}", (str(self.path), name))


def table_key(path: Path, cfg: DataConfig) -> dict:
    stat = path.stat()
    return {"format": FORMAT_VERSION, "file": str(path.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns,
            "columns": [cfg.text_column, cfg.text_pair_column, cfg.label_column], "encoding": cfg.encoding}


def read_table(path: Path, cfg: DataConfig, split: str) -> Table:
    """The file as a memory-mapped table, from the cache or streamed into it now."""
    import pyarrow as pa

    check_file(path)
    key = json.dumps(table_key(path, cfg), sort_keys=True)
    root = cache_root("tables") or scratch_folder("tables")
    entry = root / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.arrow"
    if entry.is_file():
        try:
            table = pa.ipc.open_file(pa.memory_map(str(entry))).read_all()
            if (table.schema.metadata or {}).get(b"nlptransfer") == key.encode():
                logger.info("%s data: the Arrow table from the cache (%s)", split, entry)
                return Table(table, entry, key)
            logger.warning("ignoring the table cache entry %s: written for another file; reading the file again",
                           entry)
        except (OSError, pa.ArrowException) as e:  # truncated or foreign: rebuilt, never trusted
            logger.warning("ignoring the unreadable table cache entry %s (%s); reading the file again", entry, e)
    rows = convert(path, cfg, split, entry, key)
    release_memory()  # the blocks read on the way
    logger.info("%s data: %d rows of %s streamed into the Arrow table %s", split, rows, path, entry)
    return Table(pa.ipc.open_file(pa.memory_map(str(entry))).read_all(), entry, key)


def convert(path: Path, cfg: DataConfig, split: str, entry: Path, key: str) -> int:
    """Stream the file's columns into the IPC file `entry` (atomically), with each row's `usable` flag and dedup
    hash; returns the row count."""
    import pyarrow as pa

    names = {"text": cfg.text_column, "label": cfg.label_column}
    if cfg.text_pair_column:
        names["text_pair"] = cfg.text_pair_column
    fields = [pa.field(name, pa.string()) for name in names] + [pa.field("usable", pa.bool_()),
                                                                 pa.field("dedup", pa.uint64())]
    schema = pa.schema(fields, metadata={"nlptransfer": key})
    block = BLOCK_BYTES
    try:
        while True:
            count = 0
            try:
                with files.writing(entry) as temporary, pa.OSFile(str(temporary), "wb") as sink, \
                        pa.ipc.new_file(sink, schema) as writer:
                    for batch in record_batches(path, cfg, split, list(names.values()), block):
                        columns = {name: string_column(batch, column, split, path) for name, column in names.items()}
                        writer.write_batch(pa.record_batch(list(columns.values()) + row_checks(columns),
                                                           schema=schema))
                        count += batch.num_rows
                break
            except RowOverBlock:  # a row longer than the block: read the file again in blocks that hold it
                if block >= 2**30:
                    raise DataError(f"{path} has a row of over 1 GB; shorten it") from None
                block *= 64
    except OSError as e:
        if files.is_disk_full(e):
            raise DataError(f"no space left on the disk of {entry.parent} for the Arrow table of {path}; free some, "
                            f"or point {CACHE_ENV} at a larger disk") from None
        raise
    if not count:
        raise DataError(f"{path} has no rows; give a file with data")
    return count


class RowOverBlock(Exception):
    """A csv row longer than the reader's block (Arrow's 'straddling object')."""


def record_batches(path: Path, cfg: DataConfig, split: str, columns: list[str], block: int = BLOCK_BYTES):
    """The file's `columns` in record batches of `block` bytes, whatever its format; one line for a bad file."""
    import pyarrow as pa

    suffix = path.suffix.lower()
    short = ShortRows()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            source = pq.ParquetFile(path)
            check_columns(source.schema_arrow.names, columns, cfg, split, path)
            yield from source.iter_batches(batch_size=65536, columns=columns)
            return
        if suffix == ".jsonl":
            import pyarrow.json as pj

            if cfg.encoding.replace("-", "").lower() != "utf8":
                raise DataError(f"data.backend=arrow reads jsonl files as UTF-8 (data.encoding={cfg.encoding}); "
                                "convert the file to UTF-8 or use data.backend=memory")
            reader = pj.open_json(path, read_options=pj.ReadOptions(block_size=block))
        else:
            import pyarrow.csv as pcsv

            utf8 = cfg.encoding.replace("-", "").replace("_", "").lower() == "utf8"  # else a Python transcoder
            read = pcsv.ReadOptions(encoding="utf8" if utf8 else cfg.encoding, block_size=block)
            parse = pcsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",", newlines_in_values=True,
                                      invalid_row_handler=short)
            header = pcsv.open_csv(path, read_options=read, parse_options=parse).schema.names
            check_columns(header, columns, cfg, split, path)
            # only an empty cell is null (Arrow's default nulls include NA, null, nan), as readers.AS_WRITTEN reads
            convert_options = pcsv.ConvertOptions(include_columns=columns, strings_can_be_null=True, null_values=[""],
                                                  column_types={column: pa.string() for column in columns})
            reader = pcsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert_options)
        checked = False
        for batch in reader:
            if not checked:
                check_columns(batch.schema.names, columns, cfg, split, path)
                checked = True
            yield batch.select(columns)
    except LookupError:
        raise DataError(f"unknown data.encoding '{cfg.encoding}'; use e.g. utf-8 or latin-1") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not valid {e.encoding} text; convert it to UTF-8 or set data.encoding (e.g. "
                        "data.encoding=latin-1)") from None
    except pa.ArrowInvalid as e:
        message = str(e).splitlines()[0]
        if "invalid UTF8" in message:
            raise DataError(not_utf8(path)) from None
        if "straddl" in message or "block size" in message:
            raise RowOverBlock from None
        if "Empty CSV file" in message or "Empty file" in message:
            raise DataError(f"{path} is empty; give a file with a header and rows") from None
        if short.row is not None:
            raise DataError(short.message(path)) from None
        fix = separator_hint(path, first_line(path, "utf-8")) or "fix the file's format"
        raise DataError(f"cannot parse {path}: {message}; {fix}") from None
    except OSError as e:
        raise DataError(unreadable(path, e)) from None


def not_utf8(path: Path) -> str:
    """The message for a file that is not UTF-8, with the first bad byte and its offset (read in blocks)."""
    import codecs

    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    with path.open("rb") as file:
        while block := file.read(BLOCK_BYTES):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                return (f"{path} is not valid utf-8 text (byte 0x{block[e.start]:02x} at offset {offset + e.start}); "
                        "convert it to UTF-8 or set data.encoding (e.g. data.encoding=latin-1)")
            offset += len(block)
    return f"{path} is not valid utf-8 text; convert it to UTF-8 or set data.encoding (e.g. data.encoding=latin-1)"


def check_columns(found: list[str], wanted: list[str], cfg: DataConfig, split: str, path: Path) -> None:
    """Refuse a file without a configured column, or naming one twice (the same messages as in memory)."""
    options = {cfg.text_column: "text_column", cfg.label_column: "label_column", cfg.text_pair_column:
               "text_pair_column"}
    for column in wanted:
        if column not in found:
            hint = separator_hint(path, ",".join(found)) if len(found) == 1 else None
            raise DataError(f"{split} data has no column '{column}' (data.{options[column]}); columns found: "
                            f"{', '.join(found)}" + (f"; {hint}" if hint else ""))
        if found.count(column) > 1:
            raise DataError(f"{path}: the header names column '{column}' {found.count(column)} times, which is "
                            "ambiguous; give each column its own name")


def string_column(batch, column: str, split: str, path: Path):
    """A column as strings: numbers become their text (labels 1, 2 stay 1, 2); lists and records are refused."""
    import pyarrow as pa

    values = batch.column(column)
    if pa.types.is_string(values.type):
        return values
    if pa.types.is_large_string(values.type) or pa.types.is_integer(values.type) or \
            pa.types.is_floating(values.type) or pa.types.is_boolean(values.type) or pa.types.is_null(values.type):
        return values.cast(pa.string())
    raise DataError(f"the {split} data's column '{column}' in {path} holds {values.type} values, not texts or "
                    "labels; give one string per example (and one label)")


def row_checks(columns: dict) -> list:
    """Per row: usable (a non-blank text, pair and label) and the 64-bit hash of its dedup key."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import xxhash

    usable = None
    for values in columns.values():
        present = pc.and_(pc.is_valid(values), pc.not_equal(pc.utf8_trim_whitespace(values), ""))
        usable = present if usable is None else pc.and_(usable, present)
    usable = pc.fill_null(usable, False)
    texts = [columns[name].to_pylist() for name in ("text", "text_pair") if name in columns]
    hashes = [xxhash.xxh64_intdigest("\x1f".join(dedup_key(*(t or "" for t in row))).encode("utf-8", "replace"))
              for row in zip(*texts)]
    return [usable, pa.array(hashes, type=pa.uint64())]


def label_values(strings: list[str]) -> list:
    """Label texts as the values pandas would read: integers when every label is one (1, 2, 10 sort as numbers;
    1.0 is 1), else the texts."""
    def number(text: str):
        try:
            return int(text)
        except ValueError:
            value = float(text)
            if value % 1:
                raise
            return int(value)

    try:
        return [number(s) for s in strings]
    except (ValueError, OverflowError):
        return list(strings)


def narrow_frame(table: Table, label_column: str, split: str, categories: list) -> pd.DataFrame:
    """The usable rows of a table as (label, row id): what splitting needs, a few bytes a row and no texts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    usable = table.table.column("usable").to_numpy()
    rows = np.flatnonzero(usable).astype(np.int32 if len(usable) < 2**31 else np.int64)
    if len(rows) < len(usable):
        logger.warning("%s: dropped %d rows with an empty text or label", split, len(usable) - len(rows))
    codes = pc.index_in(table.table.column("label"), value_set=pa.array(categories[1], type=pa.string()))
    codes = codes.to_numpy(zero_copy_only=False)[rows]  # read as a whole: a take would copy the column per chunk
    mapping = np.asarray(categories[2], dtype=np.int8 if len(categories[0]) < 128 else np.int32)
    return pd.DataFrame({label_column: pd.Categorical.from_codes(mapping[codes.astype(np.int64)],
                                                                  categories=categories[0]),
                         "__row": rows})


def release_memory() -> None:
    """Give the memory freed after a large step back to the system: Arrow's pool, and glibc's heap, which keeps the
    freed arrays of splitting millions of rows (a no-op where the C library is not glibc)."""
    import ctypes
    import ctypes.util

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def dedup_keys(table: Table, rows: np.ndarray) -> np.ndarray:
    """The 64-bit dedup hashes of some rows of a table."""
    return table.table.column("dedup").to_numpy()[rows]


def label_categories(tables: dict[str, Table]) -> tuple[list, list[str], list[int]]:
    """(label values, every distinct label text, the value index of each text) over all the files' usable rows."""
    import pyarrow.compute as pc

    texts = set()
    for t in tables.values():  # chunk by chunk: filtering the whole column would copy it
        for labels, usable in zip(t.table.column("label").chunks, t.table.column("usable").chunks):
            texts.update(pc.unique(pc.filter(labels, usable)).to_pylist())
    texts = sorted(texts)
    values = label_values(texts)
    unique = sorted(set(values))  # the order numpy gives the values: the codes stratify as the values would
    return unique, texts, [unique.index(v) for v in values]
