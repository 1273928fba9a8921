"""nlptransfer/data/classification.py, readers.py and splits.py: readers, corpora, splits, dedup, label maps."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from nlptransfer import tasks
from nlptransfer.config import DataConfig, RunConfig
from nlptransfer.data.classification import load_classification
from nlptransfer.data.readers import read_packaged, read_table
from nlptransfer.errors import ConfigError, DataError

ROWS = [{"text": "good movie", "label": "pos"}, {"text": "bad movie", "label": "neg"}]


def write_csv(path, rows, **kwargs):
    pd.DataFrame(rows).to_csv(path, index=False, **kwargs)
    return path


def splits_of(data):
    return {"train": data.train, "validation": data.validation, "test": data.test}


@contextmanager
def data_log(caplog, level=logging.INFO):
    """The data module's log lines in caplog (the package logger does not propagate once a run set up logging)."""
    package_logger = logging.getLogger("nlptransfer")
    package_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(level, logger="nlptransfer.data"):
            yield caplog
    finally:
        package_logger.removeHandler(caplog.handler)


def in_memory(frame: pd.DataFrame, **options):
    return load_classification(DataConfig(**options), 0, source=({"train": frame}, {}, "in-memory DataFrame"))


# --- readers -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json-array", ".json-lines", ".jsonl", ".parquet", ".CSV"])
def test_read_table_reads_every_format(tmp_path, suffix):
    frame = pd.DataFrame(ROWS)
    if suffix in (".csv", ".CSV"):
        path = tmp_path / f"data{suffix}"
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        path = tmp_path / "data.tsv"
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".json-array":
        path = tmp_path / "data.json"
        path.write_text(json.dumps(ROWS))
    elif suffix == ".json-lines":
        path = tmp_path / "data.json"
        path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    elif suffix == ".jsonl":
        path = tmp_path / "data.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    else:
        path = tmp_path / "data.parquet"
        frame.to_parquet(path)
    read = read_table(path)
    assert read[["text", "label"]].astype(str).to_dict("records") == ROWS


def test_read_table_tsv_keeps_commas_in_text(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("text\tlabel\nwell, fine, okay\tneu\n")
    assert read_table(path).to_dict("records") == [{"text": "well, fine, okay", "label": "neu"}]


def test_read_table_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_table(tmp_path / "missing.csv")


def test_read_table_unsupported_suffix(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"not a table")
    with pytest.raises(DataError, match=r"\.csv"):
        read_table(path)


def test_read_table_unparsable_json(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("{this is not json")
    with pytest.raises(DataError, match="cannot parse"):
        read_table(path)


# --- packaged corpora ----------------------------------------------------------------------


def test_packaged_tweets():
    frame = read_packaged("tweets")["train"]
    assert list(frame.columns) == ["text", "label"]
    assert sorted(frame["label"].unique()) == ["negative", "neutral", "positive"]
    assert len(frame) > 30000


def test_packaged_bbc_news():
    frame = read_packaged("bbc_news")["train"]
    assert list(frame.columns) == ["text", "label"]
    assert frame["label"].nunique() == 5
    assert len(frame) == 2225
    assert frame["text"].str.len().min() > 0


def test_ner_corpus_is_not_for_classification():
    with pytest.raises(DataError, match="not a text classification corpus"):
        read_packaged("wnut16")


# --- splits --------------------------------------------------------------------------------


def test_splits_are_stratified_and_sized_by_the_fractions(reviews_csv):
    data = load_classification(DataConfig(train_file=str(reviews_csv), validation_fraction=0.2, test_fraction=0.2),
                               seed=0)
    assert data.label_names == ["neg", "neu", "pos"]
    sizes = {name: len(split) for name, split in splits_of(data).items()}
    assert sizes == {"train": 36, "validation": 12, "test": 12}
    for split in splits_of(data).values():
        assert Counter(split.labels) == {0: len(split) // 3, 1: len(split) // 3, 2: len(split) // 3}
    texts = [set(split.texts) for split in splits_of(data).values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])


def test_splits_depend_on_the_seed_only(reviews_csv):
    cfg = DataConfig(train_file=str(reviews_csv))
    first, again, other = (load_classification(cfg, seed=s) for s in (1, 1, 2))
    assert first == again
    assert first.test.texts != other.test.texts


def test_max_samples_are_respected_and_stratified(reviews_csv):
    cfg = DataConfig(train_file=str(reviews_csv), validation_fraction=0.2, test_fraction=0.2,
                     max_train_samples=21, max_validation_samples=6, max_test_samples=9)
    data = load_classification(cfg, seed=0)
    assert (len(data.train), len(data.validation), len(data.test)) == (21, 6, 9)
    assert Counter(data.train.labels) == {0: 7, 1: 7, 2: 7}
    assert Counter(data.validation.labels) == {0: 2, 1: 2, 2: 2}


def test_labels_are_encoded_in_label_name_order(reviews_csv):
    frame = pd.read_csv(reviews_csv)
    data = load_classification(DataConfig(train_file=str(reviews_csv), label_names=["pos", "neu", "neg"]), seed=0)
    assert data.label_names == ["pos", "neu", "neg"]
    gold = dict(zip(frame["text"], frame["label"]))
    for split in splits_of(data).values():
        assert [data.label_names[i] for i in split.labels] == [gold[t] for t in split.texts]


def test_integer_labels(tmp_path):
    rows = [{"text": f"text number {i}", "label": i % 3 * 5} for i in range(30)]  # labels 0, 5, 10
    data = load_classification(DataConfig(train_file=str(write_csv(tmp_path / "ints.csv", rows))), seed=0)
    assert data.label_names == ["0", "5", "10"]  # numeric order, not string order
    for split in splits_of(data).values():
        assert all(int(text.rsplit(" ", 1)[1]) % 3 == label for text, label in zip(split.texts, split.labels))


def test_integer_labels_with_a_missing_label(tmp_path):
    rows = [{"text": f"text number {i}", "label": i % 2} for i in range(20)] + [{"text": "no label", "label": None}]
    data = load_classification(DataConfig(train_file=str(write_csv(tmp_path / "ints.csv", rows))), seed=0)
    assert data.label_names == ["0", "1"]


def test_empty_rows_are_dropped(tmp_path):
    rows = [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(20)]
    rows += [{"text": "", "label": "a"}, {"text": "   ", "label": "b"}, {"text": None, "label": "a"},
             {"text": "no label", "label": None}]
    data = load_classification(DataConfig(train_file=str(write_csv(tmp_path / "rows.csv", rows))), seed=0)
    kept = data.train.texts + data.validation.texts + data.test.texts
    assert sorted(kept) == sorted(f"text {i}" for i in range(20))
    assert data.label_names == ["a", "b"]


def test_text_pair_column(tmp_path):
    rows = [{"premise": f"premise {i}", "hypothesis": f"hypothesis {i}", "label": ["yes", "no"][i % 2]}
            for i in range(20)]
    cfg = DataConfig(train_file=str(write_csv(tmp_path / "pairs.csv", rows)), text_column="premise",
                     text_pair_column="hypothesis")
    data = load_classification(cfg, seed=0)
    for split in splits_of(data).values():
        assert split.text_pairs is not None and len(split.text_pairs) == len(split)
        assert [p.split()[1] for p in split.text_pairs] == [t.split()[1] for t in split.texts]


def test_no_pairs_without_a_pair_column(reviews_csv):
    assert load_classification(DataConfig(train_file=str(reviews_csv)), seed=0).train.text_pairs is None


@pytest.mark.parametrize("option, column", [("text_column", "sentence"), ("label_column", "sentiment"),
                                            ("text_pair_column", "second")])
def test_missing_column_lists_the_columns_found(reviews_csv, option, column):
    with pytest.raises(DataError) as error:
        load_classification(DataConfig(train_file=str(reviews_csv), **{option: column}), seed=0)
    message = str(error.value)
    assert f"'{column}'" in message and f"data.{option}" in message
    assert "columns found: text, label" in message


def test_a_single_class_cannot_be_learned(tmp_path):
    rows = [{"text": f"text {i}", "label": "only"} for i in range(20)]
    with pytest.raises(DataError, match="single class"):
        load_classification(DataConfig(train_file=str(write_csv(tmp_path / "one.csv", rows))), seed=0)


def test_unseen_labels_in_the_test_file(reviews_csv, tmp_path):
    test_file = write_csv(tmp_path / "test.csv", [{"text": "good", "label": "pos"}, {"text": "so so", "label": "meh"},
                                                  {"text": "what", "label": "unsure"}])
    with pytest.raises(DataError, match="meh, unsure"):
        load_classification(DataConfig(train_file=str(reviews_csv), test_file=str(test_file)), seed=0)


def test_given_test_and_validation_files_are_used_whole(reviews_csv, tmp_path):
    frame = pd.read_csv(reviews_csv)
    validation_file = write_csv(tmp_path / "validation.csv", frame[:9].to_dict("records"))
    test_file = write_csv(tmp_path / "test.csv", frame[9:21].to_dict("records"))
    cfg = DataConfig(train_file=str(reviews_csv), validation_file=str(validation_file), test_file=str(test_file),
                     dedup_across_splits=False)  # the held-out files repeat training rows here
    data = load_classification(cfg, seed=0)
    assert data.validation.texts == frame["text"][:9].tolist()
    assert data.test.texts == frame["text"][9:21].tolist()
    assert len(data.train) == 60


def test_no_data_given():
    with pytest.raises(DataError, match="data.train_file"):
        load_classification(DataConfig(), seed=0)


def test_packaged_corpus_is_split_like_a_file():
    cfg = DataConfig(name="bbc_news", max_train_samples=50, max_validation_samples=10, max_test_samples=10)
    data = load_classification(cfg, seed=0)
    assert data.label_names == sorted(data.label_names) and len(data.label_names) == 5
    assert (len(data.train), len(data.validation), len(data.test)) == (50, 10, 10)
    assert set(data.train.labels) == set(range(5))
    assert "bbc_news" in data.source


def test_held_out_texts_seen_in_training_are_dropped(reviews_csv, tmp_path, caplog):
    frame = pd.read_csv(reviews_csv)
    fresh = [{"text": f"a held out text {i}", "label": frame["label"][i]} for i in range(6)]
    test_file = write_csv(tmp_path / "test.csv", frame[:4].to_dict("records") + fresh)
    cfg = DataConfig(train_file=str(reviews_csv), test_file=str(test_file))
    with data_log(caplog):
        data = load_classification(cfg, seed=0)
    assert data.test.texts == [row["text"] for row in fresh]
    assert "4 test examples repeat a training text (ignoring case and white space): dropped" in caplog.text
    assert data.dropped_repeats == {"train": 0, "validation": 0, "test": 4}
    kept = load_classification(DataConfig(train_file=str(reviews_csv), test_file=str(test_file),
                                          dedup_across_splits=False), seed=0)
    assert len(kept.test) == 10 and kept.dropped_repeats == {"train": 0, "validation": 0, "test": 0}


def test_held_out_split_made_only_of_training_texts_is_an_error(reviews_csv):
    cfg = DataConfig(train_file=str(reviews_csv), validation_file=str(reviews_csv), test_file=str(reviews_csv))
    with pytest.raises(DataError, match="every test example also occurs in training"):
        load_classification(cfg, seed=0)


def test_a_class_too_rare_for_every_split_is_named(tmp_path, caplog):
    rows = [f"common text {i},{'ab'[i % 2]}" for i in range(40)] + ["rare text one,r"]
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    with data_log(caplog, logging.WARNING):
        data = load_classification(DataConfig(train_file=str(path)), 0)
    assert "'r' has a single example" in caplog.text
    assert "has no example of r" in caplog.text
    for split in (data.train, data.validation, data.test):  # a and b still reach every split
        assert {0, 1} <= set(split.labels)


# --- repeats across splits -----------------------------------------------------------------


def test_copies_that_differ_in_case_or_white_space_are_repeats(reviews_csv, tmp_path, caplog):
    frame = pd.read_csv(reviews_csv)
    variants = [f"  {frame['text'][0].upper()} ", frame["text"][1].replace(" ", "  \t "), frame["text"][2].title()]
    fresh = [f"a held out text {i}" for i in range(6)]
    test_file = write_csv(tmp_path / "test.csv", [{"text": text, "label": frame["label"][i % 3]}
                                                  for i, text in enumerate(variants + fresh)])
    with data_log(caplog):
        data = load_classification(DataConfig(train_file=str(reviews_csv), test_file=str(test_file)), seed=0)
    assert data.test.texts == fresh
    assert data.dropped_repeats["test"] == 3
    assert "3 test examples repeat a training text (ignoring case and white space): dropped" in caplog.text


def test_validation_examples_that_repeat_test_examples_are_dropped(reviews_csv, tmp_path, caplog):
    frame = pd.read_csv(reviews_csv)
    held_out = [{"text": f"held out text {i}", "label": frame["label"][i]} for i in range(12)]
    test_file = write_csv(tmp_path / "test.csv", held_out[:6])
    validation = held_out[:2] + [{"text": "HELD OUT text 2 ", "label": held_out[2]["label"]}] + held_out[6:]
    validation_file = write_csv(tmp_path / "validation.csv", validation)
    cfg = DataConfig(train_file=str(reviews_csv), test_file=str(test_file), validation_file=str(validation_file))
    with data_log(caplog):
        data = load_classification(cfg, seed=0)
    assert data.test.texts == [row["text"] for row in held_out[:6]]  # the test split is kept whole
    assert data.validation.texts == [row["text"] for row in held_out[6:]]
    assert data.dropped_repeats == {"train": 0, "validation": 3, "test": 0}
    assert "3 validation examples repeat a test text (ignoring case and white space): dropped" in caplog.text
    kept = load_classification(DataConfig(train_file=str(reviews_csv), test_file=str(test_file),
                                          validation_file=str(validation_file), dedup_across_splits=False), seed=0)
    assert len(kept.validation) == 9 and kept.dropped_repeats["validation"] == 0


def test_the_test_file_given_as_validation_is_an_error(reviews_csv, tmp_path):
    test_file = write_csv(tmp_path / "test.csv", [{"text": f"held out text {i}", "label": "pos"} for i in range(5)])
    cfg = DataConfig(train_file=str(reviews_csv), test_file=str(test_file), validation_file=str(test_file))
    with pytest.raises(DataError, match="every validation example also occurs in test .*data.dedup_across_splits"):
        load_classification(cfg, seed=0)


def test_repeats_carved_out_of_one_file_are_dropped_and_reported(tmp_path):
    rows = [{"text": f"text number {i}", "label": "ab"[i % 2]} for i in range(60)]
    rows += [{"text": f"TEXT  number {i}", "label": "ab"[i % 2]} for i in range(20)]  # 20 texts twice
    data = load_classification(DataConfig(train_file=str(write_csv(tmp_path / "d.csv", rows))), seed=0)
    train = {" ".join(t.split()).casefold() for t in data.train.texts}
    validation = {" ".join(t.split()).casefold() for t in data.validation.texts}
    assert not (train & validation) and not (train & {" ".join(t.split()).casefold() for t in data.test.texts})
    assert data.dropped_repeats["test"] > 0
    assert len(data.train) + len(data.validation) + len(data.test) + sum(data.dropped_repeats.values()) == 80
    summary = tasks.get("classification").data_summary(data, {}, RunConfig())["data"]
    assert summary["dropped_repeats"] == data.dropped_repeats  # what metrics.json reports


# --- bad input: one-line errors that name the fix ------------------------------------------


def test_a_tab_separated_file_named_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text\tlabel\n" + "".join(f"text {i}\t{'ab'[i % 2]}\n" for i in range(10)))
    with pytest.raises(DataError, match=r"looks tab-separated, not comma-separated as .csv says; rename it data.tsv"):
        read_table(path)
    path.write_text("text\tlabel\nfine\ta\nwell, fine\ta\n")  # the comma makes pandas fail to parse it
    with pytest.raises(DataError, match=r"cannot parse .*rename it data.tsv"):
        read_table(path)


def test_a_comma_separated_file_named_tsv(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("text,label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(10)))
    with pytest.raises(DataError, match=r"looks comma-separated, not tab-separated as .tsv says; rename it data.csv"):
        read_table(path)


def test_a_header_naming_a_column_twice(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label,label\n" + "".join(f"text {i},{'ab'[i % 2]},x\n" for i in range(10)))
    with pytest.raises(DataError, match="names column 'label' 2 times, which is ambiguous"):
        read_table(path)
    path.write_text("text,label,label.1\n" + "".join(f"text {i},{'ab'[i % 2]},x\n" for i in range(10)))
    assert list(read_table(path).columns) == ["text", "label", "label.1"]  # a real column named label.1


def test_in_memory_columns_named_twice():
    frame = pd.DataFrame([[f"text {i}", "ab"[i % 2], "x"] for i in range(10)], columns=["text", "label", "label"])
    with pytest.raises(DataError, match="2 columns named 'label' .*ambiguous"):
        in_memory(frame)


@pytest.mark.parametrize("options, message", [
    ({"text_column": "label"}, "data.text_column and data.label_column both name the column 'label'"),
    ({"label_column": "text"}, "data.text_column and data.label_column both name the column 'text'"),
    ({"text_pair_column": "label"}, "data.label_column and data.text_pair_column both name the column 'label'"),
])
def test_one_column_for_two_options(reviews_csv, options, message):
    with pytest.raises(ConfigError, match=message):
        load_classification(DataConfig(train_file=str(reviews_csv), **options), seed=0)


def test_a_file_without_read_permission(reviews_csv, tmp_path):
    path = tmp_path / "locked.csv"
    path.write_bytes(reviews_csv.read_bytes())
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("this user (root?) reads a file without read permission anyway")
        with pytest.raises(DataError, match=r"cannot read .*locked.csv: permission denied; make it readable"):
            read_table(path)
    finally:
        path.chmod(0o644)


def test_a_read_refused_by_the_system_is_one_line(reviews_csv, monkeypatch):
    """The permission error as root meets it nowhere: raised by the reader itself."""
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pd, "read_csv", refuse)
    with pytest.raises(DataError, match=r"cannot read .*reviews.csv: permission denied"):
        read_table(reviews_csv)
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    with pytest.raises(DataError, match=r"cannot read .*reviews.csv: Input/output error"):
        read_table(reviews_csv)


def jsonl_file(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.mark.parametrize("labels, message", [
    ([["a"], ["b"]], r"holds lists like \['a'\], not single labels; for several labels per example use "
                     "task=multilabel"),
    ([{"x": 1}, {"x": 2}], r"holds dicts like \{'x': 1\}, not single labels; give one string or integer label"),
])
def test_labels_that_are_not_single_values(tmp_path, labels, message):
    rows = [{"text": f"text {i}", "label": labels[i % 2]} for i in range(10)]
    with pytest.raises(DataError, match=message):
        load_classification(DataConfig(train_file=jsonl_file(tmp_path / "d.jsonl", rows)), seed=0)
    parquet = tmp_path / "d.parquet"
    pd.DataFrame(rows).to_parquet(parquet)  # lists come back as arrays, dicts as dicts
    with pytest.raises(DataError, match="column 'label' .*, not single labels"):
        load_classification(DataConfig(train_file=str(parquet)), seed=0)


def test_texts_that_are_not_strings(tmp_path):
    rows = [{"text": ["some", "words"], "label": "ab"[i % 2]} for i in range(10)]
    with pytest.raises(DataError, match=r"column 'text' \(data.text_column\) holds lists like \['some', 'words'\], "
                                        "not texts"):
        load_classification(DataConfig(train_file=jsonl_file(tmp_path / "d.jsonl", rows)), seed=0)


def test_integer_and_string_labels_mixed(tmp_path):
    rows = [{"text": f"text {i}", "label": [10, 2, "x", "2"][i % 4]} for i in range(24)]
    data = load_classification(DataConfig(train_file=jsonl_file(tmp_path / "d.jsonl", rows)), seed=0)
    assert data.label_names == ["10", "2", "x"]  # 2 and "2" are one label; the order is by text


def test_max_train_samples_smaller_than_the_classes_names_the_option(reviews_csv):
    with pytest.raises(DataError, match=r"the training data is too small: data.max_train_samples=1 keeps no example "
                                        r"of .*raise data.max_train_samples \(at least 3\)"):
        load_classification(DataConfig(train_file=str(reviews_csv), max_train_samples=1), seed=0)
    data = load_classification(DataConfig(train_file=str(reviews_csv), max_train_samples=3), seed=0)
    assert sorted(data.train.labels) == [0, 1, 2]


@pytest.mark.parametrize("n, size, labels", [(1000, 0.1, ["a", "b", "c"]), (997, 0.3, [1, 2, 10, 10, 10]),
                                             (50, 7, ["x", "y"]), (4000, 0.2, list("abcdefg")), (30, 0.5, [0, 1])])
def test_stratified_indices_are_scikit_learns_train_test_split(n, size, labels):
    from sklearn.model_selection import train_test_split

    from nlptransfer.data.classification import stratified_indices

    groups = np.random.default_rng(n).choice(np.asarray(labels, dtype=object), n)
    for seed in (0, 42):
        expected = train_test_split(np.arange(n), test_size=size, random_state=seed, stratify=groups)
        found = stratified_indices(groups, size, seed)
        assert [part.tolist() for part in found] == [part.tolist() for part in expected]
    with pytest.raises(ValueError):
        stratified_indices(np.array(["a"] * 10 + ["b"]), 0.2, 0)


@pytest.mark.parametrize("size", [0.25, 0.5, 7, 0.2, 0.4])
def test_stratified_indices_break_ties_as_scikit_learn(size):
    from sklearn.model_selection import train_test_split

    from nlptransfer.data.classification import stratified_indices

    groups = np.tile(np.array(["a", "b", "c", "d", "e"], dtype=object), 6)  # equal classes: ties drawn at random
    for seed in range(5):
        expected = train_test_split(np.arange(30), test_size=size, random_state=seed, stratify=groups)
        assert [p.tolist() for p in stratified_indices(groups, size, seed)] == [p.tolist() for p in expected]


@pytest.mark.parametrize("size", [0, 0.0, 1.0, 30, 31, -0.1])
def test_split_sizes_refuse_what_scikit_learn_refuses(size):
    from sklearn.model_selection import train_test_split

    from nlptransfer.data.splits import split_sizes

    with pytest.raises(ValueError):
        train_test_split(np.arange(30), test_size=size, random_state=0)
    with pytest.raises(ValueError):
        split_sizes(30, size)


def test_no_private_scikit_learn_name_is_imported():
    """scikit-learn moves its private names between releases (`_approximate_mode` left `sklearn.utils` in 1.5)."""
    import ast
    from pathlib import Path

    import nlptransfer

    private = []
    for path in Path(nlptransfer.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sklearn"):
                names = [node.module] + [alias.name for alias in node.names]
                private += [f"{path.name}: {name}" for name in names if any(p.startswith("_") for p in name.split("."))]
    assert not private
