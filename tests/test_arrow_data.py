"""Data files held as memory-mapped Arrow tables (data.backend=arrow) and their token cache: the same splits,
labels, tokens and training as in memory; caches reused, checked and rebuilt when they are not to be trusted."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from transformers import AutoTokenizer

from nlptransfer.config import DataConfig, RunConfig, TrainConfig
from nlptransfer.data import arrow
from nlptransfer.data.classification import TextSplit, load_classification
from nlptransfer.engine import batches, token_cache
from nlptransfer.errors import DataError
from nlptransfer.pipeline import run

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "good bad great awful movie film day night love hate the a was is very not".split()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("NLPTRANSFER_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def table(n: int, seed: int = 0, labels=("pos", "neg", "neu")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, rng.integers(3, 40))) + f" {i}" for i in range(n)]
    return pd.DataFrame({"text": texts, "other": [f"pair {i}" for i in range(n)], "label": rng.choice(labels, n)})


def both(cfg: DataConfig, seed: int = 7):
    memory = load_classification(DataConfig(**{**cfg.__dict__, "backend": "memory"}), seed)
    on_arrow = load_classification(DataConfig(**{**cfg.__dict__, "backend": "arrow"}), seed)
    return memory, on_arrow


def same_splits(memory, on_arrow) -> None:
    assert on_arrow.label_names == memory.label_names
    assert on_arrow.dropped_repeats == memory.dropped_repeats
    for split in ("train", "validation", "test"):
        a, b = getattr(memory, split), getattr(on_arrow, split)
        assert isinstance(b.texts, arrow.TableColumn)
        assert list(b.texts) == list(a.texts)
        assert np.asarray(b.labels).tolist() == list(a.labels)
        assert (b.text_pairs is None) == (a.text_pairs is None)
        if a.text_pairs is not None:
            assert list(b.text_pairs) == list(a.text_pairs)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_arrow_splits_equal_the_in_memory_ones(tmp_path, cache, suffix):
    frame = table(400)
    frame.loc[3, "text"] = "   "  # dropped: no text
    frame.loc[5, "label"] = None  # dropped: no label
    for row, copy in ((10, 300), (11, 301), (12, 302), (13, 303)):  # repeats, wherever the split puts them
        frame.loc[row, ["text", "other"]] = [frame.loc[copy, "text"].upper() + "  ", frame.loc[copy, "other"]]
    path = tmp_path / f"data{suffix}"
    {".csv": lambda: frame.to_csv(path, index=False), ".tsv": lambda: frame.to_csv(path, sep="\t", index=False),
     ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
     ".parquet": lambda: frame.to_parquet(path)}[suffix]()
    memory, on_arrow = both(DataConfig(train_file=str(path), text_pair_column="other"))
    same_splits(memory, on_arrow)
    assert sum(on_arrow.dropped_repeats.values()) >= 1


def test_given_splits_integer_labels_and_limits(tmp_path, cache):
    frames = {split: table(n, seed, labels=(2, 10, 1)) for split, n, seed in
              (("train", 300, 0), ("validation", 60, 1), ("test", 80, 2))}
    frames["test"].loc[0, "text"] = frames["train"].loc[0, "text"]  # repeats training: dropped
    paths = {}
    for split, frame in frames.items():
        paths[split] = tmp_path / f"{split}.csv"
        frame.to_csv(paths[split], index=False)
    cfg = DataConfig(train_file=str(paths["train"]), validation_file=str(paths["validation"]),
                     test_file=str(paths["test"]), max_train_samples=200, max_test_samples=50)
    memory, on_arrow = both(cfg)
    assert on_arrow.label_names == ["1", "2", "10"]  # numbers in numeric order, as pandas reads them
    same_splits(memory, on_arrow)


def write_table(frame: pd.DataFrame, path) -> None:
    {".csv": lambda: frame.to_csv(path, index=False), ".tsv": lambda: frame.to_csv(path, sep="\t", index=False),
     ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
     ".parquet": lambda: frame.to_parquet(path)}[path.suffix]()


AS_WRITTEN = ["None", "null", "NA", "N/A", "nan", "-NaN", "#N/A", "<NA>", "007", "1e3", "True"]
"""Texts and labels that pandas would read as missing values, numbers or booleans."""


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_both_backends_read_cells_as_written_and_only_empty_ones_as_missing(tmp_path, cache, suffix):
    labels = ["None", "null", "NA", "nan"]  # classes, not missing labels
    texts = AS_WRITTEN + [f"text number {i}" for i in range(29)]
    frame = pd.DataFrame({"text": texts, "label": [labels[i % 4] for i in range(len(texts))]})
    blank = pd.DataFrame({"text": ["no label", "", "a blank label", None], "label": ["", "None", "  ", "null"]})
    path = tmp_path / f"data{suffix}"
    write_table(pd.concat([frame, blank], ignore_index=True), path)
    memory, on_arrow = both(DataConfig(train_file=str(path)))
    same_splits(memory, on_arrow)
    assert memory.label_names == ["NA", "None", "nan", "null"]
    read = [(text, memory.label_names[label]) for split in (memory.train, memory.validation, memory.test)
            for text, label in zip(split.texts, split.labels)]
    assert sorted(read) == sorted(zip(frame["text"], frame["label"]))  # every cell as written; the blank rows gone


@pytest.mark.parametrize("content, rows", [
    ("text,label\r" + "".join(f"text number {i},{'ab'[i % 2]}\r" for i in range(12)), 12),  # old Mac line ends
    ('text,label\n"a quoted\rcarriage return",a\n' + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(12)), 13),
    ("text,label\na bare\rcarriage return,a\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(12)), None),
    ("text,label\na row without its label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(12)), None),
], ids=["carriage-return-line-ends", "quoted-carriage-return", "bare-carriage-return-in-a-row", "short-row"])
def test_both_backends_read_carriage_returns_alike_and_refuse_a_row_they_split(tmp_path, cache, content, rows):
    path = tmp_path / "d.csv"
    path.write_bytes(content.encode())
    if rows is None:  # pandas would read two rows, or fill the missing label: a row with 1 of 2 columns
        for backend in ("memory", "arrow"):
            with pytest.raises(DataError, match="has a row with 1 of the header's 2 columns"):
                load_classification(DataConfig(train_file=str(path), backend=backend), 7)
        return
    memory, on_arrow = both(DataConfig(train_file=str(path)))
    same_splits(memory, on_arrow)
    assert sum(len(split) for split in (memory.train, memory.validation, memory.test)) == rows


def test_auto_holds_large_files_as_tables(tmp_path, cache, monkeypatch):
    path = tmp_path / "d.csv"
    table(100).to_csv(path, index=False)
    assert not arrow.use_arrow(DataConfig(train_file=str(path)))
    monkeypatch.setattr(arrow, "AUTO_BYTES", 1000)
    assert arrow.use_arrow(DataConfig(train_file=str(path)))
    assert not arrow.use_arrow(DataConfig(train_file=str(path)), multilabel=True)
    assert not arrow.use_arrow(DataConfig(train_file=str(path), backend="memory"))
    assert not arrow.use_arrow(DataConfig(name="tweets"))


def test_the_table_is_read_once_and_a_damaged_entry_is_rebuilt(tmp_path, cache, caplog):
    path = tmp_path / "d.csv"
    table(200).to_csv(path, index=False)
    cfg = DataConfig(train_file=str(path), backend="arrow")
    first = list(load_classification(cfg, 1).train.texts)  # read now: the entry is damaged in place below
    entries = list((cache / "tables").glob("*.arrow"))
    assert len(entries) == 1
    with caplog.at_level(logging.INFO):
        load_classification(cfg, 1)
    assert "the Arrow table from the cache" in caplog.text
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # a kill mid-write of an older version
    with caplog.at_level(logging.WARNING):
        again = load_classification(cfg, 1)
    assert "ignoring the unreadable table cache entry" in caplog.text
    assert list(again.train.texts) == first
    frame = table(200, seed=5)  # the file changes: its size or time does, so does the key
    frame.to_csv(path, index=False)
    changed = load_classification(cfg, 1)
    assert set(changed.train.texts) <= set(frame["text"])


@pytest.mark.parametrize("long_text, max_length, pairs", [("truncate", 16, False), ("head_tail", 16, False),
                                                          ("sliding", 16, False), ("truncate", 24, True)])
def test_cached_tokens_equal_encode_split(tmp_path, cache, tokenizer, monkeypatch, long_text, max_length, pairs):
    monkeypatch.setattr(token_cache, "SHARD_ROWS", 70)  # several shards
    path = tmp_path / "d.csv"
    table(300).to_csv(path, index=False)
    data = load_classification(DataConfig(train_file=str(path), backend="arrow",
                                           text_pair_column="other" if pairs else None), 3)
    stride = 4 if long_text == "sliding" else 0
    cached = token_cache.encode_table(data.train, tokenizer, max_length, long_text, stride)
    plain = batches.encode_split(TextSplit(list(data.train.texts), list(data.train.labels),
                                           list(data.train.text_pairs) if pairs else None),
                                 tokenizer, max_length, long_text, stride)
    assert isinstance(cached, token_cache.TableSplit) and len(cached) == len(plain)
    rows = cached.__getitems__(list(range(len(cached))))
    for row, feature in zip(rows, plain.features):
        assert row["input_ids"] == feature["input_ids"] and row["labels"] == feature["labels"]
        assert row.get("token_type_ids", [0] * len(row["input_ids"])) == feature["token_type_ids"]
    assert list(cached.documents) == list(plain.documents) and list(cached.lengths) == plain.lengths
    assert cached.over_limit == plain.over_limit > 0
    # batches padded from the table equal those padded from memory (the collator makes the attention mask)
    table_batch = next(iter(batches.eval_loader(cached, tokenizer, 16)))
    plain_batch = next(iter(batches.eval_loader(plain, tokenizer, 16)))
    for key in ("input_ids", "attention_mask", "labels", "example_index"):
        assert table_batch[key].tolist() == plain_batch[key].tolist()


class Killed(Exception):
    """Stands for a kill in the middle of tokenizing."""


def test_token_cache_is_reused_and_a_killed_run_keeps_its_whole_shards(tmp_path, cache, tokenizer, monkeypatch,
                                                                     caplog):
    monkeypatch.setattr(token_cache, "SHARD_ROWS", 50)
    path = tmp_path / "d.csv"
    table(300).to_csv(path, index=False)
    data = load_classification(DataConfig(train_file=str(path), backend="arrow"), 3)
    real, calls, kills = token_cache.encode_shard, [], [3]

    def killed_at_the_third(task, *args):
        calls.append(task[0].name)
        if len(calls) == kills[-1]:
            kills.append(0)
            raise Killed
        return real(task, *args)

    monkeypatch.setattr(token_cache, "encode_shard", killed_at_the_third)
    with pytest.raises(Killed):
        token_cache.encode_table(data.train, tokenizer, 16)
    (entry,) = (cache / "tokens").iterdir()
    assert sorted(p.name for p in entry.glob("shard-*.arrow")) == calls[:2]  # whole shards, no partial one
    assert not (entry / "done.json").exists() and not list(entry.glob(".*tmp"))
    calls.clear()
    with caplog.at_level(logging.INFO):
        resumed = token_cache.encode_table(data.train, tokenizer, 16)
    assert "2 of 5 shards kept from an earlier run" in caplog.text and len(calls) == 3
    calls.clear()
    with caplog.at_level(logging.INFO):
        again = token_cache.encode_table(data.train, tokenizer, 16)
    assert not calls and "train tokens from the cache" in caplog.text
    assert again.digest() == resumed.digest()
    assert [r["input_ids"] for r in again.__getitems__(list(range(len(again))))] == \
        [f["input_ids"] for f in batches.encode_split(TextSplit(list(data.train.texts), list(data.train.labels)),
                                                       tokenizer, 16).features]
    other = token_cache.encode_table(data.train, tokenizer, 24)  # another length: another entry
    assert len(list((cache / "tokens").iterdir())) == 2 and other.digest() != again.digest()


def test_an_explicit_token_cache_refuses_other_settings_or_data(tmp_path, cache, tokenizer):
    path = tmp_path / "d.csv"
    table(120).to_csv(path, index=False)
    data = load_classification(DataConfig(train_file=str(path), backend="arrow"), 3)
    folder = str(tmp_path / "mine")
    token_cache.encode_table(data.train, tokenizer, 16, folder=folder)
    assert json.loads((tmp_path / "mine" / "train" / "done.json").read_text())["rows"] == len(data.train)
    with pytest.raises(DataError, match="made with other settings \\(max_length 16 -> 24\\); delete"):
        token_cache.encode_table(data.train, tokenizer, 24, folder=folder)
    with pytest.raises(DataError, match="tokens of other data"):
        token_cache.encode_table(data.test, tokenizer, 16, name="train", folder=folder)


@pytest.mark.parametrize("start", ["fork", "spawn"])  # spawn: where the platform does not fork (macOS, Windows)
def test_tokenizing_in_worker_processes_gives_the_same_tokens(tmp_path, cache, tokenizer, monkeypatch, start):
    import multiprocessing

    monkeypatch.setattr(token_cache, "worker_context", lambda: multiprocessing.get_context(start))
    monkeypatch.setattr(token_cache, "SHARD_ROWS", 100)
    monkeypatch.setattr(token_cache, "IN_PROCESS_BELOW", 1)
    path = tmp_path / "d.csv"
    table(400).to_csv(path, index=False)
    data = load_classification(DataConfig(train_file=str(path), backend="arrow"), 3)
    workers = token_cache.encode_table(data.train, tokenizer, 16, "sliding", 4, num_proc=2)
    plain = batches.encode_split(TextSplit(list(data.train.texts), list(data.train.labels)), tokenizer, 16,
                                 "sliding", 4)
    assert [r["input_ids"] for r in workers.__getitems__(list(range(len(workers))))] == \
        [f["input_ids"] for f in plain.features]
    assert list(workers.documents) == list(plain.documents) and workers.over_limit == plain.over_limit


def test_a_table_column_pickles_as_its_file_and_rows(tmp_path, cache):
    import pickle

    path = tmp_path / "d.csv"
    table(50).to_csv(path, index=False)
    texts = load_classification(DataConfig(train_file=str(path), backend="arrow"), 3).train.texts
    part = texts[5:9]
    assert len(pickle.dumps(part)) < 1000
    assert list(pickle.loads(pickle.dumps(part))) == list(texts)[5:9]
    assert list(texts.take([2, 0])) == [texts[2], texts[0]]


def test_samplers_keep_their_batches_for_a_seed_and_take_arrays():
    lengths = [int(n) for n in np.random.default_rng(0).integers(3, 60, 1000)]

    def reference(seed: int, epoch: int) -> list[list[int]]:  # the sampler as it was before tables
        import random

        rng = random.Random(seed + epoch)
        order = list(range(len(lengths)))
        rng.shuffle(order)
        found = []
        for start in range(0, len(order), 32 * 5):
            chunk = sorted(order[start:start + 32 * 5], key=lengths.__getitem__, reverse=True)
            found += [chunk[i:i + 32] for i in range(0, len(chunk), 32)]
        rng.shuffle(found)
        found.sort(key=lambda batch: len(batch) < 32)
        return found

    for given in (lengths, np.asarray(lengths)):
        sampler = batches.LengthGroupedBatches(given, 32, seed=4, chunk_batches=5)
        sampler.set_epoch(2)
        assert list(sampler) == reference(4, 2)
    large = batches.LengthGroupedBatches(np.asarray(lengths), 32, seed=4, chunk_batches=5)
    large_order = batches.NUMPY_ORDER_ABOVE
    try:  # millions of examples: numpy's permutation, as seeded and as length-grouped
        batches.NUMPY_ORDER_ABOVE = 100
        first, again = list(large), list(large)
        large.set_epoch(1)
        other = list(large)
    finally:
        batches.NUMPY_ORDER_ABOVE = large_order
    assert first == again != other and first != reference(4, 0)
    assert sorted(i for batch in first for i in batch) == list(range(len(lengths)))
    assert np.mean([np.ptp([lengths[i] for i in batch]) for batch in first]) < 20  # lengths 3..60, grouped
    evaluation = list(batches.sorted_batches(np.asarray(lengths), 32))
    assert evaluation == list(batches.sorted_batches(lengths, 32))
    assert [lengths[i] for batch in evaluation for i in batch] == sorted(lengths, reverse=True)


def test_a_run_on_the_arrow_backend_trains_exactly_as_in_memory(tmp_path, cache, tiny_model_dir, reviews_csv):
    results = {}
    for backend in ("memory", "arrow"):
        results[backend] = run(RunConfig(
            model=tiny_model_dir, strategy="full", output_dir=str(tmp_path / backend),
            data=DataConfig(train_file=str(reviews_csv), max_length=32, backend=backend),
            train=TrainConfig(epochs=2, batch_size=8)))
    memory, on_arrow = results["memory"], results["arrow"]
    assert [e["train_loss"] for e in on_arrow.history] == pytest.approx([e["train_loss"] for e in memory.history],
                                                                         abs=1e-6)
    assert on_arrow.test_metrics["accuracy"] == memory.test_metrics["accuracy"]
    assert on_arrow.predictions == memory.predictions
    assert json.loads((tmp_path / "arrow" / "metrics.json").read_text())["data"]["source"].startswith(
        "local files as Arrow tables")


def test_baselines_use_a_seeded_sample_of_large_splits(monkeypatch):
    from nlptransfer.data.classification import ClassificationData
    from nlptransfer.tasks import classification

    monkeypatch.setattr(classification, "BASELINE_ROWS", {"train": 40, "test": 1000})
    split = TextSplit([f"good {i}" if i % 2 else f"bad {i}" for i in range(100)], [i % 2 for i in range(100)])
    data = ClassificationData(["neg", "pos"], split, split.take(range(10)), split.take(range(30)), "test")
    found, line = classification.Classification().baselines(data)
    assert "seeded sample (40 of 100 train examples, all 30 test examples)" in line
    assert found["tfidf_logreg_accuracy"] == 1.0


def test_a_full_disk_is_one_line_and_leaves_no_partial_entry(tmp_path, cache, tokenizer, monkeypatch):
    import errno

    from nlptransfer.outputs import files

    path = tmp_path / "d.csv"
    table(100).to_csv(path, index=False)
    real = files.writing

    def full(target):
        if str(target).endswith(".arrow"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(target)

    monkeypatch.setattr(files, "writing", full)
    with pytest.raises(DataError, match="no space left on the disk of .* for the Arrow table of .*d.csv; free some"):
        load_classification(DataConfig(train_file=str(path), backend="arrow"), 3)
    monkeypatch.setattr(files, "writing", real)
    data = load_classification(DataConfig(train_file=str(path), backend="arrow"), 3)
    monkeypatch.setattr(files, "writing", full)
    with pytest.raises(DataError, match="no space left on the disk of .* for the token cache; free some"):
        token_cache.encode_table(data.train, tokenizer, 16)
    assert not list((cache / "tokens").glob("*/shard-*")) and not list((cache / "tokens").glob("*/done.json"))


def test_hash_membership_by_binary_search():
    from nlptransfer.data.splits import contained

    reference = np.array([5, 2**63 + 7, 9, 2**64 - 1], dtype=np.uint64)
    values = np.array([9, 4, 2**64 - 1, 0, 2**63 + 7], dtype=np.uint64)
    assert contained(values, reference).tolist() == [True, False, True, False, True]
    assert contained(values, reference[:0]).tolist() == [False] * 5


def test_values_that_are_not_texts_and_in_memory_data_are_one_line_errors(tmp_path, cache):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": [["a", "list"]] * 10, "label": ["x", "y"] * 5}).to_parquet(path)
    with pytest.raises(DataError, match="column 'text' in .*d.parquet holds list<element: string> values, not texts"):
        load_classification(DataConfig(train_file=str(path), backend="arrow"), 0)
    huge = tmp_path / "huge.csv"  # a text longer than the reader's block
    huge.write_text("text,label\n" + "".join(f"short {i},{'ab'[i % 2]}\n" for i in range(40)) + "x" * 3 * 2**20
                    + ",b\n")
    data = load_classification(DataConfig(train_file=str(huge), backend="arrow", test_fraction=0.2), 0)
    lengths = [len(text) for split in (data.train, data.validation, data.test) for text in split.texts]
    assert max(lengths) == 3 * 2**20 and len(lengths) == 41
    frame = table(20)
    with pytest.raises(DataError, match="data.backend=arrow reads data files"):
        load_classification(DataConfig(backend="arrow"), 0, source=({"train": frame}, {}, "in-memory DataFrame"))


def _run_with_workers(folder, pids_file) -> None:
    """A run's process: holds its folder's lock while two tokenizing workers work (here: sleep)."""
    import os
    import time

    from nlptransfer.outputs.run_folder import RunFolder

    run = RunFolder(folder).open(overwrite=False, resume=False)
    with token_cache.worker_pool(2, None, None) as pool:
        pool.map(time.sleep, [60, 60])
        pids_file.write_text(" ".join(map(str, pool._processes)) + f" {os.getpid()}")  # noqa: SLF001
        time.sleep(60)
    run.release()


def gone(pid: int) -> bool:
    from pathlib import Path

    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "\nState:\tZ" in status.read_text()  # a zombie has ended too


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_tokenizing_workers_die_with_a_killed_run_and_never_hold_its_folder(tmp_path, signal_name):
    import multiprocessing
    import os
    import signal
    import time

    from nlptransfer.outputs.run_folder import RunFolder

    pids_file = tmp_path / "pids"
    run = multiprocessing.get_context("fork").Process(target=_run_with_workers, args=(tmp_path / "run", pids_file))
    run.start()
    deadline = time.monotonic() + 60
    while not pids_file.exists() or len(pids_file.read_text().split()) < 3:
        assert time.monotonic() < deadline and run.is_alive()
        time.sleep(0.05)
    workers = [int(pid) for pid in pids_file.read_text().split()[:2]]
    os.kill(run.pid, getattr(signal, signal_name))
    run.join(10)
    deadline = time.monotonic() + 10
    while not all(gone(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [pid for pid in workers if not gone(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "workers outlived their run"
    RunFolder(tmp_path / "run").lock()  # the killed run's lock is taken over: no worker holds it
