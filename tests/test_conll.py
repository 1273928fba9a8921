"""nlptransfer/data/conll.py: CoNLL, JSON/JSONL and hub readers, tag schemes, splits, and errors with file:line."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pandas as pd
import pytest

from nlptransfer.config import DataConfig
from nlptransfer.data import conll
from nlptransfer.errors import ConfigError, DataError

ASSETS = Path(__file__).parent / "assets"


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def load(seed: int = 0, **options) -> conll.TokenData:
    return conll.load_token_classification(DataConfig(**options), seed)


def test_conll_2003_four_space_separated_columns_with_docstart():
    sentences = conll.read_conll(ASSETS / "conll2003_sample.txt")
    assert [s.words for s in sentences][1:3] == [["Peter", "Blackburn"], ["BRUSSELS", "1996-08-22"]]
    assert sentences[0].tags == ["I-ORG", "O", "I-MISC", "O", "O", "O", "I-MISC", "O", "O"]
    assert [s.where.rsplit(":", 1)[1] for s in sentences] == ["3", "13", "18", "21"]


def test_the_tag_column_is_configurable():
    sentences = conll.read_conll(ASSETS / "conll2003_sample.txt", tag_column=2)
    assert sentences[1].tags == ["B-NP", "I-NP"]


def test_tab_separated_with_tab_only_separator_lines(tmp_path):
    path = write(tmp_path / "wnut.txt", "New\tB-geo-loc\nYork\tI-geo-loc\n\t\nhi there\tO\n")
    sentences = conll.read_conll(path)
    assert [s.words for s in sentences] == [["New", "York"], ["hi there"]]  # a tab file keeps spaces in words
    assert [s.tags for s in sentences] == [["B-geo-loc", "I-geo-loc"], ["O"]]


def test_crlf_line_endings_and_a_byte_order_mark(tmp_path):
    path = write(tmp_path / "windows.conll", b"\xef\xbb\xbfJohn B-PER\r\nruns O\r\n\r\n\r\nParis B-LOC\r\n")
    sentences = conll.read_conll(path)
    assert [s.words for s in sentences] == [["John", "runs"], ["Paris"]]
    assert [s.tags for s in sentences] == [["B-PER", "O"], ["B-LOC"]]
    assert sentences[1].where == f"{path}:5"


@pytest.mark.parametrize(("tags", "scheme"), [
    ([["B-PER", "I-PER", "O", "B-LOC"]], "IOB2"),
    ([["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]], "IOB1"),
    ([["S-PER", "O", "B-LOC", "E-LOC"]], "BIOES"),
    ([["U-PER", "O", "B-LOC", "L-LOC"]], "BIOES"),  # BILOU
    ([["O", "O"]], "IOB2"),
    ([["B-PER", "O"], ["I-LOC", "O"]], "IOB2"),  # a stray I- in IOB2 data does not make it IOB1
])
def test_detect_scheme(tags, scheme):
    assert conll.detect_scheme(tags) == scheme


@pytest.mark.parametrize(("tags", "iob2"), [
    (["I-ORG", "O", "I-MISC", "I-MISC", "B-MISC"], ["B-ORG", "O", "B-MISC", "I-MISC", "B-MISC"]),  # IOB1
    (["S-PER", "O", "B-LOC", "I-LOC", "E-LOC", "S-LOC"], ["B-PER", "O", "B-LOC", "I-LOC", "I-LOC", "B-LOC"]),
    (["U-PER", "B-LOC", "L-LOC"], ["B-PER", "B-LOC", "I-LOC"]),
    (["B-PER", "I-PER", "I-LOC", "O"], ["B-PER", "I-PER", "B-LOC", "O"]),  # another type starts an entity
    (["O", "B-X", "I-X"], ["O", "B-X", "I-X"]),
])
def test_to_iob2(tags, iob2):
    assert conll.to_iob2(tags) == iob2


def test_iob1_files_are_converted_and_the_scheme_reported():
    sample = str(ASSETS / "conll2003_sample.txt")
    data = load(train_file=sample, validation_file=sample, test_file=sample, dedup_across_splits=False)
    assert data.scheme == "IOB1"
    assert data.test.tags[:3] == [["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"], ["B-PER", "I-PER"],
                                  ["B-LOC", "O"]]
    assert data.label_names == ["O"] + [f"{p}-{t}" for t in ("LOC", "MISC", "ORG", "PER") for p in "BI"]


def test_bioes_files_are_converted():
    data = load(train_file=str(ASSETS / "bioes.tsv"), validation_file=str(ASSETS / "bioes.tsv"),
                test_file=str(ASSETS / "bioes.tsv"), dedup_across_splits=False)
    assert data.scheme == "BIOES"
    assert data.test.tags == [["B-PER", "O", "O", "B-LOC", "I-LOC"], ["O", "B-ORG", "I-ORG", "I-ORG", "O"]]
    assert data.label_names == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert data.entity_types == ["LOC", "ORG", "PER"]


@pytest.mark.parametrize("name", ["ner.json", "ner.jsonl"])
def test_json_and_jsonl_with_tokens_and_tags(name):
    sentences = conll.read_tagged_json(ASSETS / name, DataConfig())
    assert [s.words for s in sentences] == [["John", "Smith", "lives", "in", "Paris"], ["Hello", "world"],
                                            ["Apple", "rocks"]]
    assert sentences[0].tags == ["B-PER", "I-PER", "O", "O", "B-LOC"]
    lines = {"ner.json": ["2", "4", "5"], "ner.jsonl": ["1", "2", "4"]}[name]
    assert [s.where.rsplit(":", 1)[1] for s in sentences] == lines


def test_json_with_other_column_names_and_integer_tags(tmp_path):
    rows = [{"words": ["Anna", "sings"], "ner": [1, 0]}, {"words": ["ok"], "ner": [0]}]
    path = write(tmp_path / "ids.jsonl", "\n".join(json.dumps(r) for r in rows))
    cfg = DataConfig(tokens_column="words", tags_column="ner", label_names=["O", "B-PER", "I-PER"])
    assert [s.tags for s in conll.read_tagged_json(path, cfg)] == [["B-PER", "O"], ["O"]]
    with pytest.raises(DataError, match=r"ids.jsonl:1: integer tags need their names"):
        conll.read_tagged_json(path, DataConfig(tokens_column="words", tags_column="ner"))


def test_hub_dataset_with_classlabel_tag_names(tmp_path):
    import datasets

    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    features = datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                                  "ner_tags": datasets.List(datasets.ClassLabel(names=names))})
    rows = {"tokens": [["Anna", "Lee", "in", "Oslo"], ["hello"], ["Bo", "sings"]] * 4,
            "ner_tags": [[1, 2, 0, 3], [0], [1, 0]] * 4}
    for split in ("train", "validation", "test"):
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / f"{split}.parquet"))
    data = load(name=str(tmp_path), tags_column="ner_tags", dedup_across_splits=False)  # the same rows in each split
    assert data.label_names == names  # the ClassLabel order
    assert data.test.tags[0] == ["B-PER", "I-PER", "O", "B-LOC"]
    assert data.test.sentences[0].where == f"{tmp_path} test[0]"
    assert (len(data.train), len(data.validation), len(data.test)) == (12, 12, 12)
    with pytest.raises(DataError, match="has no column 'tags' .*data.tags_column.*columns found: tokens, ner_tags"):
        load(name=str(tmp_path))


def test_the_packaged_wnut16_corpus():
    data = load(name="wnut16", seed=42)
    assert data.scheme == "IOB2"
    # 239 sentences each were held out; the retweets among them repeat training (or test) sentences
    assert data.dropped_repeats == {"train": 0, "validation": 19, "test": 12}
    assert len(data.train) + len(data.validation) + len(data.test) == 2394 - 19 - 12
    assert (len(data.validation), len(data.test)) == (239 - 19, 239 - 12)
    assert len(data.entity_types) == 10 and "geo-loc" in data.entity_types
    assert data.label_names[0] == "O" and len(data.label_names) == 21
    assert data.label_names[1:3] == ["B-company", "I-company"]


def test_splits_are_seeded_disjoint_and_keep_file_order():
    first, again, other = (load(train_file=str(ASSETS / "ner_tiny.conll"), seed=s, dedup_across_splits=False)
                           for s in (1, 1, 2))
    lines = [[int(s.where.rsplit(":", 1)[1]) for s in split.sentences]
             for split in (first.train, first.validation, first.test)]
    assert all(split == sorted(split) for split in lines)
    assert sorted(sum(lines, [])) == sorted(set(sum(lines, [])))  # each sentence in one split
    assert len(sum(lines, [])) == 49 and (len(first.validation), len(first.test)) == (5, 5)
    assert again.test.words == first.test.words and other.test.words != first.test.words


def test_sample_limits():
    data = load(train_file=str(ASSETS / "ner_tiny.conll"), max_train_samples=7, max_validation_samples=2,
                max_test_samples=3, dedup_across_splits=False)
    assert (len(data.train), len(data.validation), len(data.test)) == (7, 2, 3)


def test_other_packaged_corpora_are_not_tagged():
    with pytest.raises(DataError, match="'tweets' is not a token classification corpus"):
        load(name="tweets")


# Bad input: one-line errors that point at the file and line.

@pytest.mark.parametrize(("text", "error", "message"), [
    ("John NNP B-PER\nruns O\n", DataError, r"bad.conll:2: expected 3 columns like the first line, found 2"),
    ("John\tB-PER\n\nParis\tB-LOC\textra\n", DataError, r"bad.conll:3: expected 2 columns like the first line"),
    ("John\n", DataError, r"bad.conll:1: expected at least 2 columns \(word and tag\)"),
    ("John B-PER\nruns PERSON\n", DataError, r"bad.conll:2: tag 'PERSON' is not O or B-/I-/E-/S-TYPE"),
    ("\tO\n", DataError, r"bad.conll:1: empty word in the first column"),
    ("-DOCSTART- O\n\n\n", DataError, r"bad.conll: no sentences found"),
])
def test_malformed_conll(tmp_path, text, error, message):
    with pytest.raises(error, match=message):
        conll.read_conll(write(tmp_path / "bad.conll", text))


@pytest.mark.parametrize("column", [3, -4, 0])
def test_a_tag_column_that_does_not_exist(tmp_path, column):
    path = write(tmp_path / "three.conll", "John NNP B-PER\n")
    with pytest.raises(ConfigError, match=rf"data.conll_tag_column={column} does not exist: .*three.conll:1 has 3"):
        conll.read_conll(path, tag_column=column)


@pytest.mark.parametrize(("record", "message"), [
    ({"tokens": [], "tags": []}, r"bad.jsonl:2: empty sentence"),
    ({"tokens": ["a", "b"], "tags": ["O"]}, r"bad.jsonl:2: 2 tokens but 1 tags"),
    ({"tokens": ["a"]}, r"bad.jsonl:2: no 'tags' key \(data.tags_column\); keys found: tokens"),
    ({"tokens": ["a", " "], "tags": ["O", "O"]}, r"bad.jsonl:2: token ' ' is not a non-empty string"),
    ({"tokens": ["a"], "tags": ["PER"]}, r"bad.jsonl:2: tag 'PER' is not O or"),
    ({"tokens": "a b", "tags": ["O", "O"]}, r"bad.jsonl:2: tokens and tags must be lists"),
    (["a", "O"], r"bad.jsonl:2: expected an object"),
])
def test_malformed_json_records(tmp_path, record, message):
    path = write(tmp_path / "bad.jsonl", json.dumps({"tokens": ["ok"], "tags": ["O"]}) + "\n" + json.dumps(record))
    with pytest.raises(DataError, match=message):
        conll.read_tagged_json(path, DataConfig())


def test_invalid_json_names_the_line(tmp_path):
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        conll.read_tagged_json(write(tmp_path / "bad.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": [\n'),
                               DataConfig())
    with pytest.raises(DataError, match=r"bad.json:3: not valid JSON \(expected ',' or ']'\)"):
        conll.read_tagged_json(write(tmp_path / "bad.json", '[\n{"tokens": ["a"], "tags": ["O"]}\n{"x": 1}]'),
                               DataConfig())


def test_tags_in_the_test_file_but_not_in_training(tmp_path):
    train = write(tmp_path / "train.conll", "\n\n".join(f"John\tB-PER\nruns\tO\nno{i}\tO" for i in range(5)))
    test = write(tmp_path / "test.conll", "Paris\tB-PER\n\nOslo\tB-LOC\n")
    with pytest.raises(DataError, match=r"test data has tags not seen in training or data.label_names: B-LOC "
                                        r"\(first at .*test.conll:3\)"):
        load(train_file=str(train), test_file=str(test), validation_file=str(train), dedup_across_splits=False)


def test_missing_file_and_no_data(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load(train_file=str(tmp_path / "missing.conll"))
    with pytest.raises(DataError, match="no data given"):
        load()


# Repeats across splits, untrainable data, unreadable files.

def conll_text(sentences: list[list[tuple[str, str]]]) -> str:
    return "\n\n".join("\n".join(f"{word}\t{tag}" for word, tag in sentence) for sentence in sentences) + "\n"


TRAIN = [[("John", "B-PER"), ("met", "O"), (f"friend{i}", "O"), ("in", "O"), ("Paris", "B-LOC")] for i in range(20)]


def test_held_out_sentences_that_repeat_training_ones_are_dropped(tmp_path, caplog):
    train = write(tmp_path / "train.conll", conll_text(TRAIN))
    repeats = [[("JOHN", "B-PER"), ("met", "O"), ("friend3", "O"), ("in", "O"), ("Paris", "B-LOC")],  # other case
               [("John", "B-PER"), ("met", "O"), ("friend4 ", "O"), ("in", "O"), ("Paris", "I-LOC")]]  # space, tag
    fresh = [[("Anna", "B-PER"), ("left", "O"), (f"town{i}", "O")] for i in range(3)]
    test = write(tmp_path / "test.conll", conll_text(repeats + fresh))
    package_logger = logging.getLogger("nlptransfer")  # it does not propagate once a run has set up logging
    package_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="nlptransfer.data"):
            data = load(train_file=str(train), test_file=str(test))
    finally:
        package_logger.removeHandler(caplog.handler)
    assert data.test.words == [[word for word, _ in sentence] for sentence in fresh]
    assert data.dropped_repeats["test"] == 2
    assert "2 test examples repeat a training sentence (ignoring case and white space): dropped" in caplog.text
    kept = load(train_file=str(train), test_file=str(test), dedup_across_splits=False)
    assert len(kept.test) == 5 and kept.dropped_repeats["test"] == 0


def test_validation_sentences_that_repeat_test_ones_are_dropped(tmp_path):
    train = write(tmp_path / "train.conll", conll_text(TRAIN))
    held_out = [[("Anna", "B-PER"), ("left", "O"), (f"town{i}", "O")] for i in range(4)]
    test = write(tmp_path / "test.conll", conll_text(held_out[:2]))
    validation = write(tmp_path / "validation.conll", conll_text(held_out))
    data = load(train_file=str(train), test_file=str(test), validation_file=str(validation))
    assert len(data.test) == 2 and data.validation.words == [["Anna", "left", "town2"], ["Anna", "left", "town3"]]
    assert data.dropped_repeats == {"train": 0, "validation": 2, "test": 0}
    with pytest.raises(DataError, match="every validation example also occurs in test"):
        load(train_file=str(train), test_file=str(test), validation_file=str(test))
    with pytest.raises(DataError, match="every test example also occurs in training"):
        load(train_file=str(train), test_file=str(train), validation_file=str(validation))
    with pytest.raises(DataError, match=r"every validation example also occurs in test .*, and 18 of the 20 test "
                                        "examples occur in training"):  # the validation split is carved from train
        load(train_file=str(train), test_file=str(train))


def test_repeats_in_one_file_never_reach_two_splits():
    data = load(train_file=str(ASSETS / "ner_tiny.conll"), seed=42)  # 17 of its 49 sentences repeat another
    keys = [{" ".join(words).casefold() for words in split.words} for split in (data.train, data.validation, data.test)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert sum(data.dropped_repeats.values()) > 0
    from nlptransfer import tasks
    summary = tasks.get("token-classification").data_summary(data, {}, None)["data"]
    assert summary["dropped_repeats"] == data.dropped_repeats  # what metrics.json reports


def test_data_without_entity_tags_is_an_error(tmp_path):
    path = write(tmp_path / "o.conll", conll_text([[(word, "O") for word, _ in sentence] for sentence in TRAIN]))
    with pytest.raises(DataError, match=r"no entity tags in the training data: all \d+ sentences are tagged O only"):
        load(train_file=str(path))


def test_max_train_samples_that_loses_entity_types(tmp_path):
    sentences = TRAIN + [[("in", "O"), ("Acme", "B-ORG"), (f"now{i}", "O")] for i in range(20)]
    path = write(tmp_path / "train.conll", conll_text(sentences))
    with pytest.raises(DataError, match=r"the training data is too small: data.max_train_samples=1 keeps no sentence "
                                        r"with entities of type"):
        load(train_file=str(path), max_train_samples=1)


def test_a_file_without_read_permission(tmp_path, monkeypatch):
    path = write(tmp_path / "locked.conll", conll_text(TRAIN))
    path.chmod(0)
    try:
        if not os.access(path, os.R_OK):
            with pytest.raises(DataError, match=r"cannot read .*locked.conll: permission denied"):
                conll.read_conll(path)
    finally:
        path.chmod(0o644)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)  # as root meets it: the read itself refused
    for name in ("locked.conll", "locked.jsonl"):
        write(tmp_path / name, "x")
        with pytest.raises(DataError, match=rf"cannot read .*{name}: permission denied; make it readable"):
            conll.read_tagged_file(tmp_path / name, DataConfig())


def test_one_column_for_tokens_and_tags(tmp_path):
    path = write(tmp_path / "d.jsonl", json.dumps({"tokens": ["John"], "tags": ["B-PER"]}) + "\n")
    with pytest.raises(ConfigError, match="data.tokens_column and data.tags_column both name the column 'tags'"):
        conll.read_tagged_json(path, DataConfig(tokens_column="tags"))


def test_in_memory_words_given_as_a_string_are_refused():
    frame = pd.DataFrame({"tokens": ["John Smith", "Paris"], "tags": [["B-PER", "I-PER"], ["B-LOC"]]})
    with pytest.raises(DataError, match=r"train\[0\]: tokens and tags must be lists, got str and list"):
        conll.tagged_frames(({"train": frame}, {}, "in-memory"), DataConfig())
    arrays = pd.DataFrame({"tokens": [("John", "Smith")], "tags": [pd.Series(["B-PER", "I-PER"]).to_numpy()]})
    assert conll.tagged_frames(({"train": arrays}, {}, "in-memory"), DataConfig())[0]["train"][0].words == [
        "John", "Smith"]
