"""task=multilabel: label lists in, a sigmoid/BCE head, tuned thresholds, multi-label metrics and predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ASSETS
from transformers import AutoConfig

from nlptransfer import load_model
from nlptransfer.config import DataConfig, RunConfig, TrainConfig
from nlptransfer.data.classification import load_classification
from nlptransfer.errors import DataError
from nlptransfer.metrics import multilabel_metrics, tune_thresholds
from nlptransfer.pipeline import run

pytestmark = pytest.mark.usefixtures("one_thread")
TOPICS = ASSETS / "topics_multilabel.jsonl"


def topics_csv(tmp_path, separator="|"):
    rows = [json.loads(line) for line in TOPICS.read_text().splitlines()]
    path = tmp_path / "topics.csv"
    path.write_text("text,labels\n" + "".join(f"{r['text']},{separator.join(r['labels'])}\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def multilabel_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("multilabel") / "run"
    results = run(RunConfig(model=tiny_model_dir, task="multilabel", output_dir=str(out),
                            data=DataConfig(train_file=str(TOPICS), label_column="labels", max_length=16),
                            train=TrainConfig(epochs=2, batch_size=8, lr=1e-3)))
    return out, results


def test_label_lists_from_json_and_from_a_separated_csv_column_agree(tmp_path):
    from_json = load_classification(DataConfig(train_file=str(TOPICS), label_column="labels"), 0, multilabel=True)
    from_csv = load_classification(DataConfig(train_file=str(topics_csv(tmp_path)), label_column="labels",
                                              label_separator="|"), 0, multilabel=True)
    assert from_json.label_names == from_csv.label_names == ["business", "politics", "sport", "tech"]
    assert from_json.train.labels == from_csv.train.labels
    assert any(len(labels) == 2 for labels in from_json.train.labels)
    for split in ("train", "validation", "test"):  # every label in every split (stratified on the rarest)
        present = {i for labels in getattr(from_json, split).labels for i in labels}
        assert present == {0, 1, 2, 3}, split


def test_multilabel_metrics_match_a_hand_count():
    references = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    probabilities = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.3], [0.8, 0.4, 0.1], [0.3, 0.1, 0.35]])
    scores = multilabel_metrics(probabilities, references, ["a", "b", "c"], thresholds=0.5)
    # predicted: [1,0,1] [0,1,0] [1,0,0] [0,0,0]: 2 of 4 rows exact; tp=4, fp=0, fn=2
    assert scores["subset_accuracy"] == scores["accuracy"] == 0.5
    assert scores["micro_f1"] == pytest.approx(2 * 4 / (2 * 4 + 0 + 2))
    assert scores["per_class"]["b"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2,
                                                      "threshold": 0.5})
    assert scores["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert scores["samples_f1"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)
    lower = multilabel_metrics(probabilities, references, ["a", "b", "c"], thresholds=[0.5, 0.35, 0.32])
    assert lower["subset_accuracy"] == 1.0


def test_tuned_thresholds_separate_each_label():
    references = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [1, 0]])
    probabilities = np.array([[0.32, 0.9], [0.4, 0.97], [0.2, 0.95], [0.1, 0.6], [0.35, 0.5]])
    thresholds = tune_thresholds(probabilities, references)
    assert 0.2 < thresholds[0] <= 0.32  # label 0: positives 0.32..0.4, negatives <= 0.2
    assert 0.9 < thresholds[1] <= 0.95  # label 1: positives 0.95, 0.97; negatives up to 0.9
    assert tune_thresholds(probabilities, np.zeros((5, 2)))[0] == 0.5  # no positives: keep 0.5


def test_multilabel_run_end_to_end(multilabel_run):
    out, _ = multilabel_run
    saved = json.loads((out / "metrics.json").read_text())
    test = saved["test"]
    for key in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy"):
        assert 0 <= test[key] <= 1
    assert set(test["per_class"]) == {"business", "politics", "sport", "tech"}
    thresholds = {name: row["threshold"] for name, row in test["per_class"].items()}
    assert all(0.05 <= t <= 0.95 for t in thresholds.values())
    config = AutoConfig.from_pretrained(out / "model")
    assert config.problem_type == "multi_label_classification"  # pipeline() applies a sigmoid
    assert config.nlptransfer["thresholds"] == [thresholds[n] for n in ["business", "politics", "sport", "tech"]]
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == saved["data"]["examples"]["test"] > 0
    for row in rows:
        assert isinstance(row["labels"], list) and row["labels"]
        assert row["predicted"] == [n for n, p in row["scores"].items() if p >= thresholds[n]]


def test_multilabel_predictions_are_every_label_over_its_threshold(multilabel_run):
    out, _ = multilabel_run
    predictor = load_model(out)
    thresholds = AutoConfig.from_pretrained(out / "model").nlptransfer["thresholds"]
    names = predictor.label_names
    rows = predictor.predict(["match goal team market bank", "phone software", "vote law"])
    for row in rows:
        assert set(row["scores"]) == set(names)
        expected = [n for n, t in zip(names, thresholds) if row["scores"][n] >= t]
        assert sorted(row["labels"]) == sorted(expected)


def test_empty_label_list_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(TOPICS.read_text() + json.dumps({"text": "no labels here", "labels": []}) + "\n")
    with pytest.raises(DataError, match="empty label list"):
        load_classification(DataConfig(train_file=str(path), label_column="labels"), 0, multilabel=True)


def test_label_outside_the_known_set_is_an_error():
    cfg = DataConfig(train_file=str(TOPICS), label_column="labels", label_names=["sport", "tech", "politics"])
    with pytest.raises(DataError, match="business"):
        load_classification(cfg, 0, multilabel=True)


def test_multilabel_card_reports_multilabel_scores(multilabel_run):
    out, _ = multilabel_run
    card = (out / "README.md").read_text()
    assert "multi-label text classification" in card
    assert "Micro F1" in card and "Subset accuracy" in card
    assert "pipeline_tag: text-classification" in card


# Label cells that hide a separator, and label values that are not labels.

def test_joined_label_cells_without_data_label_separator_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"40 of 72 train label cells of 'labels' look like several labels joined by "
                                        r"'\|' \(e.g. 'sport\|business'\); pass data.label_separator='\|'"):
        load_classification(DataConfig(train_file=str(topics_csv(tmp_path)), label_column="labels"), 0,
                            multilabel=True)


def test_a_label_separator_that_does_not_split_the_cells_is_refused(tmp_path):
    cfg = DataConfig(train_file=str(topics_csv(tmp_path, separator=";")), label_column="labels", label_separator="/")
    with pytest.raises(DataError, match=r"joined by ';' .*\(data.label_separator='/' does not split them\); pass "
                                        r"data.label_separator=';'"):
        load_classification(cfg, 0, multilabel=True)


def test_a_separator_in_most_cells_is_refused_even_without_single_labels(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("text\tlabels\n" + "".join(f"text {i}\tred,{['blue', 'green'][i % 2]}\n" for i in range(20)))
    with pytest.raises(DataError, match="20 of 20 train label cells .*pass data.label_separator=','"):
        load_classification(DataConfig(train_file=str(path), label_column="labels"), 0, multilabel=True)


def test_labels_that_merely_contain_a_separator_are_kept(tmp_path):
    rows = [{"text": f"text number {i}", "labels": ["arts, culture", "sport|tech"] if i % 4 == 0
             else ["sport", "tech"][:1 + i % 2]} for i in range(40)]
    path = tmp_path / "d.jsonl"  # explicit lists: their items are labels as given, even 'sport|tech'
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    data = load_classification(DataConfig(train_file=str(path), label_column="labels"), 0, multilabel=True)
    assert data.label_names == ["arts, culture", "sport", "sport|tech", "tech"]
    csv = tmp_path / "d.csv"  # a minority of cells with a comma whose parts are not labels: one label
    cells = ['"arts, culture"' if i % 4 == 0 else "sport" for i in range(40)]
    csv.write_text("text,labels\n" + "".join(f"text {i},{cell}\n" for i, cell in enumerate(cells)))
    data = load_classification(DataConfig(train_file=str(csv), label_column="labels"), 0, multilabel=True)
    assert data.label_names == ["arts, culture", "sport"]


def test_label_lists_from_parquet(tmp_path):
    rows = [json.loads(line) for line in TOPICS.read_text().splitlines()]
    path = tmp_path / "topics.parquet"
    import pandas as pd

    pd.DataFrame(rows).to_parquet(path)  # lists come back as numpy arrays
    data = load_classification(DataConfig(train_file=str(path), label_column="labels"), 0, multilabel=True)
    assert data.label_names == ["business", "politics", "sport", "tech"]


@pytest.mark.parametrize("labels, message", [
    ({"sport": 1}, r"holds dicts like \{'sport': 1\}, not single labels; give one string or integer label"),
    (["sport", ["tech"]], r"example 1 \('text 0'\) has \['tech'\] in its label list"),
])
def test_label_values_that_are_not_labels(tmp_path, labels, message):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}", "labels": labels}) + "\n" for i in range(10)))
    with pytest.raises(DataError, match=message):
        load_classification(DataConfig(train_file=str(path), label_column="labels"), 0, multilabel=True)
