"""nlptransfer/data/memory.py: in-memory data from the Python API as the tasks read it (lists of records here;
the other shapes run end to end in tests/test_api.py)."""

from __future__ import annotations

import pytest

from nlptransfer.config import DataConfig
from nlptransfer.data.classification import load_classification
from nlptransfer.data.conll import load_token_classification
from nlptransfer.data.memory import in_memory_source
from nlptransfer.errors import DataError


def test_records_of_texts_and_labels_read_like_a_frame():
    records = [{"text": f"text number {i}", "label": "ab"[i % 2]} for i in range(30)]
    cfg = DataConfig()
    frames, names, description = in_memory_source(records, cfg)
    assert description == "in-memory records (30 examples)" and names == {}
    assert frames["train"].to_dict("records") == records
    data = load_classification(cfg, 0, source=(frames, names, description))
    assert data.label_names == ["a", "b"] and len(data.train) + len(data.validation) + len(data.test) == 30


def test_records_of_label_lists_for_multilabel():
    topics = [["sport"], ["tech", "sport"], ["business"]]
    records = [{"text": f"text number {i}", "label": topics[i % 3]} for i in range(30)]
    cfg = DataConfig()
    data = load_classification(cfg, 0, multilabel=True, source=in_memory_source(records, cfg))
    assert data.multilabel and data.label_names == ["business", "sport", "tech"]
    assert {len(labels) for labels in data.train.labels} == {1, 2}


def test_records_of_tokens_and_tags_for_token_classification():
    records = [{"tokens": ["john", "says", f"word{i}"], "tags": ["B-PER", "O", "O"]} for i in range(20)]
    cfg = DataConfig()
    data = load_token_classification(cfg, 0, source=in_memory_source(records, cfg))
    assert data.label_names[0] == "O" and "B-PER" in data.label_names
    assert sum(len(split) for split in (data.train, data.validation, data.test)) == 20


def test_a_dict_of_splits_holding_records():
    train = [{"text": f"text number {i}", "label": "ab"[i % 2]} for i in range(20)]
    test = [{"text": f"held out {i}", "label": "ab"[i % 2]} for i in range(4)]
    frames, _, _ = in_memory_source({"train": train, "test": test}, DataConfig())
    assert {split: len(frame) for split, frame in frames.items()} == {"train": 20, "test": 4}


@pytest.mark.parametrize("records, message", [
    ([], "data= is an empty list; give records like {'text': ..., 'label': ...}"),
    ((), "data= is an empty list"),
    (["a good movie", "a bad movie", "fine"], "data= as a list takes records (dicts like"),
    ([{"text": "a", "label": "x"}, "b"], "item 2 is a str"),
    ([{"text": "a", "label": "x"}, {"text": "b"}], "data= record 2 has no 'label' (record 1 has text, label); give "
                                                   "every record the same keys"),
    ([{"text": "a", "label": "x"}, {"text": "b", "label": "y", "lable": "y"}], "record 2 has an extra key 'lable'"),
])
def test_bad_lists_are_one_line_errors(records, message):
    with pytest.raises(DataError) as excinfo:
        in_memory_source(records, DataConfig())
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)
