"""Tokens of splits held as Arrow tables (`data.backend=arrow`), tokenized in parallel processes into a disk cache.

An entry is a folder of Arrow shards (`shard-00000.arrow`, ... of 100,000 texts each, in the
split's order) with `key.json` (what the tokens depend on) and `done.json` (written last: the
entry is complete). The key names the tokenizer (its class, name and a hash of its full
definition: vocabulary, normalizer, special tokens), the length settings and the data (the
table's file, size and time, the split's row ids and labels). The weights are not in it: every
checkpoint that shares a tokenizer shares its tokens, so reruns, `compare` and `curve` read them.

Each shard is made by `batches.encode_split` on its texts, so long texts, pairs and labels are
encoded exactly as in memory; `attention_mask` is not stored (all ones before padding: the
collator makes it). A shard is written to a temporary file and renamed, so a killed run leaves
whole shards, which the next run with the same key keeps. With several processes (Accelerate)
the first process of each machine writes the entry and the others wait, then all map it.

Entries go under `$NLPTRANSFER_CACHE/tokens` (~/.cache/nlptransfer/tokens); `data.token_cache=DIR`
makes DIR this data's cache (one entry per split), and refuses an entry that was made with
another tokenizer or from other data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import cached_property
from pathlib import Path

import numpy as np

from ..data.arrow import cache_root, release_memory, scratch_folder
from ..data.classification import TextSplit
from ..errors import DataError
from ..outputs import files
from .batches import EncodedSplit, encode_split

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
SHARD_ROWS = 100_000
IN_PROCESS_BELOW = 50_000
"""Fewer texts than this are tokenized in this process: starting workers would cost more than it saves."""
NOT_STORED = ("attention_mask", "example_index")


class TableSplit(EncodedSplit):
    """Tokenized rows in memory-mapped Arrow shards; a batch reads its rows from the columns, nothing more."""

    def __init__(self, table, over_limit: int, key_digest: str):
        self.table, self.over_limit, self.key_digest = table, over_limit, key_digest
        self.columns = [name for name in table.column_names if name != "document"]
        stored = table.column("document").to_numpy()
        small = np.int32 if len(stored) < 2**31 else np.int64
        self.order = np.argsort(stored, kind="stable").astype(small)
        """Row i of the split is stored row order[i] (shards hold rows in file order; a text's windows keep theirs)."""
        self.windows = len(stored) != int(stored.max(initial=-1)) + 1
        self._documents = stored[self.order].astype(small) if self.windows else None

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A batch's rows (the DataLoader asks for them together)."""
        positions = np.asarray(indices, dtype=np.int64)
        rows = self.order[positions]
        found = [{} for _ in range(len(rows))]
        for name, (starts, chunks) in self._chunks.items():
            which = np.searchsorted(starts, rows, side="right") - 1
            for values, chunk, row in zip(found, which.tolist(), (rows - starts[which]).tolist()):
                part = chunks[chunk]
                values[name] = (part[1][part[0][row]:part[0][row + 1]].tolist() if isinstance(part, tuple)
                                else part[row].item())
        return [values | {"example_index": position} for values, position in zip(found, positions.tolist())]

    @cached_property
    def _chunks(self) -> dict[str, tuple[np.ndarray, list]]:
        """Per column: where each chunk starts, and each chunk as numpy views of the mapped buffers (a list column
        as its offsets and values), so that a batch reads its rows without copying a chunk."""
        import pyarrow as pa

        views = {}
        for name in self.columns:
            column = self.table.column(name)
            starts = np.cumsum([0] + [len(chunk) for chunk in column.chunks])[:-1]
            views[name] = (starts, [(chunk.offsets.to_numpy(), chunk.values.to_numpy())
                                    if pa.types.is_list(chunk.type) else chunk.to_numpy() for chunk in column.chunks])
        return views

    @cached_property
    def lengths(self) -> np.ndarray:
        import pyarrow.compute as pc

        return pc.list_value_length(self.table.column("input_ids")).to_numpy()[self.order]

    @property
    def documents(self) -> np.ndarray:
        """The text of each row; one row per text (no windows): the rows themselves."""
        return self._documents if self.windows else np.arange(len(self), dtype=self.order.dtype)

    def digest(self) -> str:
        return self.key_digest


def tokenizer_fingerprint(tokenizer) -> dict:
    """The tokenizer's class, name and a hash of its whole definition (a fast tokenizer's JSON, else its vocabulary
    and special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # without the truncation and padding a call last set: they are per call
        definition = json.dumps({key: value for key, value in json.loads(backend.to_str()).items()
                                 if key not in ("truncation", "padding")}, sort_keys=True)
    else:
        definition = json.dumps([sorted(tokenizer.get_vocab().items()), tokenizer.all_special_tokens])
    return {"class": type(tokenizer).__name__, "name": str(tokenizer.name_or_path),
            "sha256": hashlib.sha256(definition.encode()).hexdigest()}


def token_key(split: TextSplit, tokenizer, max_length: int, long_text: str, stride: int,
              num_labels: int | None) -> dict:
    labels = np.asarray(split.labels)
    return {"format": FORMAT_VERSION, "tokenizer": tokenizer_fingerprint(tokenizer),
            "settings": {"max_length": max_length, "long_text": long_text,
                         "stride": stride if long_text == "sliding" else 0, "num_labels": num_labels},
            "data": {"texts": split.texts.digest(), "text_pairs": None if split.text_pairs is None else
                     split.text_pairs.digest(), "labels": hashlib.sha256(labels.tobytes()).hexdigest(),
                     "rows": len(split)}}


def encode_table(split: TextSplit, tokenizer, max_length: int, long_text: str = "truncate", stride: int = 0,
                 num_labels: int | None = None, *, name: str = "train", folder: str | None = None,
                 num_proc: int | None = None) -> EncodedSplit:
    """`encode_split` for a split held as a table: from the token cache, or tokenized into it now."""
    if not len(split):
        return EncodedSplit([])
    from accelerate import PartialState

    key = token_key(split, tokenizer, max_length, long_text, stride, num_labels)
    text = json.dumps(key, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()
    entry = entry_folder(digest, folder, name)
    with PartialState().local_main_process_first():  # the first process of a machine writes; the others map
        done = read_done(entry, key, folder, name)
        if done is None:
            done = build(entry, key, split, tokenizer, (max_length, long_text, stride, num_labels), num_proc)
        else:
            logger.info("%s tokens from the cache: %s", name, entry)
    return TableSplit(mapped(entry, done["shards"]), done["over_limit"], digest)


def entry_folder(digest: str, folder: str | None, name: str) -> Path:
    if folder is not None:
        return Path(folder).expanduser() / name
    return (cache_root("tokens") or scratch_folder("tokens")) / digest[:32]


def read_done(entry: Path, key: dict, folder: str | None, name: str) -> dict | None:
    """The finished entry's record, None to build it; an explicit `data.token_cache` made for other tokens is an
    error, a keyed entry that does not match is rebuilt."""
    try:
        stored = json.loads((entry / "key.json").read_text())
    except (OSError, ValueError):
        return None
    if stored != key:
        if folder is not None:
            raise DataError(mismatch(stored, key, entry, name))
        logger.warning("ignoring the token cache entry %s: made for other tokens; tokenizing again", entry)
        shutil.rmtree(entry, ignore_errors=True)
        return None
    try:
        done = json.loads((entry / "done.json").read_text())
        if all((entry / shard).is_file() for shard in done["shards"]):
            return done
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def mismatch(stored: dict, key: dict, entry: Path, name: str) -> str:
    """Why an explicit `data.token_cache` entry is not this run's, and the fix."""
    fix = f"delete {entry} or point data.token_cache at another folder"
    if stored.get("tokenizer") != key["tokenizer"]:
        made = stored.get("tokenizer") or {}
        same_name = made.get("name") == key["tokenizer"]["name"]
        return (f"data.token_cache={entry.parent} holds {name} tokens of another tokenizer ({made.get('class')} "
                f"'{made.get('name')}'{', other files' if same_name else ''}) than this run's "
                f"({key['tokenizer']['class']} '{key['tokenizer']['name']}'); {fix}")
    if stored.get("settings") != key["settings"]:
        changed = ", ".join(f"{option} {(stored.get('settings') or {}).get(option)} -> {value}"
                            for option, value in key["settings"].items()
                            if (stored.get("settings") or {}).get(option) != value)
        return f"data.token_cache={entry.parent} holds {name} tokens made with other settings ({changed}); {fix}"
    return f"data.token_cache={entry.parent} holds {name} tokens of other data (another file, split or seed); {fix}"


def mapped(entry: Path, shards: list[str]):
    import pyarrow as pa

    tables = [pa.ipc.open_file(pa.memory_map(str(entry / shard))).read_all() for shard in shards]
    return pa.concat_tables(tables)


def build(entry: Path, key: dict, split: TextSplit, tokenizer, settings: tuple, num_proc: int | None) -> dict:
    """Tokenize the split into shards (keeping whole ones a killed run left), then write done.json."""
    files.write_json(entry / "key.json", key)
    # a shard is a block of the table's rows in file order (its texts are one region of the mapped file, not
    # pages all over it); `document` keeps each row's place in the split
    by_row = np.argsort(split.texts.rows, kind="stable")
    ranges = [by_row[start:start + SHARD_ROWS] for start in range(0, len(split), SHARD_ROWS)]
    names = [f"shard-{i:05d}.arrow" for i in range(len(ranges))]
    kept = {shard: over for shard in names if (over := shard_over_limit(entry / shard)) is not None}
    labels = np.asarray(split.labels)
    todo = [(entry / shard, split.texts.take(positions),
             None if split.text_pairs is None else split.text_pairs.take(positions), labels[positions].tolist(),
             positions) for shard, positions in zip(names, ranges) if shard not in kept]
    if len(todo) < len(ranges):
        logger.info("token cache %s: %d of %d shards kept from an earlier run", entry, len(ranges) - len(todo),
                    len(ranges))
    processes = min(num_proc or min(os.cpu_count() or 1, 8), len(todo)) if len(split) >= IN_PROCESS_BELOW else 1
    logger.info("tokenizing %d texts into %s (%d process%s)", len(split), entry, processes,
                "" if processes == 1 else "es")
    try:
        if processes <= 1:
            results = [encode_shard(task, tokenizer, settings) for task in todo]
        else:
            with workers_environment(), worker_pool(processes, tokenizer, settings) as pool:
                results = list(pool.map(_worker_shard, todo))
    except OSError as e:
        if files.is_disk_full(e):
            raise DataError(f"no space left on the disk of {entry} for the token cache; free some, or point "
                            "NLPTRANSFER_CACHE (or data.token_cache) at a larger disk") from None
        raise
    counts = kept | dict(results)
    done = {"shards": names, "over_limit": int(sum(counts[name] for name in names)), "rows": len(split)}
    files.write_json(entry / "done.json", done)
    del todo, results
    release_memory()
    return done


def encode_shard(task: tuple, tokenizer, settings: tuple) -> tuple[str, int]:
    """Tokenize one shard's texts as `encode_split` does and write its columns; (shard name, texts over the limit)."""
    import pyarrow as pa

    path, texts, pairs, labels, positions = task
    max_length, long_text, stride, num_labels = settings
    encoded = encode_split(TextSplit(list(texts), labels, None if pairs is None else list(pairs)), tokenizer,
                           max_length, long_text, stride, num_labels)
    names = [name for name in encoded.features[0] if name not in NOT_STORED
             and (name != "token_type_ids" or pairs is not None)]
    columns = {name: column([row[name] for row in encoded.features], name) for name in names}
    documents = np.asarray(encoded.documents, dtype=np.int64)
    columns["document"] = pa.array(np.asarray(positions, dtype=np.int64)[documents])  # the text's place in the split
    table = pa.table(columns).replace_schema_metadata({"over_limit": str(encoded.over_limit)})
    with files.writing(path) as temporary, pa.OSFile(str(temporary), "wb") as sink, \
            pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return path.name, encoded.over_limit


def shard_over_limit(path: Path) -> int | None:
    """A whole shard's count of texts over the limit (kept from a killed run), None if it is missing or unreadable."""
    import pyarrow as pa

    try:
        return int(pa.ipc.open_file(pa.memory_map(str(path))).schema.metadata[b"over_limit"])
    except (OSError, pa.ArrowException, KeyError, TypeError, ValueError):
        return None


def column(values: list, name: str):
    import pyarrow as pa

    if name in ("input_ids", "token_type_ids"):
        return pa.array(values, type=pa.list_(pa.int32()))
    return pa.array(values)


def worker_context():
    """fork where the platform forks safely (Linux): a worker starts at once, shares the loaded libraries, and a
    user's script without an `if __name__ == "__main__":` guard is not run again in each worker (as spawn would).
    The workers use no torch, CUDA or thread pool of the parent: only the tokenizer and Arrow files."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if sys.platform == "linux" and "fork" in methods else "spawn")


def worker_pool(processes: int, tokenizer, settings: tuple) -> ProcessPoolExecutor:
    """`processes` tokenizing workers that die with this process, even when it is killed (SIGKILL, SIGTERM): a
    worker left behind would hold its memory forever."""
    return ProcessPoolExecutor(processes, mp_context=worker_context(), initializer=_start_worker,
                               initargs=(tokenizer, settings, os.getpid()))


def die_with_parent(parent: int) -> None:
    """In a worker process: end when process `parent` ends. Linux: the kernel sends SIGKILL when the parent dies
    (prctl PR_SET_PDEATHSIG); elsewhere a thread checks every half second that the parent is still the parent."""
    if sys.platform == "linux":
        try:
            import ctypes
            import signal

            pdeathsig_set = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            pdeathsig_set = False
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
        if pdeathsig_set:
            return
    import threading

    threading.Thread(target=_watch_parent, args=(parent,), name="nlptransfer-parent-watch", daemon=True).start()


_PR_SET_PDEATHSIG = 1


def _watch_parent(parent: int) -> None:
    import time

    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


@contextlib.contextmanager
def workers_environment():
    """TOKENIZERS_PARALLELISM=false while workers start: each is one core of the parallelism (and tokenizers then
    does not warn that it was forked after using threads)."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


_WORKER: dict = {}


def _start_worker(tokenizer, settings: tuple, parent: int) -> None:
    die_with_parent(parent)
    _WORKER.update(tokenizer=tokenizer, settings=settings)


def _worker_shard(task: tuple) -> tuple[str, int]:
    return encode_shard(task, _WORKER["tokenizer"], _WORKER["settings"])
