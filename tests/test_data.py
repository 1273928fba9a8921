"""nlptransfer/data.py: file readers, packaged corpora, seeded stratified splits and label maps."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pandas as pd
import pytest

from nlptransfer.config import DataConfig
from nlptransfer.data.classification import load_classification, read_packaged, read_table
from nlptransfer.errors import DataError

ROWS = [{"text": "good movie", "label": "pos"}, {"text": "bad movie", "label": "neg"}]


def write_csv(path, rows, **kwargs):
    pd.DataFrame(rows).to_csv(path, index=False, **kwargs)
    return path


def splits_of(data):
    return {"train": data.train, "validation": data.validation, "test": data.test}


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
    package_logger = logging.getLogger("nlptransfer")  # it does not propagate once a run has set up logging
    package_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO", logger="nlptransfer.data"):
            data = load_classification(cfg, seed=0)
    finally:
        package_logger.removeHandler(caplog.handler)
    assert data.test.texts == [row["text"] for row in fresh]
    assert "4 test examples repeat a training text exactly: dropped" in caplog.text
    kept = load_classification(DataConfig(train_file=str(reviews_csv), test_file=str(test_file),
                                          dedup_across_splits=False), seed=0)
    assert len(kept.test) == 10


def test_held_out_split_made_only_of_training_texts_is_an_error(reviews_csv):
    cfg = DataConfig(train_file=str(reviews_csv), validation_file=str(reviews_csv), test_file=str(reviews_csv))
    with pytest.raises(DataError, match="every validation example also occurs in training"):
        load_classification(cfg, seed=0)


def test_a_class_too_rare_for_every_split_is_named(tmp_path, caplog):
    rows = [f"common text {i},{'ab'[i % 2]}" for i in range(40)] + ["rare text one,r"]
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    package_logger = logging.getLogger("nlptransfer")  # it does not propagate once a run has set up logging
    package_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="nlptransfer.data"):
            data = load_classification(DataConfig(train_file=str(path)), 0)
    finally:
        package_logger.removeHandler(caplog.handler)
    assert "'r' has a single example" in caplog.text
    assert "has no example of r" in caplog.text
    for split in (data.train, data.validation, data.test):  # a and b still reach every split
        assert {0, 1} <= set(split.labels)
