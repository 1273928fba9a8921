"""nlptransfer/metrics.py: held-out metrics (offline evaluate modules) and the baselines."""

from __future__ import annotations

import pytest

from nlptransfer.metrics import baselines, classification_metrics, format_report

LABELS = ["a", "b", "c"]
REFERENCES = [0, 0, 0, 1, 1, 2, 2, 2]
PREDICTIONS = [0, 0, 1, 1, 2, 2, 2, 0]


def test_classification_metrics_on_a_hand_computed_example():
    result = classification_metrics(PREDICTIONS, REFERENCES, LABELS)
    assert result["accuracy"] == pytest.approx(5 / 8)
    # rows: true label, columns: predicted label
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    expected = {"a": (2 / 3, 2 / 3, 2 / 3, 3), "b": (1 / 2, 1 / 2, 1 / 2, 2), "c": (2 / 3, 2 / 3, 2 / 3, 3)}
    assert list(result["per_class"]) == LABELS
    for label, (precision, recall, f1, support) in expected.items():
        row = result["per_class"][label]
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == support
    assert result["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)


def test_precision_and_recall_differ_when_they_should():
    # class 0 predicted 4 times, right twice; found 2 of its 2 examples
    result = classification_metrics([0, 0, 0, 0], [0, 0, 1, 1], ["x", "y"])
    assert result["per_class"]["x"]["precision"] == pytest.approx(0.5)
    assert result["per_class"]["x"]["recall"] == pytest.approx(1.0)
    assert result["per_class"]["x"]["f1"] == pytest.approx(2 / 3)
    assert result["per_class"]["y"]["recall"] == 0
    assert result["confusion_matrix"] == [[2, 0], [2, 0]]


def test_metrics_are_plain_json_types():
    import json

    result = classification_metrics(PREDICTIONS, REFERENCES, LABELS)
    assert json.loads(json.dumps(result)) == result


def test_a_label_missing_from_the_split_still_gets_a_row():
    result = classification_metrics([0, 1, 0], [0, 1, 1], ["a", "b", "c"])
    assert result["per_class"]["c"]["support"] == 0
    assert result["confusion_matrix"][2] == [0, 0, 0]


def test_majority_baseline_is_exact():
    result = baselines(
        train_texts=["good", "bad", "bad one", "meh", "bad two"], train_labels=[0, 1, 1, 2, 1],
        test_texts=["x", "y", "z", "w"], test_labels=[1, 0, 1, 1],
    )
    assert result["majority_accuracy"] == 0.75
    assert 0 <= result["tfidf_logreg_accuracy"] <= 1
    assert "majority_tied_classes" not in result


def test_a_tie_for_the_majority_is_the_mean_of_guessing_each_tied_class():
    """A balanced few-shot sample has no majority class: not whichever comes first, but the expected accuracy."""
    texts = ["good one", "bad one", "fine one", "bad two", "good two", "fine two"]
    result = baselines(texts, [2, 0, 1, 0, 2, 1], ["x y"] * 5, [0, 0, 0, 1, 2])
    assert result["majority_accuracy"] == pytest.approx((3 / 5 + 1 / 5 + 1 / 5) / 3)
    assert result["majority_tied_classes"] == 3
    tied_sets = baselines(texts[:3], [[1, 0], [0, 1], [1, 1]], ["x y", "z w"], [[1, 0], [1, 0]])
    assert tied_sets["majority_accuracy"] == pytest.approx(1 / 3) and tied_sets["majority_tied_classes"] == 3


def test_tfidf_baseline_learns_separable_words():
    texts = ["great fun", "great film", "awful film", "awful fun"] * 3
    labels = [0, 0, 1, 1] * 3
    result = baselines(texts, labels, ["great", "awful", "great book", "awful book"], [0, 1, 0, 1])
    assert result["tfidf_logreg_accuracy"] == 1.0
    assert result["majority_accuracy"] == 0.5


def test_format_report_has_a_row_per_label():
    report = format_report(classification_metrics(PREDICTIONS, REFERENCES, LABELS), LABELS)
    lines = report.splitlines()
    assert len(lines) == 1 + len(LABELS) + 1
    assert lines[2].split() == ["b", "0.500", "0.500", "0.500", "2"]
    assert lines[-1].split()[:2] == ["accuracy", "0.6250"]
